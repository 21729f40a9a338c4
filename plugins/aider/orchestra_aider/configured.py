"""Whether a ``[tools.aider]`` profile lets aider work without a person: a model, and a key.

Without a model aider picks one by the first API key it finds in its environment; without
either, it asks a person to sign in to OpenRouter in a browser and waits minutes for it
(aider 0.86's onboarding). ``orchestra plan`` and ``validate`` print what this finds as
warnings. Aider reads the repository's ``.aider.conf.yml`` and ``.env`` too, so a model or
a key set there counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import orchestra

#: the variables aider picks a default model by when none is given (aider/onboarding.py)
DEFAULT_MODEL_KEYS = (
    "OPENROUTER_API_KEY",
    "ANTHROPIC_API_KEY",
    "DEEPSEEK_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "VERTEXAI_PROJECT",
)
#: aider's flags that name the model: ``--model`` and its shortcuts (aider/deprecated.py)
MODEL_FLAGS: tuple[str, ...] = ("--model", "--opus", "--sonnet", "--haiku", "--4", "-4")
MODEL_FLAGS += ("--4o", "--mini", "--4-turbo", "--35turbo", "--35-turbo", "--3", "-3")
MODEL_FLAGS += ("--deepseek", "--o1-mini", "--o1-preview")
#: flags that give a key on the command line (documented as a bad idea, but they work)
KEY_FLAGS = ("--api-key", "--openai-api-key", "--anthropic-api-key")
#: model prefixes of providers that run without a key (a local server)
KEYLESS_PROVIDERS = ("ollama/", "ollama_chat/")
#: a variable that holds a provider's credentials
KEY_NAME = re.compile(r"^[A-Z0-9_]*(_API_KEY|_API_TOKEN)$|^VERTEXAI_PROJECT$|^AWS_ACCESS_KEY_ID$")
MODEL_LINE = re.compile(r"^\s*model\s*:\s*\S", re.MULTILINE)
ENV_MODEL_LINE = re.compile(r"^\s*(export\s+)?AIDER_MODEL\s*=\s*\S", re.MULTILINE)
ENV_KEY_LINE = re.compile(r"^\s*(export\s+)?([A-Z0-9_]+)\s*=\s*\S", re.MULTILINE)


def problems(profile: orchestra.ToolProfile, setup: orchestra.ToolSetup) -> list[str]:
    """Return what keeps aider from working without a person, one sentence each."""
    table = f"[tools.{profile.name}]"
    model = _model(profile, setup)
    keys = _keys(profile, setup)
    if model is None and not keys:
        return [
            "no model and no API key configured: aider would ask for a sign-in to OpenRouter "
            "in a browser, and its attempts fail (needs_input); set model, and pass_env "
            f"with the key's variable, in {table}{_unset(profile, setup)}"
        ]
    if model is None:
        return [f"no model set: aider picks one by the key it finds; set model in {table}"]
    if not keys and not model.startswith(KEYLESS_PROVIDERS):
        return [
            f"no API key configured for model {model!r}: aider's attempts would fail (auth); "
            f"list the key's variable in pass_env in {table}{_unset(profile, setup)}"
        ]
    return []


def _model(profile: orchestra.ToolProfile, setup: orchestra.ToolSetup) -> str | None:
    """Return the model aider is given (its name, or the flag that names it), or None."""
    if profile.model:
        return profile.model
    flag = _flag_value(profile.args, MODEL_FLAGS)
    if flag is not None:
        return flag
    if setup.environ.get("AIDER_MODEL"):
        return setup.environ["AIDER_MODEL"]
    if MODEL_LINE.search(_read(setup.root / ".aider.conf.yml")):
        return "the model in .aider.conf.yml"
    if ENV_MODEL_LINE.search(_read(setup.root / ".env")):
        return "AIDER_MODEL in .env"
    return None


def _keys(profile: orchestra.ToolProfile, setup: orchestra.ToolSetup) -> list[str]:
    """Return where aider finds credentials: variables, key flags, the repository's .env."""
    found = [name for name, value in setup.environ.items() if value and _is_key(name)]
    if _flag_value(profile.args, KEY_FLAGS) is not None:
        found.append("args")
    dotenv = _read(setup.root / ".env")
    found += [match.group(2) for match in ENV_KEY_LINE.finditer(dotenv) if _is_key(match.group(2))]
    return found


def _is_key(name: str) -> bool:
    return name in DEFAULT_MODEL_KEYS or bool(KEY_NAME.match(name.removeprefix("AIDER_")))


def _unset(profile: orchestra.ToolProfile, setup: orchestra.ToolSetup) -> str:
    """Return a note naming the variables ``pass_env`` lists that are not set here."""
    missing = [name for name in profile.pass_env if name not in setup.environ]
    return f" ({', '.join(missing)}: in pass_env, but not set here)" if missing else ""


def _flag_value(args: Sequence[str], flags: Sequence[str]) -> str | None:
    """Return the value of the first of ``flags`` in ``args`` (the flag itself for a
    shortcut without one), or None."""
    for index, argument in enumerate(args):
        name, equals, value = argument.partition("=")
        if name not in flags:
            continue
        if equals:
            return value
        if name in ("--model", *KEY_FLAGS):
            return args[index + 1] if index + 1 < len(args) else None
        return name
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
