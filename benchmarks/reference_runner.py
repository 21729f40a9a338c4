"""A minimal durable runner: the yardstick that benchmarks/overhead.py holds ``orchestra run`` to.

Reads a workstream file, runs each task's ``command`` (an argument list, no shell) with
``subprocess.run`` on a pool of two threads, in dependency order (graphlib), and records one
row when a task starts and one when it ends in SQLite: WAL journal, ``synchronous=NORMAL``,
one transaction per row, one connection shared under a lock. A task that fails is not
marked done, so its dependents never start; the others run on. Exits 0 if every task ran
and succeeded, 1 otherwise.

    python benchmarks/reference_runner.py FILE.toml DB

Standard library only (tomli, if installed, parses faster than tomllib, as in orchestra).
"""

from __future__ import annotations

import graphlib
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

try:
    import tomli as toml
except ImportError:  # pragma: no cover - tomli is a dependency of orchestra
    import tomllib as toml

MAX_WORKERS = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('start', 'end')),
    exit_code INTEGER,
    at REAL NOT NULL
)
"""


class Journal:
    """One SQLite connection; each row written in a transaction of its own."""

    def __init__(self, path: str) -> None:
        # isolation_level=None: no implicit transactions, each is opened and committed here.
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute(SCHEMA)
        self.lock = threading.Lock()

    def write(self, task: str, event: str, exit_code: int | None = None) -> None:
        with self.lock:
            self.connection.execute("BEGIN")
            self.connection.execute(
                "INSERT INTO events (task, event, exit_code, at) VALUES (?, ?, ?, ?)",
                (task, event, exit_code, time.time()),
            )
            self.connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()


def run_task(journal: Journal, task: str, argv: list[str]) -> int:
    """Run one task's command, recording its start and end; return its exit status."""
    journal.write(task, "start")
    try:
        exit_code = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
    except OSError:  # the program could not be started
        exit_code = 127
    journal.write(task, "end", exit_code)
    return exit_code


def run(path: str, db: str) -> int:
    """Run the workstream at ``path``, recording into ``db``; return the exit status."""
    with open(path, "rb") as file:
        tasks = toml.load(file)["tasks"]
    commands = {task["id"]: task["command"] for task in tasks}
    sorter = graphlib.TopologicalSorter({task["id"]: task.get("depends_on", []) for task in tasks})
    sorter.prepare()  # raises CycleError on a cycle
    journal = Journal(db)
    finished: queue.SimpleQueue[tuple[str, Future[int]]] = queue.SimpleQueue()
    failed = []
    try:
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            running = 0
            while True:
                for task in sorter.get_ready():
                    future = pool.submit(run_task, journal, task, commands[task])
                    future.add_done_callback(lambda future, task=task: finished.put((task, future)))
                    running += 1
                if not running:
                    break
                task, future = finished.get()
                running -= 1
                if future.result() == 0:
                    sorter.done(task)
                else:
                    failed.append(task)
    finally:
        journal.close()
    if failed:
        print(f"failed: {', '.join(sorted(failed))}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: reference_runner.py FILE.toml DB", file=sys.stderr)
        return 2
    return run(*argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
