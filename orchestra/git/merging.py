"""Bringing work together: putting one checked commit's change on top of a branch
(``land_change``, what a run's landings use), rebasing a worktree's branch onto another
and advancing that one to the result, and merging one branch into another.

Several threads may bring work onto the same branch at once: that branch is moved with
compare-and-swap (``refs.move_branch``), a rebase made again when another moved it
first. Conflicting paths are named relative to the repository root, POSIX style, sorted.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from orchestra import classes
from orchestra.git import changes, refs, worktrees
from orchestra.git.command import GitError, Where, failure, run_git

__all__ = ["ADVANCE_TRIES", "MergeResult", "land_change", "merge_into", "rebase_and_advance"]

# How often rebase_and_advance rebases again when the target branch moved under it.
ADVANCE_TRIES = 5


@classes.frozen
class MergeResult:
    """What became of bringing a branch onto another: the new tip, or the conflicts."""

    merged: bool
    tip: str | None
    conflicts: tuple[str, ...] = ()


def _rebase_in_progress(worktree: Where) -> bool:
    where = ("--path-format=absolute", "--git-path", "rebase-merge", "--git-path", "rebase-apply")
    completed = run_git(worktree, "rev-parse", *where)
    return any(Path(line).exists() for line in completed.stdout.splitlines())


# A rebase must behave the same whatever the user configured: it must not stash, move other
# branches (update-refs), or resolve conflicts from recorded resolutions without saying so.
_REBASE_CONFIG = ("rebase.autoStash=false", "rebase.updateRefs=false", "rerere.enabled=false")


def _rebase(worktree: Where, onto_commit: str, commit: str | None = None) -> tuple[str, ...]:
    """Rebase the worktree's branch onto ``onto_commit`` (with ``commit``: that commit
    alone, by its id, the worktree left detached at the result); return the conflicting
    paths, if any, after putting the worktree back as it was."""
    arguments: tuple[str, ...] = ("rebase", "--quiet", "--no-autostash", onto_commit)
    if commit is not None:
        arguments = ("rebase", "--quiet", "--no-autostash", "--onto", onto_commit)
        arguments += (f"{commit}^", commit)
    with worktrees.worktrees_locked(worktree):
        completed = run_git(
            worktree,
            *arguments,
            config=(*_REBASE_CONFIG, *changes.identity_settings(worktree)),
            check=False,
            wait_for_locks=False,  # a rebase stopped half-way is aborted, not run again
        )
        if completed.returncode == 0:
            return ()
        if _rebase_in_progress(worktree):
            conflicts = changes.unmerged_paths(worktree)
            run_git(worktree, "rebase", "--abort")
            if conflicts:
                return tuple(conflicts)
    raise failure(worktree, arguments, completed.returncode, completed.stderr, completed.stdout)


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
    where = worktrees.checked_out_at(worktree, onto)
    if where is not None:
        raise GitError(
            f"branch {onto!r} is checked out at {where}: orchestra only advances a branch "
            "that no worktree has checked out"
        )
    for _ in range(ADVANCE_TRIES):
        old = expected or refs.branch_tip(worktree, onto)
        if old is None:
            raise GitError(f"there is no branch {onto!r} to rebase onto in {worktree}")
        conflicts = _rebase(worktree, old)
        if conflicts:
            return MergeResult(False, None, conflicts)
        new = refs.head_commit(worktree)
        if refs.move_branch(worktree, onto, new, old):
            return MergeResult(True, new)
        if expected is not None:
            raise refs.BranchMoved(f"branch {onto!r} is not at {expected[:12]} any more")
    raise GitError(
        f"branch {onto!r} kept moving: gave up advancing it from {worktree} "
        f"after {ADVANCE_TRIES} rebases"
    )


def land_change(
    repo: Where, commit: str, onto: str, expected: str, worktree: Where | None = None
) -> MergeResult:
    """Put the change ``commit`` makes to its parent on top of branch ``onto``, which must
    be at ``expected``, and move ``onto`` there; return the new tip, or the conflicting
    paths (nothing moved).

    What lands is ``commit`` itself, named by its id, not whatever a branch or a work
    tree holds by then (another process could have moved those since the change was
    checked). Nothing is checked out: the change is merged onto ``expected`` as objects
    (``git merge-tree``, the merge a rebase makes) and committed with ``commit``'s
    author and message; a change already there leaves ``onto`` where it is, as a rebase
    drops it. ``expected`` must descend from ``commit``'s parent (the run branch only
    moves forward); ``onto`` found elsewhere is ``BranchMoved``, and one checked out in
    a worktree is refused, as by ``rebase_and_advance``.

    git before 2.38 has no ``merge-tree --write-tree``: there ``commit`` is rebased, by
    its id, in ``worktree`` (the attempt's, left detached at the result), which a
    process writing in that worktree meanwhile could still disturb.
    """
    where = worktrees.checked_out_at(repo, onto)
    if where is not None:
        raise GitError(
            f"branch {onto!r} is checked out at {where}: orchestra only advances a branch "
            "that no worktree has checked out"
        )
    commit, expected = refs.resolve(repo, commit), refs.resolve(repo, expected)
    parent = refs.resolve(repo, f"{commit}^")
    if parent == expected:
        new = commit  # on the tip already: what a rebase keeps as it is
    elif not refs.is_ancestor(repo, parent, expected):
        raise GitError(f"{commit[:12]}'s parent is not below {onto!r}: it cannot land there")
    elif not _merge_tree_writes(repo):
        if worktree is None:
            raise GitError("landing a change needs git 2.38 or later, or a worktree")
        stopped = _rebase(worktree, expected, commit)
        if stopped:
            return MergeResult(False, None, stopped)
        new = refs.head_commit(worktree)
    else:
        # the merge base of the tip and ``commit`` is ``commit``'s parent: this merges
        # exactly the change into the tip
        merged = run_git(
            repo,
            *("merge-tree", "--write-tree", "--name-only", "-z", "--no-messages"),
            *(expected, commit),
            check=False,
        )
        tree, *conflicts = [field for field in merged.stdout.split("\0") if field]
        if merged.returncode == 1:
            return MergeResult(False, None, tuple(sorted(set(conflicts))))
        if merged.returncode != 0:
            raise failure(repo, ("merge-tree", expected, commit), merged.returncode, merged.stderr)
        if tree == run_git(repo, "rev-parse", f"{expected}^{{tree}}").stdout.strip():
            new = expected  # the change is there already: a rebase drops it
        else:
            new = _commit_like(repo, commit, tree, expected)
    if new == expected:
        moved = refs.branch_tip(repo, onto) != expected
    else:
        moved = not refs.move_branch(repo, onto, new, expected)
    if moved:
        raise refs.BranchMoved(f"branch {onto!r} is not at {expected[:12]} any more")
    return MergeResult(True, new)


_merge_tree_known: bool | None = None


def _merge_tree_writes(repo: Where) -> bool:
    """Whether this git's ``merge-tree`` has ``--write-tree`` (2.38 and later); asked
    once per process."""
    global _merge_tree_known
    if _merge_tree_known is None:
        version = run_git(repo, "version").stdout
        found = re.search(r"(\d+)\.(\d+)", version)
        _merge_tree_known = found is not None and (int(found[1]), int(found[2])) >= (2, 38)
    return _merge_tree_known


_AUTHOR = re.compile(r"^author (.*) <(.*)> (\d+ [+-]\d{4})$", re.MULTILINE)


def _commit_like(repo: Where, commit: str, tree: str, parent: str) -> str:
    """A commit of ``tree`` on ``parent`` with ``commit``'s message and author (name,
    e-mail and date), as a rebase makes; the committer is the repository's user."""
    raw = run_git(repo, "cat-file", "commit", commit).stdout
    headers, _, message = raw.partition("\n\n")
    found = _AUTHOR.search(headers)
    if found is None:
        raise GitError(f"commit {commit[:12]} has no author git can read")
    name, email, date = found.groups()
    author = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
    return run_git(
        repo,
        *("commit-tree", tree, "-p", parent, "-F", "-"),
        config=changes.identity_settings(repo),
        input=message,
        variables=author,
    ).stdout.strip()


def _merge(worktree: Where, source: str, commit: str, target: str, *, fast_forward: bool) -> None:
    """Merge ``commit`` into the branch or detached HEAD of ``worktree``; on a conflict,
    abort and raise GitError naming the files."""
    message = f"Merge branch '{source}' into {target}"
    strategy = "--ff" if fast_forward else "--no-ff"
    arguments = ("merge", "--quiet", "--no-edit", strategy, "-m", message, commit)
    completed = run_git(
        worktree, *arguments, config=changes.identity_settings(worktree), check=False
    )
    if completed.returncode == 0:
        return
    conflicts = changes.unmerged_paths(worktree)
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
    source_commit = refs.branch_tip(repo, source)
    target_commit = refs.branch_tip(repo, target)
    for branch, commit in ((source, source_commit), (target, target_commit)):
        if commit is None:
            raise GitError(f"there is no branch {branch!r} in {repo}")
    assert source_commit is not None and target_commit is not None
    if expected is not None and source_commit != expected:
        raise refs.BranchMoved(
            f"branch {source!r} is at {source_commit[:12]}, not where the run left it"
            f" ({expected[:12]}): it was moved by another hand"
        )
    fast_forward = refs.is_ancestor(repo, target_commit, source_commit)
    outcome = "fast-forward" if fast_forward else "merge"
    if refs.is_ancestor(repo, source_commit, target_commit):
        return "fast-forward"  # nothing to bring

    where = worktrees.checked_out_at(repo, target)
    root = refs.repository_root(repo)
    if where is not None and root is not None and where.resolve() == root.resolve():
        # untracked files do not stop a merge (git refuses one that would overwrite them)
        if changes.has_uncommitted_changes(root, untracked=False):
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
        if not refs.move_branch(repo, target, source_commit, target_commit):
            raise GitError(f"branch {target!r} moved while {source!r} was merged into it")
        return outcome
    with tempfile.TemporaryDirectory(prefix="orchestra-merge-") as scratch:
        # detached, so that the target branch is never checked out, even for a moment
        merge_tree = worktrees.add_worktree(repo, Path(scratch) / "worktree", None, target_commit)
        try:
            _merge(merge_tree, source, source_commit, target, fast_forward=False)
            merged = refs.head_commit(merge_tree)
        finally:
            worktrees.remove_worktree(repo, merge_tree)
    if not refs.move_branch(repo, target, merged, target_commit):
        raise GitError(f"branch {target!r} moved while {source!r} was merged into it")
    return outcome
