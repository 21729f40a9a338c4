"""Built-in workspaces: ``worktree`` (a git worktree per attempt, merged into a run branch)
and ``inplace`` (the project itself, one writing task at a time)."""

from __future__ import annotations

import os
import shlex
import threading
from pathlib import Path

from orchestra.errors import WorkspaceError
from orchestra.markers import hookimpl
from orchestra.models import Change, ExecutionRequest, Landing, WorkspaceRun

#: where a run's worktrees live, under orchestra's directory beside the database
WORKTREES = "worktrees"


def run_branch(run_id: str) -> str:
    """The branch a run's merged work goes to."""
    return f"orchestra/{run_id}"


def attempt_branch(run_id: str, task_id: str, attempt: int) -> str:
    """The branch of one attempt. Not under ``orchestra/<run>/``: git cannot keep a branch
    ``a/b`` beside a branch ``a``."""
    return f"orchestra-tasks/{run_id}/{task_id}.{attempt}"


def worktree_path(state_dir: str | os.PathLike, run_id: str, task_id: str, attempt: int) -> Path:
    return Path(state_dir) / WORKTREES / run_id / f"{task_id}.{attempt}"


def writes(request: ExecutionRequest) -> bool:
    """Whether an attempt may change files: a prompt task, or one that names files to
    write or create."""
    task = request.task
    return task.prompt is not None or bool(task.files.write or task.files.create)


class Inplace:
    """The project directory itself, as it is: no copy, no merge. Writing tasks take turns
    (two tools editing one checkout trample each other); commands run side by side."""

    name = "inplace"

    def open(self, run: WorkspaceRun) -> InplaceRun:
        return InplaceRun(run)


class InplaceRun:
    def __init__(self, run: WorkspaceRun) -> None:
        self.run = run
        self._writer = threading.Lock()
        self._held: set[tuple[str, int]] = set()

    def prepare(self, request: ExecutionRequest, ctx) -> str:
        if writes(request):
            self._writer.acquire()
            self._held.add((request.task.id, request.attempt))
        return self.run.project_root

    def changes(self, request: ExecutionRequest, directory: str) -> Change:
        # in place, other work shares the tree: what changed cannot be told apart
        return Change(None)

    def land(self, request: ExecutionRequest, directory: str) -> Landing:
        return Landing(merged=True)

    def discard(self, request: ExecutionRequest, directory: str) -> None:
        key = (request.task.id, request.attempt)
        if key in self._held:
            self._held.discard(key)
            self._writer.release()

    def summary(self) -> str | None:
        return None


class Worktree:
    """A git worktree per attempt, made from the tip of the run's branch, so an attempt
    sees its dependencies' merged work. A successful attempt's change is committed on its
    own branch, rebased onto the run branch and fast-forwarded into it, one at a time.
    The user's branch and working tree are never touched."""

    name = "worktree"

    def open(self, run: WorkspaceRun) -> WorktreeRun:
        return WorktreeRun(run)


class WorktreeRun:
    def __init__(self, run: WorkspaceRun) -> None:
        from orchestra.workspace import git

        self.run = run
        repo = _repository(run.project_root)
        if repo is None:
            raise WorkspaceError(
                f"workspace 'worktree' needs a git repository; {run.project_root} is not in one"
                ' (use workspace = "inplace")'
            )
        self.repo = repo
        self.subdir = Path(run.project_root).resolve().relative_to(repo.resolve())
        self.branch = run_branch(run.run_id)
        self.start = git.create_branch(repo, self.branch, git.head_commit(repo))
        self._landing = threading.Lock()
        self._base: dict[tuple[str, int], str] = {}
        if run.resumed:
            self._remove_clean_leftovers()

    def prepare(self, request: ExecutionRequest, ctx) -> str:
        from orchestra.workspace import git

        task, attempt = request.task.id, request.attempt
        path = worktree_path(self.run.state_dir, self.run.run_id, task, attempt)
        if path.exists():  # a leftover of an attempt with this number: start afresh
            git.remove_worktree(self.repo, path)
            import shutil

            shutil.rmtree(path, ignore_errors=True)  # a directory git did not know
        base = git.branch_tip(self.repo, self.branch)
        git.add_worktree(self.repo, path, attempt_branch(self.run.run_id, task, attempt), base)
        self._base[(task, attempt)] = base
        directory = path / self.subdir
        self._copy_into(directory)
        for line in self.run.setup:
            argv = shlex.split(line)
            finished = ctx.run(argv, cwd=str(directory))
            if finished.exit_code != 0:
                how = finished.error or finished.stopped or f"exited {finished.exit_code}"
                raise WorkspaceError(f"workspace setup {line!r} failed ({how}): see the log")
        return str(directory)

    def changes(self, request: ExecutionRequest, directory: str) -> Change:
        from orchestra.workspace import git

        worktree = self._worktree(request)
        base = self._base[(request.task.id, request.attempt)]
        git.commit_all(worktree, _message(request))
        paths = tuple(git.changed_paths(worktree, base))
        if not paths:
            return Change(())
        return Change(
            paths,
            diff=git.diff(worktree, base),
            lines=git.count_changed_lines(worktree, base),
        )

    def land(self, request: ExecutionRequest, directory: str) -> Landing:
        from orchestra.workspace import git

        worktree = self._worktree(request)
        base = self._base[(request.task.id, request.attempt)]
        if git.branch_tip(self.repo, attempt_branch(self.run.run_id, *self._key(request))) == base:
            return Landing(merged=True, tip=git.branch_tip(self.repo, self.branch))
        with self._landing:  # one merge at a time
            result = git.rebase_and_advance(worktree, self.branch)
        return Landing(result.merged, tuple(result.conflicts), result.tip)

    def discard(self, request: ExecutionRequest, directory: str) -> None:
        from orchestra.workspace import git

        key = self._key(request)
        self._base.pop(key, None)
        git.remove_worktree(self.repo, self._worktree(request))
        git.delete_branch(self.repo, attempt_branch(self.run.run_id, *key))

    def summary(self) -> str | None:
        from orchestra.workspace import git

        tip = git.branch_tip(self.repo, self.branch)
        if tip == self.start:
            return f"no changes were merged; branch {self.branch} is where the run started"
        return f"the run's changes are on branch {self.branch}: git merge {self.branch}"

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, request: ExecutionRequest) -> tuple[str, int]:
        return request.task.id, request.attempt

    def _worktree(self, request: ExecutionRequest) -> Path:
        return worktree_path(self.run.state_dir, self.run.run_id, *self._key(request))

    def _copy_into(self, directory: Path) -> None:
        """Copy the configured files (``.env`` …) from the project into a new worktree:
        what git does not track, a tool still needs."""
        import shutil  # here: its import (zlib, bz2, lzma) would cost every run's start

        root = Path(self.run.project_root)
        for name in self.run.copy:
            source = root / name
            target = directory / name
            if not source.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)

    def _remove_clean_leftovers(self) -> None:
        """Remove the worktrees the run's dead attempts left, unless they hold uncommitted
        work (``orchestra gc --force`` removes those)."""
        from orchestra.workspace import git

        root = (Path(self.run.state_dir) / WORKTREES / self.run.run_id).resolve()
        for tree in git.list_worktrees(self.repo):
            path = Path(tree.path)
            if root in path.parents and not git.has_uncommitted_changes(path):
                git.remove_worktree(self.repo, path)
                if tree.branch:
                    git.delete_branch(self.repo, tree.branch)


def _repository(project_root: str) -> Path | None:
    from orchestra.workspace import git

    return git.repository_root(Path(project_root))


def _message(request: ExecutionRequest) -> str:
    task = request.task
    title = task.title or task.id
    return (
        f"{title}\n\norchestra: run {request.run_id}, task {task.id},"
        f" attempt {request.attempt}, tool {request.profile.name}\n"
    )


@hookimpl
def orchestra_register_workspaces(register) -> None:
    register(Worktree())
    register(Inplace())
