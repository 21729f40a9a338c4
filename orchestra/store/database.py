"""The run database: runs, their steps, attempts and events, and the tools' breakers.

Every change of state is one transaction that reads the current state, checks the move
against ``lifecycle.py``'s tables, writes the new state and appends its event; so the
state a reader sees always has its event, and an illegal move changes nothing.

Nothing stored may hold a secret. The store writes what it is given: commands, messages,
diffs, settings and event payloads must already be redacted by the caller
(``engine/process.py`` redacts what tools print and the commands they run).

Threads: a Store keeps one SQLite connection (opened with ``check_same_thread=False``)
and serialises every use of it, reads included, behind one lock. It is meant to be used
by the orchestrator's thread; other threads (sinks, a progress display) may call it, and
will wait their turn. Processes: several may open the same database; SQLite's locking
and the busy timeout keep their transactions apart, and ``claim_run`` keeps two of them
from driving the same run.

``Store`` is one class made of parts, each in its own module: ``transactions.py`` (the
connection, its lock, transactions and batches, the append of events), ``run_writes.py``
(runs, steps, attempts and events recorded), ``reads.py`` (the queries) and
``breakers_and_kv.py`` (what outlasts a run). This module opens and closes the
database and keeps the claims of who drives a run.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from orchestra.errors import DiskFull, OrchestraError
from orchestra.store import lock
from orchestra.store.breakers_and_kv import BreakersAndValues
from orchestra.store.errors import StoreError, UnknownRun, database_fault, file_fault
from orchestra.store.lifecycle import RunState, check_run_transition
from orchestra.store.migrations import migrate
from orchestra.store.reads import Reads
from orchestra.store.run_writes import RunWrites

#: how long a writer waits for another process's transaction before giving up, in seconds
BUSY_TIMEOUT = 10.0

# sqlite3 binds a parameter that is not exactly an int, float or str (a None, a bool)
# only after looking for an adapter: a tuple, a dict lookup, and two attribute lookups
# that fail, about 0.6 µs each time; a run records some twenty such values per task.
# Adapters for both, which give what sqlite3 binds without them (NULL, 0 or 1), make it
# one lookup and a call in C: 10 µs less per task. Process-wide, as adapters are, and
# the same values for any other user of sqlite3 in the process.
_NOTHING: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)  # _NOTHING.get(None) is None
sqlite3.register_adapter(bool, int)


class Store(RunWrites, Reads, BreakersAndValues):
    """The SQLite database of runs; see the module docstring for threads and secrets."""

    @classmethod
    def open(cls, path: str | os.PathLike, *, read_only: bool = False) -> Store:
        """Return the store at ``path``, creating the file and its directories if needed
        and applying the migrations the database lacks.

        A database in a directory this process cannot write is opened read-only, so that
        reading commands still work; a write then raises a one-line ``StoreError``.
        ``read_only`` opens an existing database so for a command that must not change
        it (``orchestra plan``): nothing is made or migrated (a database an older
        orchestra wrote cannot be opened so: OrchestraError)."""
        path = Path(path)
        if read_only:
            try:
                return cls(_connect(path, read_only=True), path)
            except sqlite3.Error as error:
                raise _open_fault(error, path) from None
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                # a directory orchestra made is its own: git (and a tool judging its
                # edits by git status) must not see the database, logs and scratch
                (path.parent / ".gitignore").write_text("*\n")
        except OSError as error:
            raise file_fault(error, "cannot make the directory of the run database") from None
        try:
            connection = _connect(path)
        except sqlite3.Error as error:
            if not (path.exists() and not os.access(path.parent, os.W_OK)):
                raise _open_fault(error, path) from None
            # SQLite cannot make the -shm file beside it: read what the file holds
            try:
                connection = _connect(path, read_only=True)
            except sqlite3.Error as again:
                raise _open_fault(again, path) from None
        return cls(connection, path)

    @classmethod
    def open_existing(cls, path: str | os.PathLike) -> Store:
        """Return the store of recorded runs at ``path`` for reading or changing them: a
        missing database is an OrchestraError (it is never made just to say a run is
        unknown), and runs whose process died are marked interrupted on the way in."""
        if not Path(path).exists():
            raise OrchestraError(f"no run database at {path}: no run has been recorded here yet")
        store = cls.open(path)
        try:
            store.mark_orphaned_runs()
        except (StoreError, DiskFull):
            # a read-only or full database: reading commands still read it, and a command
            # that writes fails on its own write, with the same one-line error
            pass
        return store

    def close(self) -> None:
        """Release every run this store claimed and close the database."""
        with self._mutex:
            for claim in self._claims.values():
                claim.release()
            self._claims.clear()
            self._closing()  # the connection's close, now rather than when dropped

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- who drives a run ---------------------------------------------------------------
    # (``holds`` and ``_acquire`` are in transactions.py: events and create_run need them)

    def claim_run(self, run_id: str) -> None:
        """Make this store the one driver of ``run_id`` until ``release_run`` or ``close``
        (or this process's death); raise RunLocked if another process (or another Store)
        drives it. Records the owner's pid and host and writes ``run.claimed``."""
        self.run(run_id)
        with self._mutex:
            if self.holds(run_id):
                return
            claim = self._acquire(run_id)
            try:
                pid, host = os.getpid(), os.uname().nodename
                with self._transaction() as db:
                    db.execute(
                        "UPDATE runs SET owner_pid = ?, owner_host = ? WHERE id = ?",
                        (pid, host, run_id),
                    )
                    self._append_event(
                        db, run_id, time.time(), "run.claimed", {"pid": pid, "host": host}
                    )
            except BaseException:
                claim.release()
                raise
            self._claims[run_id] = claim

    def release_run(self, run_id: str) -> None:
        """Stop driving ``run_id`` (its owner columns keep the last driver, for the record)."""
        with self._mutex:
            claim = self._claims.pop(run_id, None)
            self._last_seq.pop(run_id, None)
            if claim is not None:
                claim.release()

    def is_locked(self, run_id: str) -> bool:
        """Return whether any process (this one included) is driving ``run_id``."""
        return lock.is_locked(self.lock_directory, run_id)

    def mark_interrupted_if_orphaned(self, run_id: str) -> bool:
        """Move a run that is ``running`` or ``pending`` but that no process drives to
        ``interrupted`` (event ``run.interrupted``, naming the dead owner); return whether
        it did. A pending one died before its first step started (SIGKILL in its first
        milliseconds): interrupted, it resumes from the start.

        The lock is probed inside the transaction: a process that claims the run later
        sees it interrupted, and one that claimed it before keeps it running.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT state, owner_pid, owner_host FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise UnknownRun(f"no run {run_id!r} in the database", file=str(self.path))
            if row["state"] not in _DRIVEN_STATES or self.is_locked(run_id):
                return False
            check_run_transition(f"run {run_id}", row["state"], RunState.INTERRUPTED)
            db.execute(
                "UPDATE runs SET state = ? WHERE id = ?", (RunState.INTERRUPTED.value, run_id)
            )
            payload = {
                "from": row["state"],
                "to": RunState.INTERRUPTED.value,
                "owner_pid": row["owner_pid"],
                "owner_host": row["owner_host"],
            }
            self._append_event(db, run_id, time.time(), "run.interrupted", payload)
            return True

    def mark_orphaned_runs(self) -> list[str]:
        """Mark every orphaned run (running or pending, and not driven) interrupted;
        return their ids."""
        driven = [run.id for state in _DRIVEN_STATES for run in self.runs(state=state)]
        return [run_id for run_id in driven if self.mark_interrupted_if_orphaned(run_id)]


def _connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    """Open the database, set it up (WAL …) and bring its schema up to date.

    ``read_only`` opens it with ``mode=ro``, and with ``immutable=1`` when there is no
    write-ahead log to read (a database closed cleanly): SQLite cannot read a WAL
    database in a directory it cannot write without its -shm file, and with no -wal
    there is nothing but the file to read."""
    if read_only:
        from urllib.parse import quote

        target = f"file:{quote(str(path.absolute()))}?mode=ro"
        wal = path.with_name(path.name + "-wal")
        if not wal.exists() or wal.stat().st_size == 0:
            target += "&immutable=1"
    else:
        target = str(path)
    connection = sqlite3.connect(
        target,
        isolation_level=None,
        check_same_thread=False,
        timeout=BUSY_TIMEOUT,
        uri=read_only,
    )
    try:
        connection.row_factory = sqlite3.Row
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        if not read_only:
            # A new database is made in SQLite's rollback-journal mode and then switched
            # to WAL: four fsyncs at the default setting, 10-15 ms of the first run in a
            # project on this machine's disk (benchmarks/startup.py runs in a fresh
            # directory each time). Switched without them: the file holds no run yet, and
            # an existing database is in WAL mode already, where the switch writes nothing.
            connection.execute("PRAGMA synchronous = OFF")
            connection.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a killed process loses nothing committed; only a power
        # cut may lose the last transactions, and the file stays consistent.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        migrate(connection, file=str(path))
    except BaseException:
        connection.close()
        raise
    return connection


def _open_fault(error: sqlite3.Error, path: Path) -> OrchestraError:
    """The one-line error for a database that could not be opened."""
    doing = "cannot open the run database"
    return database_fault(error, str(path), doing) or StoreError(
        f"{doing}: {error}", file=str(path)
    )


#: states of a run that a live process holds (its lock): without one, it died. A run is
#: claimed in the transaction that creates it, so a pending run is never unclaimed.
_DRIVEN_STATES = (RunState.RUNNING.value, RunState.PENDING.value)
