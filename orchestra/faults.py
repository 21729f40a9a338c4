"""Faults of the machine rather than of a task: is this failure a full disk?

A full disk shows up in three ways: an ``OSError`` with ``ENOSPC`` or ``EDQUOT`` (a log
write, a directory made), SQLite's "database or disk is full", and git's many words for
it ("No space left on device", "write error. Out of diskspace", or only "couldn't write
'…lock'"). The last kind names no cause, so a failed write counts as a full disk when
the file system it went to has no free block or inode left.

Both the store (a database write) and the engine (a log, a worktree, git) meet full disks,
so this sits at the root, below both.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

#: errno values that mean "no room": the device, or the user's quota, is full
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: texts that say the disk is full, whoever wrote them (strerror in the C locale, which
#: git runs with; git's own; SQLite's)
DISK_FULL_SIGNS = (
    os.strerror(errno.ENOSPC),  # No space left on device
    os.strerror(errno.EDQUOT),  # Disk quota exceeded
    "Out of diskspace",
    "database or disk is full",
)
#: texts of a failed write whose cause is not said: a full disk if there is no room
WRITE_FAILED_SIGNS = (
    "couldn't write",
    "could not write",
    "unable to write",
    "cannot write",
    "write error",
    "Unable to create",
)


def is_disk_full_error(error: BaseException) -> bool:
    """Return whether ``error`` (an OSError) says the disk or the quota is full."""
    return isinstance(error, OSError) and error.errno in NO_ROOM_ERRNOS


def says_disk_full(text: str, paths: Iterable[str | os.PathLike] = ()) -> bool:
    """Return whether a failure's ``text`` means a full disk: it says so, or it says a
    write failed while one of ``paths``' file systems has no room left."""
    if any(sign in text for sign in DISK_FULL_SIGNS):
        return True
    return any(sign in text for sign in WRITE_FAILED_SIGNS) and any(map(no_room, paths))


def no_room(path: str | os.PathLike) -> bool:
    """Return whether the file system of ``path`` has no block (or no inode) left for
    this process: root may use the blocks kept back for it, others may not."""
    try:
        found = os.statvfs(path)
    except OSError:
        return False
    blocks = found.f_bfree if os.geteuid() == 0 else found.f_bavail
    inodes = found.f_ffree if os.geteuid() == 0 else found.f_favail
    return blocks == 0 or (found.f_files > 0 and inodes == 0)


def one_line(text: str) -> str:
    """Return ``text`` on one line: git's messages can hold several."""
    return " ".join(text.split())
