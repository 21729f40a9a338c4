"""Whether a ``[tools.gemini]`` profile lets the Gemini CLI reach its model without a person.

The CLI runs with a private HOME, so it never finds a login of yours: its only credential
is ``GEMINI_API_KEY`` in its environment (sent as ``x-goog-api-key``). Without it every
attempt fails with ``auth``. (No model is no problem: the adapter then gives the CLI
``settings.DEFAULT_MODEL``.) ``orchestra plan`` and ``validate`` print what this finds as
warnings.
"""

from __future__ import annotations

import orchestra
from orchestra_gemini.settings import GeminiSettings, SettingsError, reserved_arg

#: the variable the CLI reads its key from (with ``selectedType: gemini-api-key``)
KEY_VARIABLE = "GEMINI_API_KEY"


def problems(profile: orchestra.ToolProfile, setup: orchestra.ToolSetup) -> list[str]:
    """Return what keeps gemini from reaching its model, one sentence each."""
    table = f"[tools.{profile.name}]"
    try:
        GeminiSettings.from_options(profile.options, profile.name)
    except SettingsError as error:
        return [f"{error}: every attempt would fail"]
    found: list[str] = []
    clash = reserved_arg(profile.args)
    if clash is not None:
        found.append(
            f"args in {table} sets {clash}, which orchestra sets itself: every attempt would fail"
        )
    if not setup.environ.get(KEY_VARIABLE):
        if KEY_VARIABLE in profile.pass_env:
            found.append(
                f"{KEY_VARIABLE} is in pass_env in {table} but not set here: "
                "export it before orchestra runs"
            )
        else:
            found.append(
                f"no API key reaches gemini: its attempts would fail (auth); list {KEY_VARIABLE}"
                f" in pass_env in {table} (and export it)"
            )
    return found
