"""orchestra plugin for Anthropic's Claude Code CLI: the tool adapter named ``claude``.

``available`` finds the ``claude`` program and its version. ``execute`` runs ``claude -p
--output-format stream-json`` on a task in the attempt's working tree and judges the
attempt by claude's stream and by what changed in the tree; ``review`` runs it with the
edit tools taken away on another tool's change and returns claude's final result as the
answer (see docs/tools/claude.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orchestra

if TYPE_CHECKING:
    from orchestra_claude import worktree
    from orchestra_claude.command import Invocation
    from orchestra_claude.settings import ClaudeSettings
    from orchestra_claude.stream import Session, ToolCall

# The modules that drive claude are imported where an attempt needs them, not with the
# plugin: every orchestra command registers the adapter, few attempts are claude's.

PROGRAM = "claude"
#: the oldest claude this plugin was tested with (shared/notes/claude-code.md)
MIN_VERSION = (2, 1, 328)
#: a progress event names at most this many changed paths
MAX_PATHS = 100


class ClaudeAdapter:
    """The ``claude`` tool: Anthropic's coding agent, run as ``claude -p``."""

    name = "claude"
    capabilities = frozenset({"prompt", "edit", "review", "python", "javascript", "typescript"})

    def __init__(self) -> None:
        self._versions: dict[tuple[str, int], str | None] = {}

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return whether claude runs here, with its version and path.

        The program is ``claude`` on PATH, or the path or name set as ``binary`` in
        ``[tools.claude]``. A claude older than the one this plugin was tested with is
        refused: its stream and flags may differ.
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
        found = orchestra.find_version(path)
        if found.available and found.version and too_old(found.version):
            oldest = ".".join(map(str, MIN_VERSION))
            return orchestra.Availability(
                False,
                version=found.version,
                path=found.path,
                reason=f"claude {found.version} is older than {oldest}, the oldest version "
                "orchestra-claude supports: upgrade it (npm install -g @anthropic-ai/claude-code)",
            )
        return found

    def configuration_problems(
        self, profile: orchestra.ToolProfile, setup: orchestra.ToolSetup
    ) -> list[str]:
        """Return what keeps claude from reaching its model: no key, a bad option."""
        from orchestra_claude import configured

        return configured.problems(profile, setup)

    def execute(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run ``claude -p`` on the task through ``ctx`` and return how the attempt went.

        Success needs both: claude's result says no error, and the working tree changed
        during the attempt. Claude never commits; orchestra does, after the checks.
        """
        from orchestra_claude.judging import judge
        from orchestra_claude.prompt import build_prompt

        try:
            launch = self._prepare(request, ctx, build_prompt(request, ctx.redact))
        except CannotRun as error:
            return orchestra.StepResult("failed", error_class="tool_missing", message=str(error))
        finished, session = _run(launch, ctx)
        changed = _changes_since(launch, ctx)
        return judge(finished, session, changed, launch.settings)

    def review(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run ``claude -p`` without its edit tools, in the permission mode that refuses
        what is not read-only, on ``request.task.prompt`` (the review prompt orchestra
        wrote, passed unchanged but for its secrets) and return how it went, with claude's
        final result as ``answer``; judged as ``execute`` judges, but a run that ended well
        needs an answer rather than a change."""
        from orchestra_claude.review import judge_review, read_only

        prompt = ctx.redact(request.task.prompt or "")
        try:
            launch = self._prepare(request, ctx, prompt, read_only)
        except CannotRun as error:
            return orchestra.StepResult("failed", error_class="tool_missing", message=str(error))
        finished, session = _run(launch, ctx)
        return judge_review(finished, session, launch.settings)

    def _prepare(
        self,
        request: orchestra.ExecutionRequest,
        ctx: orchestra.ExecutionContext,
        prompt: str,
        restrict: Callable[[ClaudeSettings], ClaudeSettings] | None = None,
    ) -> _Launch:
        """Return what to run with ``prompt``, once the prompt is written and the tree's
        state taken; ``restrict`` changes the profile's settings (a review's read-only)."""
        from orchestra_claude import command, worktree
        from orchestra_claude.settings import ClaudeSettings, SettingsError

        profile = request.profile
        try:
            settings = ClaudeSettings.from_options(profile.options, profile.name)
        except SettingsError as error:
            raise CannotRun(str(error)) from None
        if restrict is not None:
            settings = restrict(settings)
        import shutil

        program = shutil.which(os.path.expanduser(settings.binary))
        if program is None:
            raise CannotRun(f"{settings.binary} not found")
        try:
            root = worktree.toplevel(ctx.cwd)
            before = worktree.fingerprint(root)
        except worktree.NotAGitTree as error:
            message = f"claude runs in a git working tree; {ctx.cwd} is not one: {error}"
            raise CannotRun(message) from None
        invocation = command.build(request, settings, program, ctx.scratch_dir, prompt=prompt)
        self._record_version(program, ctx)
        return _Launch(invocation, settings, root, before)

    def _record_version(self, program: str, ctx: orchestra.ExecutionContext) -> None:
        """Emit the version of the claude at ``program`` (asked once per program file)."""
        key = (program, os.stat(program).st_mtime_ns)
        if key not in self._versions:
            self._versions[key] = orchestra.find_version(program).version
        ctx.emit("version", {"program": program, "version": self._versions[key]})


class CannotRun(Exception):
    """Claude cannot be started for this attempt: bad options, no program, no git tree."""


# a NamedTuple, not a dataclass: the class is made at every orchestra command's start
# (the plugin registers its tool), a dataclass in 0.9 ms, this in 0.1 ms
class _Launch(NamedTuple):
    invocation: Invocation
    settings: ClaudeSettings
    root: Path
    before: worktree.Fingerprint


def _run(
    launch: _Launch, ctx: orchestra.ExecutionContext
) -> tuple[orchestra.ProcessResult, Session]:
    """Run claude as ``launch`` says, reporting its tool calls and retries as progress;
    return how its process ended and what its stream said."""
    from orchestra_claude.stream import StreamReader

    reader = StreamReader(
        on_call=lambda call: _report_call(ctx, launch.root, call),
        on_retry=lambda retry: ctx.emit("retry", _retry_payload(retry)),
    )
    finished = ctx.run(launch.invocation.argv, env=launch.invocation.env, on_line=reader.feed)
    reader.finish()
    return finished, reader.session


def too_old(version: str) -> bool:
    """Return whether ``version`` ("2.1.328", "2.1.328 (Claude Code)") is older than the
    oldest supported; a version that cannot be read is not refused."""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version.strip())
    if match is None:
        return False
    return tuple(int(part) for part in match.groups()) < MIN_VERSION


def _report_call(ctx: orchestra.ExecutionContext, root: Path, call: ToolCall) -> None:
    """Emit a finished tool call: ``tool.edit`` for a change to a file, else ``tool.call``."""
    payload: dict[str, Any] = {"tool": call.name, "ok": not call.is_error}
    path = call.path
    if path is not None:
        payload["path"] = _relative(path, root)
    elif isinstance(call.input.get("command"), str):
        payload["command"] = call.input["command"][:2000]
    if call.is_error:
        payload["error"] = call.output[:2000]
    ctx.emit("edit" if call.edits else "call", payload)


def _retry_payload(retry: dict[str, Any]) -> dict[str, Any]:
    names = ("attempt", "max_retries", "retry_delay_ms", "error_status", "error")
    return {name: retry.get(name) for name in names}


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _changes_since(launch: _Launch, ctx: orchestra.ExecutionContext) -> list[str] | None:
    """Return the paths changed since ``launch.before`` (None when git cannot say), and
    report them as progress."""
    from orchestra_claude import worktree

    try:
        after = worktree.fingerprint(launch.root)
    except worktree.NotAGitTree:
        return None
    changed = worktree.changed_paths(launch.before, after)
    if changed:
        ctx.emit("changes", {"paths": changed[:MAX_PATHS], "count": len(changed)})
    return changed


@orchestra.hookimpl
def orchestra_register_tools(register: Callable[[orchestra.ToolAdapter], None]) -> None:
    """Register the ``claude`` adapter."""
    register(ClaudeAdapter())
