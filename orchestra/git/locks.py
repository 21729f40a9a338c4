"""git's lock files, and telling one a killed git left from one a live process holds.

git takes a lock by creating ``<file>.lock`` exclusively and removes it when done; a git
killed in between (SIGKILL, a power cut) leaves it, and every later command that needs it
stops with "Unable to create '….lock': File exists" until someone removes it. orchestra
removes such a lock only when no live process can be holding it: none has the file open,
and no git process is working in the repository (git may close a lock's descriptor a
moment before it renames the file, so an open descriptor alone is not enough). Whatever
else, a lock a live process of the user holds is never touched: the caller waits for it.

Everything here reads ``/proc``; where there is none, no lock is ever taken for stale.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterable
from pathlib import Path

# git names the lock itself ("Unable to create '<lock>'"), except for a configuration
# file, where it names the file: its lock is ``<file>.lock`` beside it. git 2.39 prints
# that path relative to the directory it worked in when it found the repository itself
# (".git/config", "config"), absolute otherwise.
_LOCK_MESSAGE = re.compile(r"Unable to create '([^'\n]+\.lock)': File exists")
_CONFIG_MESSAGE = re.compile(r"could not lock config file (.+): File exists", re.MULTILINE)
#: the ending of every lock file git takes; nothing else is ever removed here
SUFFIX = ".lock"

#: what was removed, newest last, for whoever reports repairs (``take_removed``)
_REMOVED: collections.deque[Path] = collections.deque(maxlen=1000)


def lock_in(stderr: str, where: Path) -> Path | None:
    """Return the lock file a git error message says exists, or None; a relative path in
    the message is taken as relative to ``where``, the directory git worked in."""
    found = _LOCK_MESSAGE.search(stderr)
    if found:
        return Path(where, found.group(1))
    found = _CONFIG_MESSAGE.search(stderr)
    if found:
        return Path(where, found.group(1) + SUFFIX)
    return None


def remove_if_stale(lock: Path, places: Iterable[Path]) -> bool:
    """Remove ``lock`` when no live process can hold it; return whether it was removed.

    ``places`` are where a git working on the repository would run (its worktrees and its
    git directory). A path that does not name a lock file (``*.lock``) is never removed.
    """
    if not lock.name.endswith(SUFFIX) or lock.name == SUFFIX or held(lock, places):
        return False
    try:
        lock.unlink()
    except FileNotFoundError:
        return True  # released meanwhile: as good
    except OSError:
        return False
    _REMOVED.append(lock)
    return True


def take_removed() -> list[Path]:
    """Return the locks removed as stale since the last call, and forget them."""
    removed = []
    while _REMOVED:
        removed.append(_REMOVED.popleft())
    return removed


def held(lock: Path, places: Iterable[Path]) -> bool:
    """Whether a live process may be holding ``lock``: one has it open, or a git process
    works in one of ``places``. True when that cannot be known (no ``/proc``)."""
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return True
    target = os.path.abspath(lock)
    roots = [os.path.abspath(place) for place in places]
    for pid in pids:
        if int(pid) == os.getpid():
            continue
        if _has_open(pid, target):
            return True
        if _is_git(pid) and _works_in(pid, roots):
            return True
    return False


def _has_open(pid: str, target: str) -> bool:
    directory = f"/proc/{pid}/fd"
    try:
        descriptors = os.listdir(directory)
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(f"{directory}/{descriptor}") == target:
                return True
        except OSError:
            continue
    return False


def _is_git(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/comm", "rb") as comm:
            return comm.read().strip().startswith(b"git")
    except OSError:
        return False


def _works_in(pid: str, roots: list[str]) -> bool:
    """Whether the process's working directory, or the GIT_DIR it was given, lies in one
    of ``roots`` (True when that cannot be read: it might)."""
    try:
        where = [os.readlink(f"/proc/{pid}/cwd")]
    except FileNotFoundError:
        return False  # gone meanwhile
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            for entry in environ.read().split(b"\0"):
                if entry.startswith(b"GIT_DIR="):
                    where.append(os.fsdecode(entry[8:]))
    except OSError:
        pass
    return any(_inside(path, root) for path in where for root in roots)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
