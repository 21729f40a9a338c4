"""How long ``orchestra validate`` and ``orchestra plan`` take on a 100,000-task workstream.

Generates a layered workstream (layers of 500 command tasks, each task depending on two
tasks of the layer before), then times whole ``orchestra`` processes: wall time (median
of several runs, the machine being shared) and peak resident memory. Also compares the
start-up of ``orchestra --help`` with ``doit help``, another Python task-runner CLI, and
lists the slowest imports behind ``orchestra --help``.

Run with the project's virtualenv, which has orchestra and doit installed::

    .venv/bin/python benchmarks/plan_scale.py [--tasks N] [--runs R] [--record]

``--record`` appends the figures to benchmarks/RESULTS.md. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
# The scripts of the interpreter running this file, not its resolved path: the venv's
# bin directory is where pip put ``orchestra`` and ``doit``.
BIN = Path(sys.executable).parent
ORCHESTRA = BIN / "orchestra"
DOIT = BIN / "doit"

DEFAULT_TASKS = 100_000
LAYER_WIDTH = 500
DEFAULT_RUNS = 5
HELP_RUNS = 15
MAX_SECONDS = 3.0
MAX_RSS_MB = 400.0

RESULTS_HEADER = """\
# Benchmark results

Each section below is one run of `benchmarks/plan_scale.py --record`, newest last. The
script generates a layered workstream of 100,000 command tasks (layers of 500; every task
after the first layer depends on two tasks of the layer before, about 200,000 edges) and
runs whole `orchestra` processes on it, as a user would: `orchestra validate FILE` and
`orchestra plan --format json FILE` (output to /dev/null). *Median* is the median wall
time over the runs (the machine is shared, so single runs are noisy), *min* the fastest
run, and *peak RSS* the largest resident set of any run, in MB of 1,000,000 bytes, read
with `wait4` by a small helper that spawns the command (so no figure is below the
helper's own 9 MB). It also times `orchestra --help` against
`doit help` (another Python task-runner CLI), interleaved, after a warm-up, and lists
the five imports with the largest cumulative time behind `orchestra --help`
(`python -X importtime`).

Targets: validate and plan each under 3 s and 400 MB; `orchestra --help` no slower than
`doit help`.

To reproduce (about a minute), from the repository root with the dev virtualenv
(`pip install -e '.[benchmark]'` provides doit):

    .venv/bin/python benchmarks/plan_scale.py            # print the figures
    .venv/bin/python benchmarks/plan_scale.py --record   # and append them here
"""


@dataclass(frozen=True)
class Run:
    """One finished child process: its wall time and peak resident memory."""

    seconds: float
    rss_bytes: int


@dataclass(frozen=True)
class Measurement:
    """Several runs of one command, summarised."""

    label: str
    runs: tuple[Run, ...]

    @property
    def median(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def fastest(self) -> float:
        return min(run.seconds for run in self.runs)

    @property
    def peak_rss_mb(self) -> float:
        return max(run.rss_bytes for run in self.runs) / 1e6


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    label: str
    median: str
    fastest: str
    rss: str
    target: str
    passed: bool


# -- the workstream ---------------------------------------------------------------------


def write_workstream(path: Path, tasks: int, width: int = LAYER_WIDTH) -> int:
    """Write a layered workstream of ``tasks`` command tasks to ``path``; return its edges.

    Task ``n`` sits at position ``n % width`` of layer ``n // width`` and, after the first
    layer, depends on positions ``i`` and ``i + offset`` of the layer before, the offset
    changing with the layer so that the graph is not the same ladder 200 times.
    """
    digits = max(6, len(str(tasks - 1)))
    lines = [
        'id = "scale"',
        f'title = "{tasks}-task layered workstream"',
    ]
    edges = 0
    for number in range(tasks):
        layer, position = divmod(number, width)
        lines += ["", "[[tasks]]", f'id = "t{number:0{digits}d}"', 'command = ["true"]']
        if layer:
            offset = 1 + (layer * 7) % (width - 1)  # 1..width-1, so the two are distinct
            first = (layer - 1) * width + position
            second = (layer - 1) * width + (position + offset) % width
            lines.append(f'depends_on = ["t{first:0{digits}d}", "t{second:0{digits}d}"]')
            edges += 2
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return edges


# -- running whole processes ------------------------------------------------------------


#: where the measured Python programs keep their bytecode (see child_environment)
PYCACHE = Path(tempfile.gettempdir()) / "orchestra-benchmark-pycache"


def child_environment() -> dict[str, str]:
    """Return this environment for a measured program: without ORCHESTRA_* settings, so
    results do not depend on them, and with bytecode caching on.

    An installed package has its modules compiled (pip writes the .pyc files); a
    PYTHONDONTWRITEBYTECODE=1 in the environment (as on the machines here) would make every
    measured run compile them again, which is no user's start-up. The bytecode goes to a
    directory of its own (PYTHONPYCACHEPREFIX), not into the source tree; the untimed
    first runs write it.
    """
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("ORCHESTRA_")
    }
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    return environment


# Runs one command and prints "seconds exit_code maxrss". Measurements go through a fresh
# copy of this small program because a child's ru_maxrss starts from the high-water mark of
# the memory it was spawned from: spawned straight from this script, which has parsed the
# 100,000-task plan, every child would report this script's 200-odd MB. ``wait4`` gives
# the rusage of that one child, unlike RUSAGE_CHILDREN, a maximum over every child so far.
MEASURE_ONE = """\
import os, sys, time
stdout, stderr, *argv = sys.argv[1:]
flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
actions = [
    (os.POSIX_SPAWN_OPEN, 1, stdout, flags, 0o644),
    (os.POSIX_SPAWN_OPEN, 2, stderr, flags, 0o644),
]
started = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_once(argv: Sequence[str], stdout: str = os.devnull, stderr: str = os.devnull) -> Run:
    """Run ``argv`` to completion and return its wall time and peak RSS; fail if it fails."""
    helper = [sys.executable, "-I", "-S", "-c", MEASURE_ONE, stdout, stderr, *argv]
    report = subprocess.run(
        helper, capture_output=True, text=True, env=child_environment(), check=True
    )
    seconds, exit_code, max_rss = report.stdout.split()
    if int(exit_code) != 0:
        detail = ""
        if stderr != os.devnull:
            detail = "\n" + Path(stderr).read_text(errors="replace")[-2000:]
        raise SystemExit(f"FAILED: {' '.join(argv)} exited with {exit_code}{detail}")
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    rss_bytes = int(max_rss) if sys.platform == "darwin" else int(max_rss) * 1024
    return Run(float(seconds), rss_bytes)


def measure(label: str, argv: Sequence[str], runs: int, stderr: str) -> Measurement:
    """Return ``runs`` timed runs of ``argv``, printing each as it finishes."""
    results = []
    for index in range(runs):
        run = run_once(argv, stderr=stderr)
        print(
            f"  {label} run {index + 1}/{runs}: {run.seconds:.2f} s, {run.rss_bytes / 1e6:.0f} MB"
        )
        results.append(run)
    return Measurement(label, tuple(results))


def measure_interleaved(
    commands: dict[str, Sequence[str]], runs: int, stderr: str
) -> dict[str, Measurement]:
    """Return ``runs`` runs of each command, taken in turn so that load hits all alike."""
    for argv in commands.values():  # warm the page cache and the bytecode caches
        run_once(argv, stderr=stderr)
        run_once(argv, stderr=stderr)
    results: dict[str, list[Run]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, argv in commands.items():
            results[label].append(run_once(argv, stderr=stderr))
    return {label: Measurement(label, tuple(found)) for label, found in results.items()}


def check_validate_output(path: Path, tasks: int, edges: int) -> None:
    """Fail unless ``orchestra validate`` reported the workstream with its size."""
    text = path.read_text()
    expected = f"{tasks:,} tasks, {edges:,} dependencies"
    if not text.startswith("ok: ") or expected not in text:
        raise SystemExit(f"FAILED: validate printed {text.strip()!r}, expected {expected!r}")


def check_plan_output(path: Path, tasks: int, edges: int) -> None:
    """Fail unless the JSON plan parses and routes every task of the workstream to shell."""
    try:
        plan = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"FAILED: plan --format json is not JSON: {error}") from None
    planned = plan.get("tasks", [])
    found_edges = sum(len(task["depends_on"]) for task in planned)
    tools = {task["tool"] for task in planned}
    if len(planned) != tasks or found_edges != edges or tools != {"shell"}:
        raise SystemExit(
            f"FAILED: the plan has {len(planned)} tasks, {found_edges} dependencies and "
            f"tools {sorted(map(str, tools))}; expected {tasks}, {edges} and ['shell']"
        )


def slowest_imports(count: int = 5) -> list[tuple[int, str]]:
    """Return the ``count`` imports with the largest cumulative time (µs) in ``--help``."""
    finished = subprocess.run(
        [sys.executable, "-X", "importtime", str(ORCHESTRA), "--help"],
        capture_output=True,
        text=True,
        env=child_environment(),
        check=True,
    )
    imports = []
    for line in finished.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            cumulative, indent, module = found.groups()
            imports.append((int(cumulative), f"{indent[1:]}{module}"))
    return sorted(imports, reverse=True)[:count]


# -- reporting --------------------------------------------------------------------------


def rows_for(validate: Measurement, plan: Measurement, helps: dict[str, Measurement]) -> list[Row]:
    """Return the table rows, each judged against its target."""
    rows = []
    for measured in (validate, plan):
        rows.append(
            Row(
                measured.label,
                f"{measured.median:.2f} s",
                f"{measured.fastest:.2f} s",
                f"{measured.peak_rss_mb:.0f} MB",
                f"< {MAX_SECONDS:.0f} s, < {MAX_RSS_MB:.0f} MB",
                measured.median < MAX_SECONDS and measured.peak_rss_mb < MAX_RSS_MB,
            )
        )
    orchestra_help, doit_help = helps["orchestra --help"], helps["doit help"]
    rows.append(
        Row(
            orchestra_help.label,
            f"{orchestra_help.median * 1000:.0f} ms",
            f"{orchestra_help.fastest * 1000:.0f} ms",
            f"{orchestra_help.peak_rss_mb:.0f} MB",
            f"<= doit help ({doit_help.median * 1000:.0f} ms)",
            orchestra_help.median <= doit_help.median,
        )
    )
    rows.append(
        Row(
            doit_help.label,
            f"{doit_help.median * 1000:.0f} ms",
            f"{doit_help.fastest * 1000:.0f} ms",
            f"{doit_help.peak_rss_mb:.0f} MB",
            "(reference)",
            True,
        )
    )
    return rows


def markdown_table(rows: list[Row]) -> str:
    """Return the rows as a Markdown table, padded so it also reads as plain text."""
    header = ("command", "median", "min", "peak RSS", "target", "result")
    cells = [header] + [
        (
            f"`{row.label}`",
            row.median,
            row.fastest,
            row.rss,
            row.target,
            "" if row.target == "(reference)" else ("PASS" if row.passed else "FAIL"),
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(len(header))]
    right = {1, 2, 3}  # figures line up on the right

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if column in right else value.ljust(width)
            for column, (value, width) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (width + 1) + ":" if column in right else "-" * (width + 2)
        for column, width in enumerate(widths)
    )
    return "\n".join([line(cells[0]), rule + "|", *map(line, cells[1:])])


def machine_description() -> dict[str, str]:
    """Return what a recorded run should say about where and on what it ran."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = f" ({text.split(':', 1)[1].strip()})"
                break
    except OSError:
        pass
    version = subprocess.run(
        [str(ORCHESTRA), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # Others may be editing the tree: say when what ran is not exactly the commit.
    if git("status", "--porcelain", "--", "orchestra", "pyproject.toml"):
        commit += " + uncommitted changes to orchestra/ or pyproject.toml"
    return {
        "machine": f"{cpus} CPUs{model}, {platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "orchestra": version,
        "commit": commit,
    }


def record(
    rows: list[Row], imports: list[tuple[int, str]], tasks: int, edges: int, runs: int
) -> None:
    """Append a dated section with the table to RESULTS.md, creating the file if needed."""
    facts = machine_description()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    section = [
        f"## {stamp}",
        "",
        *(f"- {name}: {value}" for name, value in facts.items()),
        f"- workstream: {tasks:,} tasks, {edges:,} dependencies, layers of {LAYER_WIDTH}",
        f"- runs: {runs} each for validate and plan, {HELP_RUNS} each for --help / help",
        "",
        markdown_table(rows),
        "",
        "Slowest imports of `orchestra --help` (cumulative):",
        "",
        *(f"    {micros / 1000:7.1f} ms  {module}" for micros, module in imports),
        "",
    ]
    append_results(section)


def append_results(section: Sequence[str]) -> None:
    """Append a section (its lines) to benchmarks/RESULTS.md, made with its header if
    missing; every benchmark records this way."""
    existing = RESULTS.read_text() if RESULTS.exists() else RESULTS_HEADER
    RESULTS.write_text(existing.rstrip("\n") + "\n\n" + "\n".join(section))
    print(f"\nrecorded in {RESULTS.relative_to(REPO)}")


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="tasks to generate")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs per command")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    options = parser.parse_args(argv)
    if options.tasks < 1 or options.runs < 1:
        parser.error("--tasks and --runs must be at least 1")
    for script in (ORCHESTRA, DOIT):
        if not os.access(script, os.X_OK):
            parser.error(f"{script} not found: run with the venv python that has orchestra/doit")

    with tempfile.TemporaryDirectory(prefix="orchestra-bench-") as scratch:
        scratch_dir = Path(scratch)
        # No orchestra.toml above a fresh temporary directory: the defaults are measured.
        os.chdir(scratch_dir)
        workstream = scratch_dir / "scale.toml"
        edges = write_workstream(workstream, options.tasks)
        size_mb = workstream.stat().st_size / 1e6
        print(f"workstream: {options.tasks:,} tasks, {edges:,} dependencies, {size_mb:.1f} MB")
        stderr = str(scratch_dir / "stderr.txt")
        output = scratch_dir / "stdout.txt"

        validate_argv = [str(ORCHESTRA), "validate", str(workstream)]
        plan_argv = [str(ORCHESTRA), "plan", "--format", "json", str(workstream)]
        # One untimed run of each checks the output and warms the caches.
        run_once(validate_argv, stdout=str(output), stderr=stderr)
        check_validate_output(output, options.tasks, edges)
        run_once(plan_argv, stdout=str(output), stderr=stderr)
        check_plan_output(output, options.tasks, edges)
        output.unlink()

        validate = measure("orchestra validate", validate_argv, options.runs, stderr)
        plan = measure("orchestra plan --format json", plan_argv, options.runs, stderr)
        helps = measure_interleaved(
            {"orchestra --help": [str(ORCHESTRA), "--help"], "doit help": [str(DOIT), "help"]},
            HELP_RUNS,
            stderr,
        )
        imports = slowest_imports()
        os.chdir(REPO)

    rows = rows_for(validate, plan, helps)
    print()
    print(markdown_table(rows))
    print("\nslowest imports of `orchestra --help` (cumulative):")
    for micros, module in imports:
        print(f"  {micros / 1000:7.1f} ms  {module}")
    if options.tasks != DEFAULT_TASKS:
        print(f"\n(the targets are set for {DEFAULT_TASKS:,} tasks)")
    if options.record:
        record(rows, imports, options.tasks, edges, options.runs)
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
