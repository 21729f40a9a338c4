"""orchestra plugin for the OpenAI Codex CLI: the tool adapter named ``codex``.

``available`` finds the ``codex`` program and its version. ``execute`` runs
``codex exec --json`` on a task in the attempt's working tree and judges the attempt by
codex's event stream and by what changed in the tree (see docs/tools/codex.md).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import orchestra
from orchestra_codex import worktree
from orchestra_codex.events import EventReader, summarize_item
from orchestra_codex.judging import judge
from orchestra_codex.prompt import build_prompt
from orchestra_codex.settings import CodexSettings, SettingsError, config_toml, write_config

PROGRAM = "codex"


class CodexAdapter:
    """The ``codex`` tool: OpenAI's coding agent, run as ``codex exec``."""

    name = "codex"
    capabilities = frozenset({"prompt", "edit", "python", "javascript", "typescript"})

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
        path = shutil.which(program)
        if path is None:  # checked first, so that a machine without codex gets no CODEX_HOME
            where = "" if os.sep in program else " on PATH"
            return orchestra.Availability(False, reason=f"{program} not found{where}")
        env = {**os.environ, "CODEX_HOME": str(codex_home())}
        return orchestra.find_version(path, env=env)

    def __init__(self) -> None:
        self._versions: dict[tuple[str, int], str | None] = {}

    def execute(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Run ``codex exec`` on the task through ``ctx`` and return how the attempt went.

        Success needs both: codex's turn completed, and the working tree changed during
        the attempt. Codex never commits; orchestra does, after the checks.
        """
        profile = request.profile
        try:
            settings = CodexSettings.from_options(profile.options, profile.name)
        except SettingsError as error:
            return _cannot_run(str(error))
        path = shutil.which(os.path.expanduser(settings.binary))
        if path is None:
            return _cannot_run(f"{settings.binary} not found")
        try:
            root = worktree.toplevel(ctx.cwd)
        except worktree.NotAGitTree as error:
            return _cannot_run(f"codex runs in a git working tree; {ctx.cwd} is not one: {error}")
        home = ctx.state_dir / "home"
        write_config(home, config_toml(settings))
        self._record_version(path, home, ctx)
        excluded = _orchestra_directories(ctx.state_dir)
        before = worktree.fingerprint(root, excluded)
        reader = EventReader(on_item=lambda item: ctx.emit("item", summarize_item(item)))
        finished = ctx.run(
            command_line(path, request, settings),
            env={**request.task.env, "CODEX_HOME": str(home)},
            on_line=reader.feed,
        )
        reader.finish()
        try:
            changed: list[str] | None = worktree.changed_paths(
                before, worktree.fingerprint(root, excluded)
            )
        except worktree.NotAGitTree:
            changed = None
        if changed:
            ctx.emit("changes", {"paths": changed[:MAX_PATHS], "count": len(changed)})
        return judge(finished, reader.turn, changed, settings)

    def _record_version(self, path: str, home: Path, ctx: orchestra.ExecutionContext) -> None:
        """Emit the version of the codex at ``path`` (asked once per program file)."""
        key = (path, os.stat(path).st_mtime_ns)
        if key not in self._versions:
            env = {**os.environ, "CODEX_HOME": str(home)}
            self._versions[key] = orchestra.find_version(path, env=env).version
        ctx.emit("version", {"program": path, "version": self._versions[key]})


#: a progress event names at most this many changed paths
MAX_PATHS = 100


def command_line(
    program: str, request: orchestra.ExecutionRequest, settings: CodexSettings
) -> list[str]:
    """Return the ``codex exec`` command for one attempt."""
    argv = [program, "exec", "--json", "--color", "never", "--sandbox", settings.sandbox]
    if not settings.keep_sessions:
        argv.append("--ephemeral")
    if request.profile.model:
        argv += ["--model", request.profile.model]
    argv += list(request.profile.args)
    argv += ["--", build_prompt(request.task, request.feedback)]
    return argv


def _orchestra_directories(state_dir: Path) -> list[Path]:
    """Return the directories of orchestra's own files, which are no change of codex's:
    the project's ``.orchestra`` directory holding ``state_dir``, else ``state_dir``."""
    for parent in [state_dir, *state_dir.parents]:
        if parent.name == ".orchestra":
            return [parent]
    return [state_dir]


def _cannot_run(message: str) -> orchestra.StepResult:
    return orchestra.StepResult("failed", error_class="tool_missing", message=message)


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
