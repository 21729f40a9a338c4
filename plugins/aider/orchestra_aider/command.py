"""The aider command line, environment and private files of one attempt.

Why each flag is there is in docs/tools/aider.md; ``shared/notes/real-tools.md`` records
what aider 0.86.2 does without them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orchestra
from orchestra_aider import supervise
from orchestra_aider.worktree import files_matching

#: always passed: non-interactive, offline, plain output, nothing written into the repository,
#: and no command run with aider's environment (which holds the key): aider lints with
#: ``python -m flake8`` in the repository, where a ``flake8.py`` the model wrote would run,
#: and a repository's .aider.conf.yml or .env can name lint, test and notification commands
FIXED_FLAGS = (
    "--yes-always",
    "--no-check-update",
    "--no-analytics",
    "--no-show-release-notes",
    "--no-show-model-warnings",
    "--no-gitignore",
    "--no-pretty",
    "--no-fancy-input",
    "--no-detect-urls",
    "--no-suggest-shell-commands",
    "--no-auto-commits",
    "--no-dirty-commits",
    "--no-auto-lint",
    "--no-auto-test",
    "--no-notifications",
)
#: the git identity aider finds in its HOME (the repository's own, if it has one, wins)
GIT_IDENTITY = "[user]\n\tname = orchestra\n\temail = orchestra@localhost\n"
#: options of [tools.aider] that become the model's entry in aider's model metadata file
METADATA_OPTIONS = {
    "context_window": "max_input_tokens",
    "max_output_tokens": "max_output_tokens",
    "input_cost_per_token": "input_cost_per_token",
    "output_cost_per_token": "output_cost_per_token",
}


class ProfileError(Exception):
    """A ``[tools.aider]`` option has a value the adapter cannot use."""


@dataclass(frozen=True)
class Invocation:
    """What to run, with what on top of the attempt's environment, and where aider logs."""

    argv: list[str]
    env: dict[str, str]
    analytics_log: Path
    chat_files: list[str]
    read_files: list[str]
    #: where aider logs the model's replies (``--llm-history-file``), when it is asked to
    llm_history: Path | None = None


def build(
    request: orchestra.ExecutionRequest,
    scratch: Path,
    cwd: str,
    aider: str,
    redact: Callable[[str], str],
) -> Invocation:
    """Return the invocation of ``aider`` for ``request``; write its files into ``scratch``."""
    scope = request.task.files
    chat_files = files_matching(cwd, scope.write, scope.forbidden)
    read_files = [
        path for path in files_matching(cwd, scope.read, scope.forbidden) if path not in chat_files
    ]
    return invocation(request, scratch, aider, message(request, redact), chat_files, read_files)


def invocation(
    request: orchestra.ExecutionRequest,
    scratch: Path,
    aider: str,
    text: str,
    chat_files: Sequence[str],
    read_files: Sequence[str],
    last_flags: Sequence[str] = (),
    llm_history: Path | None = None,
) -> Invocation:
    """Return the invocation of ``aider`` with the message ``text``, ``chat_files`` to edit
    and ``read_files`` to read; write its files into ``scratch``.

    ``last_flags`` come after the profile's flags and ``args``, so that they win (a
    review's chat mode); ``llm_history`` is where aider logs the model's replies.
    """
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    # with no identity in the repository's config (nor in this HOME), aider writes one into
    # the repository's .git/config, read-only in orchestra's sandbox; it never commits
    (home / ".gitconfig").write_text(GIT_IDENTITY)
    message_file = scratch / "message.md"
    message_file.write_text(text)
    analytics_log = scratch / "analytics.jsonl"
    argv = [sys.executable, supervise.__file__, "--", aider, "--message-file", str(message_file)]
    argv += [*FIXED_FLAGS, "--analytics-log", str(analytics_log)]
    # aider copies into its chat history what it prints, a provider's error echoing the key
    # included; the attempt's log is the redacted record, so no history is kept
    argv += ["--chat-history-file", os.devnull, "--input-history-file", os.devnull]
    if llm_history is not None:
        argv += ["--llm-history-file", str(llm_history)]
    argv += _profile_flags(request.profile, scratch)
    argv += last_flags
    for path in read_files:
        argv += ["--read", path]
    if chat_files:
        argv += ["--", *chat_files]
    env = {"HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}
    return Invocation(argv, env, analytics_log, list(chat_files), list(read_files), llm_history)


def message(request: orchestra.ExecutionRequest, redact: Callable[[str], str] = str) -> str:
    """Return the message aider gets: the task, its file scope, and on a retry what went
    wrong and what the working tree holds now (``orchestra.start_note``)."""
    task = request.task
    parts = [f"# {task.title}" if task.title else "", task.prompt or ""]
    scope = task.files
    if scope.create:
        parts.append("You may create these new files: " + ", ".join(scope.create))
    if scope.forbidden:
        parts.append("Do not change these paths: " + ", ".join(scope.forbidden))
    start = orchestra.start_note(request)
    if request.feedback:
        parts.append(
            "## Your previous attempt did not succeed\n\n"
            f"What went wrong:\n\n```\n{redact(request.feedback).rstrip()}\n```"
            + (f"\n\n{start}" if start else "")
        )
    elif start:
        parts.append(f"## This is a retry\n\n{start}")
    return "\n\n".join(part for part in parts if part) + "\n"


def _profile_flags(profile: orchestra.ToolProfile, scratch: Path) -> list[str]:
    """Return the flags for the profile's model, edit format, API base, options and args."""
    options = profile.options
    flags: list[str] = []
    if profile.model:
        flags += ["--model", profile.model]
    edit_format = _option(options, "edit_format", str)
    if edit_format:
        flags += ["--edit-format", edit_format]
    api_base = _option(options, "api_base", str)
    if api_base:
        flags += ["--openai-api-base", api_base]
    map_tokens = _option(options, "map_tokens", int)
    flags += ["--map-tokens", str(map_tokens or 0)]
    stream = _option(options, "stream", bool)
    if stream is False:
        flags.append("--no-stream")
    metadata = model_metadata(profile)
    if metadata:
        path = scratch / "model-metadata.json"
        path.write_text(json.dumps(metadata, indent=2))
        flags += ["--model-metadata-file", str(path)]
    return [*flags, *profile.args]


def model_metadata(profile: orchestra.ToolProfile) -> dict[str, dict[str, Any]]:
    """Return litellm metadata for the profile's model from its options, or {} if none."""
    entry: dict[str, Any] = {}
    for option, key in METADATA_OPTIONS.items():
        value = _option(profile.options, option, (int, float))
        if value is not None:
            entry[key] = value
    if not entry or not profile.model:
        return {}
    provider, _, _ = profile.model.rpartition("/")
    entry.setdefault("max_tokens", entry.get("max_output_tokens", 8192))
    entry.update(litellm_provider=provider.split("/")[0] or "openai", mode="chat")
    return {profile.model: entry}


_KINDS: dict[type | tuple[type, ...], str] = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
}


def _option(options: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = options.get(name)
    if value is None:
        return None
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        expected = _KINDS.get(kind, "a number")
        raise ProfileError(f"[tools.aider] {name} must be {expected}, got {value!r}")
    return value
