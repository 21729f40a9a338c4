"""How a run ended: what ``start_run`` and ``resume_run`` return, for the CLI to print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from orchestra import classes
from orchestra.store.lifecycle import RunState, StepState

if TYPE_CHECKING:
    from orchestra.engine.resilience import BudgetMeter
    from orchestra.engine.run_workspaces import RunWorkspaces
    from orchestra.engine.steps import Steps


@classes.frozen
class RunOutcome:
    """How a run ended: its final state and the count of steps in each state."""

    run_id: str
    state: str
    counts: Mapping[str, int]
    failed: Sequence[str]
    #: why the run stopped short (its budget ran out), if it did
    error: str | None = None
    #: where the run's result is (its workspaces' summaries: the run branch …)
    notes: Sequence[str] = ()
    #: seconds this process drove the run
    seconds: float = 0.0
    tokens: int = 0
    cost: float = 0.0
    #: why each failed (or quarantined) task ended so
    reasons: Mapping[str, str] = attrs.field(factory=dict)
    #: what each workspace last asked to keep (the worktree's: the run branch's tip)
    checkpoints: Mapping[str, Any] = attrs.field(factory=dict)


def outcome_of(
    run_id: str,
    final: RunState,
    steps: Steps,
    meter: BudgetMeter,
    workspaces: RunWorkspaces,
    seconds: float,
) -> RunOutcome:
    """How the run ``run_id`` ended, from the loop's parts once it recorded ``final``."""
    return RunOutcome(
        run_id,
        final.value,
        steps.counts(),
        steps.ended_as(StepState.FAILED),
        steps.budget_reason,
        workspaces.summaries(),
        seconds=seconds,
        tokens=int(meter.tokens),
        cost=meter.cost,
        reasons={
            task: steps.reasons.get(task, "")
            for task in steps.ended_as(StepState.FAILED, StepState.QUARANTINED)
        },
        checkpoints=dict(workspaces.checkpoints),
    )
