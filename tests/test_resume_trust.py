"""Resume trusts what the run left, not where it is asked from.

What landed on the run's branch is done, even when a power cut took the database back to
before the task's attempt started (SQLite in WAL with ``synchronous = NORMAL`` may lose
its last transactions; git keeps the landing). And a run goes on in the project it
started in, whichever directory ``orchestra resume RUN --db …`` is typed in.

A power cut is simulated as SQLite's loss is: the database put back to a copy taken a
few transactions earlier (SQLite's backup API), while git's refs, objects and worktrees,
written later, stay.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from orchestra.store import Store
from orchestra.store.lifecycle import IllegalTransition, StepState
from orchestra.store.migrations import MIGRATIONS, migrate
from orchestra.testing import (
    kill_like_a_power_cut,
    make_git_repo,
    run_orchestra,
    start_orchestra,
    wait_for,
)

#: attempts write flag files outside their worktree; the sandbox is not under test here
UNSANDBOXED = {"ORCHESTRA_SANDBOX": "none"}


def git(repo: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=check
    )


def rows(database: Path, query: str, *args) -> list[tuple]:
    """Run ``query`` on ``database`` and close the connection at once."""
    db = sqlite3.connect(database, timeout=10)
    try:
        with db:
            return db.execute(query, args).fetchall()
    finally:
        db.close()


def snapshot(database: Path, saved: Path) -> None:
    """Copy what ``database`` has committed now (what a power cut may leave of it)."""
    source = sqlite3.connect(database, timeout=10)
    target = sqlite3.connect(saved)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def power_cut(database: Path, saved: Path, run_id: str, group: subprocess.Popen) -> None:
    """Stop everything, then put the database back at ``saved``, without its
    write-ahead log and shared memory."""
    kill_like_a_power_cut(run_id, group)
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(saved, database)


# -- what landed is done ------------------------------------------------------------------


def test_a_landed_task_whose_record_a_power_cut_lost_is_recorded_succeeded_not_run_again(
    tmp_path,
):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "x\n", ".gitignore": ".orchestra/\n"})
    flags = tmp_path / "flags"
    flags.mkdir()
    # ``a`` fails if it is ever run a second time: its change is made once
    (repo / "ws.toml").write_text(
        f"""id = "w"
[[tasks]]
id = "gate"
command = ["sh", "-c", "touch {flags}/gate; while [ ! -f {flags}/go ]; do sleep 0.05; done"]
[[tasks]]
id = "a"
depends_on = ["gate"]
command = ["sh", "-c", "echo run >> {flags}/a-runs; [ $(wc -l < {flags}/a-runs) -eq 1 ] || exit 7; echo a > a.txt"]
files = {{ create = ["a.txt"] }}
[[tasks]]
id = "b"
depends_on = ["a"]
command = ["sh", "-c", "touch {flags}/b; while [ ! -f {flags}/go2 ]; do sleep 0.05; done; echo b > b.txt"]
files = {{ create = ["b.txt"] }}
"""
    )
    database = repo / ".orchestra" / "orchestra.db"
    running = start_orchestra(
        "run", "ws.toml", "--quiet", cwd=repo, env=UNSANDBOXED, new_session=True
    )
    wait_for(lambda: (flags / "gate").exists(), what="the gate task")
    snapshot(database, tmp_path / "saved.db")  # ``a`` is pending in it
    (flags / "go").touch()
    wait_for(lambda: (flags / "b").exists(), what="a's landing, then b's start")
    (run_id,) = [row[0] for row in rows(database, "SELECT id FROM runs")]
    power_cut(database, tmp_path / "saved.db", run_id, running)
    assert rows(database, "SELECT state FROM steps WHERE task_id = 'a'") == [("pending",)]
    (flags / "go2").touch()

    resumed = run_orchestra("resume", run_id, "--plain", cwd=repo, env=UNSANDBOXED)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (flags / "a-runs").read_text() == "run\n", "a was run again"
    assert rows(database, "SELECT task_id, state FROM steps ORDER BY task_id") == [
        ("a", "succeeded"),
        ("b", "succeeded"),
        ("gate", "succeeded"),
    ]
    ((payload,),) = rows(
        database,
        "SELECT payload FROM events WHERE task_id = 'a' AND type = 'step.succeeded'",
    )
    assert json.loads(payload)["found_landed"] is True
    assert json.loads(payload)["from"] == "pending"
    said = [line for line in resumed.stdout.splitlines() if "found landed" in line]
    assert len(said) == 1 and " a " in said[0], resumed.stdout
    assert git(repo, "show", f"orchestra/{run_id}:a.txt").stdout == "a\n"
    assert git(repo, "show", f"orchestra/{run_id}:b.txt").stdout == "b\n"
    shown = run_orchestra("show", run_id, cwd=repo)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr


def test_only_a_step_that_has_not_ended_is_recorded_found_landed(tmp_path):
    store = Store.open(tmp_path / "orchestra.db")
    run_id = store.create_run("w", None, None, ["waiting", "ready", "again", "ran", "done"])
    store.set_step_state(run_id, "ready", StepState.READY)
    for task_id in ("again", "ran", "done"):
        store.set_step_state(run_id, task_id, StepState.READY)
        store.begin_attempt(run_id, task_id, StepState.READY, "shell")
    store.set_step_state(run_id, "again", StepState.RETRYING)
    store.set_step_state(run_id, "done", StepState.SUCCEEDED)

    for task_id in ("waiting", "ready", "again"):
        store.record_found_landed(run_id, task_id, 2, reason="found")
    for task_id in ("ran", "done"):  # running: its open attempt is closed first
        with pytest.raises(IllegalTransition):
            store.record_found_landed(run_id, task_id, 1, reason="found")

    steps = {step.task_id: step for step in store.steps(run_id)}
    assert {task_id: steps[task_id].state for task_id in steps} == {
        "waiting": StepState.SUCCEEDED,
        "ready": StepState.SUCCEEDED,
        "again": StepState.SUCCEEDED,
        "ran": StepState.RUNNING,
        "done": StepState.SUCCEEDED,
    }
    assert steps["again"].attempts == 2 and steps["again"].reason == "found"
    store.close()


# -- a run goes on in its own project -----------------------------------------------------


def interrupted_run(tmp_path: Path) -> tuple[Path, Path, str]:
    """A repository whose run was killed while its first task ran (the task is let go
    on; resume stops it): return the repository, the flags directory and the run."""
    repo = make_git_repo(tmp_path / "repo", {"README.md": "x\n", ".gitignore": ".orchestra/\n"})
    flags = tmp_path / "flags"
    flags.mkdir()
    (repo / "ws.toml").write_text(
        f"""id = "w"
[[tasks]]
id = "first"
command = ["sh", "-c", "touch {flags}/started; while [ ! -f {flags}/go ]; do sleep 0.05; done; echo s > s.txt"]
files = {{ create = ["s.txt"] }}
[[tasks]]
id = "after"
depends_on = ["first"]
command = ["sh", "-c", "echo a > a.txt"]
files = {{ create = ["a.txt"] }}
"""
    )
    running = start_orchestra(
        "run", "ws.toml", "--quiet", cwd=repo, env=UNSANDBOXED, new_session=True
    )
    wait_for(lambda: (flags / "started").exists(), what="the first task")
    database = repo / ".orchestra" / "orchestra.db"
    (run_id,) = [row[0] for row in rows(database, "SELECT id FROM runs")]
    kill_like_a_power_cut(run_id, running)
    (flags / "go").touch()  # nothing of the run is left waiting
    return repo, flags, run_id


def assert_finished_in(repo: Path, run_id: str) -> None:
    """The run's changes are on its branch in ``repo``, no task branch or worktree left."""
    assert git(repo, "show", f"orchestra/{run_id}:s.txt").stdout == "s\n"
    assert git(repo, "show", f"orchestra/{run_id}:a.txt").stdout == "a\n"
    assert git(repo, "branch", "--list", "orchestra-tasks/*").stdout == ""
    assert len(git(repo, "worktree", "list").stdout.splitlines()) == 1


def test_resume_with_db_from_another_directory_goes_on_in_the_runs_repository(tmp_path):
    repo, _, run_id = interrupted_run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database = repo / ".orchestra" / "orchestra.db"
    assert rows(database, "SELECT project_root FROM runs") == [(str(repo.resolve()),)]

    resumed = run_orchestra(
        "resume", run_id, "--quiet", "--db", str(database), cwd=elsewhere, env=UNSANDBOXED
    )

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert os.listdir(elsewhere) == [], "the run wrote into the working directory"
    assert_finished_in(repo, run_id)


def test_resume_from_another_repository_with_orchestra_db_leaves_that_one_alone(tmp_path):
    repo, _, run_id = interrupted_run(tmp_path)
    other = make_git_repo(tmp_path / "other", {"README.md": "other\n"})
    database = repo / ".orchestra" / "orchestra.db"

    resumed = run_orchestra(
        "resume", run_id, "--quiet", cwd=other, env={**UNSANDBOXED, "ORCHESTRA_DB": str(database)}
    )

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_finished_in(repo, run_id)
    assert git(other, "status", "--porcelain", "--ignored").stdout == ""
    assert git(other, "branch", "--list", "orchestra*").stdout == ""
    assert len(git(other, "worktree", "list").stdout.splitlines()) == 1


def test_resume_of_a_run_whose_project_is_gone_is_refused_in_one_line(tmp_path):
    repo, _, run_id = interrupted_run(tmp_path)
    moved = repo.rename(tmp_path / "moved")

    resumed = run_orchestra("resume", run_id, cwd=moved, env=UNSANDBOXED)

    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    (line,) = resumed.stderr.splitlines()
    assert str(repo.resolve()) in line and str(moved.resolve()) in line, line
    assert rows(moved / ".orchestra" / "orchestra.db", "SELECT state FROM runs") == [
        ("interrupted",)
    ]


def test_resume_in_a_copy_of_the_project_is_refused_where_the_run_is_not_recorded(tmp_path):
    repo, _, run_id = interrupted_run(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)

    resumed = run_orchestra("resume", run_id, cwd=copy, env=UNSANDBOXED)

    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    (line,) = resumed.stderr.splitlines()
    assert str(repo.resolve()) in line and str(copy.resolve()) in line, line
    assert git(repo, "show", f"orchestra/{run_id}:a.txt", check=False).returncode != 0


def test_a_run_recorded_without_its_project_root_resumes_where_it_is_asked(tmp_path):
    repo, _, run_id = interrupted_run(tmp_path)
    database = repo / ".orchestra" / "orchestra.db"
    rows(database, "UPDATE runs SET project_root = NULL")  # as an older orchestra made it

    resumed = run_orchestra("resume", run_id, "--quiet", cwd=repo, env=UNSANDBOXED)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_finished_in(repo, run_id)


def test_a_database_of_an_older_orchestra_gets_the_column_and_its_runs_none(tmp_path):
    path = tmp_path / "orchestra.db"
    connection = sqlite3.connect(path, isolation_level=None)
    migrate(connection, [m for m in MIGRATIONS if m.__name__ != "m006_run_project_root"])
    connection.execute(
        "INSERT INTO runs (id, workstream_id, state, created_at) VALUES ('r1', 'w', 'failed', 1)"
    )
    connection.close()

    store = Store.open(path)
    assert store.run("r1").project_root is None
    assert store.run(store.create_run("w", None, None, ["t"], project_root="/p")).project_root == (
        "/p"
    )
    store.close()
