"""What a user waits for before orchestra does anything: start-up of ``run`` and of the read
commands, and where that time goes (issue 25, target 3).

In a fresh temporary project (not a git repository, no orchestra.toml: the defaults) with a
1-task workstream whose command is ``/bin/true``, times whole processes:

- ``orchestra run --quiet ws.toml`` on a fresh database each time (``.orchestra`` removed)
  against ``python benchmarks/reference_runner.py ws.toml DB`` on a fresh database, taken
  in turn; one untimed run of each comes first and its database is checked;
- on a database holding one such run: ``orchestra runs``, ``orchestra show RUN``,
  ``orchestra status`` and ``orchestra plan ws.toml``, and ``orchestra --version`` for
  reference, in turn after two untimed runs of each (plan_scale.measure_interleaved).

Every program runs with Python's bytecode cache on, as installed programs do
(plan_scale.child_environment). Then where the time goes, both on a fresh database:
``python -X importtime -m orchestra run --quiet ws.toml``, its slowest imports by
cumulative time; and ``python -m cProfile -o FILE -m orchestra run --quiet ws.toml``, the
functions with the largest cumulative time, less import machinery (importlib's frames,
``exec`` and ``__import__``, module bodies, runpy); and how many modules each command
imports, a count that a busy machine does not change.

Targets: ``orchestra run`` within 100 ms of the reference (medians); every read command's
median under 150 ms.

Run with the project's virtualenv, which has orchestra installed::

    .venv/bin/python benchmarks/startup.py [--runs R] [--record]

``--record`` appends the figures to benchmarks/RESULTS.md. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pstats
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead
import plan_scale
from plan_scale import Measurement, Row, Run, run_once

REFERENCE = Path(__file__).resolve().parent / "reference_runner.py"
ORCHESTRA = plan_scale.ORCHESTRA

DEFAULT_RUNS = 15
MAX_RUN_EXCESS = 0.100  # seconds over the reference runner's median
MAX_READ_SECONDS = 0.150
TOP = 15  # imports and functions listed
WORKSTREAM = """\
id = "startup"
title = "one task"

[[tasks]]
id = "only"
command = ["/bin/true"]
"""
RUN_ARGUMENTS = ("run", "--quiet", "ws.toml")  # orchestra's, in the project directory
RUN_LABEL = "orchestra run --quiet ws.toml"
REFERENCE_LABEL = "python reference_runner.py ws.toml DB"
VERSION_LABEL = "orchestra --version"


@dataclass(frozen=True)
class Project:
    """The temporary project: its directory, workstream, the reference's database, a log."""

    directory: Path
    reference_db: Path
    stderr: str

    @property
    def database(self) -> Path:
        return self.directory / ".orchestra" / "orchestra.db"

    def fresh(self) -> None:
        """Remove both runners' databases, so the next run starts from none."""
        shutil.rmtree(self.directory / ".orchestra", ignore_errors=True)
        for path in self.reference_db.parent.glob(self.reference_db.name + "*"):
            path.unlink()  # the database and its -wal and -shm files


def make_project(scratch: Path) -> Project:
    """Write the 1-task workstream into a new project directory under ``scratch``."""
    directory = scratch / "project"
    directory.mkdir()
    (directory / "ws.toml").write_text(WORKSTREAM)
    return Project(directory, scratch / "reference" / "reference.db", str(scratch / "stderr.txt"))


# -- timing -----------------------------------------------------------------------------


def run_argvs(project: Project) -> dict[str, list[str]]:
    return {
        RUN_LABEL: [str(ORCHESTRA), *RUN_ARGUMENTS],
        REFERENCE_LABEL: [sys.executable, str(REFERENCE), "ws.toml", str(project.reference_db)],
    }


def measure_runs(project: Project, runs: int) -> dict[str, Measurement]:
    """Check one untimed run of each runner, then time ``runs`` of each, in turn, each on a
    fresh database."""
    argvs = run_argvs(project)
    project.reference_db.parent.mkdir(exist_ok=True)
    print("checking one untimed run of each runner")
    project.fresh()
    for argv in argvs.values():
        run_once(argv, stderr=project.stderr)
    overhead.check_orchestra_database(project.database, 1)
    overhead.check_reference_database(project.reference_db, 1)

    results: dict[str, list[Run]] = {label: [] for label in argvs}
    for index in range(runs):
        for label, argv in argvs.items():
            project.fresh()
            run = run_once(argv, stderr=project.stderr)
            print(f"  {label}, run {index + 1}/{runs}: {run.seconds * 1000:.0f} ms")
            results[label].append(run)
    return {label: Measurement(label, tuple(found)) for label, found in results.items()}


def read_arguments(run_id: str) -> dict[str, list[str]]:
    """The read commands, and ``--version``, by label: orchestra's arguments."""
    return {
        "orchestra runs": ["runs"],
        "orchestra show RUN": ["show", run_id],
        "orchestra status": ["status"],
        "orchestra plan ws.toml": ["plan", "ws.toml"],
        VERSION_LABEL: ["--version"],
    }


def one_run(project: Project) -> str:
    """Make the database hold one run of the workstream (only that); return its id."""
    project.fresh()
    run_once(run_argvs(project)[RUN_LABEL], stderr=project.stderr)
    connection = sqlite3.connect(project.database)
    try:
        (run_id,) = connection.execute("SELECT id FROM runs").fetchone()
    finally:
        connection.close()
    return run_id


def measure_reads(project: Project, runs: int) -> dict[str, Measurement]:
    """Time the read commands on a database that holds one run of the workstream."""
    run_id = one_run(project)
    print(f"timing the read commands on run {run_id}, {runs} runs each, in turn")
    return plan_scale.measure_interleaved(
        {
            label: [str(ORCHESTRA), *arguments]
            for label, arguments in read_arguments(run_id).items()
        },
        runs,
        project.stderr,
    )


def module_counts(project: Project) -> dict[str, int]:
    """How many modules each command imports (``-X importtime``'s lines): unlike its
    time, the same on a busy machine as on a quiet one, so it shows what a change cut."""
    project.fresh()
    counts = {RUN_LABEL: len(import_times(["-m", "orchestra", *RUN_ARGUMENTS])[0])}
    run_id = one_run(project)
    for label, arguments in read_arguments(run_id).items():
        counts[label] = len(import_times(["-m", "orchestra", *arguments])[0])
    return counts


# -- where the time goes ----------------------------------------------------------------


def import_times(argv: Sequence[str]) -> tuple[list[tuple[int, str]], int]:
    """Run ``python -X importtime ARGV`` and return its imports as (cumulative µs, module
    indented as nested), slowest first, and the sum of their own times (all import time)."""
    finished = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=plan_scale.child_environment(),
        check=True,
    )
    imports, total = [], 0
    for line in finished.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            own, cumulative, indent, module = found.groups()
            imports.append((int(cumulative), f"{indent[1:]}{module}"))
            total += int(own)
    return sorted(imports, reverse=True), total


#: frames that are the import system or ``-m`` itself, not work orchestra chose to do
IMPORT_FILES = ("<frozen importlib.", "<frozen runpy>", "<frozen zipimport>", "<string>")
IMPORT_FUNCTIONS = (
    "<module>",  # a module's body: the import of that module
    "<built-in method builtins.exec>",
    "<built-in method builtins.__import__>",
    "<built-in method _imp.create_dynamic>",
    "<built-in method _imp.exec_dynamic>",
)
IMPORTLIB_INIT = str(Path(sysconfig.get_paths()["stdlib"]) / "importlib" / "__init__.py")


def is_import_machinery(file: str, function: str) -> bool:
    return file.startswith(IMPORT_FILES) or function in IMPORT_FUNCTIONS or file == IMPORTLIB_INIT


def short_path(file: str) -> str:
    """Return ``file`` relative to the repository, site-packages or the standard library."""
    for root in (  # site-packages first: the virtualenv may sit in the repository
        Path(sysconfig.get_paths()["purelib"]),
        Path(sysconfig.get_paths()["stdlib"]),
        plan_scale.REPO,
    ):
        if file.startswith(f"{root}{os.sep}"):
            return file[len(str(root)) + 1 :]
    return file


def profile_run(project: Project, scratch: Path) -> tuple[list[tuple[float, float, str]], float]:
    """Profile one ``orchestra run`` of the workstream; return its functions with the
    largest cumulative time, less import machinery, as (cumulative s, own s, name), and the
    profiled run's total time."""
    output = scratch / "run.prof"
    project.fresh()
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "orchestra", *RUN_ARGUMENTS],
        stdout=subprocess.DEVNULL,
        env=plan_scale.child_environment(),
        check=True,
    )
    statistics = pstats.Stats(str(output))
    functions = []
    for (file, line, function), (_, _, own, cumulative, _) in statistics.stats.items():
        if is_import_machinery(file, function):
            continue
        name = function if file == "~" else f"{short_path(file)}:{line} {function}"
        functions.append((cumulative, own, name))
    return sorted(functions, reverse=True)[:TOP], statistics.total_tt


# -- reporting --------------------------------------------------------------------------


def rows_for(timed_runs: dict[str, Measurement], reads: dict[str, Measurement]) -> list[Row]:
    """Return the table rows, each judged against its target."""

    def row(measured: Measurement, target: str, passed: bool) -> Row:
        return Row(
            measured.label,
            f"{measured.median * 1000:.0f} ms",
            f"{measured.fastest * 1000:.0f} ms",
            f"{measured.peak_rss_mb:.0f} MB",
            target,
            passed,
        )

    ours, reference = timed_runs[RUN_LABEL], timed_runs[REFERENCE_LABEL]
    excess = ours.median - reference.median
    rows = [
        row(
            ours,
            f"<= reference + {MAX_RUN_EXCESS * 1000:.0f} ms (+{excess * 1000:.0f} ms)",
            excess <= MAX_RUN_EXCESS,
        ),
        row(reference, "(reference)", True),
    ]
    for label, measured in reads.items():
        if label == VERSION_LABEL:
            rows.append(row(measured, "(reference)", True))
        else:
            limit = f"< {MAX_READ_SECONDS * 1000:.0f} ms"
            rows.append(row(measured, limit, measured.median < MAX_READ_SECONDS))
    return rows


def where_lines(
    imports: tuple[list[tuple[int, str]], int],
    profile: tuple[list[tuple[float, float, str]], float],
    modules: dict[str, int],
) -> list[str]:
    """Return the lines that say where the time of ``orchestra run`` goes."""
    found, total = imports
    functions, profiled = profile
    return [
        "Modules each command imports (`python -X importtime -m orchestra …`, "
        "runpy's own included):",
        "",
        *(f"    {count:5d}  {label}" for label, count in modules.items()),
        "",
        f"Slowest imports of `python -X importtime -m orchestra run --quiet ws.toml` "
        f"(cumulative; {len(found)} modules, {total / 1000:.0f} ms of imports in all):",
        "",
        *(f"    {micros / 1000:7.1f} ms  {module}" for micros, module in found[:TOP]),
        "",
        f"Largest cumulative times in `python -m cProfile -m orchestra run --quiet ws.toml` "
        f"({profiled * 1000:.0f} ms profiled; import machinery left out, but a function's "
        "time includes the imports it triggers):",
        "",
        "    cumulative      own  function",
        *(
            f"    {cumulative * 1000:7.1f} ms {own * 1000:5.1f} ms  {name}"
            for cumulative, own, name in functions
        ),
    ]


def targets_line() -> str:
    return (
        f"Targets: `orchestra run` median at most {MAX_RUN_EXCESS * 1000:.0f} ms over the "
        f"reference runner's; each read command's median under {MAX_READ_SECONDS * 1000:.0f} ms."
    )


def record(rows: list[Row], where: list[str], runs: int) -> None:
    """Append a dated section with the table and where the time goes to RESULTS.md."""
    facts = plan_scale.machine_description()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    flags = "" if runs == DEFAULT_RUNS else f" --runs {runs}"
    section = [
        f"## {stamp} — start-up (benchmarks/startup.py)",
        "",
        *(f"- {name}: {value}" for name, value in facts.items()),
        "- project: a fresh temporary directory (no git, no orchestra.toml: the defaults), "
        'a workstream `ws.toml` of one task, `command = ["/bin/true"]`',
        f"- runs: {runs} of each, in turn; `orchestra run` and the reference on a fresh "
        "database each time, after one untimed run of each whose database was checked; "
        "the read commands on a database holding one run, after two untimed runs of each",
        "",
        plan_scale.markdown_table(rows),
        "",
        targets_line(),
        "",
        *where,
        "",
        "To reproduce, from the repository root with the dev virtualenv:",
        "",
        f"    .venv/bin/python benchmarks/startup.py{flags}",
        f"    .venv/bin/python benchmarks/startup.py{flags} --record   # and append it here",
        "",
    ]
    plan_scale.append_results(section)


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    options = parser.parse_args(argv)
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    overhead.require_orchestra_run()

    with tempfile.TemporaryDirectory(prefix="orchestra-bench-") as scratch:
        scratch_dir = Path(scratch)
        project = make_project(scratch_dir)
        os.chdir(project.directory)
        try:
            timed_runs = measure_runs(project, options.runs)
            reads = measure_reads(project, options.runs)
            print("where the time goes: -X importtime, then cProfile")
            project.fresh()
            imports = import_times(["-m", "orchestra", *RUN_ARGUMENTS])
            profile = profile_run(project, scratch_dir)
            modules = module_counts(project)
        finally:
            os.chdir(plan_scale.REPO)

    rows = rows_for(timed_runs, reads)
    where = where_lines(imports, profile, modules)
    print()
    print(plan_scale.markdown_table(rows))
    print(targets_line())
    print()
    print("\n".join(where))
    if options.record:
        record(rows, where, options.runs)
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
