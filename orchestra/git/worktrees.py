"""A repository's worktrees: adding, listing and removing them, the lock every change to
them is made under, and deleting a branch (refused while a worktree has it checked out).

A worktree orchestra made is addressed by its git directory (``Tree``), never found
through the ``.git`` file an attempt could rewrite.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from orchestra import classes
from orchestra.git import refs
from orchestra.git.command import GitError, Tree, Where, common_dir, failure, read_record, run_git

__all__ = [
    "LOCK_REASON",
    "SHARED_PREFIX",
    "STRUCTURE_LOCK",
    "Worktree",
    "add_worktree",
    "checked_out_at",
    "delete_branch",
    "is_shared",
    "list_worktrees",
    "remove_worktree",
    "worktrees_locked",
]

_ZERO_OID = "0" * 40

#: how ``add_worktree`` marks a worktree as orchestra's, from the first file git writes
#: for it (its ``locked`` file): an interrupted ``git worktree add`` leaves a directory in
#: ``.git/worktrees`` that only this tells apart (``orchestra.git.repair``)
LOCK_REASON = "orchestra: "
#: the start of the name of a worktree shared by a run's attempts that write nothing,
#: ``shared-<tip>-<n>`` (``orchestra.git.shared``)
SHARED_PREFIX = "shared-"


@classes.frozen
class Worktree:
    """One work tree of a repository, as ``git worktree list`` describes it."""

    path: Path
    branch: str | None  # None when detached (or bare)
    head: str | None  # None before the first commit
    prunable: bool  # its directory is gone; `git worktree prune` forgets it


# git reads every worktree's metadata when it adds a worktree, lists them, deletes or
# rebases a branch (is it checked out somewhere?), and fails when another git process is
# half-way through adding one ("failed to read .git/worktrees/x/commondir"). So these
# operations take one lock: a thread lock for this process, and an flock on a file in the
# repository's common git directory for other processes. Holding it, a process also knows
# that no other orchestra is half-way through changing the worktrees (repair relies on it).
_STRUCTURE = threading.RLock()
_HELD = threading.local()

#: the flock file in the common git directory (not a git lock: git never looks at it),
#: there only while a process holds it (``worktrees_locked``)
STRUCTURE_LOCK = "orchestra-worktrees.lock"


@contextlib.contextmanager
def worktrees_locked(path: Where) -> Iterator[None]:
    """Hold the repository's worktree lock (reentrant within a thread)."""
    with _STRUCTURE:
        depth = getattr(_HELD, "depth", 0)
        if depth:
            _HELD.depth = depth + 1
            try:
                yield
            finally:
                _HELD.depth = depth
            return
        lock_file = common_dir(path) / STRUCTURE_LOCK
        descriptor = _lock(lock_file)
        try:
            _HELD.depth = 1
            try:
                yield
            finally:
                _HELD.depth = 0
        finally:
            # removed while held, so that no run leaves a file of orchestra's in the
            # user's .git; a process waiting on this file finds it gone (``_lock``)
            with contextlib.suppress(OSError):  # left, it does no harm
                os.unlink(lock_file)
            os.close(descriptor)  # releases the flock


def _lock(lock_file: Path) -> int:
    """Return a descriptor of ``lock_file`` holding its flock, the file made if missing.

    The holder removes the file before it lets go. So a process that waited on the file
    may get the flock of one already removed, while another has made a new one and
    holds that: the flock counts only when the file is still the one at the path, else
    it is tried again on the new one.
    """
    while True:
        descriptor = os.open(lock_file, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            held = os.fstat(descriptor)
            now = os.stat(lock_file)
        except FileNotFoundError:  # removed by its holder meanwhile
            os.close(descriptor)
            continue
        except BaseException:
            os.close(descriptor)
            raise
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return descriptor
        os.close(descriptor)


# -- worktrees --


def add_worktree(repo: Path, path: Path, branch: str | None, start: str) -> Tree:
    """Make a new worktree at ``path`` on ``branch``, which is made or reset to ``start``
    (with ``branch`` None: at ``start``, detached); return it, addressed by its git
    directory.

    Missing parent directories of ``path`` are made. git refuses when ``branch`` is checked
    out in another worktree or ``path`` is a directory that is not empty. The worktree is
    locked with the reason ``orchestra: <path>``, the first thing git writes for it, so that
    what an interrupted ``git worktree add`` leaves can be told to be orchestra's; it is
    made holding the worktrees lock, so that ``repair`` never finds it half-made.
    """
    on = ("--detach",) if branch is None else ("--no-track", "-B", branch)
    if branch is not None:
        refs.branch_ref(branch)
    commit = refs.resolve(repo, start)
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    arguments = ("worktree", "add", "--quiet", "--lock")
    with worktrees_locked(repo):
        run_git(repo, *arguments, "--reason", f"{LOCK_REASON}{path}", *on, str(path), commit)
        # written by git a moment ago, before any tool ran in the worktree
        pointer = (path / ".git").read_text().strip()
    git_dir = Path(pointer.removeprefix("gitdir:").strip())
    if not git_dir.is_absolute():
        git_dir = (path / git_dir).resolve()
    return Tree(path, git_dir, common_dir(repo))


def is_shared(path: Path) -> bool:
    """Whether ``path`` names a worktree shared by a run's attempts that write nothing
    (``shared-<tip>-<n>``: no dot), not an attempt's own (``<task>.<attempt>``)."""
    return path.name.startswith(SHARED_PREFIX) and "." not in path.name


def remove_worktree(repo: Path, path: Path | Tree) -> None:
    """Remove the worktree at ``path``, even with uncommitted changes, locked, or with its
    directory gone; nothing happens when git does not know it.

    Its branch is kept (``delete_branch`` removes it). A directory at ``path`` that git does
    not know as a worktree is left alone: it is not orchestra's to delete.
    """
    target = Path(path.path if isinstance(path, Tree) else path).absolute().resolve()
    with worktrees_locked(repo):
        registered = any(worktree.path.resolve() == target for worktree in list_worktrees(repo))
        if registered:
            # twice --force: even a locked worktree (orchestra locks its own)
            run_git(repo, "worktree", "remove", "--force", "--force", str(target))


def list_worktrees(repo: Where) -> list[Worktree]:
    """Return every worktree of the repository, the main one first, as git lists them."""
    with worktrees_locked(repo):
        completed = run_git(repo, "worktree", "list", "--porcelain", "-z")
    worktrees = []
    fields: dict[str, str] = {}
    for line in [*completed.stdout.split("\0"), ""]:
        if line:
            key, _, value = line.partition(" ")
            fields[key] = value
            continue
        if "worktree" in fields:
            head = fields.get("HEAD")
            branch = fields.get("branch")
            worktrees.append(
                Worktree(
                    path=Path(fields["worktree"]),
                    branch=branch.removeprefix("refs/heads/") if branch else None,
                    head=head if head and head != _ZERO_OID else None,
                    prunable="prunable" in fields,
                )
            )
        fields = {}
    return worktrees


def checked_out_at(repo: Where, branch: str) -> Path | None:
    """Return the path of the worktree that has ``branch`` checked out, or None.

    What ``delete_branch`` refuses, and what ``orchestra.git.merging`` asks before it
    moves a branch or merges into one.
    """
    for worktree in list_worktrees(repo):
        if worktree.branch == branch and not worktree.prunable:
            return worktree.path
    return None


# -- the branches worktrees hold --


def delete_branch(repo: Path, branch: str, expected: str | None = None) -> None:
    """Delete ``branch``; nothing happens when it does not exist.

    With ``expected``, only if the branch is at that commit (``BranchMoved`` otherwise).
    A branch checked out in a worktree is refused (GitError), and kept. The ref goes with
    ``update-ref -d``, not ``branch -D``: that would also rewrite the repository's
    configuration (the branch's section), and a git killed while doing so leaves
    ``.git/config.lock``, which stops the user's own ``git config``.
    """
    reference = refs.branch_ref(branch)
    with worktrees_locked(repo):
        where = checked_out_at(repo, branch)
        if where is not None:
            raise GitError(f"cannot delete branch {branch!r}: it is checked out at {where}")
        _delete_ref(repo, reference, expected)


def _delete_ref(repo: Path, reference: str, expected: str | None = None) -> None:
    old = (expected,) if expected else ()
    completed = run_git(
        repo, "update-ref", "-m", "orchestra: done", "-d", reference, *old, check=False
    )
    if completed.returncode == 0:
        return
    now = _resolve_ref(repo, reference)
    if expected and now is not None and now != expected:
        raise refs.BranchMoved(
            f"branch {reference.removeprefix('refs/heads/')!r} moved to {now[:12]}"
        )
    if now is not None:
        raise failure(repo, ("update-ref", "-d", reference), completed.returncode, completed.stderr)


def _resolve_ref(repo: Where, reference: str) -> str | None:
    completed = run_git(repo, "rev-parse", "--verify", "-q", f"{reference}^{{commit}}", check=False)
    return completed.stdout.strip() if completed.returncode == 0 else None


def repointed(tree: Tree) -> str | None:
    """Why the git directory of worktree ``tree`` no longer belongs to its repository as
    made (pointed at another one, given a configuration of its own), or None. What both
    an attempt's worktree and a shared one are checked for (``repair.tampered``,
    ``shared``), beside what each checks of its HEAD."""
    if tree.common is not None:
        recorded = tree.git_dir / read_record(tree.git_dir / "commondir")
        if recorded.resolve() != tree.common.resolve():
            return "its git directory was pointed at another repository"
    own = tree.git_dir / "config.worktree"
    if own.exists():
        # git itself writes one into every new worktree of a repository with
        # extensions.worktreeConfig on (sparse checkout does), copied from the main
        # one: only settings that name a program or move the checkout are a change
        from orchestra.git.program_settings import watched_keys

        try:
            keys = watched_keys(tree.git_dir, own)
        except GitError:
            return "a configuration of its own that git cannot read was given to it"
        if keys:
            return f"a configuration of its own was given to it (config.worktree: {keys})"
    return None
