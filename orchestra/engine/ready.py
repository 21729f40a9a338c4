"""The tasks that may start now, in the order the scheduling strategy wants them.

A strategy that has a ``key(task, context)`` is asked once per task, when the task
becomes ready, and the tasks wait in a heap: taking the next one costs a logarithm, not a
sort of everything that is ready. A strategy with only ``order(ready, context)`` is asked
to order every ready task each time slots are filled (it may hold tasks back, as
``waves`` does).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Any

from orchestra.models import Task
from orchestra.plugin.protocols import SchedulingContext, SchedulingStrategy

#: what a caller of ``offer`` answers for each task: take it, keep it ready, or stop asking
TAKE, KEEP, STOP = "take", "keep", "stop"


class ReadyQueue:
    """Ready tasks, offered in the strategy's order; ties go to the task earlier in the file."""

    def __init__(
        self,
        strategy: SchedulingStrategy,
        context: SchedulingContext,
        position: Mapping[str, int],
    ) -> None:
        self._strategy = strategy
        self._context = context
        self._position = position
        self._key: Callable[[Task, SchedulingContext], Any] | None = getattr(strategy, "key", None)
        self._members: dict[str, Task] = {}  # in the order they became ready
        self._heap: list[tuple[Any, int, str]] = []

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._members

    def add(self, task: Task) -> None:
        """Make ``task`` startable (again)."""
        if task.id in self._members:
            return
        self._members[task.id] = task
        if self._key is not None:
            entry = (self._key(task, self._context), self._position[task.id], task.id)
            heapq.heappush(self._heap, entry)

    def discard(self, task_id: str) -> None:
        """Take ``task_id`` out, if it is in (a heap entry left behind is skipped later)."""
        self._members.pop(task_id, None)

    def offer(self, decide: Callable[[Task], str]) -> None:
        """Offer the ready tasks to ``decide`` in order, until it answers STOP or none is
        left. TAKE removes the task; KEEP leaves it ready for a later offer."""
        if self._key is None:
            self._offer_ordered(decide)
        else:
            self._offer_heap(decide)

    def _offer_heap(self, decide: Callable[[Task], str]) -> None:
        kept: list[tuple[Any, int, str]] = []
        heap = self._heap
        try:
            while heap:
                entry = heapq.heappop(heap)
                task = self._members.get(entry[2])
                if task is None:
                    continue  # discarded meanwhile
                answer = decide(task)
                if answer == TAKE:
                    self._members.pop(task.id, None)
                else:
                    kept.append(entry)
                    if answer == STOP:
                        return
        finally:
            for entry in kept:
                if entry[2] in self._members:
                    heapq.heappush(heap, entry)

    def _offer_ordered(self, decide: Callable[[Task], str]) -> None:
        if not self._members:
            return
        for task in self._strategy.order(list(self._members.values()), self._context):
            if task.id not in self._members:
                continue  # left by an earlier decision (failed, canceled)
            answer = decide(task)
            if answer == TAKE:
                self._members.pop(task.id, None)
            elif answer == STOP:
                return
