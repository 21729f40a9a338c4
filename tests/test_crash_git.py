"""A run in a git repository survives its orchestrator's death at any moment.

What a SIGKILL leaves in the user's repository, in the middle of one of orchestra's git
commands, is made here the way git leaves it (a half-written `.git/worktrees/<name>/`, a
stale lock file, a change on the run branch whose landing the database never heard of),
and `orchestra resume` and `orchestra gc` must put it right on their own. The last test
kills real runs at random moments, many times (benchmarks/crash_probe.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from orchestra.testing import (
    make_git_repo,
    run_orchestra,
    scripted_tools_env,
    start_orchestra,
    wait_for,
    write_tool_script,
)


def git(repo: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=check
    )


def rows(repo: Path, query: str, *args) -> list[tuple]:
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        return db.execute(query, args).fetchall()


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def worktree_admin(repo: Path) -> list[Path]:
    directory = repo / ".git" / "worktrees"
    return sorted(directory.iterdir()) if directory.exists() else []


def made_worktrees(repo: Path) -> list[Path]:
    """The worktrees `git worktree add` has finished making (checked out, on a branch)."""
    return [
        entry
        for entry in worktree_admin(repo)
        if (entry / "index").exists() and (entry / "HEAD").read_bytes().startswith(b"ref:")
    ]


def leftovers(repo: Path) -> list[str]:
    """What of orchestra's is left in the repository: attempt branches, worktrees, their
    records in .git/worktrees, lock files."""
    found = [
        line.strip()
        for line in git(repo, "branch", "--list", "orchestra-tasks/*").stdout.splitlines()
    ]
    listed = git(repo, "worktree", "list", "--porcelain").stdout
    found += [line for line in listed.splitlines() if line.startswith("worktree ")][1:]
    found += [str(entry) for entry in worktree_admin(repo)]
    found += [
        str(lock)
        for lock in (repo / ".git").rglob("*.lock")
        if lock.name != "orchestra-worktrees.lock"
    ]
    return found


def hanging_run(tmp_path: Path, tasks: int = 1) -> tuple[Path, str, dict[str, str]]:
    """A repository whose run is stopped by SIGKILL while its tasks hang in their
    worktrees; returns the repository, the run id and the environment to resume it with
    (a tool that now succeeds)."""
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n", ".gitignore": ".orchestra/\n"})
    hang = write_tool_script(tmp_path / "hang.toml", [{"action": "hang", "seconds": 120}])
    (repo / "ws.toml").write_text(
        'id = "w"\n'
        + "".join(
            f'[[tasks]]\nid = "t{n}"\nprompt = "p"\ntool = "alpha"\n' for n in range(1, tasks + 1)
        )
    )
    running = start_orchestra(
        "run", "ws.toml", "--quiet", cwd=repo, env=scripted_tools_env(alpha=hang), new_session=True
    )
    wait_for(lambda: len(made_worktrees(repo)) == tasks, what="the attempts' worktrees")
    time.sleep(0.3)  # the tools start
    kill_group(running)
    (run_id,) = [row[0] for row in rows(repo, "SELECT id FROM runs")]
    edits = {
        f"t{n}": [{"action": "succeed", "edit": {"path": f"t{n}.txt", "content": f"t{n}\n"}}]
        for n in range(1, tasks + 1)
    }
    done = write_tool_script(tmp_path / "done.toml", [{}], tasks=edits)
    return repo, run_id, scripted_tools_env(alpha=done)


def half_made_worktree(repo: Path, path: Path, *, commondir: str = "") -> Path:
    """What `git worktree add` leaves when it is killed after writing the worktree's record
    but before its `commondir` (empty) and HEAD (all zeros)."""
    entry = repo / ".git" / "worktrees" / path.name
    entry.mkdir(parents=True)
    (entry / "locked").write_text(f"orchestra: {path}")
    (entry / "gitdir").write_text(f"{path}/.git\n")
    path.mkdir(parents=True, exist_ok=True)
    (path / ".git").write_text(f"gitdir: {entry}\n")
    (entry / "HEAD").write_text("0" * 40 + "\n")
    (entry / "commondir").write_text(commondir)
    return entry


def test_resume_repairs_a_half_made_worktree_that_broke_the_users_git_branch(tmp_path):
    repo, run_id, env = hanging_run(tmp_path)
    half_made_worktree(repo, repo / ".orchestra" / "worktrees" / run_id / "t1.2")
    broken = git(repo, "branch", check=False)
    assert broken.returncode != 0  # what the user met: their own git stopped working

    resumed = run_orchestra("resume", run_id, "--json", cwd=repo, env=env)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "succeeded"
    assert git(repo, "branch").returncode == 0
    assert git(repo, "fsck", "--no-progress", check=False).returncode == 0
    assert leftovers(repo) == []
    assert git(repo, "show", f"orchestra/{run_id}:t1.txt").stdout == "t1\n"
    events = rows(repo, "SELECT payload FROM events WHERE type = 'workspace.repaired'")
    assert events and "half-made" in events[0][0]


def test_resume_removes_stale_locks_a_killed_git_left(tmp_path):
    repo, run_id, env = hanging_run(tmp_path)
    branch_lock = repo / ".git" / "refs" / "heads" / "orchestra-tasks" / run_id / "t1.2.lock"
    branch_lock.parent.mkdir(parents=True, exist_ok=True)
    branch_lock.write_text("")
    run_lock = repo / ".git" / "refs" / "heads" / "orchestra" / f"{run_id}.lock"
    run_lock.write_text("")
    packed = repo / ".git" / "packed-refs.lock"
    packed.write_text("")

    resumed = run_orchestra("resume", run_id, "--json", cwd=repo, env=env)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "succeeded"
    assert not branch_lock.exists() and not run_lock.exists() and not packed.exists()
    assert leftovers(repo) == []
    crashed = rows(
        repo,
        "SELECT count(*) FROM attempts WHERE error_class = 'crashed' AND outcome != 'interrupted'",
    )
    assert crashed == [(0,)]


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_a_stale_packed_refs_lock_does_not_turn_merged_attempts_into_failures(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n", ".gitignore": ".orchestra/\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n'
        + "".join(
            f'[[tasks]]\nid = "t{n}"\ncommand = ["sh", "-c", "echo {n} > f{n}.txt"]\n'
            f'files = {{ create = ["f{n}.txt"] }}\n'
            for n in range(4)
        )
    )
    git(repo, "pack-refs", "--all")
    (repo / ".git" / "packed-refs.lock").write_text("")  # a `git pack-refs` killed long ago

    result = run_orchestra("run", "ws.toml", "--json", cwd=repo)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "succeeded"
    assert rows(repo, "SELECT DISTINCT outcome FROM attempts") == [("succeeded",)]
    assert leftovers(repo) == []


def test_a_lock_a_live_process_holds_is_never_removed(tmp_path):
    repo, run_id, _ = hanging_run(tmp_path)
    held = repo / ".git" / "refs" / "heads" / "orchestra" / f"{run_id}.lock"
    with open(held, "w"):  # a live process (this one) is writing it
        cleaned = run_orchestra("gc", cwd=repo)
        assert held.exists()
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"kept lock {held}: a live process may hold it" in cleaned.stdout
    assert "removed worktree" in cleaned.stdout  # the dead run's worktree went all the same
    held.unlink()
    again = run_orchestra("gc", cwd=repo)
    assert again.stdout == "removed 0, kept 0\n"


def test_gc_repairs_half_made_and_vanished_worktrees_of_dead_runs_and_reports_each(tmp_path):
    repo, run_id, _ = hanging_run(tmp_path, tasks=2)
    root = repo / ".orchestra" / "worktrees" / run_id
    half = half_made_worktree(repo, root / "t3.1")
    subprocess.run(["rm", "-rf", str(root / "t2.1")], check=True)  # a directory gone
    (root / "stray.9").mkdir()  # a directory whose record went first
    assert git(repo, "branch", check=False).returncode != 0

    cleaned = run_orchestra("gc", cwd=repo)

    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed worktree {root / 't3.1'}: half-made" in cleaned.stdout
    assert f"removed worktree {root / 't2.1'}: its directory is gone" in cleaned.stdout
    assert f"removed worktree {root / 't1.1'}" in cleaned.stdout
    assert f"removed directory {root / 'stray.9'}" in cleaned.stdout
    assert f"removed branch orchestra-tasks/{run_id}/t1.1" in cleaned.stdout
    assert not half.exists()
    assert leftovers(repo) == []
    assert not root.exists()
    assert git(repo, "branch").stdout.split() == ["*", "main", f"orchestra/{run_id}"]


def test_a_change_that_landed_before_the_crash_is_not_made_again(tmp_path):
    """The orchestrator died after moving the run branch and before recording the
    attempt's end: resume must see the landing and not run the task again."""
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n", ".gitignore": ".orchestra/\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "append"\ncommand = ["sh", "-c", "echo once >> log.txt"]\n'
        'files = { create = ["log.txt"] }\n'
        '[[tasks]]\nid = "after"\ndepends_on = ["append"]\ncommand = ["cat", "log.txt"]\n'
    )
    first = run_orchestra("run", "ws.toml", "--json", cwd=repo)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run"]
    # what the database held at the moment of the crash: the attempt still running, its
    # dependent pending, the run running (its lock is free: the process is gone)
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        db.execute("UPDATE attempts SET ended_at = NULL, outcome = NULL WHERE task_id = 'append'")
        db.execute("DELETE FROM attempts WHERE task_id = 'after'")
        db.execute("UPDATE steps SET state = 'running', attempts = 1 WHERE task_id = 'append'")
        db.execute("UPDATE steps SET state = 'pending', attempts = 0 WHERE task_id = 'after'")
        db.execute("UPDATE runs SET state = 'running', ended_at = NULL WHERE id = ?", (run_id,))

    resumed = run_orchestra("resume", run_id, "--json", cwd=repo)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "succeeded"
    assert git(repo, "show", f"orchestra/{run_id}:log.txt").stdout == "once\n"
    attempts = rows(repo, "SELECT task_id, number, outcome FROM attempts ORDER BY task_id")
    assert attempts == [("after", 1, "succeeded"), ("append", 1, "succeeded")]
    trailers = git(
        repo, "log", "--format=%(trailers:key=Orchestra-Task,valueonly)", f"orchestra/{run_id}"
    ).stdout.split()
    assert trailers.count("append") == 1


def test_no_attempt_branch_worktree_or_directory_outlives_a_finished_run(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n", ".gitignore": ".orchestra/\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[defaults]\nmax_attempts = 2\nbackoff = { initial = "0s" }\n'
        '[[tasks]]\nid = "ok"\ncommand = ["sh", "-c", "echo ok > ok.txt"]\n'
        'files = { create = ["ok.txt"] }\n'
        '[[tasks]]\nid = "fails"\ncommand = ["sh", "-c", "echo x > x.txt; exit 3"]\n'
        'files = { create = ["x.txt"] }\n'
    )
    result = run_orchestra("run", "ws.toml", "--json", cwd=repo)
    assert result.returncode == 1, result.stderr
    assert leftovers(repo) == []
    assert not (repo / ".orchestra" / "worktrees" / json.loads(result.stdout)["run"]).exists()


def test_validate_refuses_task_ids_that_cannot_name_a_git_branch(tmp_path):
    (tmp_path / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "a..b"\ncommand = ["true"]\n'
        '[[tasks]]\nid = "ends."\ncommand = ["true"]\n'
    )
    result = run_orchestra("validate", "ws.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "task 'a..b': field 'id': invalid id 'a..b'" in result.stderr
    assert "task 'ends.': field 'id': invalid id 'ends.'" in result.stderr
    assert "Traceback" not in result.stderr


def _probe():
    path = Path(__file__).parents[1] / "benchmarks" / "crash_probe.py"
    spec = importlib.util.spec_from_file_location("crash_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_runs_killed_at_random_moments_finish_with_resume_alone(tmp_path):
    """SIGKILL to the whole process group at random moments, often in the middle of a git
    command (a landing every few milliseconds), one to three times per round; then resume
    alone must finish the run: nothing rerun after success, nothing merged twice, git fsck
    and the user's git clean, no leftovers."""
    probe = _probe()
    rng = random.Random(20261203)
    span = probe.calibrate(tmp_path / "calibration", 40, 4)
    failures = {}
    for number in range(6):
        problems = probe.one_round(tmp_path / f"round-{number}", rng, 40, 4, span)
        if problems:
            failures[number] = problems
    assert failures == {}


def test_gc_removes_the_private_directories_a_killed_runs_sandboxes_left(tmp_path):
    import tempfile

    repo, run_id, _ = hanging_run(tmp_path)
    left = list(Path(tempfile.gettempdir()).glob(f"orchestra-{run_id}-*"))
    if not left:
        pytest.skip("attempts are not sandboxed here: no private directory to leave")

    cleaned = run_orchestra("gc", cwd=repo)

    assert cleaned.returncode == 0, cleaned.stderr
    for path in left:
        assert f"removed directory {path}: a killed run's sandbox" in cleaned.stdout
        assert not path.exists()


def test_a_record_half_removed_by_a_kill_goes_on_resume(tmp_path):
    repo, run_id, env = hanging_run(tmp_path)
    # what a kill during `git worktree remove` leaves: a record naming no directory
    record = repo / ".git" / "worktrees" / "t1.9"
    record.mkdir()
    (record / "ORIG_HEAD").write_text("0" * 40 + "\n")
    empty = repo / ".git" / "worktrees" / "t1.8"
    empty.mkdir()

    resumed = run_orchestra("resume", run_id, "--json", cwd=repo, env=env)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "succeeded"
    assert leftovers(repo) == []
    assert git(repo, "fsck", "--no-progress", check=False).returncode == 0


def test_a_record_a_git_add_is_still_making_is_left_alone(tmp_path):
    repo, run_id, env = hanging_run(tmp_path)
    # `git worktree add` writes `locked` first: such a record is someone's work in progress
    theirs = repo / ".git" / "worktrees" / "users-own"
    theirs.mkdir()
    (theirs / "locked").write_text("initializing")

    resumed = run_orchestra("resume", run_id, "--json", cwd=repo, env=env)

    assert resumed.returncode == 0, resumed.stderr
    assert worktree_admin(repo) == [theirs]


def test_a_resume_with_nothing_left_to_run_still_removes_what_the_dead_run_left(tmp_path):
    repo, run_id, env = hanging_run(tmp_path)
    assert leftovers(repo)  # the killed attempt's worktree and branch
    # the attempt's change had landed and the step was recorded done just before the kill
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        db.execute("UPDATE steps SET state = 'succeeded' WHERE run_id = ?", (run_id,))
        db.execute(
            "UPDATE attempts SET outcome = 'succeeded', ended_at = started_at + 1 WHERE run_id = ?",
            (run_id,),
        )

    resumed = run_orchestra("resume", run_id, "--json", cwd=repo, env=env)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "succeeded"
    assert leftovers(repo) == []
