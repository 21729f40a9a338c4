"""Knowing that nothing was written in a worktree without starting a process: inotify.

A shared worktree (``orchestra.git.shared``) is checked after every attempt that ran
in it, sandboxed or not. ``git status`` answers in one process, about 3 ms in a small repository
(2026-12, two cores) and more in a larger one: most of what such an attempt then costs.
A ``TreeWatch`` asks Linux to note every write in the tree's directories (inotify), so
that the check, when nothing happened, is one ``read`` that finds no event: the tree is
as it was, and git need not be asked. Any event, or a full queue, says only "look":
``git status`` then decides. Measured with ``benchmarks/commands_in_git.py --tasks 100
--sandbox none`` (2026-12, two shared cores): 4.0 ms a task over running in place with
``git status`` after every attempt, 1.6 ms with the watch.

What it watches: each directory of the tree when the watch starts, but the ``.git``
entry and the directories git ignores (a virtualenv the setup made: thousands of
directories whose writes are build output anyway); a directory made later is seen being
made, which is an event, and is watched from then on (``quiet`` adds it, before the
caller compares: an empty directory is no change to git, but a file written in it later
is). What it notes: a file written (also one opened for writing and
closed: an ``mmap`` write reports nothing else), made, removed, renamed, its attributes
changed; a watched directory removed or moved. Reading is never an event.

Where there is no inotify (not Linux), too many directories for the user's watches, or
no instance left, ``start`` returns None and the caller asks git every time.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

# from <sys/inotify.h>
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
#: every write to a directory's entries or to the files in it
WRITES = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
)
#: an event's fixed part (``struct inotify_event``): watch, mask, cookie, name's length
_EVENT = struct.Struct("iIII")


class TreeWatch:
    """The writes noted in one tree's directories since the last ``quiet``."""

    def __init__(self, library, descriptor: int, top: Path, left_out: set[Path]) -> None:
        self._library = library
        self._descriptor: int | None = descriptor
        self._top = top
        self._left_out = left_out
        #: each watch's directory, to watch the directories made in it
        self._directories: dict[int, Path] = {}

    def quiet(self) -> bool:
        """Whether nothing was written since the watch started or the last call; the
        events found (or a full queue) are taken, so that a caller who then finds the
        tree as it was can say so and be told of the next write only. The directories
        made meanwhile are watched before it returns (after a full queue, which may have
        lost their events: every directory of the tree again)."""
        if self._descriptor is None:
            return False
        written = False
        while True:
            try:
                events = os.read(self._descriptor, 65536)
            except BlockingIOError:
                return not written
            except OSError:
                self.close()
                return False
            if not events:
                return not written
            written = True
            try:
                self._follow(events)
            except OSError:  # no watch left: from now on, the caller asks git every time
                self.close()
                return False

    def close(self) -> None:
        """Stop watching (the descriptor is closed; later calls of ``quiet`` say False)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def add(self, top: Path) -> None:
        """Watch ``top`` and every directory under it but those left out; raise OSError
        when a watch cannot be added."""
        assert self._descriptor is not None
        for directory, names, _ in os.walk(top):
            watch = self._library.inotify_add_watch(
                self._descriptor, os.fsencode(directory), WRITES | _IN_ONLYDIR
            )
            if watch < 0:
                if not os.path.isdir(directory):  # removed meanwhile: its removal is an event
                    continue
                raise OSError("no watch left")
            self._directories[watch] = Path(directory)
            # os.walk does not follow a link to a directory: what it points to is not
            # the tree's (a write through it is a write outside, not orchestra's to see)
            names[:] = [name for name in names if Path(directory, name) not in self._left_out]

    def _follow(self, events: bytes) -> None:
        """Watch the directories that ``events`` say were made or moved in."""
        offset = 0
        while offset + _EVENT.size <= len(events):
            watch, mask, _, length = _EVENT.unpack_from(events, offset)
            name = events[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                self.add(self._top)
            elif mask & _IN_IGNORED:  # its directory is gone
                self._directories.pop(watch, None)
            elif mask & _IN_ISDIR and mask & (_IN_CREATE | _IN_MOVED_TO):
                parent = self._directories.get(watch)
                made = parent / os.fsdecode(name) if parent is not None else None
                if made is not None and made not in self._left_out:
                    self.add(made)


def start(top: Path, skipped: Iterable[str] = ()) -> TreeWatch | None:
    """Watch every directory under ``top`` but ``.git`` and ``skipped`` (paths relative to
    ``top``, POSIX style, a directory's with or without its trailing ``/``); None where
    that cannot be done."""
    library = _libc()
    if library is None:
        return None
    descriptor = library.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if descriptor < 0:
        return None
    left_out = {Path(top, name.rstrip("/")) for name in skipped}
    left_out.add(Path(top, ".git"))
    watch = TreeWatch(library, descriptor, top, left_out)
    try:
        watch.add(top)
    except OSError:
        watch.close()
        return None
    return watch


def _libc():
    """The C library, for inotify (ctypes: the standard library has no binding), or None
    off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: 5 ms of imports, for runs that watch a tree only

    try:
        library = ctypes.CDLL(None, use_errno=True)
        library.inotify_init1.argtypes = [ctypes.c_int]
        library.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return library
