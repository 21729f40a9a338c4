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
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestra.errors import DiskFull, OrchestraError
from orchestra.faults import is_disk_full_error
from orchestra.models import Usage
from orchestra.store import lock
from orchestra.store.errors import StoreError, UnknownRun, database_fault
from orchestra.store.lifecycle import (
    TERMINAL_RUN_STATES,
    TERMINAL_STEP_STATES,
    RunState,
    StepState,
    check_run_transition,
    check_step_transition,
)
from orchestra.store.migrations import migrate
from orchestra.store.records import (
    AttemptRecord,
    BreakerRecord,
    EventRecord,
    RunRecord,
    StepRecord,
)

_FINISH_ATTEMPT = (
    "UPDATE attempts SET ended_at = ?, outcome = ?, exit_code = ?, error_class = ?,"
    " message = ?, retry_after = ?, input_tokens = ?, cached_input_tokens = ?,"
    " output_tokens = ?, cost_usd = ?, diff = ?, started_at = COALESCE(?, started_at),"
    " feedback = ?, fingerprint = ?"
)
_INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, at, task_id, attempt, type, payload)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

#: how long a writer waits for another process's transaction before giving up, in seconds
BUSY_TIMEOUT = 10.0


def new_run_id(now: float) -> str:
    """Return a run id like ``20261126-031522-ab12``: UTC time of creation, then 4 random
    hex digits. Ids sort by creation time to the second."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + os.urandom(2).hex()


class Store:
    """The SQLite database of runs; see the module docstring for threads and secrets."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._connection = connection
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
            raise _file_fault(error, "cannot make the directory of the run database") from None
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

    def close(self) -> None:
        """Release every run this store claimed and close the database."""
        with self._mutex:
            for claim in self._claims.values():
                claim.release()
            self._claims.clear()
            self._connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------

    def create_run(
        self,
        workstream_id: str,
        file: str | None,
        content_hash: str | None,
        task_ids: Sequence[str],
        settings: Mapping[str, Any] | None = None,
        *,
        claim: bool = False,
    ) -> str:
        """Return the id of a new pending run whose steps, one per task, are pending.

        ``settings`` (JSON-serialisable, already free of secrets) records how the run was
        configured. Writes the event ``run.created``. With ``claim``, this store also
        claims the run (as ``claim_run``) in the same transaction: no other process ever
        sees it pending and undriven, so a pending run whose lock is free was left by a
        dead process (``mark_interrupted_if_orphaned``).
        """
        now = time.time()
        claimed: lock.RunLock | None = None
        owner = (os.getpid(), os.uname().nodename) if claim else (None, None)
        try:
            with self._transaction() as db:
                run_id = new_run_id(now)
                while db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                    run_id = new_run_id(now)  # another run was made in the same second
                db.execute(
                    "INSERT INTO runs (id, workstream_id, workstream_file, content_hash, state,"
                    " created_at, settings, owner_pid, owner_host)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        workstream_id,
                        file,
                        content_hash,
                        RunState.PENDING.value,
                        now,
                        _json(settings or {}),
                        *owner,
                    ),
                )
                db.executemany(
                    "INSERT INTO steps (run_id, task_id, position, state) VALUES (?, ?, ?, ?)",
                    (
                        (run_id, task_id, position, StepState.PENDING.value)
                        for position, task_id in enumerate(task_ids)
                    ),
                )
                if claim:  # after the first write: a read-only database says so first
                    claimed = self._claims[run_id] = self._acquire(run_id)
                payload = {"workstream_id": workstream_id, "file": file, "tasks": len(task_ids)}
                self._append_event(db, run_id, now, "run.created", payload)
                if claim:
                    claimed_by = {"pid": owner[0], "host": owner[1]}
                    self._append_event(db, run_id, now, "run.claimed", claimed_by)
        except BaseException:
            if claimed is not None:  # nothing was recorded: let the lock go
                self._claims.pop(run_id, None)
                claimed.release()
            raise
        return run_id

    def set_run_state(
        self,
        run_id: str,
        new: RunState | str,
        *,
        event_type: str | None = None,
        payload: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> int:
        """Move a run to ``new`` and write its event; return the event's seq.

        The event is ``run.<new>`` unless ``event_type`` says otherwise (``run.resumed``);
        its payload has ``from``, ``to``, ``error`` if given, and ``payload``. Raises
        IllegalTransition when the run may not go there, and refuses ``running`` unless
        this store has claimed the run (an unclaimed running run looks orphaned).
        """
        now = time.time()
        with self._transaction() as db:
            current = self._run_state(db, run_id)
            state = check_run_transition(f"run {run_id}", current, new)
            if state is RunState.RUNNING and not self.holds(run_id):
                raise RuntimeError(f"run {run_id} goes to running only once this store claims it")
            db.execute(
                "UPDATE runs SET state = ?, error = COALESCE(?, error),"
                " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
                # a canceled run that resume continues has not ended any more
                " ended_at = CASE WHEN ? THEN ? WHEN ? THEN NULL ELSE ended_at END WHERE id = ?",
                (
                    state.value,
                    error,
                    state is RunState.RUNNING,
                    now,
                    state in TERMINAL_RUN_STATES,
                    now,
                    state is RunState.RUNNING,
                    run_id,
                ),
            )
            details = {"from": str(current), "to": state.value}
            if error is not None:
                details["error"] = error
            return self._append_event(
                db, run_id, now, event_type or f"run.{state.value}", {**details, **(payload or {})}
            )

    def run(self, run_id: str) -> RunRecord:
        """Return the run ``run_id``; raise UnknownRun if there is none."""
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise UnknownRun(f"no run {run_id!r} in the database", file=str(self.path))
        return RunRecord.from_row(rows[0])

    def runs(
        self, state: RunState | str | None = None, limit: int | None = None
    ) -> list[RunRecord]:
        """Return the runs, newest first; only those in ``state`` if given; at most ``limit``."""
        sql = "SELECT * FROM runs"
        parameters: list[Any] = []
        if state is not None:
            sql += " WHERE state = ?"
            parameters.append(RunState(state).value)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        return [RunRecord.from_row(row) for row in self._query(sql, parameters)]

    # -- steps --------------------------------------------------------------------------

    def set_step_state(
        self,
        run_id: str,
        task_id: str,
        new: StepState | str,
        *,
        reason: str | None = None,
        payload: Mapping[str, Any] | None = None,
        current: StepState | str | None = None,
    ) -> int:
        """Move a step to ``new``, recording ``reason`` (or clearing the old one), and
        write the event ``step.<new>``; return the event's seq. Raises IllegalTransition
        when the step may not go there.

        ``current``, when the caller knows it (the run loop does), saves reading it: the
        update applies only if the step is still in that state, else the state is read
        and the move checked against what is really there."""
        now = time.time()
        entity = f"step {task_id!r} of run {run_id}"
        with self._transaction() as db:
            if current is not None:
                before = _step_value(current)
                state = check_step_transition(entity, before, new)
                if not self._update_step(db, run_id, task_id, state, reason, now, before):
                    current = None  # not what the caller thought: read it below
            if current is None:
                row = db.execute(
                    "SELECT state FROM steps WHERE run_id = ? AND task_id = ?", (run_id, task_id)
                ).fetchone()
                if row is None:
                    raise self._unknown_step(db, run_id, task_id)
                before = row["state"]
                state = check_step_transition(entity, before, new)
                self._update_step(db, run_id, task_id, state, reason, now, before)
            value = _STEP_VALUES[state]
            details = {"from": before, "to": value}
            if reason is not None:
                details["reason"] = reason
            return self._append_event(
                db, run_id, now, f"step.{value}", {**details, **(payload or {})}, task_id
            )

    @staticmethod
    def _update_step(
        db: sqlite3.Connection,
        run_id: str,
        task_id: str,
        state: StepState,
        reason: str | None,
        now: float,
        before: str,
    ) -> bool:
        """Write a step's new state if it is still ``before``; return whether it was."""
        cursor = db.execute(
            "UPDATE steps SET state = ?, reason = ?,"
            " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
            " ended_at = CASE WHEN ? THEN ? ELSE ended_at END"
            " WHERE run_id = ? AND task_id = ? AND state = ?",
            (
                _STEP_VALUES[state],
                reason,
                state is StepState.RUNNING,
                now,
                state in TERMINAL_STEP_STATES,
                now,
                run_id,
                task_id,
                before,
            ),
        )
        return cursor.rowcount == 1

    def steps(self, run_id: str) -> list[StepRecord]:
        """Return the steps of a run in the order of the task ids it was created with."""
        rows = self._query("SELECT * FROM steps WHERE run_id = ? ORDER BY position", (run_id,))
        if not rows:
            self.run(run_id)  # raises UnknownRun for a run that does not exist
        return [StepRecord.from_row(row) for row in rows]

    def step(self, run_id: str, task_id: str) -> StepRecord:
        """Return one step; raise UnknownRun if the run or its task does not exist."""
        rows = self._query(
            "SELECT * FROM steps WHERE run_id = ? AND task_id = ?", (run_id, task_id)
        )
        if not rows:
            with self._mutex:
                raise self._unknown_step(self._connection, run_id, task_id)
        return StepRecord.from_row(rows[0])

    # -- attempts -----------------------------------------------------------------------

    def begin_attempt(
        self,
        run_id: str,
        task_id: str,
        current: StepState | str,
        tool: str,
        *,
        command: str | None = None,
        log_path: str | os.PathLike | None = None,
        tool_version: str | None = None,
        route_reason: str | None = None,
        capabilities: str | None = None,
        payload: Mapping[str, Any] | None = None,
        number: int | None = None,
    ) -> int:
        """Move a step from ``current`` to ``running`` and record its next attempt, in one
        transaction with the events ``step.running`` and ``attempt.started``; return the
        attempt's number. The run loop's way to start an attempt: it knows the step's
        state (and ``number``, the attempt's, when it passes it), so nothing is read back.
        Raises IllegalTransition when the step is not in ``current`` or may not run from
        there."""
        now = time.time()
        before = _step_value(current)
        entity = f"step {task_id!r} of run {run_id}"
        check_step_transition(entity, before, StepState.RUNNING)
        log = None if log_path is None else str(log_path)
        with self._transaction() as db:
            row = None
            if number is not None:
                cursor = db.execute(
                    "UPDATE steps SET state = 'running', reason = NULL, attempts = ?,"
                    " started_at = COALESCE(started_at, ?)"
                    " WHERE run_id = ? AND task_id = ? AND state = ? AND attempts = ?",
                    (number, now, run_id, task_id, before, number - 1),
                )
                row = (number,) if cursor.rowcount == 1 else None
            if row is None:  # the number was not passed, or not the one recorded
                row = db.execute(
                    "UPDATE steps SET state = 'running', reason = NULL, attempts = attempts + 1,"
                    " started_at = COALESCE(started_at, ?)"
                    " WHERE run_id = ? AND task_id = ? AND state = ? RETURNING attempts",
                    (now, run_id, task_id, before),
                ).fetchone()
            if row is None:
                found = db.execute(
                    "SELECT state FROM steps WHERE run_id = ? AND task_id = ?", (run_id, task_id)
                ).fetchone()
                if found is None:
                    raise self._unknown_step(db, run_id, task_id)
                check_step_transition(entity, found["state"], StepState.RUNNING)
                raise RuntimeError(f"{entity} is {found['state']}, not {before}")
            number = row[0]
            cursor = db.execute(
                "INSERT INTO attempts (run_id, task_id, number, tool, tool_version, started_at,"
                " command, log_path, route_reason, capabilities)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    task_id,
                    number,
                    tool,
                    tool_version,
                    now,
                    command,
                    log,
                    route_reason,
                    capabilities,
                ),
            )
            row_id = cursor.lastrowid
            assert row_id is not None  # an INSERT's
            self._attempt_rows[(run_id, task_id, number)] = row_id
            details = {"from": before, "to": StepState.RUNNING.value, **(payload or {})}
            self._append_event(db, run_id, now, "step.running", details, task_id)
            started = {"tool": tool, "log_path": log}
            if tool_version is not None:
                started["tool_version"] = tool_version
            self._append_event(db, run_id, now, "attempt.started", started, task_id, number)
        return number

    def finish_attempt(
        self,
        run_id: str,
        task_id: str,
        number: int,
        *,
        outcome: str,
        exit_code: int | None = None,
        error_class: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        usage: Usage | None = None,
        diff: str | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
        feedback: str | None = None,
        fingerprint: str | None = None,
    ) -> int:
        """Record how attempt ``number`` ended and write ``attempt.finished``; return the
        event's seq. ``message`` and ``diff`` must already be redacted. The step's state
        is not changed: the caller decides it from the outcome. ``started_at``, when
        given, replaces the start recorded by ``begin_attempt`` (the run loop records an
        attempt a moment before a worker takes it); ``ended_at`` is when it ended, if not
        now (the run loop records it a moment after)."""
        now = time.time()
        ended = now if ended_at is None else ended_at
        usage = usage or Usage()
        # the row begin_attempt inserted, when this store did: found by rowid, not index
        row_id = self._attempt_rows.pop((run_id, task_id, number), None)
        with self._transaction() as db:
            cursor = db.execute(
                _FINISH_ATTEMPT
                + (" WHERE id = ? AND" if row_id is not None else " WHERE")
                + " run_id = ? AND task_id = ? AND number = ? AND ended_at IS NULL",
                (
                    ended,
                    outcome,
                    exit_code,
                    error_class,
                    message,
                    retry_after,
                    usage.input_tokens,
                    usage.cached_input_tokens,
                    usage.output_tokens,
                    usage.cost_usd,
                    diff,
                    started_at,
                    feedback,
                    fingerprint,
                    *((row_id,) if row_id is not None else ()),
                    run_id,
                    task_id,
                    number,
                ),
            )
            if cursor.rowcount != 1:
                raise self._attempt_not_open(db, run_id, task_id, number)
            payload = {
                "outcome": outcome,
                "exit_code": exit_code,
                "error_class": error_class,
                "message": message,
                "retry_after": retry_after,
                **{name: value for name, value in _usage_items(usage) if value is not None},
            }
            return self._append_event(db, run_id, now, "attempt.finished", payload, task_id, number)

    def attempts(self, run_id: str, task_id: str | None = None) -> list[AttemptRecord]:
        """Return a run's attempts (only ``task_id``'s if given) in the order they started."""
        if task_id is None:
            rows = self._query("SELECT * FROM attempts WHERE run_id = ? ORDER BY id", (run_id,))
        else:
            rows = self._query(
                "SELECT * FROM attempts WHERE run_id = ? AND task_id = ? ORDER BY number",
                (run_id, task_id),
            )
        return [AttemptRecord.from_row(row) for row in rows]

    # -- events -------------------------------------------------------------------------

    def add_event(
        self,
        run_id: str,
        type: str,
        payload: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        attempt: int | None = None,
    ) -> int:
        """Append an event to a run and return its seq. ``payload`` must be
        JSON-serialisable and already redacted."""
        with self._transaction() as db:
            if not self.holds(run_id):  # a run this store drives exists: no need to look
                self._run_state(db, run_id)
            return self._append_event(
                db, run_id, time.time(), type, payload or {}, task_id, attempt
            )

    def events(
        self,
        run_id: str,
        after_seq: int = 0,
        limit: int | None = None,
        *,
        types: Sequence[str] | None = None,
    ) -> list[EventRecord]:
        """Return a run's events with seq greater than ``after_seq`` (only those of
        ``types`` if given), oldest first."""
        sql = "SELECT * FROM events WHERE run_id = ? AND seq > ?"
        parameters: list[Any] = [run_id, after_seq]
        if types is not None:
            sql += f" AND type IN ({', '.join('?' * len(types))})"
            parameters.extend(types)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        return [EventRecord.from_row(row) for row in self._query(sql, parameters)]

    def last_event_at(self, run_id: str) -> float | None:
        """Return when the run's last event happened (for a run that ended without
        saying so, the last sign of life), or None if it has none."""
        rows = self._query(
            "SELECT at FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
        )
        return rows[0]["at"] if rows else None

    def last_event_seq(self, run_id: str) -> int:
        """Return the seq of the run's last event, 0 if it has none (what was recorded
        after this point is ``events(run_id, after_seq=…)``)."""
        rows = self._query("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,))
        return rows[0][0]

    # -- breakers and small values ------------------------------------------------------

    def breaker(self, tool: str) -> BreakerRecord | None:
        """Return the saved breaker of ``tool``, or None if it has none."""
        rows = self._query("SELECT * FROM breakers WHERE tool = ?", (tool,))
        return BreakerRecord.from_row(rows[0]) if rows else None

    def breakers(self) -> list[BreakerRecord]:
        """Return every saved breaker, by tool name."""
        return [
            BreakerRecord.from_row(row)
            for row in self._query("SELECT * FROM breakers ORDER BY tool")
        ]

    def set_breaker(
        self,
        tool: str,
        state: str,
        *,
        failures: int,
        opened_at: float | None = None,
        last_error_class: str | None = None,
        open_until: float | None = None,
    ) -> None:
        """Save the breaker of ``tool`` (replacing what was saved)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO breakers (tool, state, failures, opened_at,"
                " last_error_class, updated_at, open_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tool, state, failures, opened_at, last_error_class, time.time(), open_until),
            )

    def track_record(self, capabilities: str, recent: int = 20) -> dict[str, tuple]:
        """Return {tool: (attempts, successes, durations of the last ``recent``, newest
        last)} of the finished attempts, in any run, of tasks that asked for
        ``capabilities`` (no index serves this: it is read once per run and key)."""
        rows = self._query(
            "SELECT tool, outcome, ended_at - started_at AS seconds FROM attempts"
            " WHERE capabilities = ? AND ended_at IS NOT NULL"
            " AND outcome NOT IN ('canceled', 'interrupted') ORDER BY id",
            (capabilities,),
        )
        found: dict[str, tuple] = {}
        for row in rows:
            attempts, successes, durations = found.get(row["tool"], (0, 0, ()))
            found[row["tool"]] = (
                attempts + 1,
                successes + (row["outcome"] == "succeeded"),
                (*durations, row["seconds"])[-recent:],
            )
        return found

    def usage_by_task(self, run_id: str) -> dict[str, tuple[int, float]]:
        """Return {task: (tokens, cost)} the run's attempts reported (input + output
        tokens; cost in the tools' currency, USD)."""
        rows = self._query(
            "SELECT task_id, SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0))"
            " AS tokens, SUM(COALESCE(cost_usd, 0)) AS cost FROM attempts WHERE run_id = ?"
            " GROUP BY task_id",
            (run_id,),
        )
        return {row["task_id"]: (row["tokens"] or 0, row["cost"] or 0.0) for row in rows}

    def get_value(self, key: str, default: Any = None) -> Any:
        """Return the JSON value saved under ``key`` (the router's position …), or default."""
        rows = self._query("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_value(self, key: str, value: Any) -> None:
        """Save a JSON-serialisable value under ``key``."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
                (key, _json(value), time.time()),
            )

    # -- who drives a run ---------------------------------------------------------------

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

    def _acquire(self, run_id: str) -> lock.RunLock:
        """Take the lock of ``run_id``; a lock file that cannot be written is a one-line
        error (a full disk, a read-only directory), not a traceback."""
        try:
            return lock.acquire(self.lock_directory, run_id)
        except OSError as error:
            path = lock.lock_path(self.lock_directory, run_id)
            raise _file_fault(error, f"cannot lock run {run_id}", path) from None

    def release_run(self, run_id: str) -> None:
        """Stop driving ``run_id`` (its owner columns keep the last driver, for the record)."""
        with self._mutex:
            claim = self._claims.pop(run_id, None)
            self._last_seq.pop(run_id, None)
            if claim is not None:
                claim.release()

    def holds(self, run_id: str) -> bool:
        """Return whether this store has claimed ``run_id``."""
        claim = self._claims.get(run_id)
        return claim is not None and claim.held

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

    # -- plumbing -----------------------------------------------------------------------

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
        row = (run_id, seq, at, task_id, attempt, type, _json(payload))
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

    def _attempt_not_open(
        self, db: sqlite3.Connection, run_id: str, task_id: str, number: int
    ) -> Exception:
        """Return the error for finishing an attempt that is missing or already finished."""
        row = db.execute(
            "SELECT ended_at FROM attempts WHERE run_id = ? AND task_id = ? AND number = ?",
            (run_id, task_id, number),
        ).fetchone()
        if row is not None:
            return RuntimeError(
                f"attempt {number} of step {task_id!r} of run {run_id} has already finished"
            )
        step = db.execute(
            "SELECT 1 FROM steps WHERE run_id = ? AND task_id = ?", (run_id, task_id)
        ).fetchone()
        if step is None:
            return self._unknown_step(db, run_id, task_id)
        return RuntimeError(f"step {task_id!r} of run {run_id} has no attempt {number}")

    def _unknown_step(self, db: sqlite3.Connection, run_id: str, task_id: str) -> UnknownRun:
        """Return the error for a missing step (raising UnknownRun for a missing run)."""
        self._run_state(db, run_id)
        return UnknownRun(f"run {run_id} has no task {task_id!r}", file=str(self.path))


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


def _file_fault(error: OSError, doing: str, path: Path | None = None) -> OrchestraError:
    """The one-line error for a file orchestra keeps beside the database (its directory,
    a lock file) that could not be written: a full disk, or ``doing`` and why. ``path``
    names the file when the error does not (a failed write names none)."""
    where = error.filename or (None if path is None else str(path))
    reason = error.strerror or str(error)
    if is_disk_full_error(error):
        return DiskFull(f"{doing}: {reason}", file=where)
    return StoreError(f"{doing}: {reason}", file=where)


#: states of a run that a live process holds (its lock): without one, it died. A run is
#: claimed in the transaction that creates it, so a pending run is never unclaimed.
_DRIVEN_STATES = (RunState.RUNNING.value, RunState.PENDING.value)

#: each step state's plain string, by the state or by the string itself (a state is a
#: str equal to its value): Enum calls and ``.value`` cost the run loop ten times more
_STEP_VALUES: dict[str, str] = {state: state.value for state in StepState}


def _step_value(state: StepState | str) -> str:
    """The plain string of a step state; ValueError for a string that is no state."""
    found = _STEP_VALUES.get(state)
    return found if found is not None else StepState(state).value


def _usage_items(usage: Usage) -> list[tuple[str, Any]]:
    return [
        ("input_tokens", usage.input_tokens),
        ("cached_input_tokens", usage.cached_input_tokens),
        ("output_tokens", usage.output_tokens),
        ("cost_usd", usage.cost_usd),
    ]


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _not_serialisable(value: Any) -> Any:
    return _ENCODER.default(value)  # raises TypeError, as json.dumps does


# json's C encoder made once: JSONEncoder.encode makes one per call, a third of the cost
# of the small payloads the run loop writes by the thousand. No check for cycles: payloads
# are plain data the store's callers build.
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # private: typeshed has none
_C_ENCODE = (
    _MAKE_ENCODER(
        None, _not_serialisable, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    if _MAKE_ENCODER is not None
    else None
)


def _json(value: Any) -> str:
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


class _Transaction:
    """One write transaction of a store, or a part of the one already open (a batch).

    ``BEGIN IMMEDIATE`` takes the write lock before the current state is read, so the
    check and the write see the same state even with other processes writing. Events of
    driven runs are written just before the outermost commit. A class, not a generator:
    the run loop opens thousands of these a second.
    """

    __slots__ = ("_outer", "_store")

    def __init__(self, store: Store) -> None:
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


def _roll_back(store: Store) -> None:
    store._pending_events.clear()
    store._attempt_rows.clear()  # rows the rollback may have taken back
    store._last_seq.clear()  # numbers handed out in the rolled-back transaction
    if store._connection.in_transaction:
        try:
            store._connection.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite may have rolled back itself (a full disk …)
            if store._connection.in_transaction:
                raise
