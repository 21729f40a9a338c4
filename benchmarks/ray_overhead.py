"""What an attempt costs on Ray: the 1,000-task ``/bin/true`` workstream three ways.

Starts a local Ray cluster of two nodes on 127.0.0.1 (a head and one more node, each
with one CPU and ``{"tool:shell": 2}``), writes overhead.py's layered workstream of
``/bin/true`` tasks (layers of 500, two dependencies per task after the first layer)
into a fresh git repository, and times, as whole processes:

- ``orchestra run --executor local --max-parallel 2 --quiet`` (the worktree workspace);
- ``orchestra run --executor ray --ray-address ADDRESS --max-parallel 2 --quiet``;
- plain Ray running the same graph: one task per workstream task, each running
  ``/bin/true`` in a subprocess and needing ``{"tool:shell": 1}``, chained by object
  references (a task's arguments are its dependencies' results), all submitted at once.

Reports the wall time of each and the per-task overhead (wall time / tasks). Each
orchestra run's database is checked: one run succeeded, every step succeeded.

Run with the project's virtualenv, which has orchestra, orchestra-ray and Ray::

    .venv/bin/python benchmarks/ray_overhead.py [--tasks 1000] [--runs 1] [--record]

``--record`` appends the figures to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# Ray turns 127.0.0.1 into the machine's address unless clusters are local only; read
# when Ray is first imported, and inherited by every process started here.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead
import plan_scale
from plan_scale import Run, run_once

ORCHESTRA = plan_scale.ORCHESTRA
REPO = plan_scale.REPO
MAX_PARALLEL = 2
DEFAULT_TASKS = 1_000

#: the plain-Ray program: the same graph as Ray tasks chained by object references
PLAIN_RAY = """\
import re, subprocess, sys, tomllib, ray
address, workstream = sys.argv[1:]
ray.init(address=address, log_to_driver=False, logging_level="WARNING")
tasks = tomllib.loads(open(workstream).read())["tasks"]

@ray.remote(num_cpus=0, max_retries=0, resources={"tool:shell": 1})
def attempt(command, *dependencies):
    return subprocess.run(command).returncode

results = {}
for task in tasks:  # the file lists every task after its dependencies
    results[task["id"]] = attempt.remote(
        task["command"], *(results[d] for d in task.get("depends_on", ()))
    )
codes = ray.get(list(results.values()))
assert codes == [0] * len(tasks), codes
"""


def start_cluster() -> tuple[Any, str]:
    from ray.cluster_utils import Cluster

    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"tool:shell": 2},
            "include_dashboard": False,
            "temp_dir": temp_dir,
        },
    )
    cluster.add_node(num_cpus=1, resources={"tool:shell": 2})
    cluster.wait_for_nodes()
    return cluster, temp_dir


def make_repository(scratch: Path, workstream: Path) -> Path:
    """A fresh git repository holding the workstream, for a run in worktrees."""
    repo = Path(tempfile.mkdtemp(prefix="repo-", dir=scratch))
    shutil.copy(workstream, repo / "ws.toml")
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }
    for arguments in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-qm", "ws")):
        subprocess.run(["git", *arguments], cwd=repo, env=environment, check=True)
    return repo


def orchestra_once(scratch: Path, workstream: Path, tasks: int, *executor: str) -> Run:
    repo = make_repository(scratch, workstream)
    argv = [str(ORCHESTRA), "run", "--max-parallel", str(MAX_PARALLEL), "--quiet"]
    os.chdir(repo)
    try:
        run = run_once([*argv, *executor, "ws.toml"], stderr=str(scratch / "orchestra-stderr.txt"))
    finally:
        os.chdir(scratch)
    overhead.check_orchestra_database(repo / ".orchestra" / "orchestra.db", tasks)
    return run


def plain_ray_once(scratch: Path, workstream: Path, address: str) -> Run:
    program = scratch / "plain_ray.py"
    program.write_text(PLAIN_RAY)
    return run_once(
        [sys.executable, str(program), address, str(workstream)],
        stderr=str(scratch / "plain-ray-stderr.txt"),
    )


def record(rows: list[tuple[str, list[float]]], tasks: int, runs: int) -> None:
    facts = plan_scale.machine_description()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    lines = [
        f"## {stamp} — Ray executor overhead (benchmarks/ray_overhead.py)",
        "",
        *(f"- {name}: {value}" for name, value in facts.items()),
        f"- workstream: {tasks:,} tasks of `/bin/true`, layers of 500, two dependencies per"
        " task after the first layer, in a git repository (worktree workspace)",
        "- cluster: Ray 2.60 on this machine, 127.0.0.1: a head and one more node, each with"
        ' 1 CPU and `{"tool:shell": 2}`',
        f"- `--max-parallel {MAX_PARALLEL} --quiet`; runs: {runs} of each",
        "",
        "| runner | median | min | per task |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in rows:
        median = sorted(seconds)[len(seconds) // 2]
        lines.append(
            f"| {label} | {median:.2f} s | {min(seconds):.2f} s | {median / tasks * 1000:.1f} ms |"
        )
    lines.append("")
    plan_scale.append_results(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--record", action="store_true")
    options = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    workstream = scratch / "ws.toml"
    overhead.write_workstream(workstream, options.tasks)
    cluster, ray_temp_dir = start_cluster()
    try:
        address = cluster.address
        measured: dict[str, list[float]] = {"local": [], "ray": [], "plain Ray": []}
        for _ in range(options.runs):
            for label in measured:
                if label == "local":
                    run = orchestra_once(scratch, workstream, options.tasks, "--executor", "local")
                elif label == "ray":
                    ray_flags = ("--executor", "ray", "--ray-address", address)
                    run = orchestra_once(scratch, workstream, options.tasks, *ray_flags)
                else:
                    run = plain_ray_once(scratch, workstream, address)
                measured[label].append(run.seconds)
                per_task = run.seconds / options.tasks * 1000
                print(f"  {label}: {run.seconds:.2f} s ({per_task:.1f} ms per task)", flush=True)
    finally:
        cluster.shutdown()
        shutil.rmtree(ray_temp_dir, ignore_errors=True)
        os.chdir(REPO)
        shutil.rmtree(scratch, ignore_errors=True)
    rows = [
        ("`orchestra run --executor local`", measured["local"]),
        ("`orchestra run --executor ray`", measured["ray"]),
        ("plain Ray, tasks chained by object references", measured["plain Ray"]),
    ]
    if options.record:
        record(rows, options.tasks, options.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
