"""What an attempt that writes nothing costs in a git repository, over running in place.

Makes a small fresh git repository (a few dozen files, one commit) and a workstream of N
independent command tasks of ``/bin/true`` (no ``files.write``, no ``files.create``: they
declare no writes), then times whole ``orchestra run --max-parallel 2 --quiet FILE``
processes two ways, interleaved: with ``workspace = "inplace"`` (the project directory
itself) and with ``workspace = "worktree"`` (the run branch and its worktrees: for
commands that declare no writes, one worktree per run-branch tip, shared). Each run
starts on a fresh database (``.orchestra`` removed); one untimed run of each comes first
and is checked: every task succeeded, no worktree or branch of the run is left, the
user's checkout is as it was. Reports the median of each and the overhead per task,
``(worktree − inplace) / N`` in milliseconds.

Target (issue 25, target 4): at most 5 ms per task.

Run with the project's virtualenv, which has orchestra installed::

    .venv/bin/python benchmarks/commands_in_git.py [--tasks N] [--runs R]
        [--sandbox auto|bwrap|none] [--record]

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plan_scale
from plan_scale import Measurement, Run, run_once

ORCHESTRA = plan_scale.ORCHESTRA
DEFAULT_TASKS = 300
DEFAULT_RUNS = 3
MAX_PARALLEL = 2
COMMAND = "/bin/true"
FILES = 40  # the small repository's files, besides its README and .gitignore
MAX_OVERHEAD_MS = 5.0
WORKSPACES = ("inplace", "worktree")


# -- the repository and the workstreams -------------------------------------------------


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def make_repository(repo: Path, tasks: int, sandbox: str | None) -> None:
    """A fresh repository of ``FILES`` small source files, with one workstream per
    workspace (``<workspace>.toml``) and, with ``sandbox``, an orchestra.toml saying it;
    everything committed, so the runs find a clean checkout."""
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "README.md").write_text("# a small project\n")
    (repo / ".gitignore").write_text(".orchestra/\n")
    (repo / "src").mkdir()
    for number in range(FILES):
        (repo / "src" / f"module{number:02d}.py").write_text(f"VALUE = {number}\n" * 20)
    if sandbox is not None:
        (repo / "orchestra.toml").write_text(f'sandbox = "{sandbox}"\n')
    for workspace in WORKSPACES:
        lines = ['id = "commands"', "", "[defaults]", f'workspace = "{workspace}"']
        for number in range(tasks):
            lines += ["", "[[tasks]]", f'id = "c{number:04d}"', f'command = ["{COMMAND}"]']
        (repo / f"{workspace}.toml").write_text("\n".join(lines) + "\n")
    git(repo, "add", "--all")
    identity = ("-c", "user.name=bench", "-c", "user.email=bench@localhost")
    git(repo, *identity, "commit", "--quiet", "-m", "a small project")


# -- running ----------------------------------------------------------------------------


def run_workstream(repo: Path, workspace: str, scratch: Path) -> Run:
    """One ``orchestra run`` of the workspace's workstream on a fresh database."""
    shutil.rmtree(repo / ".orchestra", ignore_errors=True)
    argv = [str(ORCHESTRA), "run", "--max-parallel", str(MAX_PARALLEL), "--quiet"]
    here = Path.cwd()
    os.chdir(repo)
    try:
        return run_once(
            [*argv, f"{workspace}.toml"],
            stdout=str(scratch / "stdout.txt"),
            stderr=str(scratch / "stderr.txt"),
        )
    finally:
        os.chdir(here)


def check_run(repo: Path, tasks: int, head: str) -> None:
    """Fail unless the last run succeeded with every task, and left the user's checkout
    and the repository as they were: no worktree, no branch of orchestra's."""
    database = repo / ".orchestra" / "orchestra.db"
    with sqlite3.connect(database) as connection:
        runs = [state for (state,) in connection.execute("SELECT state FROM runs")]
        steps = dict(connection.execute("SELECT state, count(*) FROM steps GROUP BY state"))
    if runs != ["succeeded"] or steps != {"succeeded": tasks}:
        raise SystemExit(f"FAILED: runs {runs}, steps by state {steps}; expected all succeeded")
    problems = []
    if git(repo, "rev-parse", "HEAD").strip() != head:
        problems.append("HEAD moved")
    if git(repo, "status", "--porcelain"):
        problems.append("the checkout has changes")
    listed = [line for line in git(repo, "worktree", "list").splitlines() if line]
    if len(listed) != 1:
        problems.append(f"worktrees left: {listed[1:]}")
    if git(repo, "branch", "--list", "orchestra*"):
        problems.append("branches left: " + git(repo, "branch", "--list", "orchestra*"))
    if problems:
        raise SystemExit("FAILED: " + "; ".join(problems))


def measure(repo: Path, tasks: int, runs: int, scratch: Path) -> dict[str, Measurement]:
    """Check one untimed run of each workspace, then time ``runs`` of each, in turn."""
    head = git(repo, "rev-parse", "HEAD").strip()
    for workspace in WORKSPACES:
        print(f"  checking one untimed run in workspace {workspace}")
        run_workstream(repo, workspace, scratch)
        check_run(repo, tasks, head)
    results: dict[str, list[Run]] = {workspace: [] for workspace in WORKSPACES}
    for index in range(runs):
        for workspace in WORKSPACES:  # in turn, so that load hits both alike
            run = run_workstream(repo, workspace, scratch)
            print(f"  {workspace}, run {index + 1}/{runs}: {run.seconds:.2f} s")
            results[workspace].append(run)
    return {workspace: Measurement(workspace, tuple(found)) for workspace, found in results.items()}


def overhead_ms(found: dict[str, Measurement], tasks: int) -> float:
    """The worktree workspace's cost per task over in place, in milliseconds."""
    return (found["worktree"].median - found["inplace"].median) / tasks * 1000


# -- reporting --------------------------------------------------------------------------


def figures(found: dict[str, Measurement], tasks: int) -> list[str]:
    """The lines that say what was measured: each workspace's median and runs, and the
    overhead per task against the target."""
    lines = []
    for workspace in WORKSPACES:
        measured = found[workspace]
        each = ", ".join(f"{run.seconds:.2f}" for run in measured.runs)
        lines.append(
            f"- {workspace}: median {measured.median:.2f} s (runs: {each} s), "
            f"{measured.median / tasks * 1000:.2f} ms a task"
        )
    cost = overhead_ms(found, tasks)
    verdict = "PASS" if cost <= MAX_OVERHEAD_MS else "FAIL"
    lines.append(
        f"- overhead of worktree over inplace: {cost:.2f} ms a task "
        f"(target: at most {MAX_OVERHEAD_MS:.0f} ms) {verdict}"
    )
    return lines


def record(found: dict[str, Measurement], tasks: int, runs: int, sandbox: str | None) -> None:
    """Append a dated section with the figures to RESULTS.md."""
    facts = plan_scale.machine_description()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    section = [
        f"## {stamp} — commands in git (benchmarks/commands_in_git.py)",
        "",
        *(f"- {name}: {value}" for name, value in facts.items()),
        f"- workstream: {tasks:,} independent tasks of `{COMMAND}` (no writes declared), "
        f"in a fresh repository of {FILES + 2} files and one commit",
        f"- `orchestra run --max-parallel {MAX_PARALLEL} --quiet FILE`, workspace inplace "
        "against worktree, each on a fresh database",
        f"- runs: {runs} of each, interleaved, after one untimed and checked run of each",
        f"- sandbox: {sandbox or 'the default (auto: bubblewrap where it works)'}",
        "",
        *figures(found, tasks),
        "",
        "To reproduce: `.venv/bin/python benchmarks/commands_in_git.py"
        + (f" --sandbox {sandbox}" if sandbox else "")
        + "`",
        "",
    ]
    plan_scale.append_results(section)


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="command tasks")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each")
    parser.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "none"),
        help="the runs' sandbox setting, through an orchestra.toml (default: none written)",
    )
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    options = parser.parse_args(argv)
    if options.tasks < 1 or options.runs < 1:
        parser.error("--tasks and --runs must be at least 1")
    if not os.access(ORCHESTRA, os.X_OK):
        parser.error(f"{ORCHESTRA} not found: run with the venv python that has orchestra")
    if not os.access(COMMAND, os.X_OK):
        parser.error(f"{COMMAND} not found")

    with tempfile.TemporaryDirectory(prefix="orchestra-bench-") as scratch:
        scratch_dir = Path(scratch)
        repo = scratch_dir / "repo"
        make_repository(repo, options.tasks, options.sandbox)
        print(
            f"{options.tasks:,} tasks of {COMMAND}, {MAX_PARALLEL} workers, "
            f"sandbox: {options.sandbox or 'default'}"
        )
        found = measure(repo, options.tasks, options.runs, scratch_dir)
    print()
    print("\n".join(figures(found, options.tasks)))
    if options.record:
        record(found, options.tasks, options.runs, options.sandbox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
