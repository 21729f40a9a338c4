"""Copying the user's untracked files (``[workspace] copy``: ``.env`` …) into a worktree,
never through a symbolic link.

The copy is orchestra's own doing, outside any sandbox, and a worktree holds what the
run's tasks committed: a link there (``config -> /somewhere``) would have orchestra write
the user's secret wherever it points. So every directory on the way is entered with
``O_NOFOLLOW`` (made when missing, by ``mkdir`` relative to its parent's descriptor), and
every file is created anew with ``O_EXCL | O_NOFOLLOW``: a link anywhere on the way, or
in the place of a file, stops the copy with ``LinkInTheWay`` and nothing is written
through it. Links inside a copied directory are copied as links, as ``shutil.copytree``
with ``symlinks=True`` does; sockets and pipes in it are left out.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from orchestra.errors import OrchestraError

__all__ = ["LinkInTheWay", "copy_into"]

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class LinkInTheWay(OrchestraError):
    """A copy's destination goes through a symbolic link (or leaves the worktree)."""


def copy_into(top: Path, name: str, source: Path) -> None:
    """Copy ``source`` (a file, or a directory and what it holds) to ``name`` (a path
    relative to ``top``, ``..`` taken as text) under the directory ``top``, with its
    mode and times, replacing the files there; raise ``LinkInTheWay`` when ``name``
    leaves ``top`` or a link is on its way."""
    parts = PurePosixPath(posixpath.normpath(name)).parts
    if not parts or parts[0] in ("/", "..", "."):
        raise LinkInTheWay(f"{name} is not a path inside the worktree")
    with _opened(os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)) as directory:
        _copy(source, directory, parts, name)


def _copy(source: Path, directory: int, parts: tuple[str, ...], name: str) -> None:
    """Go down ``parts[:-1]`` from ``directory``, then copy ``source`` there."""
    if len(parts) > 1:
        with _opened(_enter(directory, parts[0], name)) as inner:
            _copy(source, inner, parts[1:], name)
    elif source.is_dir():
        with _opened(_enter(directory, parts[0], name)) as inner:
            _copy_tree(source, inner, name)
    else:
        _copy_file(source, directory, parts[0], name)


def _copy_tree(source: Path, directory: int, name: str) -> None:
    """Copy what the directory ``source`` holds into the open ``directory``."""
    for entry in sorted(os.scandir(source), key=lambda entry: entry.name):
        shown = f"{name}/{entry.name}"
        if entry.is_symlink():
            _make_room(directory, entry.name, shown)
            os.symlink(os.readlink(entry.path), entry.name, dir_fd=directory)
        elif entry.is_dir(follow_symlinks=False):
            with _opened(_enter(directory, entry.name, shown)) as inner:
                _copy_tree(Path(entry.path), inner, shown)
        elif entry.is_file(follow_symlinks=False):  # not a socket or a pipe
            _copy_file(Path(entry.path), directory, entry.name, shown)
    _copy_times(source.stat(), directory)


def _enter(directory: int, part: str, name: str) -> int:
    """Open the directory ``part`` of the open ``directory`` (made when missing), never
    following a link; return its descriptor."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(part, 0o755, dir_fd=directory)
    try:
        return os.open(part, _DIRECTORY, dir_fd=directory)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refused(directory, part, name) from None
        raise


def _copy_file(source: Path, directory: int, part: str, name: str) -> None:
    """Write ``source``'s content, mode and times as the new file ``part`` of the open
    ``directory``, the file there first removed (a link there is refused)."""
    _make_room(directory, part, name)
    try:
        target = os.open(part, _NEW_FILE, 0o600, dir_fd=directory)
    except FileExistsError:  # made meanwhile: whatever it is, it is not written through
        raise _refused(directory, part, name) from None
    with open(source, "rb") as reading, os.fdopen(target, "wb") as writing:
        shutil.copyfileobj(reading, writing)
        writing.flush()
        _copy_times(os.fstat(reading.fileno()), writing.fileno())


def _make_room(directory: int, part: str, name: str) -> None:
    """Remove the file ``part`` of the open ``directory``, if there is one: a link there
    is refused, and a directory too (a file cannot replace it)."""
    try:
        found = os.lstat(part, dir_fd=directory)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(found.st_mode):
        raise _refused(directory, part, name)
    os.unlink(part, dir_fd=directory)


def _copy_times(status: os.stat_result, descriptor: int) -> None:
    os.fchmod(descriptor, stat.S_IMODE(status.st_mode))
    os.utime(descriptor, ns=(status.st_atime_ns, status.st_mtime_ns))


def _refused(directory: int, part: str, name: str) -> LinkInTheWay:
    try:
        mode = os.lstat(part, dir_fd=directory).st_mode
    except OSError:
        kind = "something that appeared meanwhile"
    else:
        kind = next((kind for test, kind in _KINDS if test(mode)), "a special file")
    why = " (orchestra writes nothing through a link)" if kind == "a symbolic link" else ""
    return LinkInTheWay(f"{name} not copied: {part} in the worktree is {kind}{why}")


_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISREG, "a file"),
)


@contextlib.contextmanager
def _opened(descriptor: int) -> Iterator[int]:
    try:
        yield descriptor
    finally:
        os.close(descriptor)
