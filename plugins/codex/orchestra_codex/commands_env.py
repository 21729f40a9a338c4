"""What the commands the model has codex run may see of codex's environment.

Codex needs the provider's key in its own environment, and by default hands that whole
environment to every command the model runs: ``env`` printed the key, and its output went
back to the provider in the next request. Codex 0.169 also snapshots the user's shell into
``$CODEX_HOME/shell_snapshots/`` (every exported variable, as ``declare -x NAME=value``) and
leaves the file behind when it is stopped. So the config.toml orchestra writes holds:

- a ``[shell_environment_policy]`` that drops the key's variable, the profile's
  ``secrets``, and every variable named like a secret, before a command starts;
- ``[features] shell_snapshot = false`` and ``allow_login_shell = false``: a snapshot
  or a login shell would source the user's startup files (``~/.bash_profile``, and
  ``~/.bashrc`` for the snapshot), which may export a key of their own;
- ``SHLVL=1`` for the commands: codex gives ``bash -c`` a socket as stdin, and bash then
  reads ``~/.bashrc`` as if started by sshd, unless it is a nested shell (SHLVL >= 2 once
  bash counts itself).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

#: codex drops ``*KEY*``, ``*SECRET*`` and ``*TOKEN*`` (case-insensitive) when
#: ``ignore_default_excludes`` is false, which 0.169 does not default to; these are
#: orchestra's secret names (``*PASSWORD*``) that codex's list misses, and a short spelling
EXTRA_SECRET_PATTERNS = ("*PASSWORD*", "*PASSWD*")
#: where codex 0.169 keeps its shell snapshots, under CODEX_HOME
SNAPSHOTS = "shell_snapshots"


def policy_lines(hidden: Iterable[str]) -> list[str]:
    """Return config.toml's ``[shell_environment_policy]`` table, hiding the variables
    named in ``hidden`` (exact names) besides every secret-looking one."""
    excluded = list(EXTRA_SECRET_PATTERNS)
    for name in hidden:
        if name and name not in excluded:
            excluded.append(name)
    quoted = ", ".join(_string(pattern) for pattern in excluded)
    return [
        "",
        "[shell_environment_policy]",
        'inherit = "all"',
        "ignore_default_excludes = false",
        f"exclude = [{quoted}]",
        'set = { SHLVL = "1" }',
    ]


def remove_snapshots(home: Path) -> None:
    """Remove the shell snapshots an earlier attempt left in ``home`` (codex's home).

    Attempts of this plugin no longer make any, but one stopped before this version, or
    by a SIGKILL of codex, left ``declare -x …_API_KEY=…`` there; no attempt reads them.
    """
    shutil.rmtree(home / SNAPSHOTS, ignore_errors=True)


def _string(value: str) -> str:
    # a JSON string without ASCII escaping is a TOML basic string
    return json.dumps(value, ensure_ascii=False)
