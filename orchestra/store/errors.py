"""What can go wrong with the run database that a user can cause or fix."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from orchestra.errors import DiskFull, OrchestraError
from orchestra.faults import is_disk_full_error


class StoreError(OrchestraError):
    """A problem with the run database: unreadable, too new, or a run it lacks."""


class UnknownRun(StoreError):
    """A run id (or a task of a run) that the database does not hold."""


class SchemaTooNew(StoreError):
    """A database written by a newer orchestra, with migrations this one does not know."""


class RunLocked(StoreError):
    """A run that another orchestra process is driving right now."""


# SQLite's primary result codes (the low byte of an extended one) that a user's machine
# causes: https://www.sqlite.org/rescode.html
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


def database_fault(
    error: sqlite3.Error, file: str, doing: str | None = None
) -> OrchestraError | None:
    """Return the error to show for a fault of the database file ``file`` (full disk,
    read-only, damaged, locked too long), or None when ``error`` is a bug of orchestra's
    (a bad statement) and should stay as it is. ``doing`` says what failed ("cannot open
    the run database"), when the cause alone would not."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary in (_SQLITE_READONLY, _SQLITE_PERM):
        return StoreError(
            f"the run database is read-only ({error}): make it and its directory writable,"
            " or choose another with --db",
            file=file,
        )
    if primary == _SQLITE_FULL:
        return DiskFull(f"{doing or 'cannot write the run database'}: {error}", file=file)
    if primary == _SQLITE_IOERR:
        from orchestra.faults import no_room

        # SQLite says "full" for a write the disk refused, but only "I/O error" when it
        # could not grow its shared-memory file: look whether the disk has room
        if no_room(os.path.dirname(os.path.abspath(file))):
            return DiskFull(f"{doing or 'cannot write the run database'}: {error}", file=file)
        return StoreError(f"{doing or 'cannot use the run database'}: {error}", file=file)
    if primary == _SQLITE_CANTOPEN:
        return StoreError(f"{doing or 'cannot open the run database'}: {error}", file=file)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreError(f"{doing or 'the run database is damaged'}: {error}", file=file)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreError(
            f"{doing or 'the run database stayed locked by another process'}: {error}",
            file=file,
        )
    return None


def file_fault(error: OSError, doing: str, path: Path | None = None) -> OrchestraError:
    """The one-line error for a file orchestra keeps beside the database (its directory,
    a lock file) that could not be written: a full disk, or ``doing`` and why. ``path``
    names the file when the error does not (a failed write names none)."""
    where = error.filename or (None if path is None else str(path))
    reason = error.strerror or str(error)
    if is_disk_full_error(error):
        return DiskFull(f"{doing}: {reason}", file=where)
    return StoreError(f"{doing}: {reason}", file=where)
