"""The git operations workspaces need, one function each, running the real ``git``.

Every command goes through ``orchestra.git.command.run_git``: an argument list, no
stdin, an allow-listed environment without orchestra's secrets, the programs a
repository's configuration can name neutralised, and git's lock files waited for (or
removed, when a killed git left them). A failing command raises ``GitError`` naming it.
A worktree orchestra made is addressed by its git directory (``Tree``), never found
through the ``.git`` file an attempt could rewrite.

The functions may be called from several threads at once on different worktrees of one
repository: git's own locks guard the repository, and the one ref two calls may race on
(the branch results are merged into) is moved with compare-and-swap.

Paths of files are returned relative to the repository root, POSIX style, sorted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from orchestra import classes
from orchestra.git import has_git_marker
from orchestra.git.command import (
    DIFF_PROGRAMS_OFF,
    GitError,
    Tree,
    Where,
    common_dir,
    configured_identity,
    failure,
    run_git,
)

__all__ = [
    "ADVANCE_TRIES",
    "LOCK_REASON",
    "STRUCTURE_LOCK",
    "BranchMoved",
    "GitError",
    "MergeResult",
    "Tree",
    "Worktree",
    "add_worktree",
    "apply_change",
    "branch_tip",
    "branches",
    "commit_state",
    "commit_time",
    "commit_tree",
    "commits_between",
    "common_dir",
    "count_changed_lines",
    "create_branch",
    "delete_branch",
    "diff",
    "has_uncommitted_changes",
    "head_commit",
    "is_ancestor",
    "last_move",
    "list_worktrees",
    "merge_into",
    "move_branch",
    "paths_between",
    "rebase_and_advance",
    "remove_worktree",
    "repository_root",
    "snapshot_uncommitted",
    "state_tree",
    "uncommitted_paths",
    "worktrees_locked",
]

_FALLBACK_NAME = "orchestra"
_FALLBACK_EMAIL = "orchestra@localhost"
_ZERO_OID = "0" * 40

#: a full object id, SHA-1 or SHA-256
_FULL_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")

# How often rebase_and_advance rebases again when the target branch moved under it.
ADVANCE_TRIES = 5

#: how ``add_worktree`` marks a worktree as orchestra's, from the first file git writes
#: for it (its ``locked`` file): an interrupted ``git worktree add`` leaves a directory in
#: ``.git/worktrees`` that only this tells apart (``orchestra.git.repair``)
LOCK_REASON = "orchestra: "


@classes.frozen
class Worktree:
    """One work tree of a repository, as ``git worktree list`` describes it."""

    path: Path
    branch: str | None  # None when detached (or bare)
    head: str | None  # None before the first commit
    prunable: bool  # its directory is gone; `git worktree prune` forgets it


@classes.frozen
class MergeResult:
    """What became of bringing a branch onto another: the new tip, or the conflicts."""

    merged: bool
    tip: str | None
    conflicts: tuple[str, ...] = ()


# -- running git --

# git reads every worktree's metadata when it adds a worktree, lists them, deletes or
# rebases a branch (is it checked out somewhere?), and fails when another git process is
# half-way through adding one ("failed to read .git/worktrees/x/commondir"). So these
# operations take one lock: a thread lock for this process, and an flock on a file in the
# repository's common git directory for other processes. Holding it, a process also knows
# that no other orchestra is half-way through changing the worktrees (repair relies on it).
_STRUCTURE = threading.RLock()
_HELD = threading.local()

#: the flock file in the common git directory (not a git lock: git never looks at it)
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
        descriptor = os.open(lock_file, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            _HELD.depth = 1
            try:
                yield
            finally:
                _HELD.depth = 0
        finally:
            os.close(descriptor)  # releases the flock


def _branch_ref(branch: str) -> str:
    """Return ``refs/heads/<branch>``; git checks the rest of the name where it is used."""
    if not branch or branch.startswith("-"):
        raise GitError(f"invalid branch name {branch!r}")
    return f"refs/heads/{branch}"


def _resolve(repo: Where, revision: str) -> str:
    """Return the commit id ``revision`` names, so later commands never take it as an option.

    A full commit id (what orchestra passes around) is returned as it is, without a git
    process: it cannot be taken as an option, and a command given one that names no
    commit fails on its own.
    """
    if _FULL_ID.fullmatch(revision):
        return revision
    verify = ("rev-parse", "--verify", "-q", "--end-of-options", f"{revision}^{{commit}}")
    completed = run_git(repo, *verify, check=False)
    if completed.returncode != 0:
        raise GitError(f"git: {revision!r} names no commit in {repo}")
    return completed.stdout.strip()


def _paths(output: str) -> list[str]:
    """Split NUL-terminated path output into a sorted list without duplicates."""
    return sorted({path for path in output.split("\0") if path})


def _identity(repo: Where) -> tuple[str, ...]:
    """Return the ``-c`` settings that give a commit an author when the repository has none.

    The configured user.name and user.email are kept; only the missing ones are filled
    in, on the command line, so the user's configuration is never written.
    """
    configured = configured_identity(repo)
    settings = []
    if "user.name" not in configured:
        settings.append(f"user.name={_FALLBACK_NAME}")
    if "user.email" not in configured:
        settings.append(f"user.email={_FALLBACK_EMAIL}")
    return tuple(settings)


def _unmerged_paths(worktree: Where) -> list[str]:
    completed = run_git(
        worktree,
        "diff",
        *DIFF_PROGRAMS_OFF,
        "--name-only",
        "-z",
        "--no-relative",
        "--diff-filter=U",
    )
    return _paths(completed.stdout)


# -- the repository --


def repository_root(path: Path) -> Path | None:
    """Return the top of the work tree that contains ``path``, or None outside any git repository.

    ``path`` need not exist yet: its nearest existing ancestor is asked.
    """
    directory = Path(path).absolute()
    while not directory.is_dir():
        if directory.parent == directory:
            return None
        directory = directory.parent
    if not has_git_marker(directory):
        return None
    completed = run_git(directory, "rev-parse", "--show-toplevel", check=False)
    if completed.returncode != 0 or not completed.stdout.strip():
        return None
    return Path(completed.stdout.strip())


def head_commit(repo: Where) -> str:
    """Return the commit id HEAD points at; GitError when the repository has no commit yet."""
    completed = run_git(repo, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    if completed.returncode == 0:
        return completed.stdout.strip()
    run_git(repo, "rev-parse", "--git-dir")  # not a repository at all: git says so
    raise GitError(f"the git repository at {repo} has no commit yet: commit something first")


def branch_tip(repo: Where, branch: str) -> str | None:
    """Return the commit id branch ``branch`` points at, or None when there is no such branch."""
    completed = run_git(
        repo, "rev-parse", "--verify", "-q", f"{_branch_ref(branch)}^{{commit}}", check=False
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


def create_branch(repo: Path, branch: str, start: str) -> str:
    """Return the tip of ``branch``, first making it at ``start`` if it does not exist.

    An existing branch is left where it is. Creation is a compare-and-swap against "no
    such ref", so two threads creating the same branch both get the one that won.
    """
    tip = branch_tip(repo, branch)
    if tip is not None:
        return tip
    commit = _resolve(repo, start)
    # the empty old value: only if the ref does not exist yet
    arguments = ("update-ref", "-m", f"orchestra: from {start}", _branch_ref(branch), commit, "")
    completed = run_git(repo, *arguments, check=False)
    if completed.returncode == 0:
        return commit
    tip = branch_tip(repo, branch)  # another caller made it first, or the name is bad
    if tip is None:
        raise failure(repo, arguments, completed.returncode, completed.stderr)
    return tip


def delete_branch(repo: Path, branch: str, expected: str | None = None) -> None:
    """Delete ``branch``; nothing happens when it does not exist.

    With ``expected``, only if the branch is at that commit (``BranchMoved`` otherwise).
    A branch checked out in a worktree is refused (GitError), and kept. The ref goes with
    ``update-ref -d``, not ``branch -D``: that would also rewrite the repository's
    configuration (the branch's section), and a git killed while doing so leaves
    ``.git/config.lock``, which stops the user's own ``git config``.
    """
    reference = _branch_ref(branch)
    with worktrees_locked(repo):
        where = _checked_out_at(repo, branch)
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
        raise BranchMoved(f"branch {reference.removeprefix('refs/heads/')!r} moved to {now[:12]}")
    if now is not None:
        raise failure(repo, ("update-ref", "-d", reference), completed.returncode, completed.stderr)


def _resolve_ref(repo: Where, reference: str) -> str | None:
    completed = run_git(repo, "rev-parse", "--verify", "-q", f"{reference}^{{commit}}", check=False)
    return completed.stdout.strip() if completed.returncode == 0 else None


def branches(repo: Path, prefix: str) -> dict[str, str]:
    """Return {branch: commit} of the branches whose names start with ``prefix``."""
    completed = run_git(
        repo, "for-each-ref", "--format=%(refname)%00%(objectname)", f"refs/heads/{prefix}"
    )
    found = {}
    for line in completed.stdout.splitlines():
        reference, _, commit = line.partition("\0")
        found[reference.removeprefix("refs/heads/")] = commit
    return found


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
        _branch_ref(branch)
    commit = _resolve(repo, start)
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


# -- what changed --


def has_uncommitted_changes(worktree: Where, *, untracked: bool = True) -> bool:
    """Return whether anything is staged, changed but not staged, or (unless ``untracked``
    is False) untracked and not ignored."""
    which = "--untracked-files=normal" if untracked else "--untracked-files=no"
    completed = run_git(worktree, "status", "--porcelain", "-z", which)
    return bool(completed.stdout)


# -- snapshots: what a work tree holds, as a tree object, its own index left alone --


def uncommitted_paths(repo: Path) -> list[str]:
    """Return the tracked files whose content in the work tree at ``repo`` (or in its
    index) differs from HEAD: changed, staged, deleted, or added with ``git add``.
    Untracked files are not listed."""
    completed = run_git(
        repo,
        "diff",
        *DIFF_PROGRAMS_OFF,
        "--name-only",
        "-z",
        "--no-renames",
        "--no-relative",
        "HEAD",
        "--",
    )
    return _paths(completed.stdout)


def snapshot_uncommitted(repo: Path, message: str) -> str:
    """Return a commit on top of HEAD that holds the tracked files as they are in the work
    tree at ``repo`` (what ``uncommitted_paths`` lists), or HEAD itself when nothing
    differs. Nothing of the user's moves: no branch, not the index (a copy is used),
    not a file of the work tree; only objects are added to the repository."""
    head = head_commit(repo)
    with tempfile.TemporaryDirectory(prefix="orchestra-snapshot-") as scratch:
        index = Path(scratch) / "index"
        own = _index_file(repo)
        if own is not None and own.is_file():
            shutil.copy2(own, index)  # what the user staged; its time keeps racy-git checks
        else:
            run_git(repo, "read-tree", head, index=index)
        run_git(repo, "add", "--update", "--", ":/", index=index)
        state = run_git(repo, "write-tree", index=index).stdout.strip()
    if state == _resolve_tree(repo, head):
        return head
    return commit_tree(repo, state, head, message)


def state_tree(worktree: Where, ignore: Sequence[str] = ()) -> str:
    """Return the tree object of everything the work tree holds now: its tracked files
    as they are (deleted ones gone) and its untracked files, but those git ignores and
    those matching ``ignore`` (gitignore patterns). The work tree's own index is only
    read (a copy is used; HEAD's tree when there is no index)."""
    with _scratch(worktree, "orchestra-state-") as scratch:
        index = Path(scratch) / "index"
        own = _index_file(worktree)
        if own is not None and own.is_file():
            shutil.copy2(own, index)  # with its time: git then re-reads racily clean files
        else:
            run_git(worktree, "read-tree", _resolve(worktree, "HEAD"), index=index)
        run_git(worktree, "add", "--update", "--", ":/", index=index)
        excluded = [item for pattern in ignore for item in ("--exclude", pattern)]
        others = run_git(
            worktree,
            *("ls-files", "-z", "--others", "--exclude-standard", *excluded),
            *("--full-name", "--", ":/"),
            index=index,
        ).stdout
        if others.strip("\0"):
            listing = Path(scratch) / "untracked"
            listing.write_text(others, errors="surrogateescape")
            run_git(  # --force: ls-files has decided what is ignored; add must not differ
                worktree,
                *("--literal-pathspecs", "add", "--force"),
                *(f"--pathspec-from-file={listing}", "--pathspec-file-nul"),
                index=index,
            )
        return run_git(worktree, "write-tree", index=index).stdout.strip()


def _scratch(where: Where, prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary directory for a command's own files (an index copy): inside the
    worktree's git directory when there is one, so that what a killed orchestra leaves
    goes with the worktree (``repair``), else in the system's temporary directory."""
    place = where.git_dir if isinstance(where, Tree) else None
    return tempfile.TemporaryDirectory(prefix=prefix, dir=place)


def _index_file(worktree: Where) -> Path | None:
    if isinstance(worktree, Tree):
        return worktree.git_dir / "index"
    completed = run_git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index")
    return Path(completed.stdout.strip())


def _resolve_tree(repo: Where, commit: str) -> str:
    return run_git(repo, "rev-parse", "--verify", "-q", f"{commit}^{{tree}}").stdout.strip()


def commit_tree(repo: Where, tree: str, parent: str, message: str) -> str:
    """Return a new commit of ``tree`` on ``parent`` with ``message``, made by the
    repository's user (or orchestra's fallback identity); no branch moves."""
    arguments = ("commit-tree", tree, "-p", _resolve(repo, parent), "-m", message)
    return run_git(repo, *arguments, config=_identity(repo)).stdout.strip()


def commit_state(worktree: Tree, branch: str, state: str, base: str, message: str) -> str | None:
    """Make ``branch``, checked out in the work tree, one commit of tree ``state`` on
    ``base``, and the work tree that commit: whatever else it held (a check's output)
    goes. Return the commit; None, and the branch at ``base``, when ``state`` is
    ``base``'s tree."""
    base_commit = _resolve(worktree, base)
    commit = None
    if state != _resolve_tree(worktree, base_commit):
        commit = commit_tree(worktree, state, base_commit, message)
    why = "orchestra: the attempt's change"
    run_git(worktree, "update-ref", "-m", why, _branch_ref(branch), commit or base_commit)
    run_git(worktree, "reset", "--hard", "--quiet")
    # untracked files left (a check's output) could stop the rebase that lands the change
    run_git(worktree, "clean", "-d", "--force", "--quiet", "--", ":/")
    return commit


def paths_between(where: Where, old: str, new: str) -> list[str]:
    """Return every path whose content differs between commits ``old`` and ``new`` (a
    rename gives both names)."""
    completed = run_git(
        where,
        *("diff", *DIFF_PROGRAMS_OFF, "--name-only", "-z", "--no-renames", "--no-relative"),
        *(_resolve(where, old), _resolve(where, new), "--"),
    )
    return _paths(completed.stdout)


# The same patch whatever the user configured: colour, external diff tools, textconv
# filters, diff.relative and diff.noprefix all change git's output.
_DIFF_OPTIONS = (
    *("--no-color", *DIFF_PROGRAMS_OFF, "--no-relative", "-M"),
    *("--src-prefix=a/", "--dst-prefix=b/"),
)


def diff(worktree: Where, base: str, head: str = "HEAD", *, limit: int = 1_000_000) -> str:
    """Return the unified diff from ``base`` to ``head``, at most ``limit`` characters.

    A binary file shows as git's "Binary files … differ" line. A longer diff is cut at
    ``limit`` characters and ends with a line that says so.
    """
    old, new = _resolve(worktree, base), _resolve(worktree, head)
    completed = run_git(worktree, "diff", *_DIFF_OPTIONS, old, new, "--", errors="replace")
    text = completed.stdout
    if len(text) <= limit:
        return text
    kept = text[:limit]
    if not kept.endswith("\n"):
        kept += "\n"
    return kept + f"[diff cut at {limit:,} of {len(text):,} characters]\n"


def count_changed_lines(worktree: Where, base: str, head: str = "HEAD") -> int:
    """Return the lines added plus the lines deleted from ``base`` to ``head``.

    A binary file counts 0. Renames are detected, so a moved file counts only the lines
    that changed in it.
    """
    old, new = _resolve(worktree, base), _resolve(worktree, head)
    completed = run_git(
        worktree, "diff", *DIFF_PROGRAMS_OFF, "--numstat", "--no-relative", "-M", old, new, "--"
    )
    total = 0
    for line in completed.stdout.splitlines():
        added, deleted, _ = line.split("\t", 2)
        if added != "-":  # binary: "-\t-\tpath"
            total += int(added) + int(deleted)
    return total


def apply_change(worktree: Tree, old: str, new: str) -> bool:
    """Make the change from commit ``old`` to commit ``new`` in the work tree, left
    uncommitted (new files marked with ``git add --intent-to-add``, so that ``git diff``
    shows them too), by a three-way merge where the files moved on since ``old``; return
    True. When it does not apply, put the work tree back as its HEAD and return False."""
    patch = run_git(worktree, "diff", *_DIFF_OPTIONS, "--binary", "--full-index", old, new, "--")
    if not patch.stdout:
        return True
    with _scratch(worktree, "orchestra-change-") as scratch:
        change = Path(scratch) / "change.patch"
        change.write_text(patch.stdout, errors="surrogateescape")
        # not `apply --intent-to-add`: git 2.39's writes an index of the new files alone
        plain = ("apply", "--whitespace=nowarn", str(change))
        if run_git(worktree, *plain, check=False).returncode == 0:
            run_git(worktree, "add", "--intent-to-add", "--", ":/")
            return True
        merged = ("apply", "--3way", "--whitespace=nowarn", str(change))
        if run_git(worktree, *merged, check=False).returncode == 0:
            run_git(worktree, "reset", "--quiet")  # staged by the merge: unstaged, as above
            run_git(worktree, "add", "--intent-to-add", "--", ":/")
            return True
    run_git(worktree, "reset", "--hard", "--quiet")
    run_git(worktree, "clean", "-d", "--force", "--quiet", "--", ":/")
    return False


# -- bringing work together --


def _rebase_in_progress(worktree: Where) -> bool:
    where = ("--path-format=absolute", "--git-path", "rebase-merge", "--git-path", "rebase-apply")
    completed = run_git(worktree, "rev-parse", *where)
    return any(Path(line).exists() for line in completed.stdout.splitlines())


# A rebase must behave the same whatever the user configured: it must not stash, move other
# branches (update-refs), or resolve conflicts from recorded resolutions without saying so.
_REBASE_CONFIG = ("rebase.autoStash=false", "rebase.updateRefs=false", "rerere.enabled=false")


def _rebase(worktree: Where, onto_commit: str) -> tuple[str, ...]:
    """Rebase the worktree's branch onto ``onto_commit``; return the conflicting paths, if
    any, after putting the worktree back as it was."""
    arguments = ("rebase", "--quiet", "--no-autostash", onto_commit)
    with worktrees_locked(worktree):
        completed = run_git(
            worktree,
            *arguments,
            config=(*_REBASE_CONFIG, *_identity(worktree)),
            check=False,
            wait_for_locks=False,  # a rebase stopped half-way is aborted, not run again
        )
        if completed.returncode == 0:
            return ()
        if _rebase_in_progress(worktree):
            conflicts = _unmerged_paths(worktree)
            run_git(worktree, "rebase", "--abort")
            if conflicts:
                return tuple(conflicts)
    raise failure(worktree, arguments, completed.returncode, completed.stderr, completed.stdout)


def _checked_out_at(repo: Where, branch: str) -> Path | None:
    """Return the path of the worktree that has ``branch`` checked out, or None."""
    for worktree in list_worktrees(repo):
        if worktree.branch == branch and not worktree.prunable:
            return worktree.path
    return None


def rebase_and_advance(worktree: Where, onto: str, expected: str | None = None) -> MergeResult:
    """Rebase the worktree's branch onto branch ``onto`` and move ``onto`` to the result.

    On a conflict the rebase is aborted, the worktree is left as it was, and the result
    names the conflicting paths. Otherwise ``onto`` is moved with compare-and-swap; if
    another thread moved it in between, the branch is rebased again onto the new tip (up
    to ``ADVANCE_TRIES`` times). With ``expected``, ``onto`` must be at that commit: the
    rebase goes onto it, and a branch found elsewhere is an error (``BranchMoved``), not
    a reason to try again. ``onto`` must not be checked out anywhere: no working tree but
    ``worktree`` is touched.
    """
    where = _checked_out_at(worktree, onto)
    if where is not None:
        raise GitError(
            f"branch {onto!r} is checked out at {where}: orchestra only advances a branch "
            "that no worktree has checked out"
        )
    for _ in range(ADVANCE_TRIES):
        old = expected or branch_tip(worktree, onto)
        if old is None:
            raise GitError(f"there is no branch {onto!r} to rebase onto in {worktree}")
        conflicts = _rebase(worktree, old)
        if conflicts:
            return MergeResult(False, None, conflicts)
        new = head_commit(worktree)
        if move_branch(worktree, onto, new, old):
            return MergeResult(True, new)
        if expected is not None:
            raise BranchMoved(f"branch {onto!r} is not at {expected[:12]} any more")
    raise GitError(
        f"branch {onto!r} kept moving: gave up advancing it from {worktree} "
        f"after {ADVANCE_TRIES} rebases"
    )


class BranchMoved(GitError):
    """A branch was not where the caller last left it."""


def _merge(worktree: Where, source: str, commit: str, target: str, *, fast_forward: bool) -> None:
    """Merge ``commit`` into the branch or detached HEAD of ``worktree``; on a conflict,
    abort and raise GitError naming the files."""
    message = f"Merge branch '{source}' into {target}"
    strategy = "--ff" if fast_forward else "--no-ff"
    arguments = ("merge", "--quiet", "--no-edit", strategy, "-m", message, commit)
    completed = run_git(worktree, *arguments, config=_identity(worktree), check=False)
    if completed.returncode == 0:
        return
    conflicts = _unmerged_paths(worktree)
    if conflicts:
        run_git(worktree, "merge", "--abort")
        raise GitError(
            f"merging branch {source!r} into {target!r} conflicts in {', '.join(conflicts)}; "
            "nothing was changed"
        )
    raise failure(worktree, arguments, completed.returncode, completed.stderr, completed.stdout)


def merge_into(repo: Path, source: str, target: str, *, expected: str | None = None) -> str:
    """Bring branch ``source`` into branch ``target``; return "fast-forward" or "merge".

    When ``target`` is checked out in the work tree at ``repo``, the merge happens there,
    refused if that work tree has uncommitted changes. When it is checked out nowhere, a
    fast-forward moves the ref (compare-and-swap) and a real merge is made in a temporary
    worktree, removed afterwards. A branch checked out in another worktree is refused. A
    ``target`` that already contains ``source`` is left alone ("fast-forward"). With
    ``expected``, ``source`` must be at that commit (where its owner last left it), else
    nothing is merged.
    """
    source_commit = branch_tip(repo, source)
    target_commit = branch_tip(repo, target)
    for branch, commit in ((source, source_commit), (target, target_commit)):
        if commit is None:
            raise GitError(f"there is no branch {branch!r} in {repo}")
    assert source_commit is not None and target_commit is not None
    if expected is not None and source_commit != expected:
        raise BranchMoved(
            f"branch {source!r} is at {source_commit[:12]}, not where the run left it"
            f" ({expected[:12]}): it was moved by another hand"
        )
    fast_forward = is_ancestor(repo, target_commit, source_commit)
    outcome = "fast-forward" if fast_forward else "merge"
    if is_ancestor(repo, source_commit, target_commit):
        return "fast-forward"  # nothing to bring

    where = _checked_out_at(repo, target)
    root = repository_root(repo)
    if where is not None and root is not None and where.resolve() == root.resolve():
        # untracked files do not stop a merge (git refuses one that would overwrite them)
        if has_uncommitted_changes(root, untracked=False):
            raise GitError(
                f"branch {target!r} is checked out at {root} with uncommitted changes: "
                f"commit or stash them, then merge {source!r} again"
            )
        _merge(root, source, source_commit, target, fast_forward=True)
        return outcome
    if where is not None:
        raise GitError(
            f"branch {target!r} is checked out at {where}: merge {source!r} into it there"
        )
    if fast_forward:
        if not move_branch(repo, target, source_commit, target_commit):
            raise GitError(f"branch {target!r} moved while {source!r} was merged into it")
        return outcome
    with tempfile.TemporaryDirectory(prefix="orchestra-merge-") as scratch:
        # detached, so that the target branch is never checked out, even for a moment
        merge_tree = add_worktree(repo, Path(scratch) / "worktree", None, target_commit)
        try:
            _merge(merge_tree, source, source_commit, target, fast_forward=False)
            merged = head_commit(merge_tree)
        finally:
            remove_worktree(repo, merge_tree)
    if not move_branch(repo, target, merged, target_commit):
        raise GitError(f"branch {target!r} moved while {source!r} was merged into it")
    return outcome


def is_ancestor(repo: Where, ancestor: str, descendant: str) -> bool:
    """Whether commit ``ancestor`` is ``descendant`` or one of its ancestors."""
    arguments = ("merge-base", "--is-ancestor", ancestor, descendant)
    completed = run_git(repo, *arguments, check=False)
    if completed.returncode not in (0, 1):
        raise failure(repo, arguments, completed.returncode, completed.stderr)
    return completed.returncode == 0


def move_branch(
    repo: Where, branch: str, new: str, old: str, why: str = "orchestra: advance"
) -> bool:
    """Point ``branch`` at ``new`` if it still points at ``old`` (compare-and-swap);
    return whether it did. ``why`` goes into the branch's reflog."""
    completed = run_git(repo, "update-ref", "-m", why, _branch_ref(branch), new, old, check=False)
    return completed.returncode == 0


def commits_between(
    repo: Where,
    old: str | None,
    new: str,
    *,
    first_parent: bool = False,
    limit: int | None = None,
) -> list[tuple[str, str, dict[str, str]]]:
    """Return the commits reachable from ``new`` and not from ``old`` (all of ``new``'s
    history when ``old`` is None; at most ``limit``, the newest), oldest first: each its
    id, its subject, and its trailers (``Key: value``, the last value of each key)."""
    arguments = ["log", "--format=%H%x1f%s%x1f%(trailers:only,unfold)%x1e"]
    if first_parent:
        arguments.append("--first-parent")
    if limit is not None:
        arguments.append(f"--max-count={limit}")
    arguments.append(f"{old}..{new}" if old else new)
    completed = run_git(repo, *arguments, "--")
    found = []
    for record in completed.stdout.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        commit, subject, trailers = [*record.split("\x1f"), "", ""][:3]
        values = {}
        for line in trailers.splitlines():
            key, separator, value = line.partition(":")
            if separator:
                values[key.strip()] = value.strip()
        found.append((commit, subject, values))
    found.reverse()
    return found


def commit_time(repo: Where, commit: str) -> float:
    """Return when ``commit`` was committed, as UNIX time."""
    completed = run_git(repo, "log", "-1", "--format=%ct", _resolve(repo, commit), "--")
    return float(completed.stdout.strip())


def last_move(repo: Where, branch: str) -> str | None:
    """Return what the reflog says of the last move of ``branch`` (its message), or None."""
    reference = _branch_ref(branch)
    completed = run_git(repo, "reflog", "show", "-n", "1", "--format=%gs", reference, check=False)
    if completed.returncode != 0:
        return None
    return completed.stdout.strip() or None
