"""Putting right what orchestra's interrupted git commands left in the user's repository.

A run killed at any moment (SIGKILL to its process group, a power cut) may leave, in the
middle of one of its git commands:

- a half-made worktree: ``git worktree add`` writes ``.git/worktrees/<name>/`` file by
  file, and one without its ``commondir`` breaks the user's own ``git branch``; one whose
  ``HEAD`` is still all zeros gives "bad object HEAD";
- a worktree whose directory is gone, or half-deleted;
- lock files (``refs/heads/orchestra-tasks/…/t.1.lock``, ``packed-refs.lock``) that stop
  every later command needing them;
- ``orchestra-tasks/*`` branches and worktree directories nothing uses any more, and the
  worktrees a run shared among its attempts that write nothing (``orchestra.git.shared``).

``repair`` removes those that belong to runs no process drives (``dead``), and nothing
else: a worktree is orchestra's when git's record of it says so (the lock reason
``add_worktree`` gives, which git writes first, or its path under orchestra's worktree
directory); a lock is removed only when no live process can hold it
(``orchestra.git.locks``). It holds the repository's worktree lock throughout, so no
other orchestra is half-way through changing the worktrees meanwhile. It goes on past
anything it cannot remove, and says what it did with each.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from orchestra import classes
from orchestra.git import locks, refs, worktrees
from orchestra.git.command import GitError, Tree, common_dir, entries, read_record

#: the branches of attempts: ``orchestra-tasks/<run>/<task>.<attempt>``
TASK_BRANCHES = "orchestra-tasks/"
#: run branches: ``orchestra/<run>``
RUN_BRANCHES = "orchestra/"


@classes.frozen
class Repair:
    """One thing ``repair`` found: what it did (``removed``, ``kept``, ``would remove``,
    ``failed``), to what, and why."""

    action: str
    what: str
    why: str = ""

    def line(self) -> str:
        return f"{self.action} {self.what}" + (f": {self.why}" if self.why else "")


def repair(
    repo: Path,
    worktrees_root: Path,
    *,
    dead: Callable[[str], bool],
    keep: Callable[[Tree], str | None] | None = None,
    dry_run: bool = False,
    report_live: bool = False,
) -> list[Repair]:
    """Remove what runs for which ``dead(run_id)`` is true left in ``repo``: their
    worktrees (made, half-made or half-removed), their ``orchestra-tasks/<run>/*``
    branches, the directories under ``worktrees_root/<run>/`` and the stale git locks.

    ``keep(tree)``, asked of each sound worktree before it goes, may return why it stays
    (uncommitted work); never of a shared worktree, which holds no attempt's work (what
    differs there from the tip is the ``copy`` files and the setup's output). With
    ``dry_run`` nothing changes and the answer says what would.
    ``report_live`` lists the worktrees of live runs too, as kept.
    """
    root = worktrees_root.absolute().resolve()
    done: list[Repair] = []
    with worktrees.worktrees_locked(repo):
        common = common_dir(repo)
        remaining = _repair_worktrees(common, root, dead, keep, dry_run, report_live, done)
        _repair_branches(repo, dead, remaining, dry_run, done)
        _repair_locks(common, root, dead, dry_run, done)
        _repair_directories(root, dead, remaining, dry_run, done)
    # the stale locks git commands met on the way (or, at a run's end, during the run)
    for lock in locks.take_removed():
        done.append(Repair("removed", f"lock {lock}", "no live process held it"))
    return done


def _repair_worktrees(
    common: Path,
    root: Path,
    dead: Callable[[str], bool],
    keep: Callable[[Tree], str | None] | None,
    dry_run: bool,
    report_live: bool,
    done: list[Repair],
) -> set[Path]:
    """Handle every worktree git records that is orchestra's; return the paths of the
    worktrees that stay (any owner's)."""
    remaining: set[Path] = set()
    for entry in entries(common / "worktrees"):
        path = _orchestras(entry, root)
        recorded = read_record(entry / "gitdir")
        if path is None:
            if recorded:
                remaining.add(Path(recorded).parent.absolute())
            elif not (entry / "locked").exists():
                _remove_ownerless(entry, dry_run, done)
            continue
        run = _run_of(path, root)
        if run is None and path.exists():
            remaining.add(path)  # a merge worktree still in use
            continue
        if run is not None and not dead(run):
            remaining.add(path)
            if report_live:
                done.append(Repair("kept", f"worktree {path}", f"run {run} is running"))
            continue
        broken = _broken(entry, common, path)
        if broken is None and keep is not None and not worktrees.is_shared(path):
            why = keep(Tree(path, entry))
            if why:
                done.append(Repair("kept", f"worktree {path}", why))
                remaining.add(path)
                continue
        if dry_run:
            done.append(Repair("would remove", f"worktree {path}", broken or ""))
            continue
        try:
            if run is not None and path.exists():
                shutil.rmtree(path)
            shutil.rmtree(entry)
        except OSError as error:
            done.append(Repair("failed", f"to remove worktree {path}", str(error)))
            remaining.add(path)
            continue
        done.append(Repair("removed", f"worktree {path}", broken or ""))
    return remaining


def _remove_ownerless(entry: Path, dry_run: bool, done: list[Repair]) -> None:
    """Remove git's record of a worktree that names neither its directory nor a lock:
    what a kill during ``git worktree remove`` leaves (git itself would prune it; a
    ``git worktree add`` in progress always holds a ``locked`` file)."""
    what = f"git's record {entry.name} of a half-removed worktree"
    if dry_run:
        done.append(Repair("would remove", what, "it names no directory"))
        return
    try:
        shutil.rmtree(entry)
    except OSError as error:
        done.append(Repair("failed", f"to remove {what}", str(error)))
        return
    done.append(Repair("removed", what, "it named no directory"))


def _repair_branches(
    repo: Path, dead: Callable[[str], bool], remaining: set[Path], dry_run: bool, done
) -> None:
    try:
        found = refs.branches(repo, TASK_BRANCHES)
    except GitError as error:
        done.append(Repair("failed", "to list the attempts' branches", str(error)))
        return
    used = _checked_out(remaining)
    for branch in sorted(found):
        run = branch.removeprefix(TASK_BRANCHES).split("/", 1)[0]
        if not dead(run) or branch in used:
            continue
        if dry_run:
            done.append(Repair("would remove", f"branch {branch}"))
            continue
        try:
            worktrees.delete_branch(repo, branch)
        except GitError as error:
            done.append(Repair("failed", f"to remove branch {branch}", str(error)))
            continue
        done.append(Repair("removed", f"branch {branch}"))


def _repair_locks(
    common: Path, root: Path, dead: Callable[[str], bool], dry_run: bool, done
) -> None:
    """Remove the lock files of orchestra's refs of dead runs, and the shared
    ``packed-refs.lock``, when no live process can hold them."""
    candidates = [common / "packed-refs.lock"]
    for namespace in (RUN_BRANCHES, TASK_BRANCHES):
        directory = common / "refs" / "heads" / namespace.rstrip("/")
        for lock in _locks_under(directory):
            run = lock.relative_to(directory).parts[0].removesuffix(".lock")
            if dead(run):
                candidates.append(lock)
    places = [common, common.parent, root]
    for lock in candidates:
        if not lock.exists():
            continue
        if locks.held(lock, places):
            done.append(Repair("kept", f"lock {lock}", "a live process may hold it"))
            continue
        if dry_run:
            done.append(Repair("would remove", f"lock {lock}", "no live process holds it"))
            continue
        locks.remove_if_stale(lock, places)  # reported with the others, at the end


def _repair_directories(
    root: Path, dead: Callable[[str], bool], remaining: set[Path], dry_run: bool, done
) -> None:
    """Remove what is left under ``root/<run>/`` of dead runs that git does not know as a
    worktree (a directory whose worktree record went first), then the emptied run
    directories."""
    kept = {path.resolve() for path in remaining}
    for run_directory in entries(root):
        if not run_directory.is_dir() or not dead(run_directory.name):
            continue
        for child in entries(run_directory):
            if child.resolve() in kept:
                continue
            if dry_run:
                done.append(Repair("would remove", f"directory {child}"))
                continue
            try:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            except OSError as error:
                done.append(Repair("failed", f"to remove directory {child}", str(error)))
                continue
            done.append(Repair("removed", f"directory {child}", "no worktree of git's"))
        if not dry_run:
            try:
                run_directory.rmdir()
            except OSError:
                pass  # something stays in it


# -- reading git's records of worktrees --


def _orchestras(entry: Path, root: Path) -> Path | None:
    """The path of the worktree ``.git/worktrees/<entry>`` records, when it is
    orchestra's: its lock reason says so (an attempt's, under ``root``, or a merge's
    temporary one), or its path is under ``root``. None otherwise."""
    reason = read_record(entry / "locked")
    if reason.startswith(worktrees.LOCK_REASON):
        path = Path(reason.removeprefix(worktrees.LOCK_REASON)).absolute()
        if _under(path, root) or path.parent.name.startswith("orchestra-merge-"):
            return path
        return None
    recorded = read_record(entry / "gitdir")
    if recorded:
        path = Path(recorded).parent.absolute()
        if _under(path, root):
            return path
    return None


def _broken(entry: Path, common: Path, path: Path) -> str | None:
    """Why git's record ``entry`` of the worktree at ``path`` is unusable, or None."""
    commondir = read_record(entry / "commondir")
    if not commondir or (entry / commondir).resolve() != common.resolve():
        return "half-made: its commondir is missing"
    head = read_record(entry / "HEAD")
    if not head or head == "0" * 40:
        return "half-made: it has no HEAD yet"
    if read_record(entry / "gitdir") != str(path / ".git"):
        return "half-made: git does not know its directory yet"
    if not (path / ".git").exists():
        return "its directory is gone"
    return None


def _checked_out(paths: Iterable[Path]) -> set[str]:
    """The branches the worktrees at ``paths`` have checked out (from their HEAD files)."""
    branches = set()
    for path in paths:
        pointer = read_record(path / ".git")
        if pointer.startswith("gitdir:"):
            head = read_record(Path(pointer.removeprefix("gitdir:").strip()) / "HEAD")
            if head.startswith("ref: refs/heads/"):
                branches.add(head.removeprefix("ref: refs/heads/"))
    return branches


def _run_of(path: Path, root: Path) -> str | None:
    """The run a worktree under ``root/<run>/`` belongs to; None for a merge worktree."""
    if not _under(path, root):
        return None
    parts = path.relative_to(root).parts
    return parts[0] if parts else None


def _under(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root) and path.resolve() != root
    except OSError:
        return False


def _locks_under(directory: Path) -> list[Path]:
    try:
        return sorted(directory.rglob("*.lock"))
    except OSError:
        return []


def remove_tree(repo: Path, tree: Tree, worktrees_root: Path) -> None:
    """Remove orchestra's worktree ``tree`` without asking git, whose ``git worktree
    remove`` refuses one whose ``.git`` file an attempt rewrote: its directory (under
    ``worktrees_root`` only) and git's record of it."""
    root = worktrees_root.absolute().resolve()
    with worktrees.worktrees_locked(repo):
        if _under(tree.path, root):
            shutil.rmtree(tree.path, ignore_errors=True)
        if tree.git_dir.parent == common_dir(repo) / "worktrees":
            shutil.rmtree(tree.git_dir, ignore_errors=True)


def tampered(tree: Tree, branch: str) -> str | None:
    """Why the git records of orchestra's worktree ``tree`` can no longer be trusted to
    commit on ``branch`` (an attempt changed them), or None when they are as made."""
    head = read_record(tree.git_dir / "HEAD")
    if head != f"ref: refs/heads/{branch}":
        shown = head.removeprefix("ref: refs/heads/") or "nothing"
        return f"its HEAD was moved from branch {branch} to {shown}"
    return worktrees.repointed(tree)
