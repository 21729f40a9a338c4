"""The ``[tools.claude]`` options the adapter reads, checked for type, with their defaults.

Every key of ``[tools.claude]`` that orchestra itself does not know arrives in
``profile.options``. The ones below are read here; other keys are left alone (another
plugin may read them). Why each default is what it is: shared/notes/claude-code.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

#: the permission modes orchestra runs claude in: ``acceptEdits`` lets Read, Edit and
#: Write through without a person and refuses the rest unless ``allowed_tools`` names it;
#: ``bypassPermissions`` lets everything through (as root only with ``IS_SANDBOX=1``)
PERMISSION_MODES = ("acceptEdits", "bypassPermissions")
#: the CLI's floor for its stream watchdog (CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS)
MIN_STREAM_IDLE_TIMEOUT = 10.0


class SettingsError(ValueError):
    """A ``[tools.claude]`` option with a value the adapter cannot use."""


@dataclass(frozen=True)
class ClaudeSettings:
    """The adapter's options, with their defaults."""

    binary: str = "claude"
    #: the Messages API's root, without ``/v1`` (ANTHROPIC_BASE_URL); unset: the CLI's own
    base_url: str | None = None
    permission_mode: str = "acceptEdits"
    #: tools let through besides the edits (``--allowedTools``), e.g. ``"Bash(pytest *)"``
    allowed_tools: tuple[str, ...] = ()
    #: tools refused outright (``--disallowedTools``)
    disallowed_tools: tuple[str, ...] = ()
    #: the most agent turns of one attempt (``--max-turns``); unset: no limit
    max_turns: int | None = None
    #: the CLI's own retries of a failed request (CLAUDE_CODE_MAX_RETRIES; its default, 10,
    #: makes a dead provider cost about three minutes)
    max_retries: int = 2
    #: seconds one request may take (API_TIMEOUT_MS; the CLI's default is 600)
    request_timeout: float = 120.0
    #: seconds a stream may stay silent before the CLI gives it up and asks again without
    #: streaming (CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS; the CLI's default is 300, its floor 10)
    stream_idle_timeout: float = 60.0
    #: claude's minimal mode (``--bare``): no CLAUDE.md, hooks, plugins or attribution
    bare: bool = False
    #: seconds to wait after a rate limit when the provider does not say how long
    rate_limit_wait: float = 60.0
    #: prices in USD; with the input and output prices, the cost is computed from them
    #: rather than taken from the CLI, which prices every model at Anthropic's list prices
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    cache_read_cost_per_token: float | None = None
    cache_write_cost_per_token: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], tool: str = "claude") -> ClaudeSettings:
        """Return the settings in ``options``; raise SettingsError naming a bad one."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name in options:
                values[field.name] = _checked(tool, field.name, options[field.name], field.type)
        settings = cls(**values)
        if settings.permission_mode not in PERMISSION_MODES:
            raise SettingsError(
                f"[tools.{tool}] permission_mode must be one of {', '.join(PERMISSION_MODES)},"
                f" not {settings.permission_mode!r}"
            )
        if settings.max_turns is not None and settings.max_turns < 1:
            raise SettingsError(f"[tools.{tool}] max_turns must be at least 1")
        if settings.stream_idle_timeout < MIN_STREAM_IDLE_TIMEOUT:
            raise SettingsError(
                f"[tools.{tool}] stream_idle_timeout must be at least"
                f" {MIN_STREAM_IDLE_TIMEOUT:g} seconds (claude's floor)"
            )
        if settings.request_timeout <= 0:
            raise SettingsError(f"[tools.{tool}] request_timeout must be longer than zero")
        return settings

    @property
    def prices(self) -> bool:
        """Return whether the profile prices the model (input and output both given)."""
        return self.input_cost_per_token is not None and self.output_cost_per_token is not None


#: a field's annotation -> the TOML types it accepts, and how to name them
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "str": ((str,), "a string"),
    "str | None": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
    "int": ((int,), "an integer"),
    "int | None": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "float | None": ((int, float), "a number"),
    "tuple[str, ...]": ((list, tuple), "a list of strings"),
}


def _checked(tool: str, name: str, value: Any, kind: Any) -> Any:
    accepted, expected = _KINDS[str(kind)]
    is_bool = isinstance(value, bool)
    if not isinstance(value, accepted) or (is_bool and bool not in accepted):
        raise SettingsError(f"[tools.{tool}] {name} must be {expected}, not {value!r}")
    if isinstance(value, (list, tuple)):
        if not all(isinstance(entry, str) and entry for entry in value):
            raise SettingsError(f"[tools.{tool}] {name} must be {expected}, not {value!r}")
        return tuple(value)
    if isinstance(value, (int, float)) and not is_bool and value < 0:
        raise SettingsError(f"[tools.{tool}] {name} must not be negative, not {value!r}")
    if isinstance(value, str) and not value:
        raise SettingsError(f"[tools.{tool}] {name} must not be empty")
    # a number where a float is wanted is made one (10 -> 10.0)
    return float(value) if isinstance(value, (int, float)) and "float" in str(kind) else value
