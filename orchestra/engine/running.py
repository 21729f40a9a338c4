"""The attempts handed to the executor whose end the run loop has not recorded yet.

The pool runs ``max_parallel`` attempts at once; quick ones may wait in its queue beyond
that, as many as ``QueueAhead`` says, so that a worker that finishes takes the next at
once. Only an attempt none of whose candidate tools has a circuit breaker may wait so:
routing and a breaker must judge an attempt when it starts, not one attempt early.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from orchestra.engine.messages import AttemptEnded, Running
from orchestra.engine.queue_ahead import QueueAhead
from orchestra.engine.router import routing_shape

if TYPE_CHECKING:
    from orchestra.models import Task


class RunningAttempts:
    """The running attempts by task, each tool's count of them, and how many more the
    pool may take. ``candidates(task)`` gives the adapters that may carry out ``task``."""

    def __init__(self, workers: int, candidates: Callable[[Task], Sequence[Any]]) -> None:
        self.workers = workers
        self.candidates = candidates
        self.by_task: dict[str, Running] = {}
        #: running attempts per tool (routing reads it as it changes)
        self.in_use: dict[str, int] = {}
        self.queue_ahead = QueueAhead(workers)
        #: whether a task may wait in the queue, by its routing shape
        self._queueable: dict[tuple[Any, ...], bool] = {}

    def __len__(self) -> int:
        return len(self.by_task)

    def full(self) -> bool:
        """Whether the pool holds all it may, queued attempts included."""
        return len(self.by_task) >= self.queue_ahead.capacity()

    def admits(self, task: Task) -> bool:
        """Whether an attempt of ``task`` may be handed to the pool now: a worker is
        free, or it may wait in the queue (and the queue has room)."""
        if self.full():
            return False
        return len(self.by_task) < self.workers or self.queueable(task)

    def queueable(self, task: Task) -> bool:
        """Whether the task may wait in the pool's queue: only when none of its candidate
        tools has a breaker (a queued attempt starts even if its breaker opened)."""
        shape = routing_shape(task)
        answer = self._queueable.get(shape)
        if answer is None:
            candidates = self.candidates(task)
            answer = self._queueable[shape] = bool(candidates) and not any(
                getattr(adapter, "circuit_breaker", True) for adapter in candidates
            )
        return answer

    def add(self, task: Task, attempt: int, tool: str, now: float) -> None:
        """Hold the slot of an attempt that was just recorded as started."""
        self.by_task[task.id] = Running(task, attempt, tool, now)
        self.in_use[tool] = self.in_use.get(tool, 0) + 1

    def end(self, running: Running) -> None:
        """Free the slot of an attempt that ended, and learn how long a queueable one
        took (how many wait in the pool follows it)."""
        self.by_task.pop(running.task.id, None)
        self.in_use[running.tool] -= 1
        if running.ended is not None and self.queueable(running.task):
            self.queue_ahead.observe(running.ended - running.started)

    def linger(self, news: Sequence[Any]) -> float:
        """How long the loop may wait after the first ``news``, to take the ends that
        follow with it (``QueueAhead.linger``): the attempts whose end is in the news no
        longer keep a worker busy."""
        ended = sum(isinstance(message, AttemptEnded) for message in news)
        return self.queue_ahead.linger(len(self.by_task) - ended)
