"""The ``[tools.codex]`` options the adapter reads, and the config.toml it writes for codex.

Every key of ``[tools.codex]`` that orchestra itself does not know arrives in
``profile.options``. The ones below are read here, checked for type, and turned into
codex's own configuration; other keys are left alone (another plugin may read them).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from orchestra_codex.commands_env import policy_lines

#: codex 0.169's sandbox modes (``codex exec --sandbox``)
SANDBOXES = ("read-only", "workspace-write", "danger-full-access")
#: the id of the provider the adapter defines when ``base_url`` or ``env_key`` is given
PROVIDER_ID = "orchestra"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class SettingsError(ValueError):
    """A ``[tools.codex]`` option with a value the adapter cannot use."""


@dataclass(frozen=True)
class CodexSettings:
    """The adapter's options, with their defaults."""

    binary: str = "codex"
    #: the provider's URL; codex appends ``/responses``
    base_url: str | None = None
    #: the name (not the value) of the variable that holds the key
    env_key: str | None = None
    sandbox: str = "workspace-write"
    #: whether commands codex runs in the sandbox may open sockets
    network_access: bool = False
    #: codex's own retries of a failed request and of a broken stream (its defaults: 4, 5)
    request_max_retries: int = 2
    stream_max_retries: int = 2
    #: keep codex's session files ($CODEX_HOME/sessions); off: ``--ephemeral``
    keep_sessions: bool = False
    #: a model catalog file (codex's ``model_catalog_json``), for models codex does not know
    model_catalog: str | None = None
    #: seconds to wait after a rate limit when codex does not say how long
    rate_limit_wait: float = 60.0
    input_cost_per_token: float | None = None
    cached_input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], tool: str = "codex") -> CodexSettings:
        """Return the settings in ``options``; raise SettingsError naming a bad one."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name in options:
                values[field.name] = _checked(tool, field.name, options[field.name], field.type)
        settings = cls(**values)
        if settings.sandbox not in SANDBOXES:
            raise SettingsError(
                f"[tools.{tool}] sandbox must be one of {', '.join(SANDBOXES)},"
                f" not {settings.sandbox!r}"
            )
        return settings

    @property
    def own_provider(self) -> bool:
        """Return whether codex talks to a provider defined here rather than its built-in one."""
        return self.base_url is not None or self.env_key is not None


#: a field's annotation -> the TOML types it accepts, and how to name them
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "str": ((str,), "a string"),
    "str | None": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "float | None": ((int, float), "a number"),
}


def _checked(tool: str, name: str, value: Any, kind: Any) -> Any:
    accepted, expected = _KINDS[str(kind)]
    is_bool = isinstance(value, bool)
    if not isinstance(value, accepted) or (is_bool and bool not in accepted):
        raise SettingsError(f"[tools.{tool}] {name} must be {expected}, not {value!r}")
    if isinstance(value, (int, float)) and not is_bool and value < 0:
        raise SettingsError(f"[tools.{tool}] {name} must not be negative, not {value!r}")
    if isinstance(value, str) and not value:
        raise SettingsError(f"[tools.{tool}] {name} must not be empty")
    # a number where a float is wanted is made one (10 -> 10.0)
    return float(value) if isinstance(value, (int, float)) and "float" in str(kind) else value


def config_toml(settings: CodexSettings, secrets: Iterable[str] = ()) -> str:
    """Return codex's config.toml for these settings; the variables named in ``secrets``
    (a profile's ``secrets``) are kept from the model's commands, like the key's.

    Why each line is there (shared/notes/real-tools.md, section 4): codex checks for
    updates, reports analytics and looks up plugins on github.com unless told not to; it
    waits forever for an unreachable provider unless ``unbounded_connection_retries`` is
    off; exec's approvals are already ``never``, said again so a later default cannot ask.
    The shell lines keep keys from the model's commands (``commands_env``).
    """
    lines = [
        "# Written by orchestra-codex from [tools.codex] before each attempt: edits are lost.",
        'approval_policy = "never"',
        "check_for_update_on_startup = false",
        "allow_login_shell = false",
    ]
    if settings.own_provider:
        lines.append(f"model_provider = {_string(PROVIDER_ID)}")
    if settings.model_catalog is not None:
        catalog = os.path.abspath(os.path.expanduser(settings.model_catalog))
        lines.append(f"model_catalog_json = {_string(catalog)}")
    lines += [
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[feedback]",
        "enabled = false",
        "",
        "[features]",
        "plugins = false",
        "shell_snapshot = false",
        "unbounded_connection_retries = false",
        "",
        "[history]",
        'persistence = "none"',
        "",
        "[sandbox_workspace_write]",
        f"network_access = {_bool(settings.network_access)}",
    ]
    lines += policy_lines([settings.env_key or "", *secrets])
    if settings.own_provider:
        lines += _provider_lines(settings)
    return "\n".join(lines) + "\n"


def _provider_lines(settings: CodexSettings) -> list[str]:
    lines = [
        "",
        f"[model_providers.{PROVIDER_ID}]",
        'name = "orchestra"',
        f"base_url = {_string(settings.base_url or DEFAULT_BASE_URL)}",
    ]
    if settings.env_key is not None:
        lines.append(f"env_key = {_string(settings.env_key)}")
    lines += [
        'wire_api = "responses"',
        f"request_max_retries = {settings.request_max_retries}",
        f"stream_max_retries = {settings.stream_max_retries}",
    ]
    return lines


def _string(value: str) -> str:
    # a JSON string without ASCII escaping is a TOML basic string
    return json.dumps(value, ensure_ascii=False)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def write_config(home: Path, text: str) -> Path:
    """Write ``text`` as ``home/config.toml`` unless it already holds it; return the path.

    Attempts running side by side share the home, so the file is replaced in one step
    (a reader sees the old file or the new one, never half of one).
    """
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)  # codex keeps its login (auth.json) here
    path = home / "config.toml"
    try:
        if path.read_text() == text:
            return path
    except FileNotFoundError:
        pass
    descriptor, temporary = tempfile.mkstemp(prefix=".config.", suffix=".toml", dir=home)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path
