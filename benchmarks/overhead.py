"""What ``orchestra run`` costs over a minimal runner, on workstreams of ``/bin/true`` tasks.

Generates layered workstreams (plan_scale.py's generator: each task after the first layer
depending on two tasks of the layer before) of 1,000 and 10,000 tasks whose command is
``/bin/true``, in two shapes: wide (layers of 500, so there is always more ready work than
workers) and narrow (layers of 10, so every few tasks a worker waits for the run loop to
mark a task done and start the next: its latency is on the critical path). It runs each as
a whole process two ways, interleaved: ``orchestra
run --max-parallel 2 --quiet FILE`` in a fresh working directory (so a fresh database,
``.orchestra/orchestra.db``), and ``benchmarks/reference_runner.py FILE DB`` on a fresh
database (graphlib, two threads, ``subprocess.run``, one SQLite row per task start and end).
Reports the median wall time of each, their ratio and the peak RSS of each. One untimed
run of each comes first, and its database is checked: every task ran and succeeded. Both
run with Python's bytecode cache on, as an installed program does (see
``plan_scale.child_environment``); the untimed runs fill it.

Dask's threaded scheduler (``benchmarks/dask_runner.py``: the same graph, two threads,
nothing recorded) runs beside them when ``dask`` is installed (``pip install dask``; it is
no dependency of orchestra): a runner that keeps no state, for scale.

Targets (issue 25), at 10,000 tasks: orchestra's median at most 1.15 times the
reference's on the wide shape and 1.3 times on the narrow one, and below Dask's on both;
orchestra's peak RSS under 150 MB (at 10,000 tasks, and so at fewer). Smaller
workstreams are shown, not judged: their ratio is mostly the start-up's.

To show where a ratio comes from, a 1-task workstream is timed too (the start-up: the
interpreter, imports, loading, the database) and each size's time is split into that
start-up and the time per task beyond it. These figures are for reading, not targets.

Run with the project's virtualenv, which has orchestra installed::

    .venv/bin/python benchmarks/overhead.py [--tasks 1000,10000] [--shapes wide,narrow]
        [--runs R] [--sandbox auto|bwrap|none] [--record]

``--record`` appends the figures to benchmarks/RESULTS.md. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plan_scale
import reference_runner
from plan_scale import Measurement, Run, run_once

REFERENCE = Path(__file__).resolve().parent / "reference_runner.py"
DASK_RUNNER = Path(__file__).resolve().parent / "dask_runner.py"
ORCHESTRA = plan_scale.ORCHESTRA

DEFAULT_TASKS = (1_000, 10_000)
START_UP_TASKS = 1  # the workstream whose time is the start-up
DEFAULT_RUNS = 3
MAX_PARALLEL = reference_runner.MAX_WORKERS  # the same parallelism for both
COMMAND = "/bin/true"
#: the largest ratio of the medians (orchestra / reference) per shape, judged at this size
MAX_RATIO = {"wide": 1.15, "narrow": 1.3}
RATIO_TARGET_TASKS = 10_000
MAX_RSS_MB = 150.0
RSS_TARGET_TASKS = 10_000  # the memory target is set for this many tasks (or fewer)
#: shape name -> tasks per layer: wide keeps both workers busy from ready work alone; narrow
#: makes each task's start wait on the run loop noticing its dependencies' ends
SHAPES = {"wide": plan_scale.LAYER_WIDTH, "narrow": 10}


@dataclass(frozen=True)
class Comparison:
    """Both runners on one workstream."""

    tasks: int
    width: int  # tasks per layer
    orchestra: Measurement
    reference: Measurement
    #: Dask's threaded scheduler, when dask is installed
    dask: Measurement | None = None

    @property
    def ratio(self) -> float:
        return self.orchestra.median / self.reference.median

    @property
    def shape(self) -> str:
        return next((name for name, width in SHAPES.items() if width == self.width), "wide")

    @property
    def time_judged(self) -> bool:
        return self.tasks == RATIO_TARGET_TASKS

    @property
    def memory_judged(self) -> bool:
        return self.tasks <= RSS_TARGET_TASKS

    @property
    def failures(self) -> list[str]:
        found = []
        if self.time_judged and self.ratio > MAX_RATIO[self.shape]:
            found.append("time")
        behind = self.dask is not None and self.orchestra.median >= self.dask.median
        if self.time_judged and behind:
            found.append("behind dask")
        if self.memory_judged and self.orchestra.peak_rss_mb >= MAX_RSS_MB:
            found.append("memory")
        return found


# -- the workstream ---------------------------------------------------------------------


def write_workstream(path: Path, tasks: int, width: int) -> int:
    """Write plan_scale's workstream, layers of ``width``, with ``/bin/true`` as every
    command; return its edges."""
    edges = plan_scale.write_workstream(path, tasks, width)
    text = path.read_text(encoding="utf-8")
    generated = 'command = ["true"]'
    if text.count(generated) != tasks:
        raise SystemExit(f"FAILED: plan_scale.write_workstream no longer writes {generated!r}")
    path.write_text(text.replace(generated, f'command = ["{COMMAND}"]'), encoding="utf-8")
    return edges


# -- checks -----------------------------------------------------------------------------


def require_orchestra_run() -> None:
    """Exit with a clear message unless this orchestra has ``run`` with the flags used here."""
    if not os.access(ORCHESTRA, os.X_OK):
        raise SystemExit(f"{ORCHESTRA} not found: run with the venv python that has orchestra")
    found = subprocess.run(
        [str(ORCHESTRA), "run", "--help"],
        capture_output=True,
        text=True,
        env=plan_scale.child_environment(),
        check=False,
    )
    if found.returncode != 0:
        version = subprocess.run(
            [str(ORCHESTRA), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        said = (found.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(
            f"`orchestra run` is not available in {version or ORCHESTRA} "
            f"(`orchestra run --help` exited with {found.returncode}: {said}). "
            "This benchmark measures `orchestra run`, which comes with the run engine."
        )
    missing = [flag for flag in ("--max-parallel", "--quiet") if flag not in found.stdout]
    if missing:
        raise SystemExit(
            f"`orchestra run` has no {' or '.join(missing)} option; this benchmark runs "
            f"`orchestra run --max-parallel {MAX_PARALLEL} --quiet FILE`"
        )


def table_schema(connection: sqlite3.Connection) -> str:
    rows = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL"
    )
    return "\n".join(sql for (sql,) in rows) or "(no tables)"


def check_orchestra_database(database: Path, tasks: int) -> None:
    """Fail unless the database records one run that succeeded, with ``tasks`` steps succeeded."""
    if not database.is_file():
        found = sorted(str(path) for path in database.parent.parent.rglob("*.db"))
        raise SystemExit(
            f"FAILED: `orchestra run` exited 0 but wrote no database at {database}"
            + (f"; found {', '.join(found)}" if found else "")
        )
    connection = sqlite3.connect(database)
    try:
        runs = [state for (state,) in connection.execute("SELECT state FROM runs")]
        steps = dict(connection.execute("SELECT state, count(*) FROM steps GROUP BY state"))
    except sqlite3.Error as error:
        raise SystemExit(
            f"FAILED: cannot read the outcome from {database} ({error}). This script expects "
            f"tables runs(state) and steps(state); the tables are:\n{table_schema(connection)}"
        ) from None
    finally:
        connection.close()
    if runs != ["succeeded"] or steps != {"succeeded": tasks}:
        raise SystemExit(
            f"FAILED: {database} records runs in states {runs} and steps by state {steps}; "
            f"expected one run 'succeeded' and {tasks} steps 'succeeded'"
        )


def check_reference_database(database: Path, tasks: int) -> None:
    """Fail unless the reference runner recorded a start and a successful end for every task."""
    connection = sqlite3.connect(database)
    try:
        starts, ends, succeeded = connection.execute(
            "SELECT coalesce(sum(event = 'start'), 0), coalesce(sum(event = 'end'), 0),"
            " coalesce(sum(event = 'end' AND exit_code = 0), 0) FROM events"
        ).fetchone()
    finally:
        connection.close()
    if not starts == ends == succeeded == tasks:
        raise SystemExit(
            f"FAILED: the reference runner recorded {starts} starts, {ends} ends and "
            f"{succeeded} successes; expected {tasks} of each"
        )


# -- measuring --------------------------------------------------------------------------


#: the ``sandbox`` setting of the measured runs (--sandbox), None for the default
SANDBOX: str | None = None
#: whether Dask's threaded scheduler runs beside them (dask installed, no --no-dask)
WITH_DASK = False


def orchestra_once(workstream: Path, scratch: Path, stdout: str = os.devnull) -> tuple[Run, Path]:
    """Run ``orchestra run`` in a fresh working directory; return the run and the directory.

    With no orchestra.toml above the directory, the defaults apply and the database is
    ``<directory>/.orchestra/orchestra.db``.
    """
    workdir = Path(tempfile.mkdtemp(prefix="orchestra-", dir=scratch))
    if SANDBOX is not None:  # --sandbox: an orchestra.toml that says it
        (workdir / "orchestra.toml").write_text(f'sandbox = "{SANDBOX}"\n')
    argv = [str(ORCHESTRA), "run", "--max-parallel", str(MAX_PARALLEL), "--quiet", str(workstream)]
    os.chdir(workdir)
    try:
        run = run_once(argv, stdout=stdout, stderr=str(scratch / "orchestra-stderr.txt"))
    finally:
        os.chdir(scratch)
    return run, workdir


def reference_once(workstream: Path, scratch: Path) -> tuple[Run, Path]:
    """Run the reference runner on a fresh ``<directory>/reference.db``; return the run and
    the directory."""
    workdir = Path(tempfile.mkdtemp(prefix="reference-", dir=scratch))
    argv = [sys.executable, str(REFERENCE), str(workstream), str(workdir / "reference.db")]
    os.chdir(workdir)
    try:
        run = run_once(argv, stderr=str(scratch / "reference-stderr.txt"))
    finally:
        os.chdir(scratch)
    return run, workdir


def dask_once(workstream: Path, scratch: Path) -> tuple[Run, Path]:
    """Run Dask's threaded scheduler on the workstream; return the run and a directory."""
    workdir = Path(tempfile.mkdtemp(prefix="dask-", dir=scratch))
    argv = [sys.executable, str(DASK_RUNNER), str(workstream)]
    run = run_once(argv, stderr=str(scratch / "dask-stderr.txt"))
    return run, workdir


def dask_installed() -> bool:
    found = subprocess.run([sys.executable, "-c", "import dask"], capture_output=True, check=False)
    return found.returncode == 0


def compare(workstream: Path, tasks: int, width: int, runs: int, scratch: Path) -> Comparison:
    """Check one run of each, then time ``runs`` of each, interleaved, each on a fresh database."""
    print("  checking one untimed run of each")
    _, workdir = orchestra_once(workstream, scratch, stdout=str(scratch / "orchestra-stdout.txt"))
    check_orchestra_database(workdir / ".orchestra" / "orchestra.db", tasks)
    shutil.rmtree(workdir)
    _, workdir = reference_once(workstream, scratch)
    check_reference_database(workdir / "reference.db", tasks)
    shutil.rmtree(workdir)

    runners = {"orchestra run": orchestra_once, "reference runner": reference_once}
    if WITH_DASK:
        runners["dask threaded"] = dask_once
    results: dict[str, list[Run]] = {label: [] for label in runners}
    for index in range(runs):
        for label, once in runners.items():  # in turn, so that load hits both alike
            run, workdir = once(workstream, scratch)
            shutil.rmtree(workdir)
            print(
                f"  {label}, run {index + 1}/{runs}: "
                f"{run.seconds:.2f} s, {run.rss_bytes / 1e6:.0f} MB"
            )
            results[label].append(run)
    measured = [Measurement(label, tuple(results[label])) for label in runners]
    return Comparison(tasks, width, *measured)


# -- reporting --------------------------------------------------------------------------


def markdown_table(comparisons: Sequence[Comparison]) -> str:
    """Return one row per workstream as a Markdown table, padded so it also reads as text."""
    header = (
        "tasks",
        "per layer",
        "orchestra median",
        "min",
        "reference median",
        "min",
        "ratio",
        "dask median",
        "orchestra RSS",
        "reference RSS",
        "result",
    )
    cells = [header] + [
        (
            f"{found.tasks:,}",
            f"{found.width:,}",
            f"{found.orchestra.median:.2f} s",
            f"{found.orchestra.fastest:.2f} s",
            f"{found.reference.median:.2f} s",
            f"{found.reference.fastest:.2f} s",
            f"{found.ratio:.2f}",
            f"{found.dask.median:.2f} s" if found.dask is not None else "-",
            f"{found.orchestra.peak_rss_mb:.0f} MB",
            f"{found.reference.peak_rss_mb:.0f} MB",
            (f"FAIL ({', '.join(found.failures)})" if found.failures else "PASS")
            if found.time_judged or found.memory_judged
            else "(shown)",
        )
        for found in comparisons
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(len(header))]
    last = len(header) - 1  # every column but the result lines up on the right

    def line(values: Sequence[str]) -> str:
        padded = [
            value.ljust(width) if column == last else value.rjust(width)
            for column, (value, width) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (width + 2) if column == last else "-" * (width + 1) + ":"
        for column, width in enumerate(widths)
    )
    return "\n".join([line(cells[0]), rule + "|", *map(line, cells[1:])])


def decomposition(comparisons: Sequence[Comparison], start: Comparison) -> list[str]:
    """Lines splitting each size's medians into the start-up and the time per task after it."""
    lines = [
        f"Start-up (a {start.tasks}-task workstream): orchestra {start.orchestra.median:.3f} s, "
        f"reference {start.reference.median:.3f} s."
    ]
    for found in comparisons:
        if found.tasks == start.tasks:
            continue
        ours, theirs = (
            (measured.median - started.median) / (found.tasks - start.tasks) * 1000
            for measured, started in (
                (found.orchestra, start.orchestra),
                (found.reference, start.reference),
            )
        )
        lines.append(
            f"Per task after it, at {found.tasks:,} tasks in layers of {found.width:,}: "
            f"orchestra {ours:.3f} ms, reference {theirs:.3f} ms ({ours / theirs:.2f})."
        )
    return lines


def targets_line() -> str:
    limits = ", ".join(f"{shape} <= {limit}" for shape, limit in MAX_RATIO.items())
    return (
        f"Targets at {RATIO_TARGET_TASKS:,} tasks: ratio of the medians (orchestra / reference)"
        f" {limits}, and orchestra's median below Dask's threaded scheduler's; orchestra's "
        f"peak RSS < {MAX_RSS_MB:.0f} MB at {RSS_TARGET_TASKS:,} tasks or fewer."
    )


def record(comparisons: Sequence[Comparison], start: Comparison, runs: int) -> None:
    """Append a dated section with the table to RESULTS.md."""
    facts = plan_scale.machine_description()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    sizes = " and ".join(sorted({f"{found.tasks:,}" for found in comparisons}, key=len))
    widths = " and ".join(f"{width:,}" for width in dict.fromkeys(f.width for f in comparisons))
    section = [
        f"## {stamp} — run overhead (benchmarks/overhead.py)",
        "",
        *(f"- {name}: {value}" for name, value in facts.items()),
        f"- workstreams: {sizes} tasks of `{COMMAND}`, in layers of {widths}, "
        "two dependencies per task after the first layer",
        f"- `orchestra run --max-parallel {MAX_PARALLEL} --quiet FILE` in a fresh directory, "
        f"against `benchmarks/reference_runner.py FILE DB` ({reference_runner.MAX_WORKERS} "
        "threads, a SQLite row per task start and end, WAL, synchronous=NORMAL)"
        + (
            f" and `benchmarks/dask_runner.py FILE` (Dask's threaded scheduler, "
            f"{reference_runner.MAX_WORKERS} threads, nothing recorded)"
            if WITH_DASK
            else ""
        ),
        f"- runs: {runs} of each, interleaved, each on a fresh database, after one untimed "
        "run of each whose database was checked",
        f"- orchestra's sandbox: {SANDBOX or 'the default (auto: bubblewrap where it works)'}",
        "",
        markdown_table(comparisons),
        "",
        targets_line(),
        "",
        *decomposition(comparisons, start),
        "",
    ]
    plan_scale.append_results(section)


# -- main -------------------------------------------------------------------------------


def task_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError("every task count must be at least 1")
    return counts


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
    parser.add_argument(
        "--tasks",
        type=task_counts,
        default=DEFAULT_TASKS,
        help="comma-separated task counts (default: 1000,10000)",
    )
    parser.add_argument(
        "--shapes",
        type=shape_names,
        default=tuple(SHAPES),
        help="comma-separated shapes: wide (layers of 500), narrow (layers of 10); default both",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument("--no-dask", action="store_true", help="leave Dask's scheduler out")
    parser.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "none"),
        help="the runs' sandbox setting, through an orchestra.toml (default: none written)",
    )
    options = parser.parse_args(argv)
    global SANDBOX, WITH_DASK
    SANDBOX = options.sandbox
    WITH_DASK = not options.no_dask and dask_installed()
    if not WITH_DASK and not options.no_dask:
        print("dask is not installed (pip install dask): its scheduler is left out")
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    if not os.access(COMMAND, os.X_OK):
        parser.error(f"{COMMAND} not found")
    require_orchestra_run()

    comparisons = []
    # the start-up workstream (one task: its shape does not matter) first, then each shape
    workloads = [(START_UP_TASKS, SHAPES[options.shapes[0]])] + [
        (tasks, SHAPES[shape])
        for shape in options.shapes
        for tasks in options.tasks
        if tasks != START_UP_TASKS
    ]
    with tempfile.TemporaryDirectory(prefix="orchestra-bench-") as scratch:
        scratch_dir = Path(scratch)
        os.chdir(scratch_dir)
        for tasks, width in workloads:
            workstream = scratch_dir / f"true-{tasks}-by-{width}.toml"
            edges = write_workstream(workstream, tasks, width)
            print(
                f"workstream: {tasks:,} tasks of {COMMAND} in layers of {width}, "
                f"{edges:,} dependencies"
            )
            comparisons.append(compare(workstream, tasks, width, options.runs, scratch_dir))
        os.chdir(plan_scale.REPO)

    start = comparisons[0]
    if START_UP_TASKS not in options.tasks:  # measured for the split only, not judged
        comparisons.remove(start)
    print()
    print(markdown_table(comparisons))
    print(targets_line())
    print("\n".join(decomposition(comparisons, start)))
    if options.record:
        record(comparisons, start, options.runs)
    return 1 if any(found.failures for found in comparisons) else 0


if __name__ == "__main__":
    sys.exit(main())
