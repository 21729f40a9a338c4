"""Runs, their steps, attempts and events recorded: each change of state one transaction.

``RunWrites`` is the part of ``Store`` that the run loop calls thousands of times a
second (``begin_attempt``, ``finish_attempt``, ``set_step_state``, ``add_event``): each
write reads the current state (or trusts the caller's, in a conditional ``UPDATE``),
checks the move against ``lifecycle.py``'s tables, writes the new state and appends its
event, so an illegal move changes nothing. Nothing here may hold a secret: the store
writes what it is given (see ``database.py``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from orchestra.models import ReviewResult, Usage
from orchestra.store import lock
from orchestra.store.json_text import to_json
from orchestra.store.lifecycle import (
    FOUND_LANDED,
    TERMINAL_RUN_STATES,
    TERMINAL_STEP_STATES,
    IllegalTransition,
    RunState,
    StepState,
    check_run_transition,
    check_step_transition,
)
from orchestra.store.transactions import Transactions

_FINISH_ATTEMPT = (
    "UPDATE attempts SET ended_at = ?, outcome = ?, exit_code = ?, error_class = ?,"
    " message = ?, retry_after = ?, input_tokens = ?, cached_input_tokens = ?,"
    " output_tokens = ?, cost_usd = ?, diff = ?, started_at = COALESCE(?, started_at),"
    " feedback = ?, fingerprint = ?"
)


def new_run_id(now: float) -> str:
    """Return a run id like ``20261126-031522-ab12``: UTC time of creation, then 4 random
    hex digits. Ids sort by creation time to the second."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + os.urandom(2).hex()


class RunWrites(Transactions):
    """The writes of runs, steps, attempts and events: ``Store``'s part the run loop drives."""

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
        project_root: str | None = None,
    ) -> str:
        """Return the id of a new pending run whose steps, one per task, are pending.

        ``settings`` (JSON-serialisable, already free of secrets) records how the run was
        configured, ``project_root`` the directory it works in (where resume goes on).
        Writes the event ``run.created``. With ``claim``, this store also claims the run
        (as ``claim_run``) in the same transaction: no other process ever sees it pending
        and undriven, so a pending run whose lock is free was left by a dead process
        (``mark_interrupted_if_orphaned``).
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
                    " created_at, settings, owner_pid, owner_host, project_root)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        workstream_id,
                        file,
                        content_hash,
                        RunState.PENDING.value,
                        now,
                        to_json(settings or {}),
                        *owner,
                        project_root,
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

    def record_found_landed(self, run_id: str, task_id: str, attempt: int, *, reason: str) -> int:
        """Record succeeded a step that has not started or is waiting to be tried again
        (``FOUND_LANDED``) whose change resume found on the run's result, brought by
        attempt number ``attempt``; write ``step.succeeded`` saying so; return its seq.

        A power cut may take the database back a few transactions while git keeps the
        landing: the step's attempt is then unrecorded, and none is made up here (its
        tool and usage are not known); the step counts at least ``attempt`` attempts.
        Raises IllegalTransition from any other state."""
        now = time.time()
        entity = f"step {task_id!r} of run {run_id}"
        succeeded = StepState.SUCCEEDED.value
        with self._transaction() as db:
            row = db.execute(
                "SELECT state FROM steps WHERE run_id = ? AND task_id = ?", (run_id, task_id)
            ).fetchone()
            if row is None:
                raise self._unknown_step(db, run_id, task_id)
            before = row["state"]
            if before not in FOUND_LANDED:
                raise IllegalTransition(entity, before, succeeded)
            db.execute(
                "UPDATE steps SET state = ?, reason = ?, attempts = MAX(attempts, ?),"
                " started_at = COALESCE(started_at, ?), ended_at = ?"
                " WHERE run_id = ? AND task_id = ?",
                (succeeded, reason, attempt, now, now, run_id, task_id),
            )
            details: dict[str, Any] = {"from": before, "to": succeeded, "reason": reason}
            details.update(attempt=attempt, found_landed=True)
            return self._append_event(db, run_id, now, "step.succeeded", details, task_id)

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

    def record_review(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        review: ReviewResult,
        *,
        tool_version: str | None = None,
        route_reason: str | None = None,
    ) -> None:
        """Record the review of attempt ``attempt``'s change (comments, message and edits
        already redacted), with the event its verdict is: ``review.approved``,
        ``review.rejected`` or, when the reviewer gave none, ``review.failed``."""
        usage = review.usage
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO reviews (run_id, task_id, attempt, round, tool, tool_version,"
                " route_reason, started_at, ended_at, outcome, verdict, comments, error_class,"
                " message, retry_after, input_tokens, cached_input_tokens, output_tokens,"
                " cost_usd, log_path, edits, landed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    task_id,
                    attempt,
                    review.round,
                    review.tool,
                    tool_version,
                    route_reason,
                    review.started_at,
                    review.ended_at if review.ended_at is not None else now,
                    review.outcome,
                    review.verdict,
                    review.comments,
                    review.error_class,
                    review.message,
                    review.retry_after,
                    usage.input_tokens,
                    usage.cached_input_tokens,
                    usage.output_tokens,
                    usage.cost_usd,
                    review.log_path,
                    review.edits,
                    int(review.landed),
                ),
            )
            self._append_event(
                db, run_id, now, review_event(review), review_payload(review), task_id, attempt
            )

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


#: each step state's plain string, by the state or by the string itself (a state is a
#: str equal to its value): Enum calls and ``.value`` cost the run loop ten times more
_STEP_VALUES: dict[str, str] = {state: state.value for state in StepState}


def _step_value(state: StepState | str) -> str:
    """The plain string of a step state; ValueError for a string that is no state."""
    found = _STEP_VALUES.get(state)
    return found if found is not None else StepState(state).value


def review_event(review: ReviewResult) -> str:
    """The event a review's end is: ``review.approved``, ``review.rejected`` or
    ``review.failed`` (no verdict: the reviewer failed, or its answer had none)."""
    if review.verdict == "approve":
        return "review.approved"
    if review.verdict == "request_changes":
        return "review.rejected"
    return "review.failed"


def review_payload(review: ReviewResult) -> dict[str, Any]:
    """What a review's event says: who reviewed, which round, the comments (or why it
    failed), whether the change landed, what it cost, and the paths of discarded edits."""
    payload: dict[str, Any] = {"tool": review.tool, "round": review.round}
    for name in ("verdict", "comments", "error_class", "message", "retry_after"):
        value = getattr(review, name)
        if value is not None:
            payload[name] = value
    payload["landed"] = review.landed
    if review.edits:
        payload["edits_discarded"] = edited_paths(review.edits)
    payload.update((name, value) for name, value in _usage_items(review.usage) if value is not None)
    return payload


def edited_paths(diff: str) -> list[str]:
    """The paths a unified diff changes (its ``+++ b/…`` and ``--- a/…`` lines), sorted."""
    paths = set()
    for line in diff.splitlines():
        if line.startswith(("+++ b/", "--- a/")):
            paths.add(line[6:])
    return sorted(paths)


def _usage_items(usage: Usage) -> list[tuple[str, Any]]:
    return [
        ("input_tokens", usage.input_tokens),
        ("cached_input_tokens", usage.cached_input_tokens),
        ("output_tokens", usage.output_tokens),
        ("cost_usd", usage.cost_usd),
    ]
