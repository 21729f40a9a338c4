"""Whether a ``[tools.codex]`` profile lets codex reach its model: a key, or a login.

With orchestra's own provider (``base_url`` or ``env_key``) the key is the variable
``env_key`` names; without one, codex's built-in OpenAI provider takes ``CODEX_API_KEY``
(codex 0.169 ignores ``OPENAI_API_KEY`` there) or the login kept in its home
(``auth.json``, made by ``codex login``). Without either, every attempt fails with
``auth`` (``turn.failed``: 401). ``orchestra plan`` and ``validate`` print what this finds
as warnings.
"""

from __future__ import annotations

import orchestra
from orchestra_codex.settings import CodexSettings, SettingsError

#: the variables codex's built-in provider reads its credentials from
BUILT_IN_KEYS = ("CODEX_API_KEY", "CODEX_ACCESS_TOKEN")


def problems(profile: orchestra.ToolProfile, setup: orchestra.ToolSetup) -> list[str]:
    """Return what keeps codex from reaching its model, one sentence each."""
    table = f"[tools.{profile.name}]"
    try:
        settings = CodexSettings.from_options(profile.options, profile.name)
    except SettingsError as error:
        return [f"{error}: every attempt would fail"]
    found: list[str] = []
    if settings.env_key is not None and not setup.environ.get(settings.env_key):
        if settings.env_key in profile.pass_env:
            found.append(
                f"env_key {settings.env_key} is in pass_env in {table} but not set here: "
                "export it before orchestra runs"
            )
        else:
            found.append(
                f"env_key {settings.env_key} does not reach codex: list it in pass_env in "
                f"{table} (and export it)"
            )
    if not settings.own_provider and not _built_in_credentials(setup):
        found.append(
            "no API key and no login configured: codex's attempts would fail; set "
            "env_key and pass_env in "
            f"{table}, or log codex in (CODEX_HOME={setup.state_dir / 'home'} codex login)"
        )
    if settings.base_url is not None and not profile.model and not _model_in(profile.args):
        found.append(
            f"no model set: codex would ask {settings.base_url} for its own default model; "
            f"set model in {table}"
        )
    return found


def _built_in_credentials(setup: orchestra.ToolSetup) -> bool:
    """Return whether codex's built-in provider has a key or a login."""
    if any(setup.environ.get(name) for name in BUILT_IN_KEYS):
        return True
    return (setup.state_dir / "home" / "auth.json").is_file()


def _model_in(args: tuple[str, ...]) -> bool:
    return any(arg in ("-m", "--model") or arg.startswith("--model=") for arg in args)
