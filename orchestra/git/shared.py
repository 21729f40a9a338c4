"""Worktrees shared by the attempts that write nothing: one per run-branch tip.

An attempt that declares no writes (a command task without ``files.write`` or
``files.create``) needs the run branch's tip checked out, not a worktree of its own: a
worktree made and removed per attempt costs a dozen git processes (about 27 ms in a small
repository, 2026-12), a ``/bin/true`` a fraction of one. So such attempts share one
worktree per tip (``SharedTrees``):

- it is made when an attempt first needs the tip, detached there, under the run's
  worktree directory as ``shared-<tip>-<n>`` (no dot in it, so it never takes the name
  ``<task>.<attempt>`` of an attempt's own worktree), locked as every orchestra worktree
  (``orchestra.git.repair`` knows it by its path and removes it when its run is dead);
- attempts enter and leave it, counted under the pool's lock; once the tip has moved,
  the next attempt gets a new tree, and the old one goes when the last attempt in it
  leaves (or at the run's end);
- an attempt may change nothing in it but build output (what git or ``[workspace]
  ignore`` ignores: caches, ``build/``), sandboxed or not: its sandbox lets it write the
  tree, as any attempt's lets it write its worktree, so that a linter's cache or a test
  run's output does not fail the command. After it, ``check`` compares the tree with what
  it held when it was made (``Baseline``: one ``git status``, and a ``stat`` of the few
  files that differed from the tip then), unless the tree's inotify watch
  (``orchestra.git.tree_watch``) saw no write since the last comparison: then nothing
  changed, and no process is started. A change poisons the tree: no attempt enters it
  again, every attempt that was in it when the change was found is told so (any of them
  may have made it), and it is removed once they have left.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from orchestra import classes
from orchestra.git import tree_watch, worktrees
from orchestra.git.command import GitError, Tree, common_dir, read_record, run_git

#: an attempt: its task and its number
Key = tuple[str, int]
#: what ``os.stat`` says of a file, to see it rewritten: inode, size, mtime, ctime (the
#: ctime cannot be set back by a process, unlike the mtime)
Stamp = tuple[int, int, int, int] | None


@classes.frozen
class Baseline:
    """What a shared worktree held when it was made ready (the ``copy`` files and the
    ``setup`` commands' output on top of the tip): the paths ``git status`` listed, each
    with its status letters and its stamp."""

    entries: dict[str, str]
    stamps: dict[str, Stamp]


@classes.frozen
class Found:
    """A change found in a shared worktree: the paths that differ from its baseline, or
    what happened to its git records; and the attempts that were in it (any of them may
    have made it)."""

    paths: tuple[str, ...]
    records: str | None
    suspects: tuple[Key, ...]

    def what(self) -> str:
        """The change in a few words: the first paths, or the records' problem."""
        parts = []
        if self.paths:
            shown = ", ".join(self.paths[:5])
            more = len(self.paths) - 5
            parts.append(shown + (f" and {more} more" if more > 0 else ""))
        if self.records:
            parts.append(self.records)
        return "; ".join(parts)


@classes.define
class SharedTree:
    """One shared worktree: its tip, the attempts in it, whether it is ready (made, its
    baseline taken), and whether a change was found in it."""

    tip: str
    path: Path
    users: set[Key]
    ready: threading.Event
    tree: Tree | None = None
    baseline: Baseline | None = None
    #: new untracked files found to be build output (``ignore``): not asked about again
    tolerated: set[str] = attrs.field(factory=set)
    failed: bool = False
    found: Found | None = None
    #: the writes noted in it since its last comparison (started at the first check, so
    #: that a run of one such attempt pays nothing for it), and whether it was tried
    watch: tree_watch.TreeWatch | None = None
    watched: bool = False
    #: one check at a time: a check that takes the watch's events must finish its
    #: comparison before another may trust the watch's silence
    checking: threading.Lock = attrs.field(factory=threading.Lock)


class SharedTrees:
    """The shared worktrees of one run, in ``directory`` (``<worktrees>/<run>``).

    ``tip()`` says the run branch's tip, asked under the pool's lock whenever an attempt
    enters (so that entering never races with another attempt's choice of the tree to
    keep). Called from the attempts' worker threads, several at once."""

    def __init__(self, repo: Path, directory: Path, tip: Callable[[], str]) -> None:
        self.repo = repo
        self.directory = directory
        self._tip = tip
        self._lock = threading.Lock()
        #: the tree each tip's attempts enter (a poisoned or failed one is no longer here)
        self._current: dict[str, SharedTree] = {}
        #: every tree not yet removed, and the tree of each attempt in one
        self._trees: list[SharedTree] = []
        self._of: dict[Key, SharedTree] = {}
        self._made = 0

    def enter(self, key: Key, make_ready: Callable[[Tree], None]) -> Tree:
        """Put attempt ``key`` in the shared worktree of the run branch's tip, made first
        (``make_ready(tree)`` copies files and runs the setup in it) when there is none;
        return it. Raises what making it raised (it is then removed)."""
        while True:
            with self._lock:
                tip = self._tip()
                shared = self._current.get(tip)
                making = shared is None
                if shared is None:
                    shared = self._new(tip)
                shared.users.add(key)
                self._of[key] = shared
                unused = self._take_unused(keep=shared) if making else []
            self._remove(unused)
            if making:
                return self._make(key, shared, make_ready)
            shared.ready.wait()
            if shared.tree is not None and not shared.failed:
                return shared.tree
            self.leave(key)  # its maker failed: make it again (this attempt's setup)

    def path_of(self, key: Key) -> Path | None:
        """The directory of the shared worktree attempt ``key`` is in (or is making
        ready), or None when it is in none."""
        shared = self._of.get(key)
        return shared.path if shared is not None else None

    def check(self, key: Key, ignore: Sequence[str]) -> Found | None:
        """What changed in the shared worktree of attempt ``key`` since it was made ready
        (``ignore``: gitignore patterns of files that do not count, build output), or None.
        A change found, now or before, poisons the tree (see the module's docstring)."""
        shared = self._of.get(key)
        if shared is None or shared.tree is None or shared.baseline is None:
            return None
        with shared.checking:
            if shared.found is not None:
                return shared.found
            records = tampered(shared.tree, shared.tip)
            if records is None and shared.watch is not None and shared.watch.quiet():
                return None
            if not shared.watched:  # from now on, a write is seen without git
                shared.watched = True
                shared.watch = tree_watch.start(shared.tree.path, _ignored(shared.tree, ignore))
            paths = changed_paths(shared.tree, shared.baseline, ignore, shared.tolerated)
            if not paths and records is None:
                return None
            return self._poison(shared, Found(tuple(paths), records, ()))

    def _poison(self, shared: SharedTree, found: Found) -> Found:
        """Record the change ``found`` in ``shared``, with the attempts in it now as its
        suspects, and take the tree out of use; return what was recorded."""
        with self._lock:
            if shared.found is None:
                suspects = tuple(sorted(shared.users))
                shared.found = attrs.evolve(found, suspects=suspects)
                if self._current.get(shared.tip) is shared:
                    del self._current[shared.tip]  # the next attempt gets a new one
            return shared.found

    def leave(self, key: Key) -> None:
        """Take attempt ``key`` out of its shared worktree, which is removed when no
        attempt is left in it and it is no longer the one the tip's attempts enter."""
        with self._lock:
            shared = self._of.pop(key, None)
            if shared is None:
                return
            shared.users.discard(key)
            unused = self._take_unused(keep=self._current.get(self._tip()))
        self._remove(unused)

    def close(self) -> list[str]:
        """Remove every shared worktree (at the run's end, when no attempt runs); return
        what could not be removed, one line each (``repair`` then tries)."""
        with self._lock:
            trees, self._trees = self._trees, []
            self._current.clear()
            self._of.clear()
        return self._remove(trees)

    # -- helpers ---------------------------------------------------------------------------

    def _new(self, tip: str) -> SharedTree:
        """A tree for ``tip``, not made yet, that the tip's attempts enter (call with the
        lock held)."""
        self._made += 1
        path = self.directory / f"{worktrees.SHARED_PREFIX}{tip[:12]}-{self._made}"
        shared = SharedTree(tip, path, set(), threading.Event())
        self._current[tip] = shared
        self._trees.append(shared)
        return shared

    def _make(self, key: Key, shared: SharedTree, make_ready: Callable[[Tree], None]) -> Tree:
        """Make ``shared`` (a worktree detached at its tip), let ``make_ready`` fill it,
        take its baseline, and let the attempts waiting for it in."""
        try:
            if os.path.lexists(shared.path):  # a leftover of a previous orchestrator's
                worktrees.remove_worktree(self.repo, shared.path)
                _remove_directory(shared.path)
            tree = worktrees.add_worktree(self.repo, shared.path, None, shared.tip)
            shared.tree = tree
            make_ready(tree)
            shared.baseline = baseline(tree)
        except BaseException:
            with self._lock:
                shared.failed = True
                if self._current.get(shared.tip) is shared:
                    del self._current[shared.tip]
            shared.ready.set()
            self.leave(key)
            raise
        shared.ready.set()
        return tree

    def _take_unused(self, keep: SharedTree | None) -> list[SharedTree]:
        """Take out of the pool the trees no attempt is in, but ``keep`` (the current
        one), and return them for removal (call with the lock held)."""
        unused = [shared for shared in self._trees if not shared.users and shared is not keep]
        if unused:
            self._trees = [shared for shared in self._trees if shared not in unused]
            for shared in unused:
                if self._current.get(shared.tip) is shared:
                    del self._current[shared.tip]
        return unused

    def _remove(self, trees: list[SharedTree]) -> list[str]:
        """Remove ``trees`` (taken out of the pool) from the repository; return what could
        not be removed."""
        problems = []
        for shared in trees:
            if shared.watch is not None:
                shared.watch.close()
            try:
                worktrees.remove_worktree(self.repo, shared.tree or shared.path)
            except GitError as error:
                if shared.tree is None:
                    problems.append(f"could not remove shared worktree {shared.path}: {error}")
                    continue
                from orchestra.git import repair

                repair.remove_tree(self.repo, shared.tree, self.directory.parent)
            _remove_directory(shared.path)  # what git did not know, if anything
        return problems


# -- what a shared worktree holds ------------------------------------------------------------


def status(tree: Tree) -> dict[str, str]:
    """The paths of ``tree`` that differ from its HEAD (tracked: changed, deleted; or
    untracked and not ignored by git), each with its two status letters. One ``git
    status``, which writes nothing (orchestra's git takes no optional locks)."""
    completed = run_git(
        tree, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"
    )
    found = {}
    for entry in completed.stdout.split("\0"):
        if len(entry) > 3:
            found[entry[3:]] = entry[:2]
    return found


def baseline(tree: Tree) -> Baseline:
    """What ``tree`` holds now, beyond its HEAD (``Baseline``)."""
    entries = status(tree)
    return Baseline(entries, {path: _stamp(tree.path / path) for path in entries})


def changed_paths(
    tree: Tree, since: Baseline, ignore: Sequence[str] = (), tolerated: set[str] | None = None
) -> list[str]:
    """The paths of ``tree`` that changed since ``since`` was taken: listed by ``git
    status`` now and not then (or with other letters), listed then and not now, or listed
    both times and rewritten since; new untracked files matching ``ignore`` (build output)
    left out. Sorted. ``tolerated`` holds the untracked files already found to match
    ``ignore``, and gets those found now (what a test run leaves is seen once, and then
    costs no second git command)."""
    now = status(tree)
    changed = {path for path, letters in now.items() if since.entries.get(path) != letters}
    changed |= {path for path in since.entries if path not in now}
    changed |= {
        path
        for path in since.entries
        if path in now and path not in changed and _stamp(tree.path / path) != since.stamps[path]
    }
    if tolerated is None:
        tolerated = set()
    changed -= tolerated
    untracked = {path for path in changed if now.get(path) == "??" and path not in since.entries}
    if untracked and ignore:
        ignorable = untracked - _not_ignored(tree, ignore)
        tolerated |= ignorable
        changed -= ignorable
    return sorted(changed)


def tampered(tree: Tree, tip: str) -> str | None:
    """Why the git records of shared worktree ``tree`` are no longer as made (detached at
    ``tip``, of this repository, with no configuration of its own, found through its
    ``.git`` file), or None. ``git status`` sees none of these."""
    pointer = read_record(tree.path / ".git")
    named = Path(tree.path, pointer.removeprefix("gitdir:").strip())
    if not pointer.startswith("gitdir:") or named.resolve() != tree.git_dir.resolve():
        return "its .git file was rewritten"
    head = read_record(tree.git_dir / "HEAD")
    if head != tip:
        shown = head.removeprefix("ref: refs/heads/") or "nothing"
        return f"its HEAD was moved from {tip[:12]} to {shown[:40]}"
    return worktrees.repointed(tree)


def branch_at(repo: Path, branch: str, commit: str) -> bool:
    """Whether ``branch`` is at ``commit``, read from its loose ref file: True only when
    that file says so (it wins over packed-refs, and git moves a branch by writing it,
    renamed into place). False means "not known": ask git."""
    return read_record(common_dir(repo) / "refs" / "heads" / branch) == commit


def _ignored(tree: Tree, ignore: Sequence[str]) -> list[str]:
    """What of ``tree`` git or ``ignore`` ignores: untracked files, and directories
    (ending in ``/``) holding nothing else."""
    excluded = [item for pattern in ignore for item in ("--exclude", pattern)]
    listed = run_git(
        tree,
        *("ls-files", "-z", "--others", "--ignored", "--directory"),
        *("--exclude-standard", *excluded, "--full-name", "--", ":/"),
    ).stdout
    return [path for path in listed.split("\0") if path]


def _not_ignored(tree: Tree, ignore: Sequence[str]) -> set[str]:
    """The untracked files of ``tree`` that neither git nor ``ignore`` ignores."""
    excluded = [item for pattern in ignore for item in ("--exclude", pattern)]
    listed = run_git(
        tree,
        *("ls-files", "-z", "--others", "--exclude-standard", *excluded),
        *("--full-name", "--", ":/"),
    ).stdout
    return {path for path in listed.split("\0") if path}


def _stamp(path: Path) -> Stamp:
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _remove_directory(path: Path) -> None:
    import shutil  # here: its import (zlib, bz2, lzma) would cost every run's start

    shutil.rmtree(path, ignore_errors=True)
