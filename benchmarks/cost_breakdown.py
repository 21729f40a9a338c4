"""Where a quick task's cost goes in ``orchestra run``: instructions per task, by part.

Wall time on a shared 2-core machine moves by a tenth from one sitting to the next; the
instructions a process executes do not. This script counts them with valgrind's
callgrind (the orchestrator process alone; its children are not followed) for a run of
one ``/bin/true`` task and of ``--tasks`` of them (layers of 10, as overhead.py's narrow
shape), and gives the difference per task. It does so for the whole run and then with one
part of the work taken out at a time, replaced by a stand-in that does nothing (in the
measured process only, through the hook below; orchestra itself is not changed):

- ``process``: running the command (``engine.process.run_logged``: the fork, the watch,
  the log, containment), replaced by an immediate exit status 0;
- ``containment``: the cgroup and orphan bookkeeping around each process (``Scope``);
- ``masking``: the search for literal secrets in each command line;
- ``store``: the run database's writes of steps, attempts and events;
- ``worker``: all of an attempt's work on its worker thread (``carry_out``).

What a part costs is the whole run's figure less the figure without it. The parts
overlap (``process`` holds ``containment``; ``worker`` holds ``process``), and taking one
out can change how the loop's wakes fall, so the sum is no exact total: it says where to
look. The reference runner's figure is counted the same way, for scale.

Run with the project's virtualenv; needs ``valgrind`` on PATH (apt install valgrind)::

    .venv/bin/python benchmarks/cost_breakdown.py [--tasks 300] [--record]

``--record`` appends the figures to benchmarks/RESULTS.md. Standard library only. It
takes about three minutes.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead
import plan_scale

REFERENCE = Path(__file__).resolve().parent / "reference_runner.py"
DEFAULT_TASKS = 300
WIDTH = 10  # overhead.py's narrow shape: the loop's latency is on the critical path
#: the parts taken out in turn, as the measured process's hook names them
PARTS = ("process", "containment", "masking", "store", "worker")

#: Run in the measured process (``python -c``): take out the parts named in
#: ORCHESTRA_COST_WITHOUT, then run ``orchestra run`` as the console script would.
HOOK = r"""
import os, sys, time, contextlib
without = set(filter(None, os.environ.get("ORCHESTRA_COST_WITHOUT", "").split(",")))
if "process" in without:
    from orchestra.engine import context
    from orchestra.models import ProcessResult

    def run_logged(argv, *, cwd, env, log, redactor, **options):
        log.close()
        now = time.time()
        return ProcessResult(0, 0.0, log.path, started_at=now, ended_at=now)

    context.run_logged = run_logged
if "bare" in without:  # ceiling.py's: the child as the reference runs it, with nothing around it
    import subprocess
    from orchestra.engine import context
    from orchestra.models import ProcessResult

    def run_logged(argv, *, cwd, env, log, redactor, **options):
        log.close()
        started_at, start = time.time(), time.monotonic()
        code = subprocess.run(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ).returncode
        seconds = time.monotonic() - start
        return ProcessResult(code, seconds, log.path, started_at=started_at, ended_at=time.time())

    context.run_logged = run_logged
if "containment" in without:
    from orchestra.engine import process

    class NoScope:
        def __init__(self, env):
            self.leader = None

        @contextlib.contextmanager
        def spawning(self):
            yield

        def started(self, pid):
            self.leader = pid

        def strays(self):
            return set()

        def close(self):
            pass

    process.Scope = NoScope
if "masking" in without:
    from orchestra.engine import context, launches

    launches.masked_command = lambda command: " ".join(command)
    context.LocalContext._learn_secrets = lambda self, argv, environment: None
if "store" in without:
    from orchestra.store.run_writes import RunWrites

    RunWrites.set_step_state = lambda self, *arguments, **options: 0
    RunWrites.begin_attempt = (
        lambda self, run_id, task_id, current, tool, number=None, **options: number or 1
    )
    RunWrites.finish_attempt = lambda self, *arguments, **options: 0
    RunWrites.add_event = lambda self, *arguments, **options: 0
if "worker" in without:
    from orchestra.engine import orchestrator
    from orchestra.models import StepResult

    orchestrator.carry_out = lambda launch, defaults: StepResult("succeeded", exit_code=0)
sys.argv = ["orchestra", "run", "--max-parallel", "2", "--quiet", "ws.toml"]
from orchestra.cli import console
console()
"""


def instructions(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    """The instructions callgrind counts for ``argv`` (its process alone)."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"cost_breakdown: {' '.join(argv[:3])} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def orchestra_count(workstream: Path, scratch: Path, without: str) -> int:
    """Instructions of ``orchestra run`` of ``workstream`` in a fresh project."""
    project = Path(tempfile.mkdtemp(dir=scratch))
    shutil.copy(workstream, project / "ws.toml")
    (project / "orchestra.toml").write_text('sandbox = "none"\n')
    env = {**plan_scale.child_environment(), "ORCHESTRA_COST_WITHOUT": without}
    return instructions([sys.executable, "-c", HOOK], project, env)


def reference_count(workstream: Path, scratch: Path) -> int:
    database = Path(tempfile.mkdtemp(dir=scratch)) / "reference.db"
    env = plan_scale.child_environment()
    return instructions(
        [sys.executable, str(REFERENCE), str(workstream), str(database)], scratch, env
    )


def per_task(one: int, many: int, tasks: int) -> float:
    return (many - one) / (tasks - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS)
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("cost_breakdown: needs valgrind on PATH (apt install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="orchestra-cost-") as directory:
        scratch = Path(directory)
        one, many = scratch / "one.toml", scratch / "many.toml"
        overhead.write_workstream(one, 1, WIDTH)
        overhead.write_workstream(many, options.tasks, WIDTH)
        orchestra_count(one, scratch, "")  # fills the bytecode cache: not counted
        figures: dict[str, float] = {}
        for without in ("", *PARTS):
            label = without or "whole run"
            print(f"counting {label} …", file=sys.stderr)
            figures[label] = per_task(
                orchestra_count(one, scratch, without),
                orchestra_count(many, scratch, without),
                options.tasks,
            )
        reference = per_task(
            reference_count(one, scratch), reference_count(many, scratch), options.tasks
        )
    whole = figures["whole run"]
    lines = [
        "| part | instructions per task without it | the part's share |",
        "|---|---:|---:|",
        f"| (whole run) | {whole / 1e6:.3f} M | |",
    ]
    for part in PARTS:
        lines.append(
            f"| {part} | {figures[part] / 1e6:.3f} M | {(whole - figures[part]) / 1e6:.3f} M |"
        )
    lines.append(f"| (reference runner, whole) | {reference / 1e6:.3f} M | |")
    table = "\n".join(lines)
    print(table)
    if options.record:
        record(table, options.tasks)
        print("recorded in benchmarks/RESULTS.md")
    return 0


def record(table: str, tasks: int) -> None:
    machine = plan_scale.machine_description()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M %z")
    section = f"""
## {now} — cost by part (benchmarks/cost_breakdown.py)

- machine: {machine["machine"]}
- python: {machine["python"]}
- orchestra: {machine["orchestra"]}
- commit: {machine["commit"]}
- instructions (valgrind's callgrind, the orchestrator process alone, bytecode cache
  warm) of `orchestra run --max-parallel 2 --quiet ws.toml` on 1 and on {tasks:,}
  `/bin/true` tasks in layers of {WIDTH}, sandbox none; per task is the difference
  divided by {tasks - 1:,}; each part taken out in turn (see the script's docstring)

{table}

To reproduce: `.venv/bin/python benchmarks/cost_breakdown.py --tasks {tasks}`.
"""
    with plan_scale.RESULTS.open("a", encoding="utf-8") as results:
        results.write(section)


if __name__ == "__main__":
    sys.exit(main())
