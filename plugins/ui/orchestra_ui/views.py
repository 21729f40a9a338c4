"""The JSON the page reads: the list of runs, one run, one task, one attempt's log.

Every function here takes ids the server looked up (never paths from a URL) and returns
plain dicts and lists for ``json.dumps``; what each holds is the contract in
``plugins/ui`` (docs/ui.md). The run's facts come from ``orchestra.gather_run``, as
``orchestra report`` gets them; the lists of runs from the store's one-query reads.
"""

from __future__ import annotations

import heapq
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orchestra

#: the step states in which a step is done (what "progress" counts)
ENDED_STEP_STATES = frozenset({"succeeded", "failed", "skipped", "canceled", "quarantined"})
#: the run states the list and the run page treat as still moving
LIVE_RUN_STATES = ("running", "pending")
#: error classes of an attempt whose change was not merged, for a reason worth showing
REFUSED_ERROR_CLASSES = frozenset({"scope_violation", "merge_conflict"})
#: lines of the last attempt's log a task view shows
LOG_TAIL_LINES = 20
#: at most this many bytes of a log in one answer, and "the end" of one (offset -1)
LOG_CHUNK_BYTES = 256 * 1024
LOG_END_BYTES = 64 * 1024


# -- runs ---------------------------------------------------------------------------------


def run_summary(
    record: orchestra.RunRecord,
    counts: Mapping[str, int],
    usage: tuple[int, float],
    now: float | None = None,
) -> dict[str, Any]:
    """Return the Run object of a run record, its steps by state and its (tokens, cost)."""
    end = record.ended_at
    if end is None and record.state.value in LIVE_RUN_STATES and record.started_at is not None:
        end = time.time() if now is None else now
    tokens, cost = usage
    return {
        "id": record.id,
        "state": record.state.value,
        "workstream": record.workstream_id,
        "file": record.workstream_file,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "seconds": None if record.started_at is None or end is None else end - record.started_at,
        "tasks": sum(counts.values()),
        "done": sum(n for state, n in counts.items() if state in ENDED_STEP_STATES),
        "counts": dict(counts),
        "tokens": tokens,
        "cost_usd": round(cost, 6),
        "error": record.error,
    }


def runs_view(store: orchestra.Store, state: str | None = None) -> dict[str, Any]:
    """Return ``{"runs": [Run…]}`` newest first (only those in ``state`` if given), read
    in three queries whatever the number of runs. Raises ValueError for an unknown state."""
    records = store.runs(state=state)
    ids = [record.id for record in records]
    counts = store.step_counts(ids) if ids else {}
    usage = store.usage_by_run(ids) if ids else {}
    now = time.time()
    return {
        "runs": [
            run_summary(record, counts.get(record.id, {}), usage.get(record.id, (0, 0.0)), now)
            for record in records
        ]
    }


def mark_if_orphaned(store: orchestra.Store, records: Iterable[orchestra.RunRecord]) -> bool:
    """Mark interrupted the runs among ``records`` that say they run but whose process
    died (their lock is free); return whether any was. The lock is probed first, so a
    run that is driven costs a file probe, not a write transaction."""
    marked = False
    for record in records:
        if record.state.value in LIVE_RUN_STATES and not store.is_locked(record.id):
            marked = store.mark_interrupted_if_orphaned(record.id) or marked
    return marked


# -- one run ------------------------------------------------------------------------------


def run_view(store: orchestra.Store, facts: orchestra.RunFacts, last_seq: int) -> dict[str, Any]:
    """Return the RunView of a run's facts: the run, its graph, its tasks, the bars of
    its attempts by worker lane, the tools' breakers; ``last_seq`` is the event the
    facts are at least as new as (the page follows the events after it)."""
    record = store.run(facts.id)
    bars, lanes = attempt_bars(facts.tasks)
    counts = {state: n for state, n in facts.tasks_by_state.items() if n}
    run = run_summary(record, counts, (facts.tokens, facts.cost_usd))
    if facts.ended_at is not None and record.ended_at is None:
        run["seconds"] = facts.wall_seconds  # an interrupted run: up to its last event
    return {
        "run": run,
        "budget": {"tokens": facts.budget_tokens, "cost_usd": facts.budget_cost},
        "graph_note": facts.graph_note,
        "waves": [list(wave) for wave in facts.waves],
        "tasks": [task_row(task) for task in facts.tasks],
        "attempts": bars,
        "lanes": lanes,
        "breakers": [breaker_view(breaker) for breaker in store.breakers()],
        "last_seq": last_seq,
    }


def task_row(task: orchestra.TaskFacts) -> dict[str, Any]:
    """Return the TaskRow of a task: its place in the graph, state and routing."""
    return {
        "id": task.id,
        "title": task.title,
        "state": task.state,
        "reason": task.reason,
        "wave": task.wave,
        "depends_on": list(task.depends_on),
        "tool": task.tool,
        "route_reason": task.route_reason,
        "attempts": len(task.attempts),
        "tokens": task.tokens,
        "cost_usd": task.cost_usd,
        "review": last_review_state(task),
    }


def last_review_state(task: orchestra.TaskFacts) -> str | None:
    """Return how the task's last review went (``approved``, ``rejected``, ``failed``,
    ``canceled``, ``running``, ``interrupted``), or None when its attempts were not
    reviewed."""
    for attempt in reversed(task.attempts):
        if attempt.reviews:
            return attempt.reviews[-1].state
    return None


def attempt_bars(tasks: Sequence[orchestra.TaskFacts]) -> tuple[list[dict[str, Any]], int]:
    """Return (the timeline's bars, the number of lanes): every attempt, ordered by start,
    placed in the lowest lane free when it started (interval partitioning, so the lanes
    are as many as the most attempts that ever ran at once: the worker slots)."""
    attempts = sorted(
        ((task.id, attempt) for task in tasks for attempt in task.attempts),
        key=lambda pair: (pair[1].started_at, pair[0], pair[1].number),
    )
    busy: list[tuple[float, int]] = []  # (end, lane) of the attempts still running
    free: list[int] = []
    lanes = 0
    bars = []
    for task_id, attempt in attempts:
        while busy and busy[0][0] <= attempt.started_at:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, lanes = lanes, lanes + 1
        end = attempt.ended_at if attempt.ended_at is not None else float("inf")
        heapq.heappush(busy, (end, lane))
        bars.append(
            {
                "task": task_id,
                "number": attempt.number,
                "tool": attempt.tool,
                "lane": lane,
                "started_at": attempt.started_at,
                "ended_at": attempt.ended_at,
                "outcome": attempt.outcome,
                "error_class": attempt.error_class,
                "review": attempt.reviews[-1].state if attempt.reviews else None,
            }
        )
    return bars, lanes


def breaker_view(breaker: orchestra.BreakerRecord) -> dict[str, Any]:
    """Return a tool's circuit breaker as the run page shows it."""
    return {
        "tool": breaker.tool,
        "state": breaker.state,
        "failures": breaker.failures,
        "open_until": breaker.open_until,
        "last_error_class": breaker.last_error_class,
    }


# -- one task -----------------------------------------------------------------------------


def find_task(facts: orchestra.RunFacts, task_id: str) -> orchestra.TaskFacts | None:
    """Return the task ``task_id`` of the run's facts, or None."""
    for task in facts.tasks:
        if task.id == task_id:
            return task
    return None


def task_view(
    facts: orchestra.RunFacts,
    task: orchestra.TaskFacts,
    records: Sequence[orchestra.AttemptRecord],
    last_seq: int,
) -> dict[str, Any]:
    """Return the TaskView of one task: its row, checks and log tail, and each attempt
    with its diff, what landed and the feedback it gave the next attempt (``records``
    are the task's attempt records, which hold that feedback); ``last_seq`` is the event
    the facts are at least as new as (the page follows the run's events after it)."""
    feedback = {record.number: record.feedback for record in records}
    last_log = task.attempts[-1].log_path if task.attempts else None
    return {
        "run": facts.id,
        "task": {
            **task_row(task),
            "checks": list(task.checks),
            "log_tail": list(orchestra.tail_lines(last_log, LOG_TAIL_LINES)),
        },
        "attempts": [
            attempt_view(attempt, feedback.get(attempt.number)) for attempt in task.attempts
        ],
        "last_seq": last_seq,
    }


def attempt_view(attempt: orchestra.AttemptFacts, feedback: str | None) -> dict[str, Any]:
    """Return the AttemptView of one attempt."""
    refused = attempt.error_class in REFUSED_ERROR_CLASSES
    if refused:
        landed = "refused"
    elif attempt.outcome == "succeeded" and attempt.diff:
        landed = "merged"
    else:
        landed = "none"
    statuses = file_statuses(attempt.diff)
    return {
        "number": attempt.number,
        "tool": attempt.tool,
        "tool_version": attempt.tool_version,
        "outcome": attempt.outcome,
        "error_class": attempt.error_class,
        "message": attempt.message,
        "exit_code": attempt.exit_code,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "seconds": attempt.seconds,
        "waited": attempt.waited,
        "route_reason": attempt.route_reason,
        "passed_over": [
            {"tool": passed.tool, "kind": passed.kind, "why": passed.why, "until": passed.until}
            for passed in attempt.passed_over
        ],
        "input_tokens": attempt.input_tokens,
        "output_tokens": attempt.output_tokens,
        "cost_usd": attempt.cost_usd,
        "files": [
            {
                "path": change.path,
                "status": statuses[index] if index < len(statuses) else "modified",
                "added": change.added,
                "removed": change.deleted,
            }
            for index, change in enumerate(attempt.files)
        ],
        "diff": attempt.diff,
        "landed": landed,
        "refused_why": attempt.message if refused else None,
        "feedback": feedback,
        "has_log": bool(attempt.log_path) and os.path.isfile(attempt.log_path or ""),
        "reviews": [review_view(review) for review in attempt.reviews],
    }


def review_view(review: Any) -> dict[str, Any]:
    """Return the ReviewView of one review (a ``ReviewFacts``) of an attempt's change:
    the reviewer, the verdict and its comments (text, which the page shows as text),
    what it took and cost, and what the reviewer changed (discarded, never merged)."""
    return {
        "round": review.round,
        "tool": review.tool,
        "tool_version": review.tool_version,
        "route_reason": review.route_reason,
        "state": review.state,
        "outcome": review.outcome,
        "verdict": review.verdict,
        "comments": review.comments,
        "error_class": review.error_class,
        "message": review.message,
        "started_at": review.started_at,
        "ended_at": review.ended_at,
        "seconds": review.seconds,
        "input_tokens": review.input_tokens,
        "output_tokens": review.output_tokens,
        "cost_usd": review.cost_usd,
        "edits_discarded": list(review.edits_discarded),
        "edits": review.edits,
        "landed": review.landed,
    }


_FILE_STATUS_LINES = (
    ("new file mode", "added"),
    ("deleted file mode", "deleted"),
    ("rename from ", "renamed"),
    ("copy from ", "copied"),
)


def file_statuses(diff: str | None) -> list[str]:
    """Return the status of each file of a ``git diff``, in its order (the order of
    ``FileChange``s): added, deleted, renamed, copied, binary or modified."""
    statuses: list[str] = []
    in_header = False
    for line in (diff or "").splitlines():
        if line.startswith("diff --git "):
            statuses.append("modified")
            in_header = True
        elif not statuses or not in_header:
            continue
        elif line.startswith("@@"):
            in_header = False
        elif line.startswith("Binary files ") and statuses[-1] == "modified":
            statuses[-1] = "binary"
        else:
            for prefix, status in _FILE_STATUS_LINES:
                if line.startswith(prefix):
                    statuses[-1] = status
    return statuses


# -- one attempt's log --------------------------------------------------------------------


def log_chunk(attempt: orchestra.AttemptRecord, offset: int) -> dict[str, Any]:
    """Return ``{"text", "offset", "size", "ended"}``: the attempt's log from byte
    ``offset`` (at most LOG_CHUNK_BYTES; -1 for the last LOG_END_BYTES), decoded as
    UTF-8 with a character split by the chunk's end left for the next read."""
    ended = attempt.ended_at is not None
    path = attempt.log_path
    try:
        with open(path or "", "rb") as log:
            size = os.fstat(log.fileno()).st_size
            start = max(0, size - LOG_END_BYTES) if offset < 0 else min(offset, size)
            log.seek(start)
            raw = log.read(LOG_CHUNK_BYTES)
    except OSError:
        return {"text": "", "offset": 0, "size": 0, "ended": ended}
    if offset < 0:
        skipped = _continuation_bytes(raw)  # start on a character, not inside one
        raw, start = raw[skipped:], start + skipped
    if start + len(raw) < size or not ended:
        raw = raw[: len(raw) - _incomplete_tail(raw)]
    return {
        "text": raw.decode("utf-8", errors="replace"),
        "offset": start + len(raw),
        "size": size,
        "ended": ended,
    }


def _continuation_bytes(raw: bytes) -> int:
    """How many bytes at the start of ``raw`` continue a character begun before it."""
    count = 0
    while count < min(3, len(raw)) and raw[count] & 0xC0 == 0x80:
        count += 1
    return count


def _incomplete_tail(raw: bytes) -> int:
    """How many bytes at the end of ``raw`` begin a UTF-8 character they do not finish."""
    for back in range(1, min(4, len(raw)) + 1):
        byte = raw[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead
        if byte & 0x80 == 0:
            return 0
        needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
        return back if back < needed else 0
    return 0


# -- events -------------------------------------------------------------------------------


#: one event as ``Store.events_json`` gives it: (seq, type, the event as JSON text)
EventRow = tuple[int, str, str]


def event_message(rows: Sequence[EventRow]) -> bytes:
    """Return the server-sent event message that carries ``rows`` (oldest first): one
    ``change`` for a single event, else one ``batch`` (a JSON list), its id the last
    seq. The events' JSON is SQLite's, passed on as it is."""
    if len(rows) == 1:
        data, kind = rows[0][2], b"change"
    else:
        data, kind = "[" + ",".join(row[2] for row in rows) + "]", b"batch"
    seq = str(rows[-1][0]).encode()
    return b"id: " + seq + b"\nevent: " + kind + b"\ndata: " + data.encode() + b"\n\n"


def encode_json(value: Any) -> bytes:
    """Return ``value`` as compact UTF-8 JSON (what every API answer is)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class CachedRun:
    """A run's facts as of event ``last_seq``, and its RunView once encoded."""

    last_seq: int
    facts: orchestra.RunFacts
    view_json: bytes | None = None


class RunCache:
    """The facts of the runs last looked at, each valid for one (run, last event seq).

    Every change to a run writes an event, so a run whose last event is the one cached
    has not changed: a finished run is gathered once, and a live one at most once per
    new event however many pages ask. Requests for the same run that come while it is
    gathered wait for that gather and take it (it is at least as new as they are)."""

    def __init__(self, store: orchestra.Store, size: int = 4) -> None:
        self._store = store
        self._size = size
        self._entries: OrderedDict[str, CachedRun] = OrderedDict()
        self._mutex = threading.Lock()
        self._gathering: dict[str, threading.Lock] = {}

    def facts(self, run_id: str) -> CachedRun:
        """Return the run's facts as of its last event; raise UnknownRun."""
        store = self._store
        mark_if_orphaned(store, [store.run(run_id)])
        last_seq = store.last_event_seq(run_id)
        with self._mutex:
            gathering = self._gathering.setdefault(run_id, threading.Lock())
        with gathering:
            with self._mutex:
                cached = self._entries.get(run_id)
                # a gather that ended while this one waited may be newer: as good
                if cached is not None and cached.last_seq >= last_seq:
                    self._entries.move_to_end(run_id)
                    return cached
            cached = CachedRun(last_seq, orchestra.gather_run(store, run_id, logs=False))
            with self._mutex:
                self._entries[run_id] = cached
                self._entries.move_to_end(run_id)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
            return cached

    def view_json(self, run_id: str) -> bytes:
        """Return the RunView of the run as of its last event, encoded (and kept)."""
        cached = self.facts(run_id)
        if cached.view_json is None:
            cached.view_json = encode_json(run_view(self._store, cached.facts, cached.last_seq))
        return cached.view_json
