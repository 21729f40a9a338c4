"""The built-in executor ``local``: attempts run on this machine, on a pool of threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestra.markers import hookimpl
from orchestra.models import ExecutorRun


class Local:
    """Runs each attempt on one of ``max_parallel`` worker threads of this process."""

    name = "local"

    def open(self, run: ExecutorRun) -> LocalRun:
        return LocalRun(run)


class LocalRun:
    def __init__(self, run: ExecutorRun) -> None:
        self.run = run
        self.pool = ThreadPoolExecutor(max_workers=run.parallel, thread_name_prefix="attempt")

    def submit(self, launch: Any) -> None:
        self.pool.submit(self.run.work, launch)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


@hookimpl
def orchestra_register_executors(register) -> None:
    register(Local())
