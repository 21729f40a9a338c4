"""orchestra plugin for the OpenAI Codex CLI: the tool adapter named ``codex``.

``available`` finds the ``codex`` program and its version. ``execute`` runs
``codex exec --json`` on a task in the attempt's working tree and judges the attempt by
codex's event stream and by what changed in the tree; ``review`` runs it in codex's
read-only sandbox on another tool's change and returns codex's last message as the
answer (see docs/tools/codex.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import orchestra

if TYPE_CHECKING:
    from orchestra_codex import worktree
    from orchestra_codex.events import Turn
    from orchestra_codex.settings import CodexSettings

# The modules that drive codex are imported where an attempt needs them, not with the
# plugin: every orchestra command registers the adapter, few attempts are codex's.

PROGRAM = "codex"


class CodexAdapter:
    """The ``codex`` tool: OpenAI's coding agent, run as ``codex exec``."""

    name = "codex"
    capabilities = frozenset({"prompt", "edit", "review", "python", "javascript", "typescript"})

    def __init__(self) -> None:
        self._versions: dict[tuple[str, int], str | None] = {}

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return whether codex runs here, with its version and path.

        The program is ``codex`` on PATH, or the path or name set as ``binary`` in
        ``[tools.codex]``. Even ``codex --version`` writes into ``$CODEX_HOME/tmp``
        (``~/.codex`` when unset), so it runs with orchestra's own CODEX_HOME and never
        touches the user's.
        """
        program = profile.options.get("binary", PROGRAM)
        if not isinstance(program, str) or not program:
            return orchestra.Availability(
                False, reason=f"[tools.{profile.name}] binary must be a program name or path"
            )
        program = os.path.expanduser(program)
        import shutil  # here: importing shutil (and bz2, lzma) costs every orchestra command 3 ms

        path = shutil.which(program)
        if path is None:  # checked first, so that a machine without codex gets no CODEX_HOME
            where = "" if os.sep in program else " on PATH"
            return orchestra.Availability(False, reason=f"{program} not found{where}")
        env = {**os.environ, "CODEX_HOME": str(codex_home())}
        return orchestra.find_version(path, env=env)

    def configuration_problems(
        self, profile: orchestra.ToolProfile, setup: orchestra.ToolSetup
    ) -> list[str]:
        """Return what keeps codex from reaching its model: no key and no login, a key
        variable that does not reach it, no model for a provider of your own."""
        from orchestra_codex import configured

        return configured.problems(profile, setup)

    def execute(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run ``codex exec`` on the task through ``ctx`` and return how the attempt went.

        Success needs both: codex's turn completed, and the working tree changed during
        the attempt. Codex never commits; orchestra does, after the checks.
        """
        from orchestra_codex.judging import judge
        from orchestra_codex.prompt import build_prompt

        prompt = build_prompt(request.task, request.feedback, orchestra.start_note(request))
        try:
            launch = self._prepare(request, ctx, prompt)
        except CannotRun as error:
            return orchestra.StepResult("failed", error_class="tool_missing", message=str(error))
        finished, turn = _run(launch, ctx)
        changed = _changes_since(launch, ctx)
        return judge(finished, turn, changed, launch.settings)

    def review(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run ``codex exec`` in its read-only sandbox on ``request.task.prompt`` (the
        review prompt orchestra wrote, passed unchanged) and return how it went, with
        codex's last message as ``answer``; judged as ``execute`` judges, but a completed
        turn needs an answer rather than a change."""
        from orchestra_codex.review import REVIEW_SANDBOX, judge_review

        try:
            launch = self._prepare(request, ctx, request.task.prompt or "", REVIEW_SANDBOX)
        except CannotRun as error:
            return orchestra.StepResult("failed", error_class="tool_missing", message=str(error))
        finished, turn = _run(launch, ctx)
        return judge_review(finished, turn, launch.settings)

    def _prepare(
        self,
        request: orchestra.ExecutionRequest,
        ctx: orchestra.ExecutionContext,
        prompt: str,
        sandbox: str | None = None,
    ) -> _Launch:
        """Return what to run with ``prompt``, once codex's home is written and the tree's
        state taken; ``sandbox`` replaces the profile's sandbox (a review's read-only)."""
        from orchestra_codex import worktree
        from orchestra_codex.commands_env import remove_snapshots
        from orchestra_codex.settings import CodexSettings, SettingsError, config_toml, write_config

        profile = request.profile
        try:
            settings = CodexSettings.from_options(profile.options, profile.name)
        except SettingsError as error:
            raise CannotRun(str(error)) from None
        if sandbox is not None:
            import dataclasses  # here: its import costs every command's start

            settings = dataclasses.replace(settings, sandbox=sandbox)
        import shutil

        program = shutil.which(os.path.expanduser(settings.binary))
        if program is None:
            raise CannotRun(f"{settings.binary} not found")
        try:
            root = worktree.toplevel(ctx.cwd)
            home = _home(ctx)
            excluded = _orchestra_directories(home)
            before = worktree.fingerprint(root, excluded)
        except worktree.NotAGitTree as error:
            message = f"codex runs in a git working tree; {ctx.cwd} is not one: {error}"
            raise CannotRun(message) from None
        write_config(home, config_toml(settings, profile.secrets))
        remove_snapshots(home)
        self._record_version(program, home, ctx)
        return _Launch(
            argv=command_line(program, request, settings, prompt),
            env={**request.task.env, "CODEX_HOME": str(home)},
            settings=settings,
            root=root,
            excluded=excluded,
            before=before,
        )

    def _record_version(self, program: str, home: Path, ctx: orchestra.ExecutionContext) -> None:
        """Emit the version of the codex at ``program`` (asked once per program file)."""
        key = (program, os.stat(program).st_mtime_ns)
        if key not in self._versions:
            env = {**os.environ, "CODEX_HOME": str(home)}
            self._versions[key] = orchestra.find_version(program, env=env).version
        ctx.emit("version", {"program": program, "version": self._versions[key]})


class CannotRun(Exception):
    """Codex cannot be started for this attempt: bad options, no program, no git tree."""


# a NamedTuple, not a dataclass: the class is made at every orchestra command's start
# (the plugin registers its tool), a dataclass in 0.9 ms, this in 0.1 ms
class _Launch(NamedTuple):
    argv: list[str]
    env: dict[str, str]
    settings: CodexSettings
    root: Path
    excluded: list[Path]
    before: worktree.Fingerprint


def _run(launch: _Launch, ctx: orchestra.ExecutionContext) -> tuple[orchestra.ProcessResult, Turn]:
    """Run codex as ``launch`` says, reporting each item it completes as progress; return
    how its process ended and what its events said."""
    from orchestra_codex.events import EventReader, summarize_item

    reader = EventReader(on_item=lambda item: ctx.emit("item", summarize_item(item)))
    finished = ctx.run(
        launch.argv, env=launch.env, on_line=reader.feed, **_outside_if_needed(ctx, launch)
    )
    reader.finish()
    return finished, reader.turn


def _home(ctx: orchestra.ExecutionContext) -> Path:
    """Return CODEX_HOME: ``home`` in the tool's state directory, kept across runs (the
    user's cache directory for a context without one)."""
    try:
        return ctx.state_dir / "home"
    except (AttributeError, RuntimeError):
        return codex_home()


def _changes_since(launch: _Launch, ctx: orchestra.ExecutionContext) -> list[str] | None:
    """Return the paths changed since ``launch.before`` (None when git cannot say), and
    report them as progress."""
    from orchestra_codex import worktree

    try:
        after = worktree.fingerprint(launch.root, launch.excluded)
    except worktree.NotAGitTree:
        return None
    changed = worktree.changed_paths(launch.before, after)
    if changed:
        ctx.emit("changes", {"paths": changed[:MAX_PATHS], "count": len(changed)})
    return changed


def _outside_if_needed(ctx: orchestra.ExecutionContext, launch: _Launch) -> dict:
    """``ctx.run``'s options: codex in its own sandbox runs outside orchestra's, where its
    own cannot start (as root it cannot map root into a user namespace; as another user it
    makes a directory in /tmp, read-only there). Codex's sandbox confines the commands it
    runs, and hides codex's environment, its key, from them (docs/sandbox.md)."""
    if getattr(ctx, "sandbox", None) is None or launch.settings.sandbox == "danger-full-access":
        return {}
    return {"sandboxed": False}


#: a progress event names at most this many changed paths
MAX_PATHS = 100


def command_line(
    program: str,
    request: orchestra.ExecutionRequest,
    settings: CodexSettings,
    prompt: str | None = None,
) -> list[str]:
    """Return the ``codex exec`` command for one attempt: ``prompt``, else the one
    ``build_prompt`` makes of the task."""
    if prompt is None:
        from orchestra_codex.prompt import build_prompt

        prompt = build_prompt(request.task, request.feedback, orchestra.start_note(request))
    argv = [program, "exec", "--json", "--color", "never", "--sandbox", settings.sandbox]
    if not settings.keep_sessions:
        argv.append("--ephemeral")
    if request.profile.model:
        argv += ["--model", request.profile.model]
    argv += list(request.profile.args)
    argv += ["--", prompt]
    return argv


def _orchestra_directories(home: Path) -> list[Path]:
    """Return the directories of orchestra's own files, which are no change of codex's:
    the project's ``.orchestra`` directory holding codex's home, else the home itself."""
    for parent in [home, *home.parents]:
        if parent.name == ".orchestra":
            return [parent]
    return [home]


def codex_home() -> Path:
    """Return orchestra's private CODEX_HOME, creating it (mode 0700) when missing.

    It lives in the user's cache directory, ``$XDG_CACHE_HOME/orchestra/codex-home`` or
    ``~/.cache/orchestra/codex-home``, and deliberately not under /tmp: codex refuses to
    create its helper programs (apply_patch …) under a temporary directory.
    """
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):  # the XDG spec says to ignore a relative path
        cache = os.path.join(os.path.expanduser("~"), ".cache")
    home = Path(cache, "orchestra", "codex-home")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


@orchestra.hookimpl
def orchestra_register_tools(register: Callable[[orchestra.ToolAdapter], None]) -> None:
    """Register the ``codex`` adapter."""
    register(CodexAdapter())
