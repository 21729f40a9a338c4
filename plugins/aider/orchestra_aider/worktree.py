"""What git sees in the working tree before and after aider: the ground truth of an attempt.

Aider exits 0 whatever happened in ``--message`` mode, so an attempt succeeded only if the
working tree (or a new commit, should the user turn aider's commits back on) shows a change.
Git runs here directly, with an argument list, so that the attempt's log stays aider's.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orchestra


class NotARepository(Exception):
    """The attempt's directory is not inside a git repository."""


@dataclass(frozen=True)
class Snapshot:
    """The commit checked out and a fingerprint of every changed or untracked file."""

    head: str | None
    #: path relative to the attempt's directory -> (status letters, content digest)
    entries: dict[str, tuple[str, str | None]]


def git(cwd: str, *arguments: str) -> str:
    """Return the output of ``git ARGUMENTS`` run in ``cwd``; raise CalledProcessError.

    git runs as orchestra runs it (``orchestra.git_invocation``): an environment without
    the provider key, and none of the programs a repository's configuration can name (a
    model could set ``core.fsmonitor`` in it), no opportunistic index locks."""
    from pathlib import Path

    command, env = orchestra.git_invocation(Path(cwd), *arguments)
    completed = subprocess.run(
        command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=True, env=env
    )
    return completed.stdout.decode(errors="surrogateescape")


def snapshot(cwd: str) -> Snapshot:
    """Return the state of the working tree around ``cwd``; raise NotARepository."""
    try:
        top = git(cwd, "rev-parse", "--show-toplevel").strip()
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        raise NotARepository(f"{cwd} is not in a git repository") from error
    try:
        head: str | None = git(cwd, "rev-parse", "--verify", "-q", "HEAD").strip() or None
    except subprocess.CalledProcessError:
        head = None  # a repository without commits yet
    status = git(top, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    entries: dict[str, tuple[str, str | None]] = {}
    for letters, path in _status_entries(status):
        relative = os.path.relpath(os.path.join(top, path), cwd)
        entries[relative] = (letters, _digest(os.path.join(top, path)))
    return Snapshot(head, entries)


def _status_entries(status: str) -> Iterable[tuple[str, str]]:
    fields = iter(status.split("\0"))
    for field in fields:
        if len(field) < 4:
            continue
        letters, path = field[:2], field[3:]
        if "R" in letters or "C" in letters:
            next(fields, None)  # the source of a rename or copy follows
        yield letters, path


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read()).hexdigest()
    except OSError:  # deleted, or a directory (a submodule)
        return None


def changed_paths(cwd: str, before: Snapshot, after: Snapshot) -> list[str]:
    """Return the paths (relative to ``cwd``) whose content differs between the snapshots."""
    changed = {
        path
        for path in before.entries.keys() | after.entries.keys()
        if before.entries.get(path) != after.entries.get(path)
    }
    if before.head != after.head and before.head and after.head:
        names = git(cwd, "diff", "--name-only", "-z", "--relative", before.head, after.head)
        changed.update(name for name in names.split("\0") if name)
    return sorted(changed)


def matches(path: str, patterns: Sequence[str]) -> bool:
    """Return whether ``path`` is one of ``patterns`` (globs, or directories and below)."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern):
            return True
        if path.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


def files_matching(cwd: str, patterns: Sequence[str], excluded: Sequence[str]) -> list[str]:
    """Return the files of the repository (tracked, or untracked and not ignored) that
    match ``patterns`` and not ``excluded``, relative to ``cwd``; literal paths of existing
    files count even when git ignores them."""
    if not patterns:
        return []
    listed = git(cwd, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    known = dict.fromkeys(name for name in listed.split("\0") if name)
    for pattern in patterns:
        if os.path.isfile(os.path.join(cwd, pattern)):
            known.setdefault(os.path.normpath(pattern))
    return [
        path
        for path in known
        if matches(path, patterns)
        and not matches(path, excluded)
        and os.path.isfile(os.path.join(cwd, path))
    ]


def task_changes(changed: Sequence[str], scope: orchestra.FileScope) -> list[str]:
    """Return the changed paths that count for the task: those in its write or create
    scope, or all of them when the task names no files to write or create."""
    allowed = [*scope.write, *scope.create]
    return [path for path in changed if not allowed or matches(path, allowed)]
