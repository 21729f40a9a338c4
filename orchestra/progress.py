"""Where a run stands, for people: a snapshot and its live view.

The console sink builds snapshots from the run's events as they come; ``orchestra status
--watch`` builds them from the run database, so it works from another terminal (or
machine). Both render the same view with rich: an overall bar (done of total, failed,
ETA from the finished tasks' durations) and a row per running task (id, tool, attempt,
elapsed time, the last line of its output, or ``reviewing with codex`` while a second
tool reviews its change).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from orchestra import classes
from orchestra.durations import clock

#: step states that end a step
DONE_STATES = frozenset({"succeeded", "failed", "skipped", "canceled", "quarantined"})
#: states that count as failed in the bar
FAILED_STATES = frozenset({"failed", "quarantined"})


@classes.frozen
class RunningTask:
    task: str
    tool: str | None
    attempt: int
    started: float
    last_line: str | None = None
    #: why routing gave the attempt its tool, when it passed over another one (a
    #: failover: ``codex is the only tool left (passed over aider: …)``), else None
    routed: str | None = None
    #: the tool reviewing the attempt's change, while one does (docs/reviews.md)
    reviewer: str | None = None
    #: which round of the task's reviews that is
    review_round: int | None = None

    @property
    def doing(self) -> str | None:
        """Return ``reviewing with codex (round 1)`` while the change is reviewed, else None."""
        if self.reviewer is None:
            return None
        round_text = f" (round {self.review_round})" if self.review_round else ""
        return f"reviewing with {self.reviewer}{round_text}"


@classes.frozen
class Snapshot:
    """A run at one moment."""

    run_id: str
    state: str
    total: int
    counts: dict[str, int]
    running: Sequence[RunningTask] = ()
    started: float | None = None
    #: mean seconds of the finished tasks, for the ETA
    mean_task_seconds: float | None = None
    parallel: int = 1

    @property
    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if state in DONE_STATES)

    @property
    def failed(self) -> int:
        return sum(n for state, n in self.counts.items() if state in FAILED_STATES)

    def eta_seconds(self) -> float | None:
        """Remaining time if the tasks left take as long as the finished ones did."""
        if self.mean_task_seconds is None or self.total == self.done:
            return None
        left = self.total - self.done
        return left * self.mean_task_seconds / max(1, min(self.parallel, left))


def render(snapshot: Snapshot, now: float | None = None) -> Any:
    """Return the rich renderable of ``snapshot``."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    now = time.time() if now is None else now
    header = Table.grid(padding=(0, 1))
    for _ in range(6):
        header.add_column(no_wrap=True)
    header.add_row(
        Text(f"run {snapshot.run_id}", style="bold"),
        ProgressBar(total=max(snapshot.total, 1), completed=snapshot.done, width=30),
        Text(f"{snapshot.done}/{snapshot.total} done"),
        Text(f"{snapshot.failed} failed", style="red" if snapshot.failed else "dim"),
        Text(f"elapsed {clock(now - snapshot.started) if snapshot.started else '-'}"),
        Text(f"ETA {clock(snapshot.eta_seconds())}"),
    )
    rows = Table(box=None, pad_edge=False, show_header=bool(snapshot.running))
    for column in ("task", "tool", "attempt", "elapsed", "last output"):
        rows.add_column(column, style="dim" if column == "last output" else None, no_wrap=True)
    # quick commands wait in the pool ahead of its workers, recorded as started (see
    # engine/queue_ahead.py): a row for each that runs, the first started, and a count
    shown = sorted(snapshot.running, key=lambda task: task.started)[: max(snapshot.parallel, 1)]
    for task in shown:
        rows.add_row(
            task.task,
            task.tool or "-",
            str(task.attempt),
            clock(now - task.started),
            _last_output(task),
        )
        if task.routed:  # a failover: say which tool was passed over, and why
            rows.add_row("", "", "", "", Text(f"routed: {task.routed}"[:200], style="yellow"))
    queued = len(snapshot.running) - len(shown)
    if queued:
        return Group(header, rows, Text(f"+ {queued} more queued for a free worker", style="dim"))
    return Group(header, rows)


def _last_output(task: RunningTask) -> Any:
    """The last column of a running task's row: its last line of output, or, while its
    change is reviewed, ``reviewing with codex (round 1)`` and the reviewer's last line."""
    if task.doing is None:
        return (task.last_line or "")[:100]
    from rich.text import Text

    text = Text(task.doing, style="cyan")
    if task.last_line:
        text.append(f" — {task.last_line}"[:100], style="dim")
    return text


def plain_line(snapshot: Snapshot) -> str:
    """Return ``snapshot`` as one line of text, for a watch that is not on a terminal:
    ``3/5 done, 0 failed, running build, reviewing docs with codex``."""
    parts = [f"{snapshot.done}/{snapshot.total} done", f"{snapshot.failed} failed"]
    for task in snapshot.running:
        if task.reviewer is not None:
            parts.append(f"reviewing {task.task} with {task.reviewer}")
        else:
            parts.append(f"running {task.task}")
    return ", ".join(parts)


def from_store(store: Any, run_id: str, parallel: int | None = None) -> Snapshot:
    """Build a snapshot from the run database (what ``status --watch`` shows)."""
    record = store.run(run_id)
    steps = store.steps(run_id)
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.state.value] = counts.get(step.state.value, 0) + 1
    attempts = store.attempts(run_id)
    open_attempts = {a.task_id: a for a in attempts if a.ended_at is None}
    running_steps = [step for step in steps if step.state.value == "running"]
    reviewing = under_review(store, run_id) if running_steps else {}
    last_attempts = {a.task_id: a for a in attempts} if reviewing else {}
    running = []
    for step in running_steps:
        review = reviewing.get(step.task_id)
        # while its change is reviewed, the attempt the reviewer reads may have ended
        attempt = open_attempts.get(step.task_id) or (
            last_attempts.get(step.task_id) if review else None
        )
        # the last line of the reviewer's log while it works, else of the attempt's
        log = review.payload.get("log_path") if review else attempt.log_path if attempt else None
        running.append(
            RunningTask(
                step.task_id,
                attempt.tool if attempt else None,
                step.attempts,
                attempt.started_at if attempt else 0.0,
                last_line(log),
                routed_note(attempt.route_reason) if attempt else None,
                reviewer=review.payload.get("tool") if review else None,
                review_round=review.payload.get("round") if review else None,
            )
        )
    durations = [
        step.ended_at - step.started_at
        for step in steps
        if step.state.value in DONE_STATES and step.started_at and step.ended_at
    ]
    settings_parallel = record.settings.get("max_parallel") if record.settings else None
    return Snapshot(
        run_id=run_id,
        state=record.state.value,
        total=len(steps),
        counts=counts,
        running=running,
        started=record.started_at,
        mean_task_seconds=sum(durations) / len(durations) if durations else None,
        parallel=parallel or settings_parallel or 1,
    )


#: the events of a review: its start, and the three ways it ends
REVIEW_EVENTS = ("review.started", "review.approved", "review.rejected", "review.failed")


def under_review(store: Any, run_id: str) -> dict[str, Any]:
    """Return the ``review.started`` event of each task whose change is being reviewed
    now (the review began and has not ended), by task id."""
    last: dict[str, Any] = {}
    for event in store.events(run_id, types=REVIEW_EVENTS):
        if event.task_id is not None:
            last[event.task_id] = event
    return {task: event for task, event in last.items() if event.type == "review.started"}


def routed_note(reason: str | None) -> str | None:
    """Return an attempt's routing reason when it names a tool passed over (a failover,
    an open breaker: what a person watching wants to know), else None."""
    return reason if reason and "(passed over " in reason else None


def last_line(path: str | None, window: int = 4096) -> str | None:
    """The last non-empty line of a log file, reading only its end."""
    if not path:
        return None
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - window))
            tail = log.read().decode(errors="replace")
    except OSError:
        return None
    lines = [line for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None
