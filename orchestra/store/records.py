"""What the store gives back: one frozen attrs record per row of runs, steps, attempts,
events and breakers. JSON columns come back decoded, states as RunState / StepState."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

import attrs

from orchestra import classes
from orchestra.models import Usage
from orchestra.store.lifecycle import RunState, StepState


@classes.frozen
class RunRecord:
    """One run of a workstream: where it is, when, who drives it and how it was set up."""

    id: str
    workstream_id: str
    workstream_file: str | None
    content_hash: str | None
    state: RunState
    created_at: float
    started_at: float | None
    ended_at: float | None
    owner_pid: int | None
    owner_host: str | None
    settings: Mapping[str, Any] = attrs.field(hash=False)
    error: str | None
    #: the directory the run works in; None for a run an older orchestra recorded
    project_root: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        return cls(
            id=row["id"],
            workstream_id=row["workstream_id"],
            workstream_file=row["workstream_file"],
            content_hash=row["content_hash"],
            state=RunState(row["state"]),
            created_at=row["created_at"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            owner_pid=row["owner_pid"],
            owner_host=row["owner_host"],
            settings=json.loads(row["settings"]),
            error=row["error"],
            project_root=row["project_root"],
        )


@classes.frozen
class StepRecord:
    """One task of a run: its state, how many attempts it has had, and why it is where it is."""

    run_id: str
    task_id: str
    position: int
    state: StepState
    attempts: int
    reason: str | None
    started_at: float | None
    ended_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StepRecord:
        return cls(
            run_id=row["run_id"],
            task_id=row["task_id"],
            position=row["position"],
            state=StepState(row["state"]),
            attempts=row["attempts"],
            reason=row["reason"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
        )


@classes.frozen
class AttemptRecord:
    """One run of one tool on one task; ``ended_at`` is None while it runs (or if it was
    interrupted and not yet closed)."""

    id: int
    run_id: str
    task_id: str
    number: int
    tool: str
    started_at: float
    ended_at: float | None
    exit_code: int | None
    outcome: str | None
    error_class: str | None
    message: str | None
    retry_after: float | None
    input_tokens: int | None
    cached_input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    log_path: str | None
    diff: str | None
    command: str | None
    #: the tool's version as found when the attempt started, where it has one
    tool_version: str | None = None
    #: why routing chose the tool ("auto: codex 9/10, aider 4/7")
    route_reason: str | None = None
    #: the capabilities the task asked for, sorted and comma-joined (the track record key)
    capabilities: str | None = None
    #: what the next attempt is told to fix (a failed check's output), bounded
    feedback: str | None = None
    #: the normalised failure, for the loop breaker
    fingerprint: str | None = None

    @property
    def usage(self) -> Usage:
        """The tokens and cost the attempt reported."""
        return _usage_of(self)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None while it has not ended."""
        return None if self.ended_at is None else self.ended_at - self.started_at

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AttemptRecord:
        return cls(**{field.name: row[field.name] for field in attrs.fields(cls)})


@classes.frozen
class ReviewRecord:
    """A second tool's review of one attempt's change: its verdict (``approve``,
    ``request_changes``, or None when the reviewer failed), comments, what it cost, and
    whether the change landed after it."""

    id: int
    run_id: str
    task_id: str
    #: the attempt whose change was reviewed
    attempt: int
    #: the task's review round (1 for the first)
    round: int
    tool: str
    tool_version: str | None
    route_reason: str | None
    started_at: float | None
    ended_at: float | None
    outcome: str
    verdict: str | None
    comments: str | None
    error_class: str | None
    message: str | None
    retry_after: float | None
    input_tokens: int | None
    cached_input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    log_path: str | None
    #: what the reviewer changed in the change's worktree, as a diff (discarded)
    edits: str | None
    landed: bool

    @property
    def usage(self) -> Usage:
        """The tokens and cost the review reported."""
        return _usage_of(self)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, where both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ReviewRecord:
        values = {field.name: row[field.name] for field in attrs.fields(cls)}
        values["landed"] = bool(values["landed"])
        return cls(**values)


@classes.frozen
class EventRecord:
    """One thing that happened in a run, numbered ``seq`` = 1, 2, 3 … within the run."""

    run_id: str
    seq: int
    at: float
    type: str
    task_id: str | None
    attempt: int | None
    payload: Mapping[str, Any] = attrs.field(hash=False)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> EventRecord:
        return cls(
            run_id=row["run_id"],
            seq=row["seq"],
            at=row["at"],
            type=row["type"],
            task_id=row["task_id"],
            attempt=row["attempt"],
            payload=json.loads(row["payload"]),
        )


@classes.frozen
class BreakerRecord:
    """A tool's circuit breaker as last saved (its state names belong to the engine)."""

    tool: str
    state: str
    failures: int
    opened_at: float | None
    last_error_class: str | None
    updated_at: float
    #: until when an open breaker keeps its tool out of routing
    open_until: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> BreakerRecord:
        return cls(**{field.name: row[field.name] for field in attrs.fields(cls)})


def _usage_of(record: AttemptRecord | ReviewRecord) -> Usage:
    """The usage columns an attempt's row and a review's row both have, as a ``Usage``."""
    return Usage(
        input_tokens=record.input_tokens,
        cached_input_tokens=record.cached_input_tokens,
        output_tokens=record.output_tokens,
        cost_usd=record.cost_usd,
    )
