"""What claude changed in the working tree, seen through git.

Claude exits 0 when its edits were refused or failed, so the working tree is the ground
truth. The tree may already hold changes when claude starts (a retry after a failed check
keeps the previous attempt's edits), so the adapter compares a fingerprint taken before
with one taken after: every path ``git status`` lists, with its mode and a hash of its
content. orchestra's own directory (``.orchestra``) is left out.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import orchestra

#: a fingerprint: each path git reports as changed or untracked -> its mode and content hash
Fingerprint = dict[str, str]
#: what git status lists, one entry per path, no renames, every untracked file
_STATUS = ("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")


class NotAGitTree(Exception):
    """The directory is not in a git working tree (or git cannot be run)."""


def toplevel(directory: str | os.PathLike[str]) -> Path:
    """Return the root of the git working tree holding ``directory``."""
    return Path(_git(Path(directory), "rev-parse", "--show-toplevel").rstrip("\n"))


def fingerprint(root: Path) -> Fingerprint:
    """Return the fingerprint of the working tree at ``root``."""
    output = _git(root, *_STATUS, "--", ".", ":(top,exclude).orchestra")
    # each entry is "XY path\0"; --no-renames leaves no second path
    paths = [entry[3:] for entry in output.split("\0") if len(entry) > 3]
    return {path: _state(root / path) for path in paths}


def changed_paths(before: Fingerprint, after: Fingerprint) -> list[str]:
    """Return the paths whose state differs between two fingerprints, sorted."""
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


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


def _git(where: Path, *arguments: str) -> str:
    """git's output, run as orchestra runs git: none of orchestra's secrets in its
    environment, no program a repository's configuration names (a model could set
    ``core.fsmonitor``)."""
    try:
        return orchestra.run_git(where, *arguments).stdout
    except orchestra.GitError as error:
        lines = str(error).strip().splitlines()
        raise NotAGitTree(lines[-1] if lines else "git failed") from None
    except OSError as error:
        raise NotAGitTree(f"cannot run git: {error.strerror or error}") from error
