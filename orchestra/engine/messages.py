"""What the run loop's inbox carries: the workers' news, as typed messages.

A worker never touches the store. It puts an ``AttemptEnded`` in the orchestrator's
``Inbox`` when an attempt is over, and an ``EventPosted`` for a tool's progress; a sink
warns the same way. The loop takes all that arrived when it wakes and records it,
dispatching on the messages' type.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from orchestra import classes

if TYPE_CHECKING:
    from orchestra.models import StepResult, Task


@classes.define
class Running:
    """The run loop's record of an attempt it started, until its end is recorded."""

    task: Task
    attempt: int
    tool: str
    #: when a worker took the attempt (the loop's clock until then) and when it finished
    #: it, not when the loop got to record either
    started: float
    ended: float | None = None


@classes.frozen
class AttemptEnded:
    """A worker finished an attempt: ``result`` says how it went."""

    running: Running
    result: StepResult


@classes.frozen
class EventPosted:
    """An event to record and hand to the sinks: a tool's progress (``tool.<kind>``, of
    an attempt) or a sink's warning (of the run)."""

    type: str
    payload: Mapping[str, Any]
    task_id: str | None = None
    attempt: int | None = None


#: everything the inbox may hold
Message = AttemptEnded | EventPosted


class Inbox:
    """The run loop's inbox: any thread puts, the loop's thread takes all at once."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        #: put a message (any thread)
        self.put = self._queue.put

    def wait(
        self, timeout: float, linger: Callable[[list[Message]], float] | None = None
    ) -> list[Message]:
        """Wait at most ``timeout`` seconds for news and return all that has arrived;
        ``linger``, given what arrived, says how long to wait for the news that follows
        before returning it too (asked then, not before the wait: the pool has moved on
        while the loop waited)."""
        try:
            messages = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        messages.extend(self.drain())
        pause = linger(messages) if linger is not None else 0.0
        if pause:
            time.sleep(pause)
            messages.extend(self.drain())
        return messages

    def drain(self) -> list[Message]:
        """Take every message there is now, without waiting."""
        messages = []
        while True:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                return messages
