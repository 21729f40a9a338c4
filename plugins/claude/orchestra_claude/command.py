"""The claude command line and environment of one attempt.

Why each flag and variable is there is in docs/tools/claude.md;
shared/notes/claude-code.md records what claude 2.1.328 does without them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orchestra
from orchestra_claude import supervise
from orchestra_claude.prompt import build_prompt
from orchestra_claude.settings import MIN_STREAM_IDLE_TIMEOUT, ClaudeSettings

#: always set: no traffic but the model's requests (no connectivity probe, telemetry,
#: feature flags, error reports or update checks). CLAUDE_CODE_SUBPROCESS_ENV_SCRUB stays
#: off: in 2.1.328 it forces the default permission mode and runs every command in a
#: sandbox of claude's own that needs bubblewrap and socat; the supervisor keeps the key
#: from the commands instead
QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_SUBPROCESS_ENV_SCRUB": "0",
}


@dataclass(frozen=True)
class Invocation:
    """What to run, and what goes on top of the attempt's environment."""

    argv: list[str]
    env: dict[str, str]


def build(
    request: orchestra.ExecutionRequest,
    settings: ClaudeSettings,
    program: str,
    scratch: Path,
    redact: Callable[[str], str] = str,
    prompt: str | None = None,
) -> Invocation:
    """Return the invocation of ``program`` for ``request``; write its files into
    ``scratch`` (the prompt, a private HOME and TMPDIR, all removed after the attempt).

    The prompt is ``prompt`` when given (a review's, as orchestra wrote it), else the one
    ``build_prompt`` makes of the task."""
    prompt_file = scratch / "prompt.md"
    prompt_file.write_text(build_prompt(request, redact) if prompt is None else prompt)
    home, temporary = scratch / "home", scratch / "tmp"
    home.mkdir(mode=0o700, exist_ok=True)
    temporary.mkdir(mode=0o700, exist_ok=True)
    argv = [sys.executable, "-I", supervise.__file__, str(prompt_file), "--"]
    argv += claude_arguments(program, request, settings)
    # the supervisor makes claude's TMPDIR this one, and keeps the attempt's for a short
    # directory of its own (see supervise.claude_environment)
    env = {**QUIET, "HOME": str(home), supervise.CLAUDE_TMPDIR_VARIABLE: str(temporary)}
    env.update(limits(settings, request.timeout))
    if settings.base_url is not None:
        env["ANTHROPIC_BASE_URL"] = settings.base_url
    if settings.permission_mode == "bypassPermissions" and os.geteuid() == 0:
        # claude refuses to skip its permission checks as root unless told it is sandboxed;
        # the profile asked for it, and orchestra confines the attempt
        env["IS_SANDBOX"] = "1"
    return Invocation(argv, env)


def claude_arguments(
    program: str, request: orchestra.ExecutionRequest, settings: ClaudeSettings
) -> list[str]:
    """Return claude's own command line (the prompt comes on its stdin)."""
    argv = [program, "-p"]
    # --allowedTools takes every word up to the next option: it comes before the others.
    # The file tools are not named: acceptEdits lets them write in the working directory
    # only, while an allowed "Write" or "Edit" would write anywhere
    if settings.allowed_tools:
        argv += ["--allowedTools", *settings.allowed_tools]
    if settings.disallowed_tools:
        argv += ["--disallowedTools", *settings.disallowed_tools]
    argv += ["--output-format", "stream-json", "--verbose"]
    argv += ["--permission-mode", settings.permission_mode, "--no-session-persistence"]
    if settings.bare:
        argv.append("--bare")
    if settings.max_turns is not None:
        argv += ["--max-turns", str(settings.max_turns)]
    if request.profile.model:
        argv += ["--model", request.profile.model]
    return argv + list(request.profile.args)


def limits(settings: ClaudeSettings, timeout: float | None) -> dict[str, str]:
    """Return the variables bounding claude's retries and waits, none longer than the
    attempt's ``timeout``."""
    request_timeout = settings.request_timeout
    stream_idle = settings.stream_idle_timeout
    if timeout is not None:
        request_timeout = min(request_timeout, timeout)
        stream_idle = max(min(stream_idle, timeout), MIN_STREAM_IDLE_TIMEOUT)
    return {
        "CLAUDE_CODE_MAX_RETRIES": str(settings.max_retries),
        "API_TIMEOUT_MS": str(max(int(request_timeout * 1000), 1000)),
        "CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS": str(int(stream_idle * 1000)),
    }
