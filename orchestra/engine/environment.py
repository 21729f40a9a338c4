"""The environment a process of an attempt gets: an allow-list of orchestra's own
variables, those a tool profile passes by name, and the configured ``env`` on top.

Which of its values are secrets, and their redaction, is ``secrets.py``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: variables of orchestra's own environment every process gets (plus LC_*)
ALLOWED_VARIABLES = frozenset(
    {"PATH", "HOME", "LANG", "TERM", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL"}
)


def build_environment(
    source: Mapping[str, str], extra: Mapping[str, str], pass_env: Iterable[str]
) -> dict[str, str]:
    """Return the allow-listed variables of ``source`` and those named in ``pass_env``,
    with ``extra`` (a profile's or task's ``env``) on top."""
    passed = set(pass_env)
    environment = {
        name: value
        for name, value in source.items()
        if name in ALLOWED_VARIABLES or name.startswith("LC_") or name in passed
    }
    environment.update(extra)
    return environment
