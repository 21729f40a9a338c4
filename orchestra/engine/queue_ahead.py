"""How far ahead of its workers the run loop hands attempts to the pool.

An attempt handed to the pool before a worker is free starts the moment one is: the worker
does not wait for the run loop to hear of the last attempt's end, record it and choose the
next. That is what a run of thousands of quick commands needs, and what a run of long
ones does not: an attempt waiting in the pool is recorded as running. So the depth follows
how long the recent attempts took: enough of them to cover ``AHEAD_SECONDS`` of a worker's
time, at least one and at most ``MOST_PER_WORKER`` per worker. Only attempts of tools
without a circuit breaker wait in the pool (see ``running.RunningAttempts.queueable``).

When the pool holds that much, the run loop also lingers a moment after the first news
(at most ``LINGER_SECONDS``, and less than the queued work lasts) to take the ends that
follow in the same wake: one commit and one round of choices for several attempts
instead of one each.
"""

from __future__ import annotations

#: the worker time that queued attempts should cover
AHEAD_SECONDS = 0.02
#: the most attempts queued per worker, however quick they are
MOST_PER_WORKER = 16
#: attempts queued per worker while nothing is known of their durations
FIRST_PER_WORKER = 1
#: how long the run loop waits for more news once the pool holds two rounds of work
LINGER_SECONDS = 0.005
#: the weight of the latest duration in the running mean
_WEIGHT = 0.1


class QueueAhead:
    """The running mean of recent queueable attempts' durations, and the depth it gives."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.mean: float | None = None

    def observe(self, seconds: float) -> None:
        """Take the duration of an attempt that finished (its worker's time)."""
        seconds = max(seconds, 0.0)
        self.mean = seconds if self.mean is None else self.mean + _WEIGHT * (seconds - self.mean)

    def per_worker(self) -> int:
        """Attempts to queue per worker beyond the one it runs."""
        if self.mean is None:
            return FIRST_PER_WORKER
        if self.mean <= 0.0:
            return MOST_PER_WORKER
        return max(1, min(MOST_PER_WORKER, int(AHEAD_SECONDS / self.mean)))

    def capacity(self) -> int:
        """Attempts the pool may hold, running and queued."""
        return self.workers * (1 + self.per_worker())

    def linger(self, held: int) -> float:
        """How long the run loop may wait after the first news to gather more, while the
        pool holds ``held`` attempts: nothing unless two rounds per worker or more are
        queued, and never more than half the time the queued work keeps the workers
        busy (``LINGER_SECONDS`` at most). On a deep graph the next tasks wait for the
        ends the loop has not recorded yet: workers left idle while it sleeps cost the
        run that time."""
        if held < self.workers * 3 or self.mean is None:
            return 0.0
        queued_rounds = (held - self.workers) / self.workers
        return min(LINGER_SECONDS, queued_rounds * self.mean / 2)
