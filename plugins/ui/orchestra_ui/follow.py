"""Following runs live: one poller thread per followed run, fanning its events out to
every page that follows it.

A poller reads ``store.events_json(run, after_seq=last)`` every ``interval`` seconds from a
connection of its own and encodes what it read as one server-sent event message, so
following a run costs one query and one encoding per interval however many pages follow
it (each page's thread only writes the shared bytes); it stops when the last page
leaves. While the run says it is running, the poller also notices its process dying
(the run's lock freed, a file probe) and marks the run interrupted, as opening the
database would, so the pages see it at once.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import orchestra
from orchestra_ui.views import EventRow, event_message

#: event types after which a run is over (until it is resumed)
RUN_END_EVENTS = frozenset({"run.succeeded", "run.failed", "run.canceled", "run.interrupted"})
#: seconds between two reads of a followed run's new events
POLL_INTERVAL = 0.1
#: at most this many events in one read (more are read at once, without waiting)
READ_LIMIT = 1000
#: seconds between two looks at whether a running run's process is still alive
ALIVE_INTERVAL = 2.0


@dataclass(frozen=True)
class Batch:
    """The events one poll read, oldest first, and the message that carries them to every
    page (encoded once)."""

    events: tuple[EventRow, ...]
    message: bytes


class Subscription:
    """One page following one run: the events its poller found after ``start_seq``,
    in order, until the page leaves or the server closes."""

    def __init__(self, run_id: str, start_seq: int) -> None:
        self.run_id = run_id
        #: the poller hands over the events after this one; those up to it are the
        #: page's to read from the database (its backlog)
        self.start_seq = start_seq
        self._pending: deque[Batch] = deque()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, batch: Batch) -> None:
        """Hand over new events (the poller's side)."""
        with self._ready:
            self._pending.append(batch)
            self._ready.notify()

    def close(self) -> None:
        """End the subscription: ``take`` returns None from now on."""
        with self._ready:
            self._closed = True
            self._ready.notify()

    def take(self, timeout: float) -> list[Batch] | None:
        """Return the batches handed over since the last call, waiting at most
        ``timeout`` seconds for one ([] when none came); None once closed."""
        with self._ready:
            if not self._pending and not self._closed:
                self._ready.wait(timeout)
            if self._closed:
                return None
            batches = list(self._pending)
            self._pending.clear()
            return batches


class Followers:
    """The followed runs of one server: a poller per run, its subscriptions."""

    def __init__(
        self, database: Path, store: orchestra.Store, interval: float = POLL_INTERVAL
    ) -> None:
        #: the run database the pollers open their own connections to
        self.database = database
        #: seconds between two reads of a followed run's events
        self.interval = interval
        self._store = store  # the server's, for the seq a new poller starts from
        self._mutex = threading.Lock()
        self._pollers: dict[str, _Poller] = {}
        self._closed = False

    def subscribe(self, run_id: str) -> Subscription:
        """Follow ``run_id``: return a subscription that receives its events from now
        on (``start_seq`` says from after which one)."""
        last_seq = self._store.last_event_seq(run_id)  # read outside the lock: it may wait
        with self._mutex:
            if self._closed:
                raise RuntimeError("the server is closing")
            poller = self._pollers.get(run_id)
            if poller is None:
                poller = _Poller(self, run_id, last_seq)
                self._pollers[run_id] = poller
                poller.start()
            subscription = Subscription(run_id, poller.last_seq)
            poller.subscriptions.append(subscription)
            return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop following for one page; the run's poller stops with its last page."""
        subscription.close()
        with self._mutex:
            poller = self._pollers.get(subscription.run_id)
            if poller is None or subscription not in poller.subscriptions:
                return
            poller.subscriptions.remove(subscription)
            if not poller.subscriptions:
                poller.stop.set()
                del self._pollers[subscription.run_id]

    def followed(self) -> dict[str, int]:
        """Return {run: how many pages follow it} (one poller each)."""
        with self._mutex:
            return {run: len(poller.subscriptions) for run, poller in self._pollers.items()}

    def close(self, timeout: float = 2.0) -> None:
        """Stop every poller and end every subscription (the server is stopping)."""
        with self._mutex:
            self._closed = True
            pollers = list(self._pollers.values())
            self._pollers.clear()
        for poller in pollers:
            poller.stop.set()
            for subscription in list(poller.subscriptions):
                subscription.close()
        for poller in pollers:
            poller.join(timeout)

    def _fan_out(self, poller: _Poller, events: list[EventRow]) -> None:
        batch = Batch(tuple(events), event_message(events))  # outside the lock
        with self._mutex:
            for subscription in poller.subscriptions:
                subscription.put(batch)
            poller.last_seq = events[-1][0]


class _Poller(threading.Thread):
    """Reads one run's new events every interval and gives them to its subscriptions."""

    def __init__(self, followers: Followers, run_id: str, last_seq: int) -> None:
        super().__init__(name=f"orchestra-ui-follow-{run_id}", daemon=True)
        self.followers = followers
        self.run_id = run_id
        self.last_seq = last_seq
        self.subscriptions: list[Subscription] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with orchestra.Store.open(self.followers.database) as store:
            live = store.run(self.run_id).state.value in ("running", "pending")
            ticks_per_look = max(1, round(ALIVE_INTERVAL / self.followers.interval))
            tick = 0
            wait = self.followers.interval
            while not self.stop.wait(wait):
                events = store.events_json(self.run_id, after_seq=self.last_seq, limit=READ_LIMIT)
                if events and not self.stop.is_set():
                    self.followers._fan_out(self, events)
                    for _, kind, _ in events:
                        if kind in RUN_END_EVENTS:
                            live = False
                        elif kind == "run.running":
                            live = True
                # a full read leaves more to read: read on without waiting
                wait = 0 if len(events) == READ_LIMIT else self.followers.interval
                tick += 1
                if live and tick % ticks_per_look == 0 and not store.is_locked(self.run_id):
                    store.mark_interrupted_if_orphaned(self.run_id)
