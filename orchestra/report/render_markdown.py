"""The run report as Markdown tables, to paste into a pull request."""

from __future__ import annotations

import html
import re

from orchestra.report.diffs import FileChange
from orchestra.report.facts import AttemptFacts, RunFacts, TaskFacts
from orchestra.report.formatting import (
    cost_used,
    duration,
    moment,
    outcome_text,
    retries_text,
    review_tokens,
    reviews_text,
    states_text,
    task_seconds,
    tokens_used,
    verdict_text,
)
from orchestra.report.reviews import ReviewFacts

TASK_COLUMNS: tuple[str, ...] = ("task", "state", "tool", "attempts", "time", "files", "+", "-")
TASK_COLUMNS += ("tokens", "cost", "reason")
ATTEMPT_COLUMNS: tuple[str, ...] = ("#", "tool", "outcome", "exit", "started", "took", "waited")
ATTEMPT_COLUMNS += ("error", "files", "tokens", "cost", "routing")
REVIEW_COLUMNS: tuple[str, ...] = ("attempt", "round", "reviewer", "verdict", "took", "tokens")
REVIEW_COLUMNS += ("cost", "edits discarded", "error")


def render_markdown(run: RunFacts) -> str:
    """Return the report of ``run``: a summary table, a task table and each task's attempts."""
    lines = [f"## orchestra run {cell(run.id)}: {cell(run.state)}", ""]
    lines += _table(("", ""), _summary_rows(run))
    if run.graph_note:
        lines += ["", f"> {cell(run.graph_note)}"]
    title = f" — {cell(run.title)}" if run.title else ""
    lines += ["", f"### Tasks of `{cell(run.workstream)}`{title}", ""]
    lines += _table(TASK_COLUMNS, [_task_row(task) for task in run.tasks])
    for task in run.tasks:
        if not task.attempts:
            continue
        lines += ["", f"#### {cell(task.id)}", ""]
        lines += _table(ATTEMPT_COLUMNS, [_attempt_row(run, a) for a in task.attempts])
        lines += _reviews(task)
    return "\n".join(lines) + "\n"


def cell(value: object) -> str:
    """Return ``value`` fit for a table cell: one line, ``|`` escaped, no live HTML."""
    text = "" if value is None else str(value)
    text = html.escape(" ".join(text.split()), quote=False)
    return text.replace("|", "\\|")


def _summary_rows(run: RunFacts) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        ("run", run.id),
        ("workstream", run.workstream + (f" — {run.title}" if run.title else "")),
        ("file", run.file or "-"),
        ("outcome", run.state),
    ]
    if run.error:
        rows.append(("stopped", run.error))
    rows += [
        ("started", moment(run.started_at)),
        ("wall time", duration(run.wall_seconds)),
        ("tasks", f"{len(run.tasks)}: {states_text(run.tasks_by_state)}"),
        ("attempts", retries_text(run)),
        ("tokens", tokens_used(run.tokens, run.budget_tokens)),
        ("cost", cost_used(run.cost_usd, run.budget_cost)),
    ]
    if run.reviews:
        rows.append(("reviews", reviews_text(run)))
    return rows


def _task_row(task: TaskFacts) -> tuple[str, ...]:
    return (
        task.id,
        task.state,
        task.tool or "-",
        str(len(task.attempts)),
        duration(task_seconds(task)),
        str(len(task.files)),
        str(sum(change.added for change in task.files)),
        str(sum(change.deleted for change in task.files)),
        f"{task.tokens:,}",
        f"{task.cost_usd:.2f}",
        task.reason or "",
    )


def _attempt_row(run: RunFacts, attempt: AttemptFacts) -> tuple[str, ...]:
    since = None if run.started_at is None else attempt.started_at - run.started_at
    tokens = (attempt.input_tokens or 0) + (attempt.output_tokens or 0)
    error = ": ".join(part for part in (attempt.error_class, attempt.message) if part)
    return (
        str(attempt.number),
        attempt.tool,
        outcome_text(attempt.outcome),
        "-" if attempt.exit_code is None else str(attempt.exit_code),
        f"+{duration(since)}",
        duration(attempt.seconds),
        duration(attempt.waited),
        error,
        ", ".join(_change(change) for change in attempt.files),
        f"{tokens:,}",
        f"{attempt.cost_usd or 0:.2f}",
        attempt.route_reason or "",
    )


def _reviews(task: TaskFacts) -> list[str]:
    """The reviews of a task's attempts: a table, then each review's comments whole, in a
    fenced block (shown as text, whatever they hold)."""
    reviews = [review for attempt in task.attempts for review in attempt.reviews]
    if not reviews:
        return []
    lines = ["", f"Reviews of `{cell(task.id)}`:", ""]
    lines += _table(REVIEW_COLUMNS, [_review_row(review) for review in reviews])
    for review in reviews:
        if review.comments:
            lines += [
                "",
                f"Comments of {cell(review.tool)} on attempt {review.attempt}"
                f" (round {review.round}):",
                "",
                *_fenced(review.comments),
            ]
    return lines


def _review_row(review: ReviewFacts) -> tuple[str, ...]:
    error = ": ".join(part for part in (review.error_class, review.message) if part)
    return (
        str(review.attempt),
        str(review.round),
        review.tool + (f" {review.tool_version}" if review.tool_version else ""),
        verdict_text(review),
        duration(review.seconds),
        f"{review_tokens(review):,}",
        f"{review.cost_usd or 0:.2f}",
        ", ".join(review.edits_discarded),
        error,
    )


def _fenced(text: str) -> list[str]:
    """``text`` in a fenced code block whose fence no line of it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", *text.splitlines(), fence]


def _change(change: FileChange) -> str:
    return (
        f"{change.path} (binary)"
        if change.binary
        else f"{change.path} +{change.added} -{change.deleted}"
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(cell(value) for value in row) + " |")
    return lines
