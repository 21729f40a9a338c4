"""The run's workspaces: which one each task gets, opened on first use, what each asks to
keep for a resume, and their clean-up at the run's end.

A workspace plugin (``orchestra_register_workspaces``) is opened once per run into a
``RunWorkspace``. What it asks to keep (``checkpoint()``: the worktree workspace's run
branch tip) is written in the run database under ``checkpoint_key`` in the transaction
of the wake that changed it, and handed back when the run is resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from orchestra.errors import OrchestraError
from orchestra.models import WorkspaceRun

if TYPE_CHECKING:
    from orchestra.config import Project, Settings
    from orchestra.models import Task
    from orchestra.plugin.host import PluginHost
    from orchestra.plugin.protocols import RunWorkspace


def checkpoint_key(workspace: str, run_id: str) -> str:
    """Where the run database keeps what workspace ``workspace`` of run ``run_id`` asked
    to be kept (``RunWorkspace.checkpoint``)."""
    return f"workspace.{workspace}.{run_id}"


def default_workspace(project_root: Path) -> str:
    """``worktree`` where the project is in a git repository that has a commit, else
    ``inplace``."""
    from orchestra.git import has_git_marker

    # repository_root makes this check too; made here first, outside git the run needs
    # not even import git's operations
    if not has_git_marker(Path(project_root).absolute()):
        return "inplace"
    from orchestra.git import refs

    repo = refs.repository_root(Path(project_root))
    if repo is None:
        return "inplace"
    try:
        refs.head_commit(repo)
    except OrchestraError:
        return "inplace"
    return "worktree"


class RunWorkspaces:
    """The workspaces of one run by name, opened when a task first needs one.

    ``state_dir`` is the run database's directory; ``record_event(kind, payload)``
    records an event of the run and tells the sinks."""

    def __init__(
        self,
        *,
        host: PluginHost,
        store: Any,
        run_id: str,
        project: Project,
        settings: Settings,
        state_dir: str,
        resumed: bool,
        record_event: Callable[[str, Mapping[str, Any]], None],
    ) -> None:
        self.host = host
        self.store = store
        #: what each workspace is opened with (and a checkpoint, when it kept one)
        self.run = WorkspaceRun(
            run_id=run_id,
            project_root=str(project.root),
            state_dir=state_dir,
            copy=tuple(project.config.workspace.copy),
            setup=tuple(project.config.workspace.setup),
            resumed=resumed,
            include_uncommitted=bool(settings.include_uncommitted),
            ignore=tuple(project.config.workspace.ignore),
        )
        #: the ``workspace`` setting (None: ``default_workspace``)
        self.setting = settings.workspace
        self.record_event = record_event
        self.spaces: dict[str, RunWorkspace] = {}
        #: what each opened workspace last asked to keep
        self.checkpoints: dict[str, Any] = {}
        self._default: str | None = None  # the default workspace, once known

    def name_for(self, task: Task) -> str:
        """The workspace of ``task``: its own, the setting, or the default."""
        return task.workspace or self.setting or self._default_name()

    def _default_name(self) -> str:
        if self._default is None:  # asks git, so only when a task needs it
            self._default = default_workspace(Path(self.run.project_root))
        return self._default

    def for_task(self, task: Task) -> RunWorkspace:
        """The run's workspace for ``task``, opened on first use (a resumed run's first
        records what it put right of what the dead orchestrator left)."""
        name = self.name_for(task)
        if name not in self.spaces:
            workspace = self.host.workspaces().get(name)
            recorded = self.store.get_value(checkpoint_key(name, self.run.run_id))
            space = workspace.open(attrs.evolve(self.run, checkpoint=recorded))
            self.spaces[name] = space
            self.checkpoints[name] = recorded
            self.keep_checkpoint(name)
            repairs = list(getattr(space, "repairs", ()) or ())
            if repairs:
                self.record_event("workspace.repaired", {"workspace": name, "done": repairs})
        return self.spaces[name]

    def after_attempt(self, task: Task) -> None:
        """Keep the checkpoint of the workspace an attempt of ``task`` ran in."""
        name = self.name_for(task)
        if name in self.spaces:
            self.keep_checkpoint(name)

    def keep_checkpoint(self, name: str) -> None:
        """Record what the workspace wants kept for a resume (a run branch's tip), in the
        transaction of this wake, whenever it changed."""
        saver = getattr(self.spaces[name], "checkpoint", None)
        if saver is None:
            return
        value = saver()
        if value != self.checkpoints.get(name):
            self.store.set_value(checkpoint_key(name, self.run.run_id), value)
            self.checkpoints[name] = value

    def open_every(self, tasks: Iterable[Task]) -> None:
        """Open each workspace ``tasks`` use, if nothing opened it yet: a resume that
        had nothing left to run still puts right, and then removes, what the dead
        orchestrator left in them (a half-removed worktree of an attempt that landed)."""
        seen: set[str] = set()
        for task in tasks:
            name = self.name_for(task)
            if name in seen:
                continue
            seen.add(name)
            try:
                self.for_task(task)
            except Exception as error:  # the run's outcome stands; say what was left
                note = f"could not open to clean up: {type(error).__name__}: {error}"
                self.record_event("workspace.cleaned", {"workspace": name, "done": [note]})

    def close(self) -> None:
        """Let each workspace remove what is left of the run (``close``), and record what
        it did; a workspace that fails to is recorded, and the run's outcome stands."""
        for name, space in self.spaces.items():
            closer = getattr(space, "close", None)
            if closer is None:
                continue
            try:
                notes = list(closer() or ())
            except Exception as error:
                notes = [f"could not clean up: {type(error).__name__}: {error}"]
            if notes:
                self.record_event("workspace.cleaned", {"workspace": name, "done": notes})

    def summaries(self) -> list[str]:
        """What each workspace says about where the run's result is."""
        notes = []
        for space in self.spaces.values():
            note = space.summary()
            if note:
                notes.append(note)
        return notes
