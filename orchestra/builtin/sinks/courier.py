"""Delivering a sink's events on a thread of its own, so that the run loop never waits
for an endpoint or a command: what the ``webhook`` and ``command`` sinks share."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestra.builtin.sinks.options import about_itself, matches

#: how many times its ``timeout`` ``close()`` waits for a sink's queue to drain
_DRAIN_TIMEOUTS = 3


class DeliveryFailed(Exception):
    """One event could not be delivered; the message says why, for the warning."""


_STOP: Any = object()


class Courier:
    """Hands events to ``deliver`` one at a time on its own thread, through a bounded
    queue, so that the run loop never waits for an endpoint or a command.

    A full queue drops the event (counted, one warning at the end). The first failure
    in a row is a warning with its cause; the ones after it are counted, and the count is
    a warning when a delivery works again or at the end.
    """

    def __init__(
        self,
        sink: str,
        deliver: Callable[[Mapping[str, Any], Courier], None],
        capacity: int,
        warn: Callable[[str], None],
    ) -> None:
        self.capacity = capacity
        #: set when close() gives up: deliveries stop retrying and the rest is dropped
        self.stopped = threading.Event()
        #: the last thing that went wrong, for the warning when close() gives up
        self.trouble: str | None = None
        self._deliver = deliver
        self._warn = warn
        self._queue: queue.Queue[Any] = queue.Queue(capacity)
        self._accepted = 0
        self._done = 0
        self._dropped = 0
        self._failures_in_a_row = 0
        self._thread = threading.Thread(target=self._work, name=f"sink-{sink}", daemon=True)
        self._thread.start()

    def offer(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` for delivery, or count it as dropped when the queue is full."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._dropped += 1
        else:
            self._accepted += 1

    def finish(self, wait: float) -> None:
        """Let the queue drain for at most ``wait`` seconds, then give up on the rest."""
        deadline = time.monotonic() + wait
        try:
            self._queue.put(_STOP, timeout=wait)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self.stopped.set()  # no more retries; a request under way ends on its own
            left = self._accepted - self._done
            why = f" (last problem: {self.trouble})" if self.trouble else ""
            self._warn(f"gave up after waiting {wait:g}s: {left} event(s) not delivered{why}")
        if self._failures_in_a_row > 1:
            self._warn(f"{self._failures_in_a_row - 1} more event(s) could not be delivered")
        if self._dropped:
            self._warn(f"dropped {self._dropped} event(s): its queue of {self.capacity} was full")

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP or self.stopped.is_set():
                return
            try:
                self._deliver(event, self)
            except DeliveryFailed as failure:
                self._failed(str(failure))
            except Exception as error:  # a bug here must not end deliveries silently
                self._failed(f"{type(error).__name__}: {error}")
            else:
                if self._failures_in_a_row > 1:
                    self._warn(
                        f"delivering again after {self._failures_in_a_row - 1} more failure(s)"
                    )
                self._failures_in_a_row = 0
            finally:
                self._done += 1

    def _failed(self, message: str) -> None:
        self.trouble = message
        if self.stopped.is_set():
            return  # given up at close(): the run has ended, nobody reads this
        self._failures_in_a_row += 1
        if self._failures_in_a_row == 1:
            self._warn(f"{message}; further failures are counted until one works")


class CourierSink:
    """What the webhook and command sinks share: the chosen kinds of events go, in
    order, to a courier thread; closing waits a bounded time for it to finish."""

    name = "?"
    _courier: Courier | None
    _kinds: tuple[str, ...]
    _timeout: float

    def emit(self, event: Mapping[str, Any]) -> None:
        if self._courier is not None and matches(event.get("type", ""), self._kinds):
            if not about_itself(event, self.name):
                self._courier.offer(event)

    def close(self) -> None:
        if self._courier is not None:
            courier, self._courier = self._courier, None
            courier.finish(_DRAIN_TIMEOUTS * self._timeout)


def ignore(message: str) -> None:
    """Where warnings go when a sink is opened without a way to warn (outside a run)."""
