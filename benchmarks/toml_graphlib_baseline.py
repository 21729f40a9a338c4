"""The yardstick of benchmarks/large_plans.py: read a workstream and sort its tasks, no more.

Parses the TOML file with tomli (compiled and faster than the standard library's, the
parser orchestra itself uses; ``--parser tomllib`` for the standard library's), sorts the graph of the tasks' ``depends_on`` with
``graphlib.TopologicalSorter.static_order`` (which raises CycleError on a cycle), and
prints the number of tasks sorted. That is the least any ``validate`` or ``plan`` of the
file must do, so ``orchestra validate`` and ``orchestra plan`` are held to a multiple of it.

    python benchmarks/toml_graphlib_baseline.py [--parser tomllib|tomli] FILE.toml

The standard library and tomli (a dependency of orchestra).
"""

from __future__ import annotations

import argparse
import graphlib
import importlib
import sys
from collections.abc import Sequence

#: tomli, compiled, as issue 25 names it and as orchestra's loader parses: the stricter yardstick
DEFAULT_PARSER = "tomli"


def sorted_tasks(path: str, parser: str = DEFAULT_PARSER) -> list[str]:
    """Return the ids of the tasks of the workstream at ``path``, dependencies first."""
    toml = importlib.import_module(parser)
    with open(path, "rb") as file:
        tasks = toml.load(file)["tasks"]
    graph = {task["id"]: task.get("depends_on", []) for task in tasks}
    return list(graphlib.TopologicalSorter(graph).static_order())


def main(argv: Sequence[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--parser", choices=("tomllib", "tomli"), default=DEFAULT_PARSER)
    options.add_argument("file")
    arguments = options.parse_args(argv)
    print(len(sorted_tasks(arguments.file, arguments.parser)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
