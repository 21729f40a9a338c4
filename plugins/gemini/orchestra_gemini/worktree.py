"""What gemini changed in the working tree, seen through git.

The CLI exits 0 when every edit failed and never commits, so the working tree is the
ground truth. The tree may already hold changes when gemini starts (a retry after a
failed check keeps the previous attempt's edits), so the adapter compares a fingerprint
taken before with one taken after: every path ``git status`` lists, with its mode and a
hash of its content.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import orchestra

#: a fingerprint: each path git reports as changed or untracked -> its mode and content hash
Fingerprint = dict[str, str]


class NotAGitTree(Exception):
    """The directory is not in a git working tree (or git cannot be run)."""


def toplevel(directory: str | os.PathLike[str]) -> Path:
    """Return the root of the git working tree holding ``directory``."""
    output = _git(directory, "rev-parse", "--show-toplevel")
    return Path(output.decode().rstrip("\n"))


def fingerprint(root: Path, excluded: Iterable[Path] = ()) -> Fingerprint:
    """Return the fingerprint of the working tree at ``root``, leaving out ``excluded``
    directories (orchestra's own files: its database, logs, the attempt's scratch)."""
    pathspec = ["."]
    for directory in excluded:
        try:
            relative = Path(directory).resolve().relative_to(root.resolve())
        except ValueError:
            continue  # outside the tree: git does not see it anyway
        pathspec.append(f":(top,exclude){relative.as_posix()}")
    arguments = ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"]
    output = _git(root, *arguments, "--", *pathspec)
    return {path: _state(root / path) for path in _paths(output)}


def changed_paths(before: Fingerprint, after: Fingerprint) -> list[str]:
    """Return the paths whose state differs between two fingerprints, sorted."""
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


def task_changes(changed: Sequence[str], scope: orchestra.FileScope) -> list[str]:
    """Return the changed paths that count for the task: those in its write or create
    scope, or all of them when the task names no files to write or create."""
    allowed = [*scope.write, *scope.create]
    return [path for path in changed if not allowed or _matches(path, allowed)]


def _matches(path: str, patterns: Sequence[str]) -> bool:
    """Return whether ``path`` is one of ``patterns`` (globs, or directories and below)."""
    return any(
        fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern.rstrip("/") + "/")
        for pattern in patterns
    )


def _paths(output: bytes) -> list[str]:
    # each entry is "XY path\0"; --no-renames leaves no second path
    return [os.fsdecode(entry[3:]) for entry in output.split(b"\0") if len(entry) > 3]


def _state(path: Path) -> str:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(info.st_mode):
        return f"link {os.readlink(path)}"
    if not stat.S_ISREG(info.st_mode):
        return f"mode {info.st_mode:o}"  # a submodule or another repository's directory
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return f"{info.st_mode:o} {digest.hexdigest()}"


def _git(directory: str | os.PathLike[str], *arguments: str) -> bytes:
    """git's output; it runs as orchestra runs it (``orchestra.git_invocation``): without
    the provider key in its environment, and with the programs a repository's
    configuration can name (a model could set ``core.fsmonitor``) turned off."""
    command, env = orchestra.git_invocation(Path(directory), *arguments)
    try:
        completed = subprocess.run(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            env=env,
        )
    except OSError as error:
        raise NotAGitTree(f"cannot run git: {error.strerror or error}") from error
    if completed.returncode != 0:
        reason = completed.stderr.decode(errors="replace").strip().splitlines()
        raise NotAGitTree(reason[-1] if reason else f"git exited {completed.returncode}")
    return completed.stdout
