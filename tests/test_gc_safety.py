"""``orchestra gc`` removes only what is this project's and over: not another project's
sandbox directories in the shared temporary directory, not the branch of a run that
``resume`` may continue. Real runs, real git, the real lock of a live run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestra.store import lock
from orchestra.testing import make_git_repo, run_orchestra, start_orchestra, wait_for

QUICK = (
    'id = "w"\n[[tasks]]\nid = "t"\nshell = true\ncommand = "echo x >> x.txt"\n'
    'files = { create = ["x.txt"] }\n'
)


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def quick_run(repo: Path, env: dict[str, str]) -> str:
    finished = run_orchestra("run", "ws.toml", "--json", cwd=repo, env=env)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return json.loads(finished.stdout)["run"]


def leftover(temporary: Path, label: str) -> Path:
    """A private directory as a killed run's sandbox leaves it (``tmp`` inside)."""
    path = temporary / f"orchestra-{label}-k3j9x_q1"
    (path / "tmp").mkdir(parents=True)
    (path / "tmp" / "scratch").write_text("x\n")
    return path


def test_gc_removes_only_the_sandbox_directories_of_runs_it_knows_that_are_over(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {"TMPDIR": str(temporary)}
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n", "ws.toml": QUICK})
    over, live = quick_run(repo, env), quick_run(repo, env)
    dead_run = leftover(temporary, over)
    live_run = leftover(temporary, live)
    strangers = leftover(temporary, "20200101-000000-abcd")  # another project's run
    merge = temporary / "orchestra-merge-0a1b2c3d"  # not a sandbox's
    merge.mkdir()
    held = lock.acquire(repo / ".orchestra" / "locks", live)  # a process drives it

    try:
        dry = run_orchestra("gc", "--dry-run", cwd=repo, env=env)
        still = dead_run.exists()
        cleaned = run_orchestra("gc", cwd=repo, env=env)
    finally:
        held.release()

    assert dry.returncode == 0, dry.stderr
    assert f"would remove directory {dead_run}" in dry.stdout
    assert still
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed directory {dead_run}: a killed run's sandbox" in cleaned.stdout
    assert not dead_run.exists()
    for kept in (live_run, strangers, merge):
        assert kept.exists(), cleaned.stdout
        assert str(kept) not in dry.stdout + cleaned.stdout


def test_gc_without_a_run_database_leaves_every_sandbox_directory(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    repo = make_git_repo(tmp_path / "repo")
    theirs = leftover(temporary, "20261126-031522-ab12")  # a run of a project elsewhere

    cleaned = run_orchestra("gc", cwd=repo, env={"TMPDIR": str(temporary)})

    assert cleaned.returncode == 0, cleaned.stderr
    assert theirs.exists()
    assert cleaned.stdout == "removed 0, kept 0\n"


#: ``first`` lands a change; ``long`` sleeps until the run is canceled
CANCELABLE = """
id = "cancelable"

[[tasks]]
id = "first"
shell = true
command = "echo one > first.txt"
files = { create = ["first.txt"] }

[[tasks]]
id = "long"
depends_on = ["first"]
shell = true
command = "echo started; exec sleep 60"
"""


def test_gc_branches_keeps_the_branch_of_a_canceled_run_resume_may_continue(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n", "ws.toml": CANCELABLE})
    running = start_orchestra("run", "ws.toml", "--quiet", cwd=repo)
    logs = repo / ".orchestra" / "runs"
    wait_for(
        lambda: any("started" in log.read_text() for log in logs.glob("*/long.1.log")),
        what="the long task",
    )
    (run_id,) = [path.name for path in logs.iterdir()]
    told = run_orchestra("cancel", run_id, cwd=repo)
    assert told.returncode == 0, told.stderr
    assert running.wait(timeout=30) == 130
    branch = f"orchestra/{run_id}"
    tip = git(repo, "rev-parse", branch)

    pruned = run_orchestra("gc", "--branches", "--keep", "0", cwd=repo)

    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"kept branch {branch}: run {run_id} is canceled: resume may continue it" in (
        pruned.stdout
    )
    assert git(repo, "rev-parse", branch) == tip
    assert git(repo, "show", f"{branch}:first.txt") == "one"
