"""The two drawings of the HTML report, as inline SVG: the timeline and the dependency graph.

The timeline has one ``<g data-task="…">`` row per task and one ``<rect data-attempt="N">``
bar per attempt, so that a test (or a person with the DOM inspector) can read it.
"""

from __future__ import annotations

import time
from html import escape

from orchestra.report.facts import RunFacts
from orchestra.report.formatting import duration, outcome_text

WIDTH = 1000
LABEL = 190
ROW = 24
AXIS = 28
NODE_WIDTH = 170
NODE_HEIGHT = 30
COLUMN = 230
NODE_GAP = 14


def timeline_svg(run: RunFacts) -> str:
    """Return the Gantt-like timeline: a row per task, a bar per attempt, waits as dashes."""
    start, end = _span(run)
    scale = (WIDTH - LABEL - 10) / max(end - start, 1e-6)

    def x(at: float) -> float:
        return LABEL + (at - start) * scale

    height = AXIS + ROW * len(run.tasks) + 6
    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img"'
        f' aria-label="timeline of run {escape(run.id)}">'
    ]
    for index in range(1, len(run.tasks), 2):
        parts.append(
            f'<rect class="stripe" x="0" y="{AXIS + index * ROW}" width="{WIDTH}" height="{ROW}"/>'
        )
    for tick, label in _ticks(end - start):
        parts.append(
            f'<line class="tick" x1="{x(start + tick):.1f}" y1="{AXIS - 6}"'
            f' x2="{x(start + tick):.1f}" y2="{height}"/>'
            f'<text class="tick-label" x="{x(start + tick):.1f}" y="{AXIS - 10}">{label}</text>'
        )
    for index, task in enumerate(run.tasks):
        top = AXIS + index * ROW
        middle = top + ROW / 2
        parts.append(f'<g class="row state-{escape(task.state)}" data-task="{escape(task.id)}">')
        parts.append(
            f'<text class="row-label" x="{LABEL - 8}" y="{middle + 4:.1f}">'
            f"<title>{escape(task.id)}: {escape(task.state)}</title>{escape(_short(task.id))}"
            "</text>"
        )
        waited_from = task.ready_at
        for attempt in task.attempts:
            if waited_from is not None and attempt.started_at > waited_from:
                parts.append(
                    f'<line class="wait" x1="{x(waited_from):.1f}" y1="{middle:.1f}"'
                    f' x2="{x(attempt.started_at):.1f}" y2="{middle:.1f}">'
                    f"<title>waited {duration(attempt.started_at - waited_from)}</title></line>"
                )
            ended = attempt.ended_at if attempt.ended_at is not None else end
            outcome = outcome_text(attempt.outcome)
            error = f", {attempt.error_class}" if attempt.error_class else ""
            parts.append(
                f'<rect class="bar outcome-{escape(outcome)}" data-attempt="{attempt.number}"'
                f' x="{x(attempt.started_at):.1f}" y="{top + 4}"'
                f' width="{max(x(ended) - x(attempt.started_at), 3):.1f}" height="{ROW - 8}"'
                f' rx="2"><title>{escape(task.id)} attempt {attempt.number}: {escape(outcome)}'
                f"{escape(error)}, {escape(attempt.tool)},"
                f" {duration(ended - attempt.started_at)}</title></rect>"
            )
            waited_from = attempt.ended_at
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def graph_svg(run: RunFacts) -> str:
    """Return the dependency graph: the waves as columns, a box per task, an arrow per edge."""
    where: dict[str, tuple[float, float]] = {}
    for column, wave in enumerate(run.waves):
        for row, task_id in enumerate(wave):
            where[task_id] = (10 + column * COLUMN, 10 + row * (NODE_HEIGHT + NODE_GAP))
    tallest = max((len(wave) for wave in run.waves), default=0)
    width = 20 + max(len(run.waves) - 1, 0) * COLUMN + NODE_WIDTH
    height = 20 + max(tallest * (NODE_HEIGHT + NODE_GAP) - NODE_GAP, 0)
    parts = [
        f'<svg class="graph" viewBox="0 0 {width} {height}" width="{width}" role="img"'
        f' aria-label="dependency graph of run {escape(run.id)}">'
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7"'
        ' markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" class="arrowhead"/>'
        "</marker></defs>"
    ]
    for dependency, task_id in run.edges:
        (x1, y1), (x2, y2) = where[dependency], where[task_id]
        x1, y1, y2 = x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2, y2 + NODE_HEIGHT / 2
        bend = (x2 - x1) / 2
        parts.append(
            f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f}'
            f' {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" marker-end="url(#arrow)"/>'
        )
    for task in run.tasks:
        left, top = where[task.id]
        parts.append(
            f'<a href="#task-{escape(task.id)}"><g class="node state-{escape(task.state)}"'
            f' data-node="{escape(task.id)}"><title>{escape(task.id)}: {escape(task.state)}'
            f'</title><rect x="{left}" y="{top}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}"'
            f' rx="5"/><text x="{left + 10}" y="{top + NODE_HEIGHT / 2 + 4:.1f}">'
            f"{escape(_short(task.id, 21))}</text></g></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _span(run: RunFacts) -> tuple[float, float]:
    """Return the moments the timeline starts and ends at."""
    moments = [
        at
        for task in run.tasks
        for attempt in task.attempts
        for at in (attempt.started_at, attempt.ended_at)
        if at is not None
    ]
    moments += [task.ready_at for task in run.tasks if task.ready_at is not None]
    start = run.started_at if run.started_at is not None else min(moments, default=0.0)
    end = run.ended_at if run.ended_at is not None else max(moments, default=start)
    if any(a.ended_at is None for task in run.tasks for a in task.attempts):
        end = max(end, time.time()) if run.state == "running" else end
    return start, max(end, *moments, start)


def _ticks(span: float) -> list[tuple[float, str]]:
    """Return about six evenly spaced (offset, label) ticks of a round step."""
    steps = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
    step = next((s for s in steps if span / s <= 8), 3600 * max(1, round(span / 3600 / 6)))
    count = int(span / step) + 1
    return [(i * step, "0" if i == 0 else duration(i * step)) for i in range(count)]


def _short(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
