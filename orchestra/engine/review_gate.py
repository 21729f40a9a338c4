"""The run loop's side of review gates: who reviews an attempt's change, what the
reviewer's launch holds, and what a review's end changes (its record and event, the
reviewer's breaker, the budgets, the rounds left).

The review itself runs on the worker (``reviewing.py``), after the attempt's checks and
before its change lands; the loop routes the reviewer when it starts the attempt, so a
task whose reviewers are all kept out by their breakers waits, as a task does for its
tool, and one that no tool may review fails before its tool runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from orchestra.engine.failover import STOP, Move
from orchestra.engine.messages import EventPosted
from orchestra.engine.router import PassOver
from orchestra.models import StepResult
from orchestra.plugin.protocols import ReviewLaunch
from orchestra.store.run_writes import review_event, review_payload

if TYPE_CHECKING:
    from orchestra.engine.choice import ToolChoice
    from orchestra.engine.fanout import SinkFanout
    from orchestra.engine.launches import LaunchBuilder
    from orchestra.engine.messages import Message
    from orchestra.engine.resilience import Breakers, BudgetMeter
    from orchestra.engine.router import RoutingDecision
    from orchestra.models import Defaults, Review, ReviewResult, Task, ToolProfile
    from orchestra.plugin.protocols import RunWorkspace
    from orchestra.store.records import ReviewRecord


class Rounds:
    """A task's reviews so far: how many, how many asked for changes, and the reviewer
    whose last review failed (the next one passes it over when another may review). A
    plain class: an attrs one costs every run's start half a millisecond."""

    __slots__ = ("done", "failed", "rejected")

    def __init__(self) -> None:
        self.done = 0
        self.rejected = 0
        self.failed: tuple[str, str] | None = None


class ReviewGate:
    """Routes, launches and records the reviews of one run's attempts."""

    def __init__(
        self,
        *,
        run_id: str,
        defaults: Defaults,
        choice: ToolChoice,
        launches: LaunchBuilder,
        profile: Callable[[str], ToolProfile],
        store: Any,
        fanout: SinkFanout,
        breakers: Breakers,
        meter: BudgetMeter,
        post: Callable[[Message], None],
        uses_breaker: Callable[[str], bool],
    ) -> None:
        self.run_id = run_id
        self.defaults = defaults
        self.choice = choice
        self.launches = launches
        self.profile = profile
        self.store = store
        self.fanout = fanout
        self.breakers = breakers
        self.meter = meter
        self.post = post
        self.uses_breaker = uses_breaker
        self.rounds: dict[str, Rounds] = {}
        #: why each running attempt's reviewer was chosen, by task, for its record
        self._why: dict[str, str] = {}

    def load(self, reviews: list[ReviewRecord]) -> None:
        """Take a resumed run's recorded reviews: the rounds they used."""
        for record in reviews:
            rounds = self.rounds.setdefault(record.task_id, Rounds())
            rounds.done += 1
            rounds.rejected += record.verdict == "request_changes"
            failed = record.verdict is None
            rounds.failed = (record.tool, record.error_class or record.outcome) if failed else None

    def review_of(self, task: Task) -> Review | None:
        """The task's review, or None when its changes land unreviewed."""
        if task.review is None and self.defaults.review is None:
            return None  # nearly every task: nothing to resolve (nor to import)
        from orchestra.engine.review_text import review_of

        return review_of(task, self.defaults)

    def route(self, task: Task, review: Review, author: str) -> RoutingDecision:
        """Who reviews the change ``author`` is about to make for ``task``."""
        rounds = self.rounds.get(task.id)
        avoid: tuple[PassOver, ...] = ()
        if rounds is not None and rounds.failed is not None:
            tool, error_class = rounds.failed
            avoid = (PassOver(tool, f"failed the last review with {error_class}"),)
        return self.choice.reviewer(task, review, author, avoid)

    def refusal(self, name: str, space: RunWorkspace) -> str | None:
        """Why the task's workspace ``name`` cannot hold a review (it cannot keep a
        reviewer's edits apart from the change), or None."""
        if getattr(space, "review_edits", None) is None:
            return (
                f"its changes are to be reviewed, but workspace {name!r} cannot keep a"
                ' reviewer\'s edits out of them: use workspace = "worktree"'
            )
        return None

    def launch(
        self,
        task: Task,
        attempt: int,
        review: Review,
        decision: RoutingDecision,
        space: RunWorkspace,
    ) -> ReviewLaunch:
        """The reviewer's launch for attempt ``attempt`` of ``task``: its own environment
        and secrets, its own log beside the attempt's, the review's timeout."""
        tool = decision.tool
        assert tool is not None  # a decision with no tool starts nothing
        rounds = self.rounds.setdefault(task.id, Rounds())
        env, secrets = self.launches.environment(tool, task, attempt)
        log_path = self.launches.review_log_path(task.id, attempt)
        request = self.launches.request(
            task, attempt, self.profile(tool), feedback=None, continues=False
        )
        if review.timeout is not None:
            request = attrs.evolve(request, timeout=review.timeout)
        context = self.launches.context(
            tool, request, space, env=env, secrets=secrets, log_path=log_path
        )
        self._why[task.id] = decision.reason or ""
        started = {
            "tool": tool,
            "round": rounds.done + 1,
            "why": decision.reason,
            "log_path": log_path,
        }
        if decision.passed_over:
            started["passed_over"] = [entry.as_dict() for entry in decision.passed_over]
        post = self.post

        def announce() -> None:
            post(EventPosted("review.started", started, task.id, attempt))

        return ReviewLaunch(
            tool=tool,
            adapter=self.choice.tools.get(tool),
            request=request,
            context=context,
            review=review,
            round=rounds.done + 1,
            last_round=rounds.rejected + 1 >= review.max_rounds,
            announce=announce,
        )

    def ended(self, task: Task, attempt: int, review: ReviewResult) -> None:
        """Record a review's end with its event, and count it: the reviewer's breaker,
        the budgets (a reviewer's tokens are the run's), the task's rounds."""
        self.store.record_review(
            self.run_id,
            task.id,
            attempt,
            review,
            tool_version=self.choice.available(review.tool).version,
            route_reason=self._why.pop(task.id, None),
        )
        if self.fanout:
            self.fanout.emit(review_event(review), task.id, review_payload(review))
        as_attempt = StepResult(
            review.outcome,
            error_class=review.error_class,
            retry_after=review.retry_after,
            usage=review.usage,
        )
        self.breakers.on_end(review.tool, as_attempt, self.uses_breaker(review.tool))
        self.meter.add(task.id, as_attempt)
        rounds = self.rounds.setdefault(task.id, Rounds())
        if review.outcome == "canceled":
            return
        rounds.done += 1
        rounds.rejected += review.verdict == "request_changes"
        failed = review.verdict is None
        rounds.failed = (review.tool, review.error_class or review.outcome) if failed else None

    def stop_after(self, task: Task, result: StepResult) -> tuple[StepResult, Move] | None:
        """When ``result`` is a rejection and the task's review has no round left: the
        result as the step's reason should say it, and the move that stops the task."""
        if result.error_class != "review_rejected":
            return None
        review = self.review_of(task)
        rounds = self.rounds.get(task.id)
        if review is None or rounds is None or rounds.rejected < review.max_rounds:
            return None
        message = (
            f"review_rejected: the change was sent back {rounds.rejected} time(s), as many"
            f" as max_rounds = {review.max_rounds} allows; last: {result.message}"
        )
        return attrs.evolve(result, message=message), Move(STOP)
