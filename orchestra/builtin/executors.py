"""The built-in executor ``local``: attempts run on this machine, on a pool of threads."""

from __future__ import annotations

import queue
import threading
from typing import Any

from orchestra.models import ExecutorRun
from orchestra.plugin.markers import hookimpl

#: what a worker takes from the queue to know it is done
_DONE = None


class Local:
    """Runs each attempt on one of ``max_parallel`` worker threads of this process."""

    name = "local"

    def open(self, run: ExecutorRun) -> LocalRun:
        return LocalRun(run)


class LocalRun:
    """``parallel`` threads taking attempts from one queue, started as work comes.

    Not a ``ThreadPoolExecutor``: the run loop wants no future back (``work`` reports
    through the run's inbox and never raises), and a future, its condition and its
    callbacks are a good part of what a run of quick commands costs per attempt.
    """

    def __init__(self, run: ExecutorRun) -> None:
        self.run = run
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, launch: Any) -> None:
        if self._closed:
            raise RuntimeError("submit after close")
        if len(self._threads) < self.run.parallel:
            thread = threading.Thread(
                target=self._serve, name=f"attempt_{len(self._threads)}", daemon=False
            )
            thread.start()
            self._threads.append(thread)
        self._queue.put(launch)

    def _serve(self) -> None:
        while True:
            launch = self._queue.get()
            if launch is _DONE:
                return
            try:
                self.run.work(launch)
            except BaseException:  # work reports its own failures; this is a bug: go on
                import logging  # only here: importing it costs every command's start

                logging.getLogger(__name__).exception(
                    "an attempt's work raised; the worker takes the next one"
                )

    def close(self) -> None:
        """Let the attempts handed over finish, then end the threads."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(_DONE)  # after every attempt queued so far
        for thread in self._threads:
            thread.join()


@hookimpl
def orchestra_register_executors(register) -> None:
    register(Local())
