"""Branches, refs and commits: where the repository is, what a branch points at, moving a
branch (compare-and-swap), and reading the commits between two points.

A branch two calls may race on (the branch results are merged into) is moved with
compare-and-swap (``move_branch``), so that a move made meanwhile by another thread is
never lost. The lowest of the git operations: ``worktrees``, ``changes`` and ``merging``
use ``resolve`` and ``branch_ref`` to name commits and branches safely.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchestra.git import has_git_marker
from orchestra.git.command import GitError, Where, failure, run_git

__all__ = [
    "BranchMoved",
    "branch_ref",
    "branch_tip",
    "branches",
    "commit_time",
    "commits_between",
    "create_branch",
    "head_commit",
    "is_ancestor",
    "last_move",
    "move_branch",
    "repository_root",
    "resolve",
]

#: a full object id, SHA-1 or SHA-256
_FULL_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class BranchMoved(GitError):
    """A branch was not where the caller last left it."""


def branch_ref(branch: str) -> str:
    """Return ``refs/heads/<branch>``; git checks the rest of the name where it is used.

    Every operation that names a branch to git goes through it (here and in the modules
    beside this one), so that a name git would take as an option is refused first.
    """
    if not branch or branch.startswith("-"):
        raise GitError(f"invalid branch name {branch!r}")
    return f"refs/heads/{branch}"


def resolve(repo: Where, revision: str) -> str:
    """Return the commit id ``revision`` names, so later commands never take it as an option.

    A full commit id (what orchestra passes around) is returned as it is, without a git
    process: it cannot be taken as an option, and a command given one that names no
    commit fails on its own. Every operation given a revision by its caller (here and in
    the modules beside this one) resolves it with this first.
    """
    if _FULL_ID.fullmatch(revision):
        return revision
    verify = ("rev-parse", "--verify", "-q", "--end-of-options", f"{revision}^{{commit}}")
    completed = run_git(repo, *verify, check=False)
    if completed.returncode != 0:
        raise GitError(f"git: {revision!r} names no commit in {repo}")
    return completed.stdout.strip()


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


# -- branches --


def branch_tip(repo: Where, branch: str) -> str | None:
    """Return the commit id branch ``branch`` points at, or None when there is no such branch."""
    completed = run_git(
        repo, "rev-parse", "--verify", "-q", f"{branch_ref(branch)}^{{commit}}", check=False
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
    commit = resolve(repo, start)
    # the empty old value: only if the ref does not exist yet
    arguments = ("update-ref", "-m", f"orchestra: from {start}", branch_ref(branch), commit, "")
    completed = run_git(repo, *arguments, check=False)
    if completed.returncode == 0:
        return commit
    tip = branch_tip(repo, branch)  # another caller made it first, or the name is bad
    if tip is None:
        raise failure(repo, arguments, completed.returncode, completed.stderr)
    return tip


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
    completed = run_git(repo, "update-ref", "-m", why, branch_ref(branch), new, old, check=False)
    return completed.returncode == 0


# -- history --


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
    completed = run_git(repo, "log", "-1", "--format=%ct", resolve(repo, commit), "--")
    return float(completed.stdout.strip())


def last_move(repo: Where, branch: str) -> str | None:
    """Return what the reflog says of the last move of ``branch`` (its message), or None."""
    reference = branch_ref(branch)
    completed = run_git(repo, "reflog", "show", "-n", "1", "--format=%gs", reference, check=False)
    if completed.returncode != 0:
        return None
    return completed.stdout.strip() or None
