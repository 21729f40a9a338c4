"""Where each step of a run stands, and what follows when one changes.

A step's change of state is recorded with its event (one conditional ``UPDATE``, the
state being known) and handed to the sinks. Readiness is incremental: when a step
finishes, only the tasks that depend on it are looked at (``settle``), and a task is
ready when all its dependencies succeeded, skipped as soon as one cannot. Ready tasks
wait in the scheduler's order (``ReadyQueue``), retrying ones on a timer. When the run
winds down (canceled, ``--fail-fast``, its budget spent), the steps that wait end.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from orchestra import graph
from orchestra.engine.ready import ReadyQueue
from orchestra.plugin.protocols import SchedulingContext
from orchestra.store.lifecycle import RunState, StepState

if TYPE_CHECKING:
    from orchestra.engine.fanout import SinkFanout
    from orchestra.models import Workstream
    from orchestra.plugin.protocols import SchedulingStrategy
    from orchestra.store.database import Store

#: step states after which a step never changes again in this run
FINISHED = frozenset(
    {
        StepState.SUCCEEDED,
        StepState.FAILED,
        StepState.SKIPPED,
        StepState.CANCELED,
        StepState.QUARANTINED,
    }
)
#: the states of steps that wait to start, which end when the run winds down
WAITING = (StepState.PENDING, StepState.READY, StepState.RETRYING)


class Steps:
    """The run's steps: each one's state and attempts so far, the ready ones in the
    scheduler's order, the retrying ones' timers, and how the run winds down."""

    def __init__(
        self,
        *,
        store: Store,
        run_id: str,
        workstream: Workstream,
        scheduler: SchedulingStrategy,
        fanout: SinkFanout,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.fanout = fanout
        self.tasks = {task.id: task for task in workstream.tasks}
        self.dependencies = graph.of_tasks(workstream.tasks)
        self.dependents = graph.dependents_of(self.dependencies)
        self.state: dict[str, StepState] = {}
        self.attempts: dict[str, int] = {}
        self.finished: set[str] = set()
        self.unfinished = len(self.tasks)
        self.ready = ReadyQueue(
            scheduler,
            SchedulingContext(self.dependencies, self.finished),  # a view, not a copy
            {task.id: position for position, task in enumerate(workstream.tasks)},
        )
        #: retrying steps: (when, task id), soonest first; ``retry_at`` has the current ones
        self.retry_heap: list[tuple[float, str]] = []
        self.retry_at: dict[str, float] = {}
        #: why each failed (or quarantined) step ended so
        self.reasons: dict[str, str] = {}
        #: how many of each pending task's dependencies have not succeeded yet, counted
        #: when one of them first succeeds: a task with a thousand dependencies is not
        #: looked over a thousand times
        self._unmet: dict[str, int] = {}
        #: "canceled", "fail_fast" or "budget" once the run winds down
        self.stopping: str | None = None
        self.budget_reason: str | None = None

    def load(self, steps: Iterable[tuple[str, StepState, int]]) -> None:
        """Take the steps' recorded states and attempt counts (a resumed run's too), as
        ``Store.step_states`` gives them."""
        for task_id, state, attempts in steps:
            self.state[task_id] = state
            self.attempts[task_id] = attempts
        self.finished.update(t for t, state in self.state.items() if state in FINISHED)
        self.unfinished = len(self.state) - len(self.finished)

    def go_on(self) -> None:
        """Put the recorded ready and retrying steps in line, and settle the pending ones
        (their dependencies may have ended while no loop ran)."""
        for task_id, state in list(self.state.items()):
            if state is StepState.READY:
                self.ready.add(self.tasks[task_id])
            elif state is StepState.RETRYING:
                self.retry_later(task_id, 0.0)
            elif state is StepState.PENDING:
                self.settle(task_id)

    def set(
        self,
        task_id: str,
        state: StepState,
        *,
        reason: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the step's new state and its event, tell the sinks, and what follows:
        in or out of line, and its dependents settled once it finished."""
        details = {**(payload or {}), **({"reason": reason} if reason else {})}
        before = self.state[task_id]
        self.store.set_step_state(
            self.run_id, task_id, state, reason=reason, payload=details, current=before
        )
        self.state[task_id] = state
        if reason and state in (StepState.FAILED, StepState.QUARANTINED):
            self.reasons[task_id] = reason
        if self.fanout:
            self.fanout.emit(f"step.{state.value}", task_id, {"from": before.value, **details})
        if state is StepState.READY:
            self.ready.add(self.tasks[task_id])
        elif before is StepState.READY:
            self.ready.discard(task_id)
        if state in FINISHED:
            self.unfinished -= 1
            self.finished.add(task_id)
            self.retry_at.pop(task_id, None)
            if state is StepState.SUCCEEDED and self.stopping != "budget":
                for dependent in self.dependents[task_id]:
                    self._one_more_met(dependent)
            else:
                for dependent in self.dependents[task_id]:
                    self.settle(dependent)

    def started(self, task_id: str, attempt: int) -> None:
        """Note that attempt number ``attempt`` of the step started (recorded with it)."""
        self.attempts[task_id] = attempt
        self.state[task_id] = StepState.RUNNING

    def settle(self, task_id: str) -> None:
        """Make a pending step ready when its dependencies succeeded, or skip it when one
        of them cannot succeed any more (cancel it while the run winds down)."""
        if self.state[task_id] is not StepState.PENDING:
            return
        needs = self.dependencies[task_id]
        lost = [
            d
            for d in needs
            if self.state[d] in FINISHED and self.state[d] is not StepState.SUCCEEDED
        ]
        if self.stopping == "budget":
            self.set(task_id, StepState.SKIPPED, reason=self.stop_reason())
        elif lost and self.stopping is not None:
            self.set(task_id, StepState.CANCELED, reason=self.stop_reason())
        elif lost:
            self.set(
                task_id,
                StepState.SKIPPED,
                reason=f"dependency {lost[0]} {self.state[lost[0]].value}",
            )
        elif all(self.state[d] is StepState.SUCCEEDED for d in needs):
            self.set(task_id, StepState.READY)

    def _one_more_met(self, task_id: str) -> None:
        """One of a task's dependencies succeeded: make it ready when that was the last.

        A pending task has lost none of its dependencies (it would have been skipped or
        canceled when it did), so it is ready exactly when none is left unmet."""
        if self.state[task_id] is not StepState.PENDING:
            return
        unmet = self._unmet.get(task_id)
        if unmet is None:  # the first to succeed: count the others, once
            state = self.state
            unmet = sum(state[d] is not StepState.SUCCEEDED for d in self.dependencies[task_id])
        else:
            unmet -= 1
        if unmet:
            self._unmet[task_id] = unmet
        else:
            self._unmet.pop(task_id, None)
            self.set(task_id, StepState.READY)

    def retry_later(self, task_id: str, when: float) -> None:
        """Let the retrying step start again at ``when``."""
        self.retry_at[task_id] = when
        heapq.heappush(self.retry_heap, (when, task_id))

    def next_retry(self) -> float | None:
        """When the soonest retry is due, if any waits."""
        return self.retry_heap[0][0] if self.retry_heap else None

    def release_due_retries(self) -> None:
        """Put the retrying steps whose wait is over in line."""
        now = time.time()
        heap = self.retry_heap
        while heap and heap[0][0] <= now:
            when, task_id = heapq.heappop(heap)
            if self.retry_at.get(task_id) == when and self.state[task_id] is StepState.RETRYING:
                del self.retry_at[task_id]
                self.ready.add(self.tasks[task_id])

    def wind_down(self, why: str, reason: str | None = None) -> None:
        """End the waiting steps, ``why`` the run stops ("canceled", "fail_fast", or
        "budget" with its ``reason``): skipped when the budget ran out, else canceled."""
        self.stopping = why
        self.budget_reason = reason if why == "budget" else None
        final = StepState.SKIPPED if why == "budget" else StepState.CANCELED
        with self.store.batch():
            for task_id in list(self.state):
                # read the state now: ending one step settles its dependents meanwhile
                if self.state[task_id] in WAITING:
                    self.set(task_id, final, reason=self.stop_reason())
        self.retry_at.clear()
        self.retry_heap.clear()

    def stop_reason(self) -> str:
        """Why the waiting steps ended, as their reason says."""
        if self.stopping == "canceled":
            return "run canceled"
        if self.stopping == "budget":
            return self.budget_reason or "budget_exhausted"
        return "another task failed (--fail-fast)"

    def final_state(self) -> RunState:
        """The run's state once no step can change: canceled if it was, failed if any
        step did not succeed, else succeeded."""
        if self.stopping == "canceled":
            return RunState.CANCELED
        if any(state is not StepState.SUCCEEDED for state in self.state.values()):
            return RunState.FAILED
        return RunState.SUCCEEDED

    def ended_as(self, *states: StepState) -> list[str]:
        """The tasks whose steps are in one of ``states``, in the workstream's order."""
        return [task_id for task_id, state in self.state.items() if state in states]

    def counts(self) -> dict[str, int]:
        """How many steps are in each state."""
        counts: dict[str, int] = {}
        for state in self.state.values():
            counts[state.value] = counts.get(state.value, 0) + 1
        return counts
