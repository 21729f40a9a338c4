"""orchestra plugin for Google's Gemini CLI: the tool adapter named ``gemini``.

``available`` finds the ``gemini`` program and its version. ``execute`` runs
``gemini -p --output-format stream-json`` on a task in the attempt's working tree, from a
private HOME holding the settings orchestra writes, and judges the attempt by the CLI's
event stream and by what changed in the tree; ``review`` runs it with only its read-only
tools on another tool's change and returns the model's final text as the answer (see
docs/tools/gemini.md).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import orchestra

if TYPE_CHECKING:
    from orchestra_gemini import worktree
    from orchestra_gemini.events import Session
    from orchestra_gemini.settings import GeminiSettings

# The modules that drive gemini are imported where an attempt needs them, not with the
# plugin: every orchestra command registers the adapter, few attempts are gemini's.

PROGRAM = "gemini"
#: the oldest Gemini CLI whose flags, settings and events this adapter is known to drive
#: (tested: 0.61.0)
MINIMUM_VERSION = (0, 61)
#: one process instead of a parent re-spawning itself as a child, and a faster start
NO_RELAUNCH = {"GEMINI_CLI_NO_RELAUNCH": "true"}
#: a progress event names at most this many changed paths
MAX_PATHS = 100


class GeminiAdapter:
    """The ``gemini`` tool: Google's Gemini CLI, run as ``gemini -p``."""

    name = "gemini"
    capabilities = frozenset({"prompt", "edit", "review", "python", "javascript", "typescript"})

    def __init__(self) -> None:
        #: (program, its mtime) -> what ``available`` said; asked once per install
        self._found: dict[tuple[str, int], orchestra.Availability] = {}

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return whether gemini runs here, with its version and path; an older gemini
        than this adapter drives is unavailable, with the reason.

        The program is ``gemini`` on PATH, or the path or name set as ``binary`` in
        ``[tools.gemini]`` (the npm launcher needs ``node`` on PATH). Even
        ``gemini --version`` writes into ``~/.gemini``, so it runs with a HOME of its own,
        removed afterwards, and never touches the user's.
        """
        program = profile.options.get("binary", PROGRAM)
        if not isinstance(program, str) or not program:
            return orchestra.Availability(
                False, reason=f"[tools.{profile.name}] binary must be a program name or path"
            )
        program = os.path.expanduser(program)
        import shutil  # here: importing shutil (and bz2, lzma) costs every orchestra command 3 ms

        path = shutil.which(program)
        if path is None:
            where = "" if os.sep in program else " on PATH"
            return orchestra.Availability(False, reason=f"{program} not found{where}")
        import tempfile  # here: importing tempfile (and random) costs every orchestra command 2 ms

        with tempfile.TemporaryDirectory(prefix="orchestra-gemini-") as home:
            env = {**os.environ, **NO_RELAUNCH, "HOME": home, "TMPDIR": home}
            found = orchestra.find_version(path, env=env)
        return _refuse_old(found)

    def configuration_problems(
        self, profile: orchestra.ToolProfile, setup: orchestra.ToolSetup
    ) -> list[str]:
        """Return what keeps gemini from reaching its model: no key, a bad option, no
        model."""
        from orchestra_gemini import configured

        return configured.problems(profile, setup)

    def execute(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run ``gemini -p`` on the task through ``ctx`` and return how the attempt went.

        Success needs both: the CLI's ``result`` said success, and the task's files
        changed during the attempt. The CLI never commits; orchestra does, after the checks.
        """
        from orchestra_gemini.judging import judge
        from orchestra_gemini.prompt import build_prompt

        prompt = build_prompt(request.task, request.feedback, orchestra.start_note(request))
        try:
            launch = self._prepare(request, ctx, prompt)
        except CannotRun as error:
            return orchestra.StepResult("failed", error_class="tool_missing", message=str(error))
        finished, session = _run(launch, ctx)
        changed = _changes_since(launch, ctx)
        counted = None
        if changed is not None:
            from orchestra_gemini.worktree import task_changes

            counted = task_changes(changed, request.task.files)
        return judge(finished, session, counted, launch.settings)

    def review(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run ``gemini -p`` in the approval mode that declares only its read-only tools,
        on ``request.task.prompt`` (the review prompt orchestra wrote, passed unchanged
        but for its secrets) and return how it went, with the model's final text as
        ``answer``; judged as ``execute`` judges, but a run that ended well needs an
        answer rather than a change."""
        from orchestra_gemini.review import REVIEW_APPROVAL_MODE, judge_review

        try:
            launch = self._prepare(request, ctx, request.task.prompt or "", REVIEW_APPROVAL_MODE)
        except CannotRun as error:
            return orchestra.StepResult("failed", error_class="tool_missing", message=str(error))
        finished, session = _run(launch, ctx)
        return judge_review(finished, session, launch.settings)

    def _prepare(
        self,
        request: orchestra.ExecutionRequest,
        ctx: orchestra.ExecutionContext,
        prompt: str,
        approval_mode: str | None = None,
    ) -> _Launch:
        """Return what to run with ``prompt``, once gemini's HOME is written and the tree's
        state taken; ``approval_mode`` replaces the profile's (a review's read-only one)."""
        from orchestra_gemini import worktree
        from orchestra_gemini.settings import GeminiSettings, SettingsError, reserved_arg

        profile = request.profile
        try:
            settings = GeminiSettings.from_options(profile.options, profile.name)
        except SettingsError as error:
            raise CannotRun(str(error)) from None
        clash = reserved_arg(profile.args)
        if clash is not None:
            raise CannotRun(
                f"[tools.{profile.name}] args must not set {clash}: orchestra sets it"
                " (shell = true gives the model the shell tool)"
            )
        if request.task.prompt is None:
            raise CannotRun(f"gemini carries out prompts; task {request.task.id!r} has a command")
        found = self._available(profile)
        if not found.available or found.path is None:
            raise CannotRun(found.reason or "gemini is not available")
        ctx.emit("version", {"program": found.path, "version": found.version})
        scratch = ctx.scratch_dir
        try:
            root = worktree.toplevel(ctx.cwd)
            excluded = [root / ".orchestra", scratch]
            before = worktree.fingerprint(root, excluded)
        except worktree.NotAGitTree as error:
            message = f"gemini runs in a git working tree; {ctx.cwd} is not one: {error}"
            raise CannotRun(message) from None
        return _Launch(
            argv=command_line(
                found.path, request, settings, _prompt_file(prompt, ctx), approval_mode
            ),
            env={**request.task.env, **_environment(settings, profile.secrets, scratch)},
            settings=settings,
            root=root,
            excluded=excluded,
            before=before,
        )

    def _available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return ``available(profile)``, asked once per installed program file."""
        program = profile.options.get("binary", PROGRAM)
        import shutil

        located = shutil.which(os.path.expanduser(program)) if isinstance(program, str) else None
        try:
            key = (located, os.stat(located).st_mtime_ns) if located else None
        except OSError:
            key = None
        if key is not None and key in self._found:
            return self._found[key]
        found = self.available(profile)
        if key is not None and found.available:
            self._found[key] = found
        return found


class CannotRun(Exception):
    """Gemini cannot be started for this attempt: bad options, no program, no git tree."""


# a NamedTuple, not a dataclass: the class is made at every orchestra command's start
# (the plugin registers its tool), a dataclass in 0.9 ms, this in 0.1 ms
class _Launch(NamedTuple):
    argv: list[str]
    env: dict[str, str]
    settings: GeminiSettings
    root: Path
    excluded: list[Path]
    before: worktree.Fingerprint


def _run(
    launch: _Launch, ctx: orchestra.ExecutionContext
) -> tuple[orchestra.ProcessResult, Session]:
    """Run gemini as ``launch`` says, reporting its tool calls and its session as
    progress; return how its process ended and what its events said."""
    from orchestra_gemini.events import StreamReader, summarize_call

    reader = StreamReader(on_call=lambda call: ctx.emit("call", summarize_call(call)))
    finished = ctx.run(launch.argv, env=launch.env, on_line=reader.feed)
    reader.finish()
    session = reader.session
    if session.session_id is not None:
        ctx.emit("session", {"session_id": session.session_id, "model": session.model})
    return finished, session


def command_line(
    program: str,
    request: orchestra.ExecutionRequest,
    settings: GeminiSettings,
    prompt_file: Path,
    approval_mode: str | None = None,
) -> list[str]:
    """Return the command for one attempt: ``launch.py`` gives the CLI the prompt file as
    its stdin and becomes ``gemini -p ""`` (the CLI puts the ``-p`` text after stdin's).
    ``approval_mode`` replaces the one the settings give (``settings.approval_mode``)."""
    from orchestra_gemini import launch
    from orchestra_gemini.settings import DEFAULT_MODEL

    return [
        sys.executable,
        launch.__file__,
        str(prompt_file),
        program,
        "-p",
        "",
        "--output-format",
        "stream-json",
        "--skip-trust",
        "-m",
        request.profile.model or DEFAULT_MODEL,
        "--approval-mode",
        approval_mode or settings.approval_mode,
        *request.profile.args,
    ]


def _prompt_file(prompt: str, ctx: orchestra.ExecutionContext) -> Path:
    """Write the attempt's prompt, secrets masked, into the scratch directory."""
    path = ctx.scratch_dir / "prompt.md"
    path.write_text(ctx.redact(prompt))
    return path


def _environment(
    settings: GeminiSettings, secrets: tuple[str, ...], scratch: Path
) -> dict[str, str]:
    """Return what the CLI's environment adds to the attempt's: a private HOME holding the
    settings.json orchestra writes, a private TMPDIR (the CLI writes an error report there
    per API error), the base URL. The key is the attempt's ``GEMINI_API_KEY``."""
    from orchestra_gemini.settings import settings_json

    home = scratch / "home"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(settings_json(settings, secrets))
    temporary = scratch / "tmp"
    temporary.mkdir(exist_ok=True)
    env = {**NO_RELAUNCH, "HOME": str(home), "TMPDIR": str(temporary)}
    if settings.base_url is not None:
        env["GOOGLE_GEMINI_BASE_URL"] = settings.base_url
    return env


def _changes_since(launch: _Launch, ctx: orchestra.ExecutionContext) -> list[str] | None:
    """Return the paths changed since ``launch.before`` (None when git cannot say), and
    report them as progress."""
    from orchestra_gemini import worktree

    try:
        after = worktree.fingerprint(launch.root, launch.excluded)
    except worktree.NotAGitTree:
        return None
    changed = worktree.changed_paths(launch.before, after)
    if changed:
        ctx.emit("changes", {"paths": changed[:MAX_PATHS], "count": len(changed)})
    return changed


def _refuse_old(found: orchestra.Availability) -> orchestra.Availability:
    """Return ``found``, or unavailable with the reason when that gemini is too old."""
    version = _version_tuple(found.version)
    if found.available and version is not None and version < MINIMUM_VERSION:
        wanted = ".".join(map(str, MINIMUM_VERSION))
        reason = (
            f"gemini {found.version} at {found.path} is too old: orchestra-gemini drives"
            f" gemini {wanted} or newer (npm install -g @google/gemini-cli)"
        )
        return orchestra.Availability(False, version=found.version, path=found.path, reason=reason)
    return found


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    """Return the leading numbers of a version ("0.61.0-preview.1" -> (0, 61, 0)), or None."""
    found = re.match(r"(\d+(?:\.\d+)*)", version or "")
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


@orchestra.hookimpl
def orchestra_register_tools(register: Callable[[orchestra.ToolAdapter], None]) -> None:
    """Register the ``gemini`` adapter."""
    register(GeminiAdapter())
