"""Dask's threaded scheduler as a runner: the other yardstick of benchmarks/overhead.py.

Reads a workstream file, makes a Dask task graph (each task a call that runs its
``command`` with ``subprocess.run``, depending on its ``depends_on``), and computes it with
``dask.threaded.get`` on two threads. Dask keeps no state: nothing is recorded, nothing
survives a crash. Exits 0 if every task ran and exited 0, 1 otherwise. Needs ``dask``
(``pip install dask``); it is not a dependency of orchestra.

    python benchmarks/dask_runner.py FILE.toml
"""

from __future__ import annotations

import subprocess
import sys

try:
    import tomli as toml
except ImportError:  # pragma: no cover - tomli is a dependency of orchestra
    import tomllib as toml

MAX_WORKERS = 2


def run_command(argv: list[str], *dependencies: int) -> int:
    """Run one task's command once its dependencies' calls have returned; its exit status
    (a failed dependency fails this one without running it)."""
    if any(dependencies):
        return 1
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
    except OSError:  # the program could not be started
        return 127


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: dask_runner.py FILE.toml", file=sys.stderr)
        return 2
    import dask.threaded

    with open(argv[0], "rb") as file:
        tasks = toml.load(file)["tasks"]
    graph = {
        task["id"]: (run_command, list(task["command"]), *task.get("depends_on", ()))
        for task in tasks
    }
    results = dask.threaded.get(graph, list(graph), num_workers=MAX_WORKERS)
    return 0 if not any(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
