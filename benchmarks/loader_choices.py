"""Why the loader uses tomli and pauses the garbage collector: both choices, measured.

On the same 100,000-task workstream as plan_scale.py, times in this process (median of
several runs): parsing with the standard library's ``tomllib`` against compiled
``tomli``, and ``orchestra.spec.load_workstream`` with the cyclic garbage collector
running against paused (``orchestra.gcpause.paused_gc``, which load_workstream uses).

    .venv/bin/python benchmarks/loader_choices.py [--tasks N] [--runs R] [--record]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plan_scale

from orchestra import spec


def median_seconds(action: Callable[[], object], runs: int) -> float:
    """Return the median wall time of ``action`` over ``runs`` calls."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def load_with_collector(path: Path) -> object:
    """Load the workstream the way load_workstream does, but with the collector running."""
    gc.enable()
    return spec.workstream_from_dict(spec.read_toml(path), file=str(path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=plan_scale.DEFAULT_TASKS)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    options = parser.parse_args()
    import tomli
    import tomllib

    with tempfile.TemporaryDirectory(prefix="orchestra-bench-") as scratch:
        path = Path(scratch) / "scale.toml"
        plan_scale.write_workstream(path, options.tasks)
        text = path.read_text()
        rows = [
            (
                "parse with tomllib (standard library)",
                median_seconds(lambda: tomllib.loads(text), options.runs),
            ),
            (
                "parse with tomli (compiled wheel)",
                median_seconds(lambda: tomli.loads(text), options.runs),
            ),
            (
                "load_workstream, collector running",
                median_seconds(lambda: load_with_collector(path), options.runs),
            ),
            (
                "load_workstream, collector paused",
                median_seconds(lambda: spec.load_workstream(path), options.runs),
            ),
        ]
    table = [
        "| step | median |",
        "|---|---:|",
        *(f"| {label} | {seconds:.2f} s |" for label, seconds in rows),
    ]
    print("\n".join(table))
    if options.record:
        stamp = time.strftime("%Y-%m-%d %H:%M %z")
        section = [
            f"## {stamp} — loader choices (benchmarks/loader_choices.py)",
            "",
            f"- {options.tasks:,} tasks, {options.runs} runs each, in one process",
            f"- tomli {tomli.__version__ if hasattr(tomli, '__version__') else ''}".rstrip(),
            "",
            *table,
            "",
        ]
        plan_scale.append_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
