"""The ``[tools.gemini]`` options the adapter reads, and the settings.json it writes for gemini.

Every key of ``[tools.gemini]`` that orchestra itself does not know arrives in
``profile.options``. The ones below are read here, checked for type, and turned into the
Gemini CLI's own settings; other keys are left alone (another plugin may read them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

#: the model given when the profile names none: without ``-m`` the CLI first asks the model
#: ``auto`` to classify the request (a call the provider may not serve)
DEFAULT_MODEL = "gemini-2.5-pro"
#: the Gemini CLI's own cap on ``general.maxAttempts``
MOST_ATTEMPTS = 10
#: arguments the adapter sets itself; given twice the CLI refuses them or joins them
#: ("Invalid approval mode: auto_edit,yolo")
RESERVED_ARGS = (
    "-p",
    "--prompt",
    "-i",
    "--prompt-interactive",
    "-m",
    "--model",
    "-o",
    "--output-format",
    "--approval-mode",
    "-y",
    "--yolo",
)


class SettingsError(ValueError):
    """A ``[tools.gemini]`` option with a value the adapter cannot use."""


@dataclass(frozen=True)
class GeminiSettings:
    """The adapter's options, with their defaults."""

    binary: str = "gemini"
    #: the Gemini API's URL, without a version (GOOGLE_GEMINI_BASE_URL)
    base_url: str | None = None
    #: the CLI's own tries of one request (general.maxAttempts); the CLI's default is 10,
    #: minutes of backoff after a 429 or a 500 that orchestra would rather spend itself
    max_attempts: int = 2
    #: offer the model the shell tool (approval mode ``yolo``), not only the edit tools
    shell: bool = False
    #: seconds to wait after a rate limit when the provider does not say how long
    rate_limit_wait: float = 60.0
    input_cost_per_token: float | None = None
    cached_input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], tool: str = "gemini") -> GeminiSettings:
        """Return the settings in ``options``; raise SettingsError naming a bad one."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name in options:
                values[field.name] = _checked(tool, field.name, options[field.name], field.type)
        settings = cls(**values)
        if not 1 <= settings.max_attempts <= MOST_ATTEMPTS:
            raise SettingsError(
                f"[tools.{tool}] max_attempts must be from 1 to {MOST_ATTEMPTS},"
                f" not {settings.max_attempts}"
            )
        return settings

    @property
    def approval_mode(self) -> str:
        """Return the CLI's approval mode: it decides which tools the model is offered at
        all (``auto_edit``: reading and editing files; ``yolo``: the shell too)."""
        return "yolo" if self.shell else "auto_edit"


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


def reserved_arg(args: Iterable[str]) -> str | None:
    """Return the first of ``args`` that the adapter sets itself, or None."""
    for arg in args:
        if arg.split("=", 1)[0] in RESERVED_ARGS:
            return arg
    return None


def settings_json(settings: GeminiSettings, secrets: Iterable[str] = ()) -> str:
    """Return the CLI's ``~/.gemini/settings.json`` for these settings; the variables named
    in ``secrets`` (a profile's ``secrets``) are kept from the model's shell commands.

    Why each key is there (shared/notes/gemini-cli.md, sections 2 and 7): without
    ``selectedType`` the base-URL variable makes the CLI refuse its auth (exit 41); usage
    statistics are the one thing that phones home; ``maxAttempts`` is the only bound on
    the CLI's own retries. Environment redaction drops every variable named like a secret
    (``*KEY*``, ``*TOKEN*`` …), the key's included, from what a shell command sees.
    """
    document = {
        "security": {
            "auth": {"selectedType": "gemini-api-key"},
            "environmentVariableRedaction": {
                "enabled": True,
                "blocked": sorted({name for name in secrets if name}),
            },
        },
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {
            "enableAutoUpdate": False,
            "enableAutoUpdateNotification": False,
            "maxAttempts": settings.max_attempts,
        },
    }
    return json.dumps(document, indent=2) + "\n"
