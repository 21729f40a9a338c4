"""What ``orchestra show`` says of an attempt's review: a JSON row and a few lines of text.

A review is a second tool reading an attempt's change before it lands (docs/reviews.md).
``show`` lists it under the attempt it read: the reviewer, the round, the verdict, what it
took and cost, its comments (wrapped, and bounded unless one task is shown), and the
paths of what the reviewer changed, which is discarded.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestra.report.reviews import ReviewFacts

#: how wide ``show`` wraps a review's comments (the indentation included)
COMMENT_WIDTH = 100
#: how many lines of a review's comments ``show RUN`` prints; ``show RUN TASK`` prints
#: up to ``TASK_COMMENT_LINES``
RUN_COMMENT_LINES = 8
TASK_COMMENT_LINES = 200


def review_row(review: ReviewFacts) -> dict[str, Any]:
    """Return a review as ``show --json`` lists it under its attempt."""
    return {
        "round": review.round,
        "tool": review.tool,
        "tool_version": review.tool_version,
        "routing": review.route_reason,
        "outcome": review.outcome,
        "verdict": review.verdict,
        "comments": review.comments,
        "error_class": review.error_class,
        "message": review.message,
        "started_at": review.started_at,
        "ended_at": review.ended_at,
        "log": review.log_path,
        "input_tokens": review.input_tokens,
        "output_tokens": review.output_tokens,
        "cost_usd": review.cost_usd,
        "edits_discarded": list(review.edits_discarded),
        "landed": review.landed,
    }


def review_lines(review: ReviewFacts, *, comment_lines: int, hint: str) -> list[str]:
    """Return the lines ``show`` prints for a review, indented to sit under its attempt.

    At most ``comment_lines`` lines of comments are printed; ``hint`` says where the
    rest are (``orchestra show RUN TASK``)."""
    from orchestra.report.formatting import duration, review_tokens, verdict_text

    figures = [duration(review.seconds)] if review.seconds is not None else []
    tokens = review_tokens(review)
    if tokens or review.cost_usd:
        figures.append(f"{tokens:,} tokens, {review.cost_usd or 0:.2f} USD")
    error = ": ".join(part for part in (review.error_class, review.message) if part)
    if error:
        figures.append(error)
    head = f"    review by {review.tool} (round {review.round})  {verdict_text(review)}"
    lines = ["  ".join([head, *figures])]
    if review.comments:
        lines += _comments(review.comments, comment_lines, hint)
    if review.edits_discarded:
        lines.append(f"      edits discarded: {', '.join(review.edits_discarded)}")
    return lines


def _comments(text: str, limit: int, hint: str) -> list[str]:
    """The comments as ``      > …`` lines, wrapped, at most ``limit`` of them (and a line
    saying how many more there are and where they are)."""
    prefix = "      > "
    wrapped: list[str] = []
    for line in text.strip("\n").splitlines():
        printable = "".join(c if c.isprintable() or c == "\t" else " " for c in line)
        wrapped += textwrap.wrap(
            printable.rstrip(),
            COMMENT_WIDTH - len(prefix),
            break_long_words=True,
            break_on_hyphens=False,
            replace_whitespace=False,
        ) or [""]
    shown = [(prefix + line).rstrip() for line in wrapped[:limit]]
    left = len(wrapped) - limit
    if left > 0:
        shown.append(f"      … {left} more line{'s' if left != 1 else ''} ({hint})")
    return shown
