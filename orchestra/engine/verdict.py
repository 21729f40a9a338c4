"""What an attempt's end makes of its step: succeeded, canceled, quarantined (the same
failure again, or a change undone and made again), retrying after a backoff, or failed
for good.

``judge`` only decides; the run loop records the verdict, starts the retry's timer and,
on a failure for good with ``--fail-fast``, winds the run down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestra import classes
from orchestra.engine.failover import OTHER, SAME, STOP, Move
from orchestra.engine.resilience import backoff_delay, oscillates, repeats
from orchestra.store.lifecycle import StepState

if TYPE_CHECKING:
    from orchestra.models import RetryPolicy, StepResult

#: how the run winds down when a step's end is to be canceled rather than judged
CANCELING = frozenset({"canceled", "fail_fast"})


@classes.frozen
class Verdict:
    """A step's next state after an attempt, why, and (retrying) after how long."""

    state: StepState
    reason: str | None = None
    payload: Mapping[str, Any] | None = None
    #: seconds before a retry may start
    delay: float = 0.0

    @property
    def failed(self) -> bool:
        """Whether the step failed for good (``--fail-fast`` stops the run then)."""
        return self.state is StepState.FAILED or self.state is StepState.QUARANTINED


def judge(
    *,
    attempt: int,
    tool: str,
    result: StepResult,
    policy: RetryPolicy,
    failures: Sequence[str | None],
    changes: Sequence[str | None],
    over_budget: str | None,
    stopping: str | None,
    move: Move | None = None,
    alone: str | None = None,
) -> Verdict:
    """Return what becomes of a step whose attempt number ``attempt`` with ``tool`` ended
    with ``result``: ``failures`` and ``changes`` are its attempts' fingerprints and
    change digests (``TaskHistory``), ``over_budget`` why the task may not be tried again,
    ``stopping`` how the run winds down (None while it does not). ``move`` is what the
    policy table says of the failure (``failover.next_move``; by default the row of its
    class) and ``alone``, when it asks for another tool, why none may take the task
    (None when one may): then ``other`` stops and ``prefer_other`` stays with ``tool``."""
    if result.outcome == "succeeded":
        return Verdict(StepState.SUCCEEDED, payload={"tool": tool})
    if result.outcome == "canceled" or stopping in CANCELING:
        return Verdict(StepState.CANCELED, reason=result.message or "canceled")
    reason = result.message or result.error_class or result.outcome
    limit = policy.same_failure_limit
    if limit > 1 and repeats(list(failures), limit):
        return Verdict(StepState.QUARANTINED, f"the same failure {limit} times in a row: {reason}")
    if oscillates(list(changes)):
        return Verdict(
            StepState.QUARANTINED,
            f"oscillating: attempt {attempt} made the same change as attempt"
            f" {attempt - 2}: {reason}",
        )
    if move is None:
        move = Move(policy.on_failure.get(result.error_class or "", SAME))
    switching = move.switches and alone is None
    if move.action == OTHER and alone is not None:  # "" when no other tool has a say
        alone_reason = f"{reason} ({alone})" if alone else reason
        return Verdict(StepState.FAILED, over_budget or alone_reason)
    if move.action != STOP and over_budget is None and stopping is None:
        if attempt < policy.max_attempts:
            # another tool need not wait out what the failed one was told to wait
            wait = None if switching else result.retry_after
            delay = backoff_delay(policy.backoff, attempt, wait)
            why = f"{result.error_class or result.outcome}: {result.message or ''}".strip(": ")
            payload: dict[str, Any] = {"attempt": attempt, "delay": round(delay, 3)}
            if switching:
                payload["passing_over"] = tool
            return Verdict(StepState.RETRYING, why, payload, delay)
    return Verdict(StepState.FAILED, over_budget or reason)
