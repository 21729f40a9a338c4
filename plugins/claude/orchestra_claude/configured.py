"""Whether a ``[tools.claude]`` profile lets claude reach its model: a key, valid options.

orchestra runs claude with a private HOME, so no login of the user's (``claude login``,
the keychain) is found there: the key must reach claude through its environment,
``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_AUTH_TOKEN`` for a gateway taking a bearer token).
Without one every attempt fails with ``auth``. ``orchestra plan`` and ``validate`` print
what this finds as warnings.
"""

from __future__ import annotations

import orchestra
from orchestra_claude.settings import ClaudeSettings, SettingsError

#: the variables claude takes its credentials from
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


def problems(profile: orchestra.ToolProfile, setup: orchestra.ToolSetup) -> list[str]:
    """Return what keeps claude from reaching its model, one sentence each."""
    table = f"[tools.{profile.name}]"
    try:
        ClaudeSettings.from_options(profile.options, profile.name)
    except SettingsError as error:
        return [f"{error}: every attempt would fail"]
    if any(setup.environ.get(name) for name in KEY_VARIABLES):
        return []
    passed = [name for name in KEY_VARIABLES if name in profile.pass_env]
    if passed:
        return [f"{passed[0]} is in pass_env in {table} but not set here: export it"]
    return [
        "no API key reaches claude: its attempts would fail; list ANTHROPIC_API_KEY in "
        f"pass_env in {table} (and export it)"
    ]
