"""What a work tree holds, and the commits and diffs made of it: whether it has
uncommitted changes, its state as a tree object (its own index left alone), that state
committed, and the change between two commits as paths, a diff, a count of lines, or
applied to another work tree.

Paths of files are returned relative to the repository root, POSIX style, sorted.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from orchestra import classes
from orchestra.git import refs
from orchestra.git.command import (
    DIFF_PROGRAMS_OFF,
    Tree,
    Where,
    configured_identity,
    run_git,
)

__all__ = [
    "Changed",
    "apply_change",
    "changed_entries",
    "commit_state",
    "commit_tree",
    "count_changed_lines",
    "diff",
    "has_uncommitted_changes",
    "identity_settings",
    "paths_between",
    "snapshot_uncommitted",
    "state_tree",
    "uncommitted_paths",
    "unmerged_paths",
]

_FALLBACK_NAME = "orchestra"
_FALLBACK_EMAIL = "orchestra@localhost"


def _paths(output: str) -> list[str]:
    """Split NUL-terminated path output into a sorted list without duplicates."""
    return sorted({path for path in output.split("\0") if path})


def identity_settings(repo: Where) -> tuple[str, ...]:
    """Return the ``-c`` settings that give a commit an author when the repository has none.

    The configured user.name and user.email are kept; only the missing ones are filled
    in, on the command line, so the user's configuration is never written. Every command
    that makes a commit takes them: ``commit_tree`` here, and the rebases and merges of
    ``orchestra.git.merging``.
    """
    configured = configured_identity(repo)
    settings = []
    if "user.name" not in configured:
        settings.append(f"user.name={_FALLBACK_NAME}")
    if "user.email" not in configured:
        settings.append(f"user.email={_FALLBACK_EMAIL}")
    return tuple(settings)


# -- what changed --


def has_uncommitted_changes(worktree: Where, *, untracked: bool = True) -> bool:
    """Return whether anything is staged, changed but not staged, or (unless ``untracked``
    is False) untracked and not ignored."""
    which = "--untracked-files=normal" if untracked else "--untracked-files=no"
    completed = run_git(worktree, "status", "--porcelain", "-z", which)
    return bool(completed.stdout)


def unmerged_paths(worktree: Where) -> list[str]:
    """Return the paths a merge or rebase stopped half-way left in conflict in the work
    tree (what ``orchestra.git.merging`` reports before it aborts one)."""
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
    head = refs.head_commit(repo)
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
            run_git(worktree, "read-tree", refs.resolve(worktree, "HEAD"), index=index)
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
    arguments = ("commit-tree", tree, "-p", refs.resolve(repo, parent), "-m", message)
    return run_git(repo, *arguments, config=identity_settings(repo)).stdout.strip()


def commit_state(worktree: Tree, branch: str, state: str, base: str, message: str) -> str | None:
    """Make ``branch``, checked out in the work tree, one commit of tree ``state`` on
    ``base``, and the work tree that commit: whatever else it held (a check's output)
    goes. Return the commit; None, and the branch at ``base``, when ``state`` is
    ``base``'s tree."""
    base_commit = refs.resolve(worktree, base)
    commit = None
    if state != _resolve_tree(worktree, base_commit):
        commit = commit_tree(worktree, state, base_commit, message)
    why = "orchestra: the attempt's change"
    run_git(worktree, "update-ref", "-m", why, refs.branch_ref(branch), commit or base_commit)
    run_git(worktree, "reset", "--hard", "--quiet")
    # untracked files left (a check's output) could stop the rebase that lands the change
    run_git(worktree, "clean", "-d", "--force", "--quiet", "--", ":/")
    return commit


def paths_between(where: Where, old: str, new: str) -> list[str]:
    """Return every path whose content differs between commits ``old`` and ``new`` (a
    rename gives both names)."""
    return sorted({entry.path for entry in changed_entries(where, old, new)})


@classes.frozen
class Changed:
    """One path that differs between two commits, with its mode on each side (git's
    octal: ``100644``, ``120000`` a symbolic link; ``000000`` where it is absent)."""

    path: str
    old_mode: str
    new_mode: str


def changed_entries(where: Where, old: str, new: str) -> list[Changed]:
    """Return every path whose content or mode differs between commits ``old`` and
    ``new`` (a rename gives both names), with its modes, sorted by path."""
    completed = run_git(
        where,
        *("diff", *DIFF_PROGRAMS_OFF, "--raw", "-z", "--no-renames", "--no-relative"),
        *("--no-abbrev", refs.resolve(where, old), refs.resolve(where, new), "--"),
    )
    fields = completed.stdout.split("\0")
    # records: ":<old mode> <new mode> <old id> <new id> <status>\0<path>\0"
    found = {}
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        old_mode, new_mode = status.lstrip(":").split(" ", 2)[:2]
        found[path] = Changed(path, old_mode, new_mode)
    return [found[path] for path in sorted(found)]


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
    old, new = refs.resolve(worktree, base), refs.resolve(worktree, head)
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
    old, new = refs.resolve(worktree, base), refs.resolve(worktree, head)
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


def put_back(worktree: Tree, branch: str, commit: str, ignore: Sequence[str] = ()) -> str | None:
    """Make the work tree and ``branch`` (checked out there) ``commit`` again, as they
    were before a reader (a reviewer) was let in; return what it had changed, as a diff
    from ``commit`` (its own commits and uncommitted edits alike), or None when nothing."""
    commit = refs.resolve(worktree, commit)
    state = state_tree(worktree, ignore)
    head = run_git(worktree, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    same_head = head.returncode == 0 and head.stdout.strip() == commit
    if same_head and state == _resolve_tree(worktree, commit):
        return None
    completed = run_git(worktree, "diff", *_DIFF_OPTIONS, commit, state, "--", errors="replace")
    why = "orchestra: put back what a reviewer changed"
    run_git(worktree, "update-ref", "-m", why, refs.branch_ref(branch), commit)
    run_git(worktree, "symbolic-ref", "HEAD", refs.branch_ref(branch))
    run_git(worktree, "reset", "--hard", "--quiet")
    run_git(worktree, "clean", "-d", "--force", "--quiet", "--", ":/")
    return completed.stdout or None
