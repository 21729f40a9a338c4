"""The store's connection, behind its one lock, and the write transactions made on it.

``Transactions`` is the part of ``Store`` that every other part stands on: the state a
store keeps (its connection, its claims, the event numbers of the runs it drives), a
write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, or a part of a ``batch()``), a read
(``_query``), the append of an event, and the errors for a run or step that is missing.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestra.store import lock
from orchestra.store.errors import UnknownRun, database_fault, file_fault
from orchestra.store.json_text import to_json

_INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, at, task_id, attempt, type, payload)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class Transactions:
    """A store's connection and state, its transactions, reads and event appends."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._connection = connection
        # A connection is in a reference cycle (with its statement cache): dropped, it
        # stays open until the collector finds it, which at exit it never does (the CLI
        # freezes every object). Closed when the store goes, or at exit: the last
        # connection's close writes the write-ahead log back into the database file.
        self._closing = weakref.finalize(self, connection.close)
        self._mutex = threading.RLock()
        self._claims: dict[str, lock.RunLock] = {}
        #: last event seq of the runs this store drives: only their driver appends to
        #: them, so the number need not be read back for every event
        self._last_seq: dict[str, int] = {}
        #: rows of those runs' events, written just before the transaction commits
        self._pending_events: list[tuple[Any, ...]] = []
        #: (run, task, number) -> rowid of the attempts begun here and not yet finished
        self._attempt_rows: dict[tuple[str, str, int], int] = {}
        self.path = path
        #: where the per-run lock files live: ``locks/`` next to the database
        self.lock_directory = path.parent / "locks"

    def holds(self, run_id: str) -> bool:
        """Return whether this store has claimed ``run_id``."""
        claim = self._claims.get(run_id)
        return claim is not None and claim.held

    def _acquire(self, run_id: str) -> lock.RunLock:
        """Take the lock of ``run_id``; a lock file that cannot be written is a one-line
        error (a full disk, a read-only directory), not a traceback."""
        try:
            return lock.acquire(self.lock_directory, run_id)
        except OSError as error:
            path = lock.lock_path(self.lock_directory, run_id)
            raise file_fault(error, f"cannot lock run {run_id}", path) from None

    def _append_event(
        self,
        db: sqlite3.Connection,
        run_id: str,
        at: float,
        type: str,
        payload: Mapping[str, Any],
        task_id: str | None = None,
        attempt: int | None = None,
    ) -> int:
        """Append an event inside the caller's transaction and return its seq (last + 1).

        Events of a run this store drives are numbered from memory and written together
        just before the transaction commits; others are numbered from the table."""
        held = self.holds(run_id)
        last = self._last_seq.get(run_id) if held else None
        if last is None:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()
        seq = last + 1
        row = (run_id, seq, at, task_id, attempt, type, to_json(payload))
        if held:
            self._last_seq[run_id] = seq
            self._pending_events.append(row)
        else:
            db.execute(_INSERT_EVENT, row)
        return seq

    def batch(self) -> _Transaction:
        """Group several writes in one transaction: all of them land, or none.

        Each write inside still checks its own transition and writes its own event; the
        batch only saves commits (the run loop records an attempt's end, its step's new
        state and the dependents that became ready together)."""
        return self._transaction()

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._mutex:
            try:
                return self._connection.execute(sql, parameters).fetchall()
            except sqlite3.Error as error:
                raise self._fault(error) from error

    def _fault(self, error: sqlite3.Error) -> Exception:
        """The error to raise for ``error``: one a user can act on when the database file
        is at fault (full disk, read-only …), else ``error`` itself (a bug)."""
        return database_fault(error, str(self.path)) or error

    def _run_state(self, db: sqlite3.Connection, run_id: str) -> str:
        row = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id!r} in the database", file=str(self.path))
        return row["state"]

    def _unknown_step(self, db: sqlite3.Connection, run_id: str, task_id: str) -> UnknownRun:
        """Return the error for a missing step (raising UnknownRun for a missing run)."""
        self._run_state(db, run_id)
        return UnknownRun(f"run {run_id} has no task {task_id!r}", file=str(self.path))


class _Transaction:
    """One write transaction of a store, or a part of the one already open (a batch).

    ``BEGIN IMMEDIATE`` takes the write lock before the current state is read, so the
    check and the write see the same state even with other processes writing. Events of
    driven runs are written just before the outermost commit. A class, not a generator:
    the run loop opens thousands of these a second.
    """

    __slots__ = ("_outer", "_store")

    def __init__(self, store: Transactions) -> None:
        self._store = store
        self._outer = False

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        store._mutex.acquire()
        connection = store._connection
        if not connection.in_transaction:  # else inside batch(): the outer one commits
            try:
                connection.execute("BEGIN IMMEDIATE")
            except BaseException as error:
                store._mutex.release()
                if isinstance(error, sqlite3.Error):
                    raise store._fault(error) from error
                raise
            self._outer = True
        return connection

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        store = self._store
        try:
            if not self._outer:
                return
            connection = store._connection
            if kind is None:
                try:
                    if store._pending_events:
                        connection.executemany(_INSERT_EVENT, store._pending_events)
                        store._pending_events.clear()
                    connection.execute("COMMIT")
                    return
                except BaseException as failure:
                    _roll_back(store)
                    if isinstance(failure, sqlite3.Error):
                        raise store._fault(failure) from failure
                    raise
            _roll_back(store)
            if isinstance(error, sqlite3.Error):  # a statement of the transaction failed
                fault = store._fault(error)
                if fault is not error:
                    raise fault from error
        finally:
            store._mutex.release()


def _roll_back(store: Transactions) -> None:
    store._pending_events.clear()
    store._attempt_rows.clear()  # rows the rollback may have taken back
    store._last_seq.clear()  # numbers handed out in the rolled-back transaction
    if store._connection.in_transaction:
        try:
            store._connection.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite may have rolled back itself (a full disk …)
            if store._connection.in_transaction:
                raise
