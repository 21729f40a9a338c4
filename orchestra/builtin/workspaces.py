"""Built-in workspaces: ``worktree`` (a git worktree per attempt, merged into a run branch;
one per run-branch tip, shared, for the attempts that write nothing) and ``inplace`` (the
project itself, one writing task at a time)."""

from __future__ import annotations

import os
import shlex
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra.errors import WorkspaceError, WorkspaceViolation
from orchestra.models import Change, ExecutionRequest, Landing, WorkspaceRun
from orchestra.plugin.markers import hookimpl

if TYPE_CHECKING:
    from orchestra.git.command import Tree
    from orchestra.git.shared import Found

#: where a run's worktrees live, under orchestra's directory beside the database
WORKTREES = "worktrees"


def run_branch(run_id: str) -> str:
    """The branch a run's merged work goes to."""
    return f"orchestra/{run_id}"


def attempt_branch(run_id: str, task_id: str, attempt: int) -> str:
    """The branch of one attempt. Not under ``orchestra/<run>/``: git cannot keep a branch
    ``a/b`` beside a branch ``a``."""
    return f"orchestra-tasks/{run_id}/{task_id}.{attempt}"


def worktree_path(root: str | os.PathLike, run_id: str, task_id: str, attempt: int) -> Path:
    """Where attempt ``attempt`` of ``task_id`` works: ``<root>/<run>/<task>.<attempt>``,
    ``root`` being orchestra's worktree directory (``WORKTREES`` beside the database)."""
    return Path(root) / run_id / f"{task_id}.{attempt}"


def writes(request: ExecutionRequest) -> bool:
    """Whether an attempt may change files: a prompt task, or one that names files to
    write or create."""
    task = request.task
    return task.prompt is not None or bool(task.files.write or task.files.create)


def shares(request: ExecutionRequest) -> bool:
    """Whether the attempt runs in the worktree its run shares among the attempts that
    write nothing (``orchestra.git.shared``): it declares no writes, and it is not
    reviewed (a reviewer reads the attempt's change in a worktree of its own; the task
    the workspace is handed carries its review, one of [defaults] too)."""
    review = request.task.review
    return not writes(request) and (review is None or not review.enabled)


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

    def started(self, request: ExecutionRequest) -> str:
        """What the attempt's directory holds: in place, nothing an attempt did is undone,
        so a retry finds the directory as the previous attempt left it."""
        return "as_left" if request.attempt > 1 else "clean"

    def writable_paths(self, request: ExecutionRequest, directory: str) -> list[str]:
        """What the attempt's sandbox lets it write: the project directory (orchestra's
        directory and the repository's metadata in it stay read-only)."""
        return [self.run.project_root]


class Worktree:
    """A git worktree per attempt, made from the tip of the run's branch, so an attempt
    sees its dependencies' merged work. A successful attempt's change (what its tool left,
    less build output) is committed on its own branch, rebased onto the run branch and
    fast-forwarded into it, one at a time. A retry after a failed check starts with the
    previous attempt's change applied. An attempt that declares no writes (``shares``)
    runs in a worktree of the tip shared with the others, where it may change nothing but
    build output. The user's branch and working tree are never touched."""

    name = "worktree"

    def open(self, run: WorkspaceRun) -> WorktreeRun:
        return WorktreeRun(run)

    def landed(self, run: WorkspaceRun) -> dict[str, int]:
        """The tasks whose change already reached the run's branch, each with the attempt
        that brought it (read from orchestra's trailers on the branch's commits); resume
        asks, so that a change whose landing the crash left unrecorded is not made twice."""
        from orchestra.git import refs

        repo = _repository(run.project_root)
        branch = run_branch(run.run_id)
        if repo is None or refs.branch_tip(repo, branch) is None:
            return {}
        return _landings(repo, branch, run.run_id, (run.checkpoint or {}).get("start"))


class WorktreeRun:
    def __init__(self, run: WorkspaceRun) -> None:
        from orchestra.git import program_settings, refs

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
        self.root = (Path(run.state_dir) / WORKTREES).absolute()
        #: what was put right when the run resumed, for the run's events
        self.repairs: list[str] = []
        if run.resumed:
            self._repair()
        recorded = dict(run.checkpoint or {})
        current = refs.branch_tip(repo, self.branch)
        # a branch a crash left before its start was recorded (a power cut can lose the
        # last transactions) is kept as it is, with the run's landings on it
        self.start = recorded.get("start") or _start_below(repo, current, run.run_id)
        self.start = self.start or self._new_start()
        if current is None:  # not made yet, or removed (it held nothing) or by hand
            current = refs.create_branch(repo, self.branch, self.start)
        #: the run branch's tip as orchestra last moved it; any other move is refused
        self.tip = self._trusted_tip(recorded.get("tip"), current)
        #: task -> the attempt whose change is on the run branch (at most one per task)
        self.landed = _landings(repo, self.branch, run.run_id, self.start, self.tip)
        self._settings = program_settings.SettingsGuard(repo)
        self._landing = threading.Lock()
        self._trees: dict[tuple[str, int], Tree] = {}
        self._base: dict[tuple[str, int], str] = {}
        #: task -> (base, commit) of its last attempt's change not merged: what a retry
        #: after a failed check goes on from (kept in the checkpoint for a resume)
        self.unmerged: dict[str, tuple[str, str]] = {
            task: (pair[0], pair[1]) for task, pair in recorded.get("changes", {}).items()
        }
        self._publish()
        #: per attempt: what its directory started as (``ExecutionRequest.start``) and
        #: the tree its tool left, before the checks ran
        self._starts: dict[tuple[str, int], str] = {}
        self._tool_states: dict[tuple[str, int], str] = {}
        #: per attempt: the commit its change was made into (its base when it made none)
        self._made: dict[tuple[str, int], str] = {}
        self._ignore = (*run.ignore, *_anchored(self.subdir, run.copy))
        #: whether the run branch was removed at the end (the run merged nothing)
        self.removed = False
        from orchestra.git import shared

        # the tip is read without the landing lock: a landing under way need not be
        # waited for (an attempt's dependencies landed before it started)
        self._shared = shared.SharedTrees(repo, self.root / run.run_id, lambda: self.tip)

    def prepare(self, request: ExecutionRequest, ctx) -> str:
        from orchestra.git import worktrees

        if shares(request):
            return self._enter_shared(request, ctx)
        key = self._key(request)
        path = worktree_path(self.root, self.run.run_id, *key)
        if path.exists():  # a leftover of an attempt with this number: start afresh
            worktrees.remove_worktree(self.repo, path)
            import shutil

            shutil.rmtree(path, ignore_errors=True)  # a directory git did not know
        with self._landing:
            base = self.tip
        tree = worktrees.add_worktree(self.repo, path, attempt_branch(self.run.run_id, *key), base)
        self._trees[key] = tree
        self._base[key] = base
        self._starts[key] = self._continue(tree, request) if request.continues else "clean"
        directory = path / self.subdir
        self._copy_into(path)
        self._set_up(directory, ctx)
        return str(directory)

    def _enter_shared(self, request: ExecutionRequest, ctx) -> str:
        """Put the attempt in the shared worktree of the run branch's tip, made ready
        first (the ``copy`` files, the ``setup`` commands through this attempt's context)
        when there is none yet; return its directory."""
        key = self._key(request)

        def make_ready(tree: Tree) -> None:
            self._copy_into(tree.path)
            self._set_up(tree.path / self.subdir, ctx)

        tree = self._shared.enter(key, make_ready)
        self._starts[key] = "clean"  # it never has a change to go on from
        return str(tree.path / self.subdir)

    def _set_up(self, directory: Path, ctx) -> None:
        """Run the ``setup`` commands in a new worktree's ``directory``; raise
        WorkspaceError at the first that fails."""
        for line in self.run.setup:
            argv = shlex.split(line)
            finished = ctx.run(argv, cwd=str(directory))
            if finished.exit_code != 0:
                how = finished.error or finished.stopped or f"exited {finished.exit_code}"
                raise WorkspaceError(f"workspace setup {line!r} failed ({how}): see the log")

    def started(self, request: ExecutionRequest) -> str | None:
        """What the attempt's directory held when it was made ready: ``clean``,
        ``continued`` or ``unapplied`` (see ``ExecutionRequest.start``)."""
        return self._starts.get(self._key(request))

    def tool_done(self, request: ExecutionRequest, directory: str) -> None:
        """Note what the attempt's tool left in the worktree, before the checks run: that
        is the attempt's change; what the checks write afterwards is not."""
        from orchestra.git import changes

        if shares(request):  # an attempt in the shared worktree has no change
            return
        key = self._key(request)
        self._tool_states[key] = changes.state_tree(self._trees[key], self._ignore)

    def changes(self, request: ExecutionRequest, directory: str) -> Change:
        """Commit what the attempt changed (what its tool left, less the ignored build
        output; not what its checks wrote) and say what that is, with the symbolic links
        it makes lead out of the repository (judged in the commit: ``orchestra.git.links``);
        raise WorkspaceViolation when the attempt reached beyond its worktree (moved the
        run branch or its own HEAD, changed the repository's configuration), after
        putting those back."""
        from orchestra.git import changes, links

        if shares(request):
            return self._shared_changes(request)
        key = self._key(request)
        tree, base = self._trees[key], self._base[key]
        branch = attempt_branch(self.run.run_id, *key)
        with self._landing:
            self._check_run_branch()
        self._check_configuration()
        self._check_worktree(tree, branch)
        state = self._tool_states.pop(key, None) or changes.state_tree(tree, self._ignore)
        commit = changes.commit_state(tree, branch, state, base, _message(request))
        self._made[key] = commit or base
        with self._landing:
            if commit is None:
                self.unmerged.pop(request.task.id, None)
            else:
                self.unmerged[request.task.id] = (base, commit)
            self._publish()
        if commit is None:
            return Change(())
        changed = changes.changed_entries(tree, base, commit)
        return Change(
            tuple(entry.path for entry in changed),
            diff=changes.diff(tree, base, commit),
            lines=changes.count_changed_lines(tree, base, commit),
            escapes=tuple(links.escapes(tree, base, commit, changed)),
        )

    def _shared_changes(self, request: ExecutionRequest) -> Change:
        """The change of an attempt in the shared worktree: none. Raise WorkspaceViolation
        when it moved the run branch, changed the repository's configuration, or changed
        the shared worktree beyond build output (what git or ``[workspace] ignore``
        ignores), which its task declared it would not: the tree is then given up (see
        ``orchestra.git.shared``). Sandboxed or not alike: the sandbox lets it write
        there, as it lets any attempt write its worktree."""
        from orchestra.git import shared

        key = self._key(request)
        if not shared.branch_at(self.repo, self.branch, self.tip):
            with self._landing:
                self._check_run_branch()
        self._check_configuration()
        found = self._shared.check(key, self._ignore)
        if found is not None:
            raise WorkspaceViolation(_shared_violation(found, key))
        return Change(())

    def review_edits(self, request: ExecutionRequest, directory: str) -> str | None:
        """After a reviewer read the attempt's change in its worktree: return what it
        changed there (a diff, or None), and put the worktree and the attempt's branch
        back at the change, so that only the change lands. (A reviewed attempt never
        runs in the shared worktree: ``shares``.)"""
        from orchestra.git import changes

        key = self._key(request)
        branch = attempt_branch(self.run.run_id, *key)
        return changes.put_back(self._trees[key], branch, self._made[key], self._ignore)

    def land(self, request: ExecutionRequest, directory: str) -> Landing:
        """Bring the change ``changes`` committed and the scope check judged, that very
        commit (whatever the attempt's branch or worktree hold by now), onto the run
        branch; say whether it merged, or what conflicted."""
        from orchestra.git import merging

        if shares(request):  # the shared worktree's attempts bring nothing
            return Landing(merged=True, tip=self.tip)
        key = self._key(request)
        commit, base = self._made[key], self._base[key]
        with self._landing:  # one merge at a time
            self._check_run_branch()
            if request.task.id in self.landed:
                # its change is on the branch already (a landing whose record was lost)
                return Landing(merged=True, tip=self.tip)
            if commit == base:  # nothing to bring
                return Landing(merged=True, tip=self.tip)
            result = merging.land_change(
                self.repo, commit, self.branch, expected=self.tip, worktree=self._trees[key]
            )
            if result.merged:
                assert result.tip is not None  # a merge has made a tip
                self.tip = result.tip
                self.landed[request.task.id] = request.attempt
                self.unmerged.pop(request.task.id, None)
                self._publish()
        return Landing(result.merged, tuple(result.conflicts), result.tip)

    def discard(self, request: ExecutionRequest, directory: str) -> None:
        from orchestra.git import worktrees
        from orchestra.git.command import GitError

        key = self._key(request)
        self._base.pop(key, None)
        self._starts.pop(key, None)
        self._tool_states.pop(key, None)
        self._made.pop(key, None)
        if shares(request):
            self._shared.leave(key)
            return
        tree = self._trees.pop(key, None)
        try:
            worktrees.remove_worktree(
                self.repo, tree or worktree_path(self.root, self.run.run_id, *key)
            )
        except GitError:
            if tree is None:
                raise
            from orchestra.git import repair

            repair.remove_tree(self.repo, tree, self.root)  # its .git file was rewritten
        worktrees.delete_branch(self.repo, attempt_branch(self.run.run_id, *key))

    def checkpoint(self) -> dict[str, Any]:
        """What the run database keeps for a resume: where the run branch started, its
        tip as orchestra last moved it, and the unmerged changes a retry goes on from.

        The run loop asks after every attempt, inside its transaction: it gets the value
        last published, without waiting for a landing under way (a rebase of another
        attempt), which would hold the loop and the database's write lock meanwhile."""
        return self._kept

    def _publish(self) -> None:
        """Make what ``checkpoint`` returns from the state now (call with ``_landing``
        held, or before any thread shares the workspace): a new dict each time, never
        changed after, so the loop may read it while a worker lands."""
        kept: dict[str, Any] = {"start": self.start, "tip": self.tip}
        if self.unmerged:
            kept["changes"] = {task: list(pair) for task, pair in sorted(self.unmerged.items())}
        self._kept = kept

    def close(self) -> list[str]:
        """Remove whatever of the run is left in the repository (worktrees, attempt
        branches, directories an attempt's clean-up could not remove), and check the run
        branch one last time; return what was done, one line each."""
        from orchestra.git import repair

        notes = self._shared.close()
        with self._landing:
            try:
                self._check_run_branch()
            except WorkspaceViolation as violation:
                notes.append(str(violation))
        run_id = self.run.run_id
        for done in repair.repair(self.repo, self.root, dead=lambda run: run == run_id):
            notes.append(done.line())
        with self._landing:
            if self.tip == self.start:
                notes.append(self._remove_branch())
        return notes

    def summary(self) -> str | None:
        if self.removed:
            return f"no changes were merged, so the run left no branch ({self.branch} removed)"
        if self.tip == self.start:
            return f"no changes were merged; branch {self.branch} is where the run started"
        return f"the run's changes are on branch {self.branch}: git merge {self.branch}"

    def writable_paths(self, request: ExecutionRequest, directory: str) -> list[str]:
        """What the attempt's sandbox lets it write: its whole worktree (the attempt's
        directory may be a subdirectory of it), known before the worktree is made. In the
        shared worktree: that tree (known once the attempt entered it, before its setup
        runs), which is checked after the attempt (``_shared_changes``)."""
        key = self._key(request)
        if shares(request):
            tree = self._shared.path_of(key)
            return [str(tree)] if tree is not None else []
        return [str(worktree_path(self.root, self.run.run_id, *key))]

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, request: ExecutionRequest) -> tuple[str, int]:
        return request.task.id, request.attempt

    def _new_start(self) -> str:
        """Where a new run branch starts: HEAD, or a snapshot of the uncommitted changes
        on top of it (``include_uncommitted``)."""
        from orchestra.git import changes, refs

        if self.run.include_uncommitted:
            return changes.snapshot_uncommitted(self.repo, _snapshot_message(self.run.run_id))
        return refs.head_commit(self.repo)

    def _continue(self, tree: Tree, request: ExecutionRequest) -> str:
        """Apply the task's last unmerged change in its new worktree, uncommitted; return
        ``continued``, ``unapplied`` (it does not apply to the run's work now: the
        worktree is left clean) or ``clean`` (there is none: it changed nothing)."""
        from orchestra.git import changes
        from orchestra.git.command import GitError

        with self._landing:
            previous = self.unmerged.get(request.task.id)
        if previous is None:
            return "clean"
        try:
            return "continued" if changes.apply_change(tree, *previous) else "unapplied"
        except GitError:  # its commit is gone (a gc of the user's): start over
            return "unapplied"

    def _remove_branch(self) -> str:
        """Remove the run branch of a run that merged nothing (call with ``_landing``
        held); return what was done. A resume makes it again from its recorded start."""
        from orchestra.git import worktrees
        from orchestra.git.command import GitError

        try:
            worktrees.delete_branch(self.repo, self.branch, expected=self.start)
        except GitError as error:  # checked out by the user, or moved meanwhile
            return f"kept branch {self.branch}: {error}"
        self.removed = True
        return f"removed branch {self.branch}: the run merged no change"

    def _repair(self) -> None:
        """Put right what the run's dead orchestrator left: half-made, vanished or
        leftover worktrees, their branches and directories, stale git locks."""
        from orchestra.git import repair

        run_id = self.run.run_id
        for done in repair.repair(self.repo, self.root, dead=lambda run: run == run_id):
            self.repairs.append(done.line())

    def _trusted_tip(self, recorded: str | None, current: str) -> str:
        """The run branch's tip to go on from (``current``, where it is now): where
        orchestra last recorded it, plus the landings of this run a crash kept from being
        recorded; a move by any other hand is undone."""
        from orchestra.git import refs

        if recorded is None or recorded == current:
            return current
        if refs.is_ancestor(self.repo, recorded, current) and all(
            trailers.get("Orchestra-Run") == self.run.run_id
            for _, _, trailers in refs.commits_between(self.repo, recorded, current)
        ):
            return current
        why = "moved by another hand while the run was stopped"
        if refs.move_branch(self.repo, self.branch, recorded, current, f"orchestra: undo, {why}"):
            self.repairs.append(f"put branch {self.branch} back at {recorded[:12]}: {why}")
            return recorded
        return refs.branch_tip(self.repo, self.branch) or recorded

    def _check_run_branch(self) -> None:
        """Refuse a run branch that moved since orchestra last moved it: put it back and
        raise WorkspaceViolation saying what moved it (call with ``_landing`` held)."""
        from orchestra.git import refs

        current = refs.branch_tip(self.repo, self.branch)
        if current == self.tip:
            return
        how = refs.last_move(self.repo, self.branch) if current else None
        news = []
        if current and refs.is_ancestor(self.repo, self.tip, current):
            news = [subject for _, subject, _ in refs.commits_between(self.repo, self.tip, current)]
        undo = "orchestra: undo a move by another hand"
        if current is None:
            refs.create_branch(self.repo, self.branch, self.tip)
        else:
            refs.move_branch(self.repo, self.branch, self.tip, current, undo)
        what = f"to {current[:12]}" if current else "away (deleted)"
        detail = f" ({how!r})" if how else ""
        if news:
            detail += f", adding {len(news)} commit(s): {news[-1]!r}"
        raise WorkspaceViolation(
            f"branch {self.branch} was moved {what} by something other than orchestra"
            f"{detail}; orchestra put it back at {self.tip[:12]}"
        )

    def _check_configuration(self) -> None:
        """Refuse a change to the settings of the repository's ``.git/config`` that name
        a program (for the user's git to run): put them back as they were. The user's
        other edits of the file stay."""
        problem = self._settings.check()
        if problem:
            raise WorkspaceViolation(
                f"the repository's configuration {self._settings.path} was changed while"
                f" the attempt ran {problem}"
            )

    def _check_worktree(self, tree: Tree, branch: str) -> None:
        """Refuse a worktree whose git records the attempt changed: its HEAD on another
        branch, or its git directory pointing elsewhere."""
        from orchestra.git import repair

        problem = repair.tampered(tree, branch)
        if problem:
            raise WorkspaceViolation(f"the attempt's worktree {tree.path}: {problem}")

    def _copy_into(self, top: Path) -> None:
        """Copy the configured files (``.env`` …) from the project into the new worktree
        at ``top``: what git does not track, a tool still needs. Never through a symbolic
        link the worktree holds (``orchestra.git.copy_in``): WorkspaceError instead."""
        from orchestra.git import copy_in

        root = Path(self.run.project_root)
        for name in self.run.copy:
            source = root / name
            if not source.exists():
                continue
            try:
                copy_in.copy_into(top, (self.subdir / name).as_posix(), source)
            except copy_in.LinkInTheWay as refused:
                raise WorkspaceError(f"workspace copy: {refused}") from None


def _landings(
    repo: Path, branch: str, run_id: str, start: str | None, tip: str | None = None
) -> dict[str, int]:
    """Task -> attempt of the commits on ``branch`` (down from ``tip``) that this run
    landed, found by their trailers, from ``start`` (or, without it, as far back as the
    run's own commits go)."""
    from orchestra.git import refs

    tip = tip or refs.branch_tip(repo, branch)
    if tip is None:
        return {}
    landed = {}
    # without its start (a run recorded before orchestra kept it): the last 10,000 commits
    commits = refs.commits_between(repo, start, tip, first_parent=True, limit=10_000)
    for _, _, trailers in commits:
        if trailers.get("Orchestra-Run") != run_id:
            continue
        task, attempt = trailers.get("Orchestra-Task"), trailers.get("Orchestra-Attempt", "")
        if task and attempt.isdigit():
            landed[task] = int(attempt)
    return landed


def _start_below(repo: Path, tip: str | None, run_id: str) -> str | None:
    """Where run ``run_id``'s branch, at ``tip``, started: the first commit down from the
    tip (first parents) that is not one of the run's landings (a commit with its
    ``Orchestra-Run`` and ``Orchestra-Task`` trailers); None without a tip, or when the
    10,000 commits looked at are all landings."""
    from orchestra.git import refs

    if tip is None:
        return None
    commits = refs.commits_between(repo, None, tip, first_parent=True, limit=10_000)
    for commit, _, trailers in reversed(commits):  # newest first
        if trailers.get("Orchestra-Run") != run_id or "Orchestra-Task" not in trailers:
            return commit
    return None


def _shared_violation(found: Found, key: tuple[str, int]) -> str:
    """Why an attempt in the shared worktree fails: what changed there, who may have
    changed it, and how to write files (declare them). The end says the most: the CLI
    shows a reason's last 160 characters."""
    import json

    others = [f"{task}.{attempt}" for task, attempt in found.suspects if (task, attempt) != key]
    message = (
        "its task declares no writes, so it ran in the worktree shared by such commands,"
        " where nothing but build output (what git or [workspace] ignore ignores) may change"
    )
    if others:
        message += (
            f"; but the tree was changed while it ran, by it or by an attempt beside it"
            f" ({', '.join(others)}): {found.what()}"
        )
    else:
        message += f"; but it changed the tree: {found.what()}"
    if found.paths:
        named = json.dumps(list(found.paths[:5]))
        message += (
            f". To write files, declare them: files = {{ write = {named} }} (or create),"
            " and the task gets a worktree of its own, whose change lands"
        )
    return message


def _repository(project_root: str) -> Path | None:
    from orchestra.git import refs

    return refs.repository_root(Path(project_root))


def _anchored(subdir: Path, names: tuple[str, ...]) -> tuple[str, ...]:
    """Gitignore patterns that match exactly the files ``names`` (relative to the project
    directory ``subdir`` of the repository): the ``copy`` files are not the task's."""
    patterns = []
    for name in names:
        path = (subdir / name).as_posix()
        escaped = "".join("\\" + char if char in "\\*?[!# " else char for char in path)
        patterns.append("/" + escaped)
    return tuple(patterns)


def _snapshot_message(run_id: str) -> str:
    """The message of the commit that holds the user's uncommitted changes at the start
    of run ``run_id``: the run branch's first commit (``--include-uncommitted``)."""
    return (
        "Uncommitted changes at the start of the run\n\n"
        f"Orchestra-Run: {run_id}\n"
        "Orchestra-Snapshot: uncommitted\n"
    )


def _message(request: ExecutionRequest) -> str:
    """The commit message of an attempt's change: the task's title, then trailers that say
    whose change it is (resume and landing read them: a task's change lands once)."""
    task = request.task
    title = " ".join((task.title or task.id).split())
    return (
        f"{title}\n\n"
        f"Orchestra-Run: {request.run_id}\n"
        f"Orchestra-Task: {task.id}\n"
        f"Orchestra-Attempt: {request.attempt}\n"
        f"Orchestra-Tool: {request.profile.name}\n"
    )


@hookimpl
def orchestra_register_workspaces(register) -> None:
    register(Worktree())
    register(Inplace())
