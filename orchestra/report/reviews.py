"""The reviews of a recorded run's attempts, as the report and ``orchestra show`` tell them.

A review is a second tool reading an attempt's change before it lands (docs/reviews.md):
the run database holds one row per review that ended (``Store.reviews``), and a
``review.started`` event for each that began, so a review under way is known too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestra import classes

if TYPE_CHECKING:
    from orchestra.store import EventRecord, ReviewRecord


@classes.frozen
class ReviewFacts:
    """A second tool's review of one attempt's change (docs/reviews.md): who reviewed it,
    the verdict and comments, what it cost, what it changed (discarded), and whether the
    change landed after it."""

    #: the attempt whose change was reviewed
    attempt: int
    #: the task's review round (1 for the first)
    round: int
    tool: str
    tool_version: str | None
    route_reason: str | None
    #: succeeded (a verdict was read), failed, timed_out, canceled; ``running`` while
    #: the reviewer works, ``interrupted`` when the run ended before the review did
    outcome: str
    #: ``approve``, ``request_changes``, or None when the reviewer gave none
    verdict: str | None
    comments: str | None
    error_class: str | None
    message: str | None
    started_at: float | None
    ended_at: float | None
    seconds: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    #: the reviewer's own log
    log_path: str | None
    #: the paths the reviewer changed: its edits are discarded, never merged
    edits_discarded: tuple[str, ...]
    #: what the reviewer changed, as a diff (kept to be read, not applied)
    edits: str | None
    #: whether the change landed after this review (approved, or rejected on the last
    #: round of a review that is not required)
    landed: bool

    @property
    def state(self) -> str:
        """How the review ended, in one word: ``approved``, ``rejected`` (changes
        requested), ``failed`` (no verdict), ``canceled`` (with its run), or ``running``
        / ``interrupted``."""
        if self.verdict == "approve":
            return "approved"
        if self.verdict == "request_changes":
            return "rejected"
        if self.outcome in ("running", "interrupted", "canceled"):
            return self.outcome
        return "failed"

    @property
    def landed_despite_rejection(self) -> bool:
        """Whether the change landed although the reviewer asked for changes."""
        return self.landed and self.verdict == "request_changes"


def reviews_by_attempt(
    store, record, started: dict[tuple[str, int], EventRecord] | None = None
) -> dict[tuple[str, int], tuple[ReviewFacts, ...]]:
    """Return the reviews of run ``record`` by (task, attempt): those recorded, and those
    that began but have no record yet, still running or cut short by the run's end.

    ``started`` is the run's ``review.started`` events by (task, attempt), when the
    caller has read them; else they are read here."""
    if started is None:
        started = {
            (event.task_id, event.attempt): event
            for event in store.events(record.id, types=("review.started",))
            if event.task_id and event.attempt is not None
        }
    found: dict[tuple[str, int], list[ReviewFacts]] = {}
    for review in store.reviews(record.id):
        found.setdefault((review.task_id, review.attempt), []).append(_review(review))
    still = "running" if record.state.value in ("running", "pending") else "interrupted"
    for key, event in started.items():
        if key not in found:
            found[key] = [_unfinished_review(event, still)]
    return {key: tuple(reviews) for key, reviews in found.items()}


def _review(record: ReviewRecord) -> ReviewFacts:
    from orchestra.store.run_writes import edited_paths

    return ReviewFacts(
        attempt=record.attempt,
        round=record.round,
        tool=record.tool,
        tool_version=record.tool_version,
        route_reason=record.route_reason,
        outcome=record.outcome,
        verdict=record.verdict,
        comments=record.comments,
        error_class=record.error_class,
        message=record.message,
        started_at=record.started_at,
        ended_at=record.ended_at,
        seconds=record.duration,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cost_usd=record.cost_usd,
        log_path=record.log_path,
        edits_discarded=tuple(edited_paths(record.edits)) if record.edits else (),
        edits=record.edits,
        landed=record.landed,
    )


def _unfinished_review(event: EventRecord, outcome: str) -> ReviewFacts:
    """A review that began and has no record: ``running``, or ``interrupted``."""
    payload = event.payload
    return ReviewFacts(
        attempt=event.attempt or 0,
        round=int(payload.get("round") or 0),
        tool=str(payload.get("tool") or "?"),
        tool_version=None,
        route_reason=payload.get("why"),
        outcome=outcome,
        verdict=None,
        comments=None,
        error_class=None,
        message=None,
        started_at=event.at,
        ended_at=None,
        seconds=None,
        input_tokens=None,
        output_tokens=None,
        cost_usd=None,
        log_path=payload.get("log_path"),
        edits_discarded=(),
        edits=None,
        landed=False,
    )


def review_counts(reviews: dict[tuple[str, int], tuple[ReviewFacts, ...]]) -> dict[str, int]:
    """Return how many of ``reviews`` ended each way (``ReviewFacts.state``), in a fixed
    order, only the ways some did."""
    counts: dict[str, int] = {}
    for found in reviews.values():
        for review in found:
            state = review.state
            counts[state] = counts.get(state, 0) + 1
    order = ("approved", "rejected", "failed", "canceled", "running", "interrupted")
    return {state: counts[state] for state in order if state in counts}
