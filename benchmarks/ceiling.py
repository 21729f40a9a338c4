"""How near the reference ``orchestra run`` could come if two of its parts cost nothing.

overhead.py's targets at 10,000 ``/bin/true`` tasks (issue 25) ask for orchestra within
1.15 times the reference runner on the wide shape and 1.3 times on the narrow one, and
ahead of Dask's threaded scheduler on both, with every record the run keeps today. This
script asks what is left for those records. It times, interleaved, on each shape:

- orchestra as it is;
- orchestra with its store's writes taken out (no step, attempt or event is written:
  cost_breakdown.py's ``store`` stand-in);
- orchestra with each attempt's process run as the reference runs it (``bare``: one
  ``subprocess.run``, output to /dev/null; no log, no output pipe, no containment, no
  masking of the output);
- orchestra with both: all that is left is the run loop's own work (routing, the
  steps' states, the launches) and the start-up;
- the reference runner, and Dask's threaded scheduler when dask is installed.

Each stand-in is installed in the measured process only (cost_breakdown.py's hook);
orchestra is not changed. Then it measures the floor of the records themselves: the
CPU time of writing one task's records through the store's own calls (its step made
ready, its attempt begun and finished, its step succeeded, five events), four tasks to
a transaction as the narrow run commits them, with no run loop around them; and of the
same SQL statements, recorded on the way, replayed on a bare connection to a new
database: what the records cost with no Python of the store's at all.

The last table says, per shape, how much time a target leaves for the store and the
attempt's process handling once the rest of orchestra runs as it does: the target's time
(the lower of the ratio's limit and Dask's median) less the time with both taken out,
per task. Wall time is what the targets judge; the floor is CPU time in one thread, which
on the narrow shape (the loop's latency on the critical path) becomes wall time one for
one. Figures to read, not targets.

Run with the project's virtualenv (``pip install dask`` for Dask's column)::

    .venv/bin/python benchmarks/ceiling.py [--runs 5] [--shapes wide,narrow] [--record]

``--record`` appends the figures to benchmarks/RESULTS.md. Standard library only. With
five runs it takes about ten minutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cost_breakdown
import overhead
import plan_scale
from plan_scale import Measurement, Run, run_once

TASKS = overhead.RATIO_TARGET_TASKS
DEFAULT_RUNS = 5
#: label -> the parts taken out of orchestra (cost_breakdown.py's hook)
VARIANTS = {
    "orchestra": "",
    "without the store": "store",
    "bare process": "bare",
    "both": "store,bare",
}
#: tasks a transaction holds in the floor's measurement: what the narrow run commits at once
FLOOR_BATCH = 4
FLOOR_TASKS = 5_000


def orchestra_variant_once(workstream: Path, scratch: Path, without: str) -> Run:
    """Run orchestra with ``without`` taken out, in a fresh directory, sandbox none."""
    workdir = Path(tempfile.mkdtemp(prefix="ceiling-", dir=scratch))
    shutil.copy(workstream, workdir / "ws.toml")
    (workdir / "orchestra.toml").write_text('sandbox = "none"\n')
    program = f"import os\nos.environ['ORCHESTRA_COST_WITHOUT'] = {without!r}\n"
    program += cost_breakdown.HOOK
    os.chdir(workdir)
    try:
        run = run_once(
            [sys.executable, "-c", program], stderr=str(scratch / "orchestra-stderr.txt")
        )
    finally:
        os.chdir(scratch)
    if not without:  # the whole run: its database holds every task, succeeded
        overhead.check_orchestra_database(workdir / ".orchestra" / "orchestra.db", TASKS)
    shutil.rmtree(workdir)
    return run


def time_shape(workstream: Path, runs: int, scratch: Path) -> dict[str, Measurement]:
    """Time every variant, the reference and Dask, in turn, ``runs`` times each, after
    one untimed run of each."""
    runners = {
        label: (lambda without=without: orchestra_variant_once(workstream, scratch, without))
        for label, without in VARIANTS.items()
    }
    runners["reference"] = lambda: reference_run(workstream, scratch)
    if overhead.WITH_DASK:
        runners["dask threaded"] = lambda: dask_run(workstream, scratch)
    for label, once in runners.items():
        print(f"  untimed: {label}")
        once()
    results: dict[str, list[Run]] = {label: [] for label in runners}
    for index in range(runs):
        for label, once in runners.items():
            run = once()
            print(f"  {label}, run {index + 1}/{runs}: {run.seconds:.2f} s")
            results[label].append(run)
    return {label: Measurement(label, tuple(found)) for label, found in results.items()}


def reference_run(workstream: Path, scratch: Path) -> Run:
    run, workdir = overhead.reference_once(workstream, scratch)
    shutil.rmtree(workdir)
    return run


def dask_run(workstream: Path, scratch: Path) -> Run:
    run, workdir = overhead.dask_once(workstream, scratch)
    shutil.rmtree(workdir)
    return run


class StatementLog:
    """Stands in for a store's connection: runs every statement and keeps it, with its
    parameters, to be replayed without the store."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.statements: list[tuple[str, Any, bool]] = []

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        self.statements.append((sql, parameters, False))
        return self.connection.execute(sql, parameters)

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = list(rows)
        self.statements.append((sql, rows, True))
        return self.connection.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


def floor_store(directory: Path) -> tuple[Any, str, list[str]]:
    """A new store in ``directory`` with a running run of FLOOR_TASKS pending steps."""
    from orchestra.store.database import Store
    from orchestra.store.lifecycle import RunState

    store = Store.open(directory / "floor.db")
    ids = [f"t{number:06d}" for number in range(FLOOR_TASKS)]
    run_id = store.create_run("floor", None, None, ids, claim=True)
    store.set_run_state(run_id, RunState.RUNNING)
    return store, run_id, ids


def write_records(store: Any, run_id: str, ids: Sequence[str], logs: Path) -> None:
    """Write what the run loop writes for each task of a quick command that succeeds:
    its step ready, its attempt begun (step running), finished, its step succeeded, and
    the five events of those; FLOOR_BATCH tasks to a transaction."""
    from orchestra.store.lifecycle import StepState

    why = "shell is the only tool that can run it"
    for first in range(0, len(ids), FLOOR_BATCH):
        with store.batch():
            for task_id in ids[first : first + FLOOR_BATCH]:
                store.set_step_state(run_id, task_id, StepState.READY, current=StepState.PENDING)
                store.begin_attempt(
                    run_id,
                    task_id,
                    StepState.READY,
                    "shell",
                    command="/bin/true",
                    log_path=str(logs / f"{task_id}.1.log"),
                    route_reason=why,
                    capabilities="command",
                    payload={"tool": "shell", "attempt": 1, "why": why},
                    number=1,
                )
                now = time.time()
                store.finish_attempt(
                    run_id, task_id, 1, outcome="succeeded", exit_code=0, started_at=now,
                    ended_at=now,
                )  # fmt: skip
                store.set_step_state(
                    run_id,
                    task_id,
                    StepState.SUCCEEDED,
                    current=StepState.RUNNING,
                    payload={"tool": "shell"},
                )


def records_floor(scratch: Path) -> tuple[float, float]:
    """CPU microseconds per task of the records: written through the store's calls, and
    the same statements replayed on a bare connection (no store's Python around them),
    each on a new database."""
    places = [Path(tempfile.mkdtemp(dir=scratch)) for _ in range(3)]
    store, run_id, ids = floor_store(places[0])
    started = time.process_time()
    write_records(store, run_id, ids, places[0])
    through_store = time.process_time() - started
    written = len(store.events(run_id))
    store.close()
    if written < 5 * FLOOR_TASKS:
        raise SystemExit(f"FAILED: the floor's store holds {written} events")

    store, recorded_run, ids = floor_store(places[1])
    log = StatementLog(store._connection)
    store._connection = log
    write_records(store, recorded_run, ids, places[1])
    store._connection = log.connection
    store.close()

    store, run_id, _ = floor_store(places[2])
    connection = store._connection

    def swapped(values: Any) -> Any:
        return tuple(run_id if value == recorded_run else value for value in values)

    statements = [
        (sql, [swapped(row) for row in parameters] if many else swapped(parameters), many)
        for sql, parameters, many in log.statements
    ]
    started = time.process_time()
    for sql, parameters, many in statements:
        if many:
            connection.executemany(sql, parameters)
        else:
            connection.execute(sql, parameters)
    bare = time.process_time() - started
    replayed = connection.execute(
        "SELECT count(*) FROM events WHERE run_id = ?", (run_id,)
    ).fetchone()[0]
    store.close()
    if replayed < 5 * FLOOR_TASKS:
        raise SystemExit(f"FAILED: the replayed statements wrote {replayed} events")
    return through_store / FLOOR_TASKS * 1e6, bare / FLOOR_TASKS * 1e6


# -- reporting --------------------------------------------------------------------------


def times_table(found: dict[str, dict[str, Measurement]]) -> list[str]:
    labels = list(next(iter(found.values())))
    lines = [
        "| runner | " + " | ".join(f"{shape} median | ratio" for shape in found) + " |",
        "|---|" + "---:|---:|" * len(found),
    ]
    for label in labels:
        cells = []
        for measured in found.values():
            median = measured[label].median
            cells.append(f"{median:.2f} s | {median / measured['reference'].median:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def budget_table(found: dict[str, dict[str, Measurement]], floor: tuple[float, float]) -> list[str]:
    through_store, bare = floor
    lines = [
        "| shape | target's time | with both taken out | left for the store and the process,"
        " per task | the records (CPU per task): through the store | as bare statements |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for shape, measured in found.items():
        limit = overhead.MAX_RATIO[shape] * measured["reference"].median
        dask = measured.get("dask threaded")
        target = limit if dask is None else min(limit, dask.median)
        rest = measured["both"].median
        left = (target - rest) / TASKS * 1e6
        lines.append(
            f"| {shape} | {target:.2f} s | {rest:.2f} s | {left:.0f} µs"
            f" | {through_store:.0f} µs | {bare:.0f} µs |"
        )
    return lines


def spread(measured: dict[str, Measurement]) -> str:
    runs = [run.seconds for run in measured["reference"].runs]
    return f"{statistics.pstdev(runs):.2f} s"


def record(lines: Sequence[str], runs: int, shapes: Sequence[str]) -> None:
    facts = plan_scale.machine_description()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    widths = ", ".join(f"{shape} (layers of {overhead.SHAPES[shape]})" for shape in shapes)
    plan_scale.append_results(
        [
            f"## {stamp} — what is left for the records (benchmarks/ceiling.py)",
            "",
            *(f"- {name}: {value}" for name, value in facts.items()),
            f"- workstreams: {TASKS:,} tasks of `/bin/true`, {widths}",
            f"- runs: {runs} of each, interleaved, after one untimed run of each; sandbox none",
            "",
            *lines,
            "",
            f"To reproduce: `.venv/bin/python benchmarks/ceiling.py --runs {runs}`.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each")
    parser.add_argument(
        "--shapes",
        type=overhead.shape_names,
        default=tuple(overhead.SHAPES),
        help="comma-separated shapes: wide (layers of 500), narrow (layers of 10); default both",
    )
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument("--no-dask", action="store_true", help="leave Dask's scheduler out")
    options = parser.parse_args(argv)
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    overhead.WITH_DASK = not options.no_dask and overhead.dask_installed()
    overhead.require_orchestra_run()
    found: dict[str, dict[str, Measurement]] = {}
    with tempfile.TemporaryDirectory(prefix="orchestra-ceiling-") as directory:
        scratch = Path(directory)
        os.chdir(scratch)
        for shape in options.shapes:
            workstream = scratch / f"{shape}.toml"
            overhead.write_workstream(workstream, TASKS, overhead.SHAPES[shape])
            print(f"{shape}: {TASKS:,} tasks in layers of {overhead.SHAPES[shape]}")
            found[shape] = time_shape(workstream, options.runs, scratch)
        floors = [records_floor(scratch) for _ in range(3)]
        floor = (
            statistics.median(store for store, _ in floors),
            statistics.median(bare for _, bare in floors),
        )
        os.chdir(plan_scale.REPO)
    lines = [
        *times_table(found),
        "",
        *budget_table(found, floor),
        "",
        "Spread (standard deviation) of the reference's runs: "
        + ", ".join(f"{shape} {spread(measured)}" for shape, measured in found.items())
        + ".",
    ]
    print("\n".join(lines))
    if options.record:
        record(lines, options.runs, options.shapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
