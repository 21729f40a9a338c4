"""How the reports write times, durations, tokens and money: the same in every format."""

from __future__ import annotations

import time

from orchestra.report.facts import RunFacts, TaskFacts
from orchestra.report.reviews import ReviewFacts


def moment(seconds: float | None) -> str:
    """Return a timestamp as ``2026-11-26 04:55:05 UTC``, or ``-``."""
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def duration(seconds: float | None) -> str:
    """Return seconds as ``0.4s``, ``2m 05s`` or ``1h 02m``, or ``-``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def tokens_used(used: int, budget: int | None = None) -> str:
    """Return ``1,234`` tokens, with ``of 200,000`` when there is a budget."""
    return f"{used:,}" + ("" if budget is None else f" of {budget:,}")


def cost_used(used: float, budget: float | None = None) -> str:
    """Return ``0.12 USD``, with ``of 5.00`` before the currency when there is a budget."""
    return f"{used:.2f}" + ("" if budget is None else f" of {budget:.2f}") + " USD"


def states_text(counts: dict[str, int]) -> str:
    """Return ``3 succeeded, 1 failed``: the tasks by state, most settled first."""
    return ", ".join(f"{count} {state}" for state, count in counts.items()) or "no tasks"


def task_seconds(task: TaskFacts) -> float | None:
    """Return the seconds from the task's first attempt's start to its last one's end."""
    if not task.attempts or task.attempts[-1].ended_at is None:
        return None
    return task.attempts[-1].ended_at - task.attempts[0].started_at


def outcome_text(outcome: str | None) -> str:
    """Return an attempt's outcome; one that has not ended is ``running``."""
    return outcome or "running"


def retries_text(run: RunFacts) -> str:
    """Return ``6 (2 retries)``: the attempts of the run and how many were retries."""
    noun = "retry" if run.retries == 1 else "retries"
    return f"{run.attempts} ({run.retries} {noun})"


#: how each way a review ends is said
_VERDICT_WORDS = {
    "approved": "approved",
    "rejected": "requested changes",
    "failed": "failed (no verdict)",
    "canceled": "canceled",
    "running": "reviewing",
    "interrupted": "interrupted",
}


def verdict_text(review: ReviewFacts) -> str:
    """Return a review's verdict in words: ``approved``, ``requested changes`` (with
    ``, landed despite the rejection`` when the change landed anyway), ``failed (no
    verdict)``, ``canceled``, ``reviewing`` or ``interrupted``."""
    words = _VERDICT_WORDS[review.state]
    if review.landed_despite_rejection:
        words += ", landed despite the rejection"
    return words


def review_tokens(review: ReviewFacts) -> int:
    """Return the tokens a review used: input plus output, as the reviewer reported them."""
    return (review.input_tokens or 0) + (review.output_tokens or 0)


def reviews_text(run: RunFacts) -> str:
    """Return ``3: 2 approved, 1 rejected``: the run's reviews by how they ended."""
    counts = ", ".join(f"{count} {state}" for state, count in run.reviews_by_verdict.items())
    return f"{run.reviews}: {counts}"
