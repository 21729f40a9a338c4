"""The queries of the run database: runs, steps, attempts and events, as frozen records.

``Reads`` is the part of ``Store`` that commands (``runs``, ``show``, ``status``,
``report``), sinks and the router read with. Each read takes the store's lock for its one
statement and returns records (``records.py``), JSON columns decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestra.store.errors import UnknownRun
from orchestra.store.lifecycle import RunState, StepState
from orchestra.store.records import (
    AttemptRecord,
    EventRecord,
    ReviewRecord,
    RunRecord,
    StepRecord,
)
from orchestra.store.transactions import Transactions

#: what a run spent: its attempts' usage and its reviews' (the budgets count both)
_SPENDING = (
    "(SELECT run_id, task_id, input_tokens, output_tokens, cost_usd FROM attempts"
    " UNION ALL SELECT run_id, task_id, input_tokens, output_tokens, cost_usd FROM reviews)"
)


#: each step state by its stored text
_STEP_STATES: dict[str, StepState] = {state.value: state for state in StepState}


class Reads(Transactions):
    """The reads of runs, steps, attempts and events, and the tools' records across runs."""

    # -- runs ---------------------------------------------------------------------------

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

    def step_counts(self, run_ids: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """Return {run: {step state: how many steps are in it}} for ``run_ids`` (every run
        by default), in one query: the progress of a list of runs."""
        sql = "SELECT run_id, state, COUNT(*) AS n FROM steps"
        parameters: list[Any] = []
        if run_ids is not None:
            sql += f" WHERE run_id IN ({', '.join('?' * len(run_ids))})"
            parameters.extend(run_ids)
        counts: dict[str, dict[str, int]] = {}
        for row in self._query(sql + " GROUP BY run_id, state", parameters):
            counts.setdefault(row["run_id"], {})[row["state"]] = row["n"]
        return counts

    def usage_by_run(self, run_ids: Sequence[str] | None = None) -> dict[str, tuple[int, float]]:
        """Return {run: (tokens, cost)} the attempts of ``run_ids`` (every run by default)
        reported, as ``usage_by_task`` adds them up."""
        sql = (
            "SELECT run_id, SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0))"
            f" AS tokens, SUM(COALESCE(cost_usd, 0)) AS cost FROM {_SPENDING}"
        )
        parameters: list[Any] = []
        if run_ids is not None:
            sql += f" WHERE run_id IN ({', '.join('?' * len(run_ids))})"
            parameters.extend(run_ids)
        rows = self._query(sql + " GROUP BY run_id", parameters)
        return {row["run_id"]: (row["tokens"] or 0, row["cost"] or 0.0) for row in rows}

    # -- steps --------------------------------------------------------------------------

    def steps(self, run_id: str) -> list[StepRecord]:
        """Return the steps of a run in the order of the task ids it was created with."""
        rows = self._query("SELECT * FROM steps WHERE run_id = ? ORDER BY position", (run_id,))
        if not rows:
            self.run(run_id)  # raises UnknownRun for a run that does not exist
        return [StepRecord.from_row(row) for row in rows]

    def step_states(self, run_id: str) -> list[tuple[str, StepState, int]]:
        """Return each step's task id, state and attempt count, in the order of the task
        ids the run was created with: what the run loop starts from. Plain tuples, not
        ``StepRecord``: 10,000 records took 34 ms of a run's start, these take 8."""
        rows = self._query(
            "SELECT task_id, state, attempts FROM steps WHERE run_id = ? ORDER BY position",
            (run_id,),
        )
        if not rows:
            self.run(run_id)  # raises UnknownRun for a run that does not exist
        states = _STEP_STATES  # a state no StepState names raises, as StepState(...) does
        return [
            (task_id, states.get(state) or StepState(state), attempts)
            for task_id, state, attempts in rows
        ]

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

    def reviews(self, run_id: str, task_id: str | None = None) -> list[ReviewRecord]:
        """Return a run's reviews (only ``task_id``'s if given) in the order they ended."""
        if task_id is None:
            rows = self._query("SELECT * FROM reviews WHERE run_id = ? ORDER BY id", (run_id,))
        else:
            rows = self._query(
                "SELECT * FROM reviews WHERE run_id = ? AND task_id = ? ORDER BY id",
                (run_id, task_id),
            )
        return [ReviewRecord.from_row(row) for row in rows]

    # -- events -------------------------------------------------------------------------

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

    def events_json(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[tuple[int, str, str]]:
        """Return a run's events with seq greater than ``after_seq``, oldest first, each
        as (seq, type, the event as one JSON object of its seq, at, type, task_id, attempt
        and payload), the JSON made by SQLite: for a reader that forwards events as JSON
        (a web page's event stream) without decoding and encoding each one in Python."""
        sql = (
            "SELECT seq, type, json_object('seq', seq, 'at', at, 'type', type,"
            " 'task_id', task_id, 'attempt', attempt, 'payload', json(payload)) AS event"
            " FROM events WHERE run_id = ? AND seq > ? ORDER BY seq"
        )
        parameters: list[Any] = [run_id, after_seq]
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        return [(row[0], row[1], row[2]) for row in self._query(sql, parameters)]

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

    # -- across runs --------------------------------------------------------------------

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
            f" AS tokens, SUM(COALESCE(cost_usd, 0)) AS cost FROM {_SPENDING} WHERE run_id = ?"
            " GROUP BY task_id",
            (run_id,),
        )
        return {row["task_id"]: (row["tokens"] or 0, row["cost"] or 0.0) for row in rows}
