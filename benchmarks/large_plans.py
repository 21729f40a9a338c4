"""How ``orchestra validate`` and ``orchestra plan`` of 100,000 tasks compare with the least
work possible: parsing the file and sorting its graph (issue 25, target 5).

Generates plan_scale.py's layered workstream of 100,000 command tasks (each task after the
first layer depending on two tasks of the layer before) in two shapes: wide (layers of 500)
and deep (layers of 10, so 10,000 layers). On each it times whole processes, taken in turn
so that the machine's load hits all alike: ``orchestra validate FILE``, ``orchestra plan
--format json FILE``, and the baseline ``python benchmarks/toml_graphlib_baseline.py FILE``
(tomli and ``graphlib.TopologicalSorter``, printing the number of tasks). One untimed run
of each comes first, and its output is checked: validate reports every task and
dependency, the JSON plan holds them all routed to ``shell``, the baseline sorted them all.
Reports the median and fastest wall time and the peak RSS of each, and the ratio of each
orchestra median to the baseline's median on the same file.

Target, for each command and shape: the ratio at most 1.5.

Run with the project's virtualenv, which has orchestra installed::

    .venv/bin/python benchmarks/large_plans.py [--tasks N] [--shapes wide,deep] [--runs R]
        [--baseline-parser tomllib|tomli] [--record]

``--record`` appends the figures to benchmarks/RESULTS.md. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plan_scale
import toml_graphlib_baseline
from plan_scale import Measurement, Row, Run, run_once

BASELINE = Path(__file__).resolve().parent / "toml_graphlib_baseline.py"
ORCHESTRA = plan_scale.ORCHESTRA

DEFAULT_TASKS = 100_000
DEFAULT_RUNS = 3
MAX_RATIO = 1.5
#: shape name -> tasks per layer
SHAPES = {"wide": plan_scale.LAYER_WIDTH, "deep": 10}


@dataclass(frozen=True)
class Shape:
    """The three commands measured on one workstream file."""

    name: str
    width: int  # tasks per layer
    validate: Measurement
    plan: Measurement
    baseline: Measurement

    def ratio(self, measured: Measurement) -> float:
        return measured.median / self.baseline.median


def commands(workstream: Path, parser: str) -> dict[str, list[str]]:
    """Return label -> argv of the three measured commands on ``workstream``.

    The labels are the commands as one types them in the scratch directory.
    """
    name = workstream.name
    baseline = [sys.executable, str(BASELINE), str(workstream)]
    baseline_label = f"python toml_graphlib_baseline.py {name}"
    if parser != toml_graphlib_baseline.DEFAULT_PARSER:
        baseline[2:2] = ["--parser", parser]
        baseline_label = f"python toml_graphlib_baseline.py --parser {parser} {name}"
    return {
        f"orchestra validate {name}": [str(ORCHESTRA), "validate", str(workstream)],
        f"orchestra plan --format json {name}": [
            str(ORCHESTRA),
            "plan",
            "--format",
            "json",
            str(workstream),
        ],
        baseline_label: baseline,
    }


def check_baseline_output(path: Path, tasks: int) -> None:
    """Fail unless the baseline printed the number of tasks of the workstream."""
    text = path.read_text().strip()
    if text != str(tasks):
        raise SystemExit(f"FAILED: the baseline printed {text!r}, expected {tasks}")


def measure_shape(name: str, tasks: int, runs: int, parser: str, scratch: Path) -> Shape:
    """Write the workstream of one shape, check one run of each command, then time them."""
    width = SHAPES[name]
    workstream = scratch / f"{name}.toml"
    edges = plan_scale.write_workstream(workstream, tasks, width)
    size_mb = workstream.stat().st_size / 1e6
    print(
        f"{name}: {tasks:,} tasks in layers of {width:,}, {edges:,} dependencies, {size_mb:.1f} MB"
    )
    argvs = commands(workstream, parser)
    stderr = str(scratch / "stderr.txt")
    output = scratch / "stdout.txt"
    checks = (
        lambda: plan_scale.check_validate_output(output, tasks, edges),
        lambda: plan_scale.check_plan_output(output, tasks, edges),
        lambda: check_baseline_output(output, tasks),
    )
    print("  checking one untimed run of each")
    for argv, check in zip(argvs.values(), checks, strict=True):
        run_once(argv, stdout=str(output), stderr=stderr)
        check()
    output.unlink()

    # Not plan_scale.measure_interleaved: its two warm-up runs of each command would come on
    # top of the checked run above, which already warmed the caches (seconds at 100,000 tasks).
    results: dict[str, list[Run]] = {label: [] for label in argvs}
    for index in range(runs):
        for label, argv in argvs.items():
            run = run_once(argv, stderr=stderr)
            print(
                f"  {label}, run {index + 1}/{runs}: "
                f"{run.seconds:.2f} s, {run.rss_bytes / 1e6:.0f} MB"
            )
            results[label].append(run)
    validate, plan, baseline = (
        Measurement(label, tuple(found)) for label, found in results.items()
    )
    return Shape(name, width, validate, plan, baseline)


# -- reporting --------------------------------------------------------------------------


def rows_for(shapes: Sequence[Shape]) -> list[Row]:
    """Return the table rows: each orchestra command judged against its shape's baseline."""
    rows = []
    for shape in shapes:
        for measured in (shape.validate, shape.plan):
            ratio = shape.ratio(measured)
            rows.append(
                Row(
                    measured.label,
                    f"{measured.median:.2f} s",
                    f"{measured.fastest:.2f} s",
                    f"{measured.peak_rss_mb:.0f} MB",
                    f"ratio {ratio:.2f} (<= {MAX_RATIO})",
                    ratio <= MAX_RATIO,
                )
            )
        rows.append(
            Row(
                shape.baseline.label,
                f"{shape.baseline.median:.2f} s",
                f"{shape.baseline.fastest:.2f} s",
                f"{shape.baseline.peak_rss_mb:.0f} MB",
                "(reference)",
                True,
            )
        )
    return rows


def targets_line() -> str:
    return (
        f"Target: each orchestra command's median at most {MAX_RATIO} times the baseline's "
        "median on the same file (the ratio)."
    )


def reproduce_lines(tasks: int, runs: int, parser: str) -> list[str]:
    """Return the command lines that repeat this measurement."""
    flags = ""
    if tasks != DEFAULT_TASKS:
        flags += f" --tasks {tasks}"
    if runs != DEFAULT_RUNS:
        flags += f" --runs {runs}"
    if parser != toml_graphlib_baseline.DEFAULT_PARSER:
        flags += f" --baseline-parser {parser}"
    return [
        "To reproduce, from the repository root with the dev virtualenv:",
        "",
        f"    .venv/bin/python benchmarks/large_plans.py{flags}",
        f"    .venv/bin/python benchmarks/large_plans.py{flags} --record   # and append it here",
    ]


def record(shapes: Sequence[Shape], tasks: int, runs: int, parser: str) -> None:
    """Append a dated section with the table to RESULTS.md."""
    facts = plan_scale.machine_description()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    layers = ", ".join(f"{shape.name} (layers of {shape.width:,})" for shape in shapes)
    section = [
        f"## {stamp} — large plans (benchmarks/large_plans.py)",
        "",
        *(f"- {name}: {value}" for name, value in facts.items()),
        f"- workstreams: {tasks:,} command tasks each, {layers}; every task after the first "
        "layer depends on two tasks of the layer before",
        f"- baseline: `toml_graphlib_baseline.py`, {parser} and "
        "`graphlib.TopologicalSorter.static_order`, printing the number of tasks",
        f"- runs: {runs} of each command, in turn, after one untimed run of each whose "
        "output was checked; plan's output to /dev/null",
        "",
        plan_scale.markdown_table(rows_for(shapes)),
        "",
        targets_line(),
        "",
        *reproduce_lines(tasks, runs, parser),
        "",
    ]
    plan_scale.append_results(section)


# -- main -------------------------------------------------------------------------------


def shape_names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in SHAPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown shape {', '.join(unknown) or text!r}: choose from {', '.join(SHAPES)}"
        )
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="tasks to generate")
    parser.add_argument(
        "--shapes",
        type=shape_names,
        default=tuple(SHAPES),
        help="comma-separated shapes: wide (layers of 500), deep (layers of 10); default both",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each")
    parser.add_argument(
        "--baseline-parser",
        choices=("tomllib", "tomli"),
        default=toml_graphlib_baseline.DEFAULT_PARSER,
        help="the baseline's TOML parser: compiled tomli (default, as orchestra parses) or"
        " the standard library's",
    )
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    options = parser.parse_args(argv)
    if options.tasks < 1 or options.runs < 1:
        parser.error("--tasks and --runs must be at least 1")
    if not os.access(ORCHESTRA, os.X_OK):
        parser.error(f"{ORCHESTRA} not found: run with the venv python that has orchestra")

    with tempfile.TemporaryDirectory(prefix="orchestra-bench-") as scratch:
        # No orchestra.toml above a fresh temporary directory: the defaults are measured.
        os.chdir(scratch)
        shapes = [
            measure_shape(name, options.tasks, options.runs, options.baseline_parser, Path(scratch))
            for name in options.shapes
        ]
        os.chdir(plan_scale.REPO)

    rows = rows_for(shapes)
    print()
    print(plan_scale.markdown_table(rows))
    print(targets_line())
    if options.tasks != DEFAULT_TASKS:
        print(f"(the target is set for {DEFAULT_TASKS:,} tasks)")
    if options.record:
        record(shapes, options.tasks, options.runs, options.baseline_parser)
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
