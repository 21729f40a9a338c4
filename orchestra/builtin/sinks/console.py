"""The event sink ``console``: one plain line per state change of a run, or the live view."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

import attrs


def describe_event(event: Mapping[str, Any]) -> str | None:
    """Return the line a person reads for ``event``, or None for events not worth a line.

    Plain text, no control characters: the line is the same on a terminal and in a file.
    """
    kind = event.get("type", "")
    payload = event.get("payload") or {}
    clock = time.strftime("%H:%M:%S", time.localtime(event.get("at", time.time())))
    if kind == "run.leftovers_stopped":
        return f"{clock}  run {event.get('run')}  {_leftovers(payload)}"
    if kind == "workspace.repaired":
        done = "; ".join(payload.get("done") or ()) or "nothing"
        return f"{clock}  workspace {payload.get('workspace', '?')}  repaired  — {done}"
    if kind.startswith("run."):
        detail = payload.get("reason") or payload.get("summary") or ""
        return f"{clock}  run {event.get('run')}  {kind[4:]}{'  ' + detail if detail else ''}"
    if kind in ("sink.warning", "sink.disabled"):
        problem = payload.get("message") or payload.get("error") or ""
        return f"{clock}  sink {payload.get('sink', '?')}  {kind[5:]}  — {problem}"
    if kind.startswith("review."):
        return f"{clock}  {event.get('task')}  {_review(kind[7:], payload)}"
    if kind.startswith("step."):
        parts = [clock, f"{event.get('task')}", kind[5:]]
        if payload.get("tool"):
            parts.append(f"with {payload['tool']}")
        if payload.get("attempt"):
            parts.append(f"(attempt {payload['attempt']})")
        if payload.get("reason"):
            parts.append(f"— {payload['reason']}")
        elif kind == "step.running" and payload.get("passed_over"):
            parts.append(f"— {payload['why']}")  # a failover: which tool it passed over, why
        return "  ".join(parts)
    return None


#: how long a line may quote a review's comments (their first line)
COMMENT_CHARS = 160


def _review(what: str, payload: Mapping[str, Any]) -> str:
    """What a review event says: ``reviewing with codex (round 1)`` as it starts, then
    ``review by codex (round 1): approved`` / ``requests changes — <the comments' first
    line>`` / ``failed — <why>``, with the paths of the reviewer's discarded edits."""
    tool, round_number = payload.get("tool", "?"), payload.get("round")
    which = f" (round {round_number})" if round_number else ""
    if what == "started":
        why = f"  — {payload['why']}" if payload.get("why") else ""
        return f"reviewing with {tool}{which}{why}"
    if what == "approved":
        said = "approved"
    elif what == "rejected":
        said = "requests changes"
        first = _first_line(payload.get("comments"))
        if first:
            said += f" — {first}"
        if payload.get("landed"):
            said += " (landed despite the rejection)"
    else:
        problem = ": ".join(
            str(payload[key]) for key in ("error_class", "message") if payload.get(key)
        )
        said = f"failed — {problem}" if problem else "failed"
    edits = payload.get("edits_discarded") or []
    if edits:
        said += f" (edits discarded: {', '.join(str(path) for path in edits)})"
    return f"review by {tool}{which}: {said}"


def _first_line(text: Any) -> str:
    """The first line of ``text`` that has something on it, cut to COMMENT_CHARS."""
    for line in str(text or "").splitlines():
        if line.strip():
            line = " ".join(line.split())
            return line if len(line) <= COMMENT_CHARS else line[: COMMENT_CHARS - 1] + "…"
    return ""


def _leftovers(payload: Mapping[str, Any]) -> str:
    """What resume stopped and removed of what the run's dead orchestrator left."""
    pids = payload.get("pids") or []
    parts = []
    if pids:
        shown = ", ".join(str(pid) for pid in pids[:10]) + (", …" if len(pids) > 10 else "")
        what = "process" if len(pids) == 1 else "processes"
        parts.append(f"stopped {len(pids)} {what} its last orchestrator left (pid {shown})")
    directories = payload.get("directories") or []
    if directories:
        what = "directory" if len(directories) == 1 else "directories"
        parts.append(f"removed {len(directories)} sandbox {what} it left")
    return "; ".join(parts) or "stopped what its last orchestrator left"


class ConsoleSink:
    """Shows a run on the terminal.

    Attached to a terminal (and not ``plain``), a live view: an overall bar and a row per
    running task with the last line of its output (or ``reviewing with codex`` while a
    second tool reviews its change), with failures, retries and rejected reviews printed
    above it as they happen. Otherwise (a pipe, a file, ``--plain``, ``TERM=dumb``) one
    plain line per state change, with no control characters. ``NO_COLOR`` is respected.
    """

    name = "console"
    #: the run loop keeps each running task's last line of output for this sink
    wants_output = True

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.plain = False
        self._live: Any = None
        self._lock = threading.Lock()
        self._context: Any = None
        self._steps: dict[str, str] = {}
        self._running: dict[str, Any] = {}  # task -> progress.RunningTask
        self._first_start: dict[str, float] = {}
        self._durations: list[float] = []
        self._started: float | None = None
        #: until the run's ``run.running``: what resume recorded before the loop began,
        #: each thing printed as a line even above a live view
        self._before_running = True

    def open(self, context: Any) -> None:
        """Start the live view when the output is a terminal (and reset for a new run)."""
        self._context = context
        self._steps = dict(context.steps)
        self._running, self._first_start, self._durations = {}, {}, []
        self._started = time.time()
        self._live = None
        self._before_running = True
        stream = self._stream or sys.stdout
        if self.plain or not _is_terminal(stream):
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=stream, highlight=False)
        self._live = Live(
            get_renderable=self._view,
            console=console,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def emit(self, event: Mapping[str, Any]) -> None:
        if self._live is None:
            line = describe_event(event)
            if line is not None:
                stream = self._stream or sys.stdout
                stream.write(line.replace("\r", " ").replace("\x1b", " ") + "\n")
                stream.flush()
            return
        self._follow(event)
        kind = event.get("type", "")
        if kind == "run.running":
            self._before_running = False
        if kind in NOTEWORTHY or self._before_running:  # kept in the scrollback above it
            line = describe_event(event)
            if line is not None:
                self._live.console.print(line, markup=False, highlight=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        (self._stream or sys.stdout).flush()

    def _follow(self, event: Mapping[str, Any]) -> None:
        kind, task = event.get("type", ""), event.get("task")
        if kind.startswith("review.") and task is not None:
            self._follow_review(task, kind, event.get("payload") or {})
            return
        if not kind.startswith("step.") or task is None:
            return
        state, at, payload = kind[5:], event.get("at", time.time()), event.get("payload") or {}
        from orchestra.progress import DONE_STATES, RunningTask  # only a live view needs it

        with self._lock:
            self._steps[task] = state
            if state == "running":
                self._first_start.setdefault(task, at)
                routed = payload.get("why") if payload.get("passed_over") else None
                self._running[task] = RunningTask(
                    task, payload.get("tool"), payload.get("attempt") or 1, at, routed=routed
                )
            else:
                self._running.pop(task, None)
            if state in DONE_STATES and task in self._first_start:
                self._durations.append(at - self._first_start[task])

    def _follow_review(self, task: str, kind: str, payload: Mapping[str, Any]) -> None:
        """Show a running task as under review from ``review.started`` until its end."""
        with self._lock:
            running = self._running.get(task)
            if running is None:
                return
            if kind == "review.started":
                self._running[task] = attrs.evolve(
                    running, reviewer=payload.get("tool"), review_round=payload.get("round")
                )
            else:
                self._running[task] = attrs.evolve(running, reviewer=None, review_round=None)

    def _view(self) -> Any:
        last = self._context.last_line if self._context is not None else None
        with self._lock:
            counts: dict[str, int] = {}
            for state in self._steps.values():
                counts[state] = counts.get(state, 0) + 1
            # the task's last line is its tool's: under review, the row says so instead
            running = [
                attrs.evolve(
                    task, last_line=last(task.task) if last and not task.reviewer else None
                )
                for task in self._running.values()
            ]
            durations = list(self._durations)
        from orchestra.progress import Snapshot, render

        snapshot = Snapshot(
            run_id=self._context.run_id if self._context else "",
            state="running",
            total=len(self._steps),
            counts=counts,
            running=running,
            started=self._started,
            mean_task_seconds=sum(durations) / len(durations) if durations else None,
            parallel=getattr(self._context, "parallel", 1),
        )
        return render(snapshot)


#: events the live view also prints as a line, so they stay in the scrollback
NOTEWORTHY = frozenset(
    {
        "step.failed",
        "step.retrying",
        "step.quarantined",
        "step.skipped",
        "review.rejected",
        "review.failed",
        "sink.warning",
        "sink.disabled",
        "run.leftovers_stopped",
        "workspace.repaired",
    }
)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
