"""orchestra plugin for aider (https://aider.chat): the tool adapter named ``aider``.

``available`` finds the ``aider`` program and its version; ``execute`` runs it on one task,
non-interactively and offline-safe, and judges the attempt by what changed in the working
tree, since aider exits 0 in ``--message`` mode whatever happened; ``review`` runs it in its
``ask`` chat mode on another tool's change and returns the model's reply as the answer.
See docs/tools/aider.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import orchestra

if TYPE_CHECKING:
    from orchestra_aider.command import Invocation
    from orchestra_aider.outcome import AiderOutput
    from orchestra_aider.worktree import Snapshot

PROGRAM = "aider"
#: the oldest aider whose command line this adapter is known to drive (tested: 0.86.2)
MINIMUM_VERSION = (0, 86)


class AiderAdapter:
    """The ``aider`` tool: an AI pair programmer that edits files in a git repository."""

    name = "aider"
    capabilities = frozenset({"prompt", "edit", "review", "python", "javascript", "typescript"})

    def __init__(self) -> None:
        #: (program, its mtime) -> what ``aider --version`` said; asked once per install
        self._versions: dict[tuple[str, int], orchestra.Availability] = {}

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return whether aider runs here, with its version and path.

        The program is ``aider`` on PATH, or the path or name set as ``binary`` in
        ``[tools.aider]``. ``aider --version`` writes nothing to HOME (checked by the
        tests), so it runs in the caller's environment.
        """
        program = profile.options.get("binary", PROGRAM)
        if not isinstance(program, str) or not program:
            return orchestra.Availability(
                False, reason=f"[tools.{profile.name}] binary must be a program name or path"
            )
        return orchestra.find_version(os.path.expanduser(program))

    def configuration_problems(
        self, profile: orchestra.ToolProfile, setup: orchestra.ToolSetup
    ) -> list[str]:
        """Return what keeps aider from working without a person: no model, no API key
        (without both, aider waits for a sign-in in a browser)."""
        from orchestra_aider import configured

        return configured.problems(profile, setup)

    def execute(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run aider on the task in ``ctx.cwd`` and return the attempt's result."""
        # Imported here, not with the plugin: every orchestra command registers the
        # adapter, and only an attempt of aider needs these.
        from orchestra_aider import command, outcome, worktree

        try:
            before, invocation = self._prepare(request, ctx, command.build)
        except CannotRun as error:
            return orchestra.StepResult("failed", "tool_missing", str(error))
        finished, output, usage = _run(invocation, ctx)
        after = worktree.snapshot(ctx.cwd)
        changed = _not_orchestras(ctx, finished, worktree.changed_paths(ctx.cwd, before, after))
        counted = worktree.task_changes(changed, request.task.files)
        ctx.emit("finished", {"changed": changed, "applied": output.applied})
        return outcome.judge(finished, output, counted, usage)

    def review(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run aider in its ``ask`` chat mode, as a dry run, on ``request.task.prompt`` (the
        review prompt orchestra wrote, passed unchanged but for its secrets) and return
        how it went, with the model's reply as ``answer``; judged as ``execute`` judges,
        but a run that ended well needs an answer rather than a change."""
        from orchestra_aider import review

        try:
            _, invocation = self._prepare(request, ctx, review.build)
        except CannotRun as error:
            return orchestra.StepResult("failed", "tool_missing", str(error))
        finished, output, usage = _run(invocation, ctx)
        answer = review.last_reply(invocation.llm_history)
        return review.judge_review(finished, output, answer, usage)

    def _prepare(
        self,
        request: orchestra.ExecutionRequest,
        ctx: orchestra.ExecutionContext,
        build: Callable[..., Invocation],
    ) -> tuple[Snapshot, Invocation]:
        """Return the working tree's state and the invocation ``build`` makes for this
        attempt, once aider is found; raise CannotRun when it cannot be started."""
        from orchestra_aider import command, worktree

        found = self._found(request.profile)
        refusal = _refusal(request, found)
        if refusal:
            raise CannotRun(refusal)
        ctx.emit("version", {"version": found.version, "path": found.path})
        program = found.path
        assert program is not None  # _refusal refuses a tool it did not find
        try:
            before = worktree.snapshot(ctx.cwd)
            invocation = build(request, ctx.scratch_dir, ctx.cwd, program, ctx.redact)
        except (worktree.NotARepository, command.ProfileError) as error:
            raise CannotRun(str(error)) from None
        ctx.emit("started", {"files": invocation.chat_files, "read": invocation.read_files})
        return before, invocation

    def _found(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return ``available(profile)``, asking aider for its version once per install."""
        program = profile.options.get("binary", PROGRAM)
        path = os.path.expanduser(program) if isinstance(program, str) else ""
        located = _locate(path)
        try:
            key = (located, os.stat(located).st_mtime_ns) if located else None
        except OSError:
            key = None
        if key is not None and key in self._versions:
            return self._versions[key]
        found = self.available(profile)
        if key is not None and found.available:
            self._versions[key] = found
        return found


class CannotRun(Exception):
    """Aider cannot be started for this attempt: not found, too old, a bad option, no git
    repository."""


def _run(
    invocation: Invocation, ctx: orchestra.ExecutionContext
) -> tuple[orchestra.ProcessResult, AiderOutput, orchestra.Usage]:
    """Run aider as ``invocation`` says, reporting progress as its output comes; return how
    its process ended, what it printed, and the tokens and cost it reported."""
    from orchestra_aider import outcome

    output = outcome.AiderOutput(emit=ctx.emit)
    finished = ctx.run(invocation.argv, env=invocation.env, on_line=output.take)
    usage = outcome.usage_from_analytics(invocation.analytics_log)
    return finished, output, usage or outcome.usage_from_output(output)


def _not_orchestras(
    ctx: orchestra.ExecutionContext, finished: orchestra.ProcessResult, changed: list[str]
) -> list[str]:
    """Return ``changed`` without orchestra's own files (its database and logs under
    ``.orchestra/``, this attempt's log and scratch directory) when they are in the tree."""
    from orchestra_aider import worktree

    own = [".orchestra"]
    for directory in (ctx.scratch_dir, os.path.dirname(finished.log_path or "")):
        relative = os.path.relpath(directory, ctx.cwd) if directory else ".."
        if relative != "." and not relative.startswith(".."):
            own.append(relative)
    return [path for path in changed if not worktree.matches(path, own)]


def _locate(program: str) -> str | None:
    import shutil  # here: importing shutil (and bz2, lzma) costs every orchestra command 3 ms

    return shutil.which(program) if program else None


def _refusal(request: orchestra.ExecutionRequest, found: orchestra.Availability) -> str | None:
    """Return why this attempt cannot be handed to aider, or None."""
    if not found.available or found.path is None:
        return found.reason or "aider is not available"
    if request.task.prompt is None:
        return f"aider carries out prompts; task {request.task.id!r} has a command"
    version = _version_tuple(found.version)
    if version is not None and version < MINIMUM_VERSION:
        wanted = ".".join(map(str, MINIMUM_VERSION))
        return (
            f"aider {found.version} at {found.path} is too old: orchestra-aider drives aider "
            f"{wanted} or newer (pip install -U aider-chat)"
        )
    return None


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    """Return the leading numbers of a version ("0.86.2.dev3" -> (0, 86, 2)), or None."""
    found = re.match(r"(\d+(?:\.\d+)*)", version or "")
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


@orchestra.hookimpl
def orchestra_register_tools(register: Callable[[orchestra.ToolAdapter], None]) -> None:
    """Register the ``aider`` adapter."""
    register(AiderAdapter())
