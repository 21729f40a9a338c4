"""Faults of the machine are one-line errors, never tracebacks: a disk that fills up
mid-run, a read-only run database, a run killed before its first step started.

Real file systems: a small tmpfs filled up for real while a run's tasks wait on it, and
one remounted read-only (root is not stopped by file modes: a read-only mount stops
everyone). The tests skip, saying why, where this machine refuses to mount.
"""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from orchestra.testing import (
    make_distribution,
    make_git_repo,
    run_orchestra,
    start_orchestra,
    wait_for,
)

#: sysexits' EX_TEMPFAIL: a full disk stops the run, which resumes once there is room
DISK_FULL_STATUS = 75


@contextlib.contextmanager
def tmpfs(directory: Path, size: str):
    """Mount a tmpfs of ``size`` on ``directory`` for the test; skip where not allowed."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
            capture_output=True,
            text=True,
        )
    except OSError as error:  # no mount program
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def remount(directory: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system has no block left; return it."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while os.write(descriptor, chunk):
                    pass
    finally:
        os.close(descriptor)
    assert os.statvfs(directory).f_bfree == 0
    return filler


def rows(database: Path, query: str, *args) -> list[sqlite3.Row]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def task_processes(run_id: str, task: str) -> set[int]:
    """The pids of a run's task, by the variables orchestra gives its processes (as
    seen from here: a sandbox may give the task other numbers in its own namespace)."""
    wanted = {f"ORCHESTRA_RUN_ID={run_id}".encode(), f"ORCHESTRA_TASK_ID={task}".encode()}
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if wanted <= set((entry / "environ").read_bytes().split(b"\0")):
                    found.add(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status[status.rindex(")") + 2] in "ZX"


def one_error_line(stderr: str) -> str:
    """The one line a fault prints: ``error: …``, and nothing else (no traceback)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# -- a disk that fills up mid-run ---------------------------------------------------------


def fault_workstream(
    marks: Path, before: str, gated: str, gate_workspace: str | None, in_git: bool
) -> str:
    """early first; then a sleeper (300 s unless resumed) beside the gate, which does
    ``before``, waits for ``marks/go``, then does ``gated``; 'after' follows the gate.
    ``in_git``, each declares the files it writes, and so gets a worktree of its own (in
    place, tasks that declare writes would take turns: the gate would wait for the
    sleeper)."""
    workspace = f'workspace = "{gate_workspace}"' if gate_workspace else ""

    def creates(*names: str) -> str:
        return f"files = {{ create = {json.dumps(list(names))} }}" if in_git else ""

    return f"""
id = "full"
[[tasks]]
id = "early"
command = "echo early > early.txt"
shell = true
{creates("early.txt")}
[[tasks]]
id = "sleeper"
depends_on = ["early"]
command = "echo $$ > sleeper.pid; test -e {marks}/resumed || exec sleep 300"
shell = true
{creates("sleeper.pid")}
timeout = "10m"
[[tasks]]
id = "gate"
depends_on = ["early"]
command = "{before} while [ ! -e {marks}/go ]; do sleep 0.05; done; {gated}"
shell = true
{creates("gate.txt", "gate.waits")}
{workspace}
[[tasks]]
id = "after"
depends_on = ["gate"]
command = "echo after > after.txt"
shell = true
{creates("after.txt")}
"""


def run_into_a_full_disk(
    tmp_path: Path,
    project: Path,
    database: Path,
    disk: Path,
    *,
    before: str = "",
    gated: str = "true",
    gate_workspace: str | None = None,
):
    """Run the fault workstream in ``project``; fill ``disk`` while the sleeper runs and
    the gate waits, then let the gate go. Return (the ended orchestra, its run id, the
    pids of the sleeper and the gate as it waited, the filler file). A gate that does
    something ``before`` it waits touches ``gate.waits`` after it."""
    marks = tmp_path / "marks"
    marks.mkdir()
    if before:
        before += "; touch gate.waits;"
    in_git = (project / ".git").exists()
    (project / "ws.toml").write_text(fault_workstream(marks, before, gated, gate_workspace, in_git))
    worktrees = database.parent / "worktrees"

    def written(task: str, name: str) -> Path | None:
        """The file a task wrote: in its worktree in git, else in the project."""
        if (project / ".git").exists():
            return next(worktrees.glob(f"*/{task}.1/{name}"), None)
        return project / name if (project / name).exists() else None

    process = start_orchestra("run", "ws.toml", "--db", str(database), "--quiet", cwd=project)
    try:
        wait_for(lambda: written("sleeper", "sleeper.pid"))
        if before:
            wait_for(lambda: written("gate", "gate.waits"))
        (run_id,) = [row["id"] for row in rows(database, "SELECT id FROM runs")]
        tasks = wait_for(lambda: task_processes(run_id, "sleeper"))
        tasks |= wait_for(lambda: task_processes(run_id, "gate"))
        filler = fill(disk)
        (marks / "go").touch()
        # today's orchestra waited here for the sleeper's 300 s (its timeout, 10 min)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process, run_id, tasks, filler


def check_stopped_in_one_line(process: subprocess.Popen, run_id: str, tasks: set[int]) -> str:
    """The run ended with one ``error:`` line and exit 75 at once, its tasks' processes
    killed; return the line."""
    error = one_error_line(process.stderr.read())
    assert process.returncode == DISK_FULL_STATUS, error
    assert error.endswith(f"; free some space, then run: orchestra resume {run_id}"), error
    wait_for(lambda: all(map(gone, tasks)), timeout=30)  # stopped, not left to their 300 s
    return error


def check_resumes_once_there_is_room(tmp_path: Path, project: Path, database: Path, run_id: str):
    """After the filler is gone: the run is interrupted, resumes to success, and what
    succeeded before the fault did not run again."""
    shown = run_orchestra("show", run_id, "--json", "--db", str(database), cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "interrupted"

    (tmp_path / "marks" / "resumed").touch()
    resumed = run_orchestra("resume", run_id, "--json", "--db", str(database), cwd=project)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == {"succeeded": 4}
    attempts = rows(database, "SELECT outcome FROM attempts WHERE task_id = 'early'")
    assert [row["outcome"] for row in attempts] == ["succeeded"]  # not run again
    if (project / ".git").exists():
        files = subprocess.run(
            ["git", "ls-tree", "--name-only", f"orchestra/{run_id}"],
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    else:
        files = [path.name for path in project.iterdir()]
    assert {"early.txt", "sleeper.pid", "after.txt"} <= set(files)


def test_a_disk_that_fills_mid_run_stops_it_in_one_line_and_resume_goes_on(tmp_path):
    # the database, the logs, the worktrees and the repository on one disk; the gate
    # leaves a change to commit, and prints a lot to its log, once the disk is full
    with tmpfs(tmp_path / "disk", "24m") as disk:
        project = make_git_repo(disk / "repo")
        database = project / ".orchestra" / "orchestra.db"
        process, run_id, tasks, filler = run_into_a_full_disk(
            tmp_path, project, database, disk, before="echo change > gate.txt", gated="seq 30000"
        )

        error = check_stopped_in_one_line(process, run_id, tasks)
        assert "No space left on device" in error or "disk is full" in error, error
        assert str(project) in error, error  # the database, the log or the worktree

        filler.unlink()
        check_resumes_once_there_is_room(tmp_path, project, database, run_id)


def test_a_full_disk_while_git_makes_a_worktree_interrupts_the_run_at_once(tmp_path):
    # the database (and the worktrees beside it) elsewhere: only the repository's .git is
    # on the full disk, and `git worktree add` for 'after' is what finds it full (the gate
    # runs in place: no git command of its own finds it first)
    with tmpfs(tmp_path / "disk", "24m") as disk:
        project = make_git_repo(disk / "repo")
        database = tmp_path / "state" / "orchestra.db"
        process, run_id, tasks, filler = run_into_a_full_disk(
            tmp_path, project, database, disk, gate_workspace="inplace"
        )

        error = check_stopped_in_one_line(process, run_id, tasks)
        assert "task 'after' attempt 1" in error and str(project / ".git") in error, error
        # the database had room: orchestra itself recorded the run interrupted, and the
        # attempts it cut short
        (run,) = rows(database, "SELECT state, error FROM runs")
        assert run["state"] == "interrupted" and "task 'after'" in run["error"], run["error"]
        attempts = rows(database, "SELECT task_id, outcome FROM attempts")
        assert {(row["task_id"], row["outcome"]) for row in attempts} == {
            ("early", "succeeded"),
            ("sleeper", "interrupted"),
            ("gate", "succeeded"),
            ("after", "interrupted"),
        }

        filler.unlink()
        check_resumes_once_there_is_room(tmp_path, project, database, run_id)


def test_a_full_database_disk_stops_the_run_and_the_next_command_marks_it(tmp_path):
    # only the database (and the logs beside it) on the full disk: recording the gate's
    # end is what fails, so the run stays running with its lock free until a command
    # that can write marks it interrupted
    with tmpfs(tmp_path / "disk", "8m") as disk:
        project = tmp_path / "project"
        project.mkdir()
        database = disk / "orchestra.db"
        process, run_id, tasks, filler = run_into_a_full_disk(tmp_path, project, database, disk)

        error = check_stopped_in_one_line(process, run_id, tasks)
        assert error.startswith(f"error: {database}: cannot write the run database: "), error
        assert rows(database, "SELECT state FROM runs")[0]["state"] == "running"

        filler.unlink()
        check_resumes_once_there_is_room(tmp_path, project, database, run_id)


def test_an_attempt_whose_log_finds_the_disk_full_is_stopped_with_the_run(tmp_path):
    # only the logs on the full disk (a tmpfs on the runs/ directory beside the
    # database): the gate prints once the disk is full, then would sleep 300 s
    state = tmp_path / "state"
    with tmpfs(state / "runs", "8m") as disk:
        project = tmp_path / "project"
        project.mkdir()
        database = state / "orchestra.db"
        marks = tmp_path / "marks"
        gated = f"seq 30000; test -e {marks}/resumed || exec sleep 300"
        process, run_id, tasks, filler = run_into_a_full_disk(
            tmp_path, project, database, disk, gated=gated
        )

        error = check_stopped_in_one_line(process, run_id, tasks)
        log = disk / run_id / "gate.1.log"
        assert f"task 'gate' attempt 1 (log {log}) could not write: OSError: [Errno 28]" in error
        assert rows(database, "SELECT state FROM runs")[0]["state"] == "interrupted"

        filler.unlink()
        check_resumes_once_there_is_room(tmp_path, project, database, run_id)


# -- a read-only run database --------------------------------------------------------------


def recorded_runs(project: Path) -> tuple[str, str]:
    """Record a finished run and one whose orchestra was SIGKILLed; return their ids.

    The database is not opened here: orchestra leaves its write-ahead log behind, and
    the last connection to close cleanly would fold it in and delete it."""
    (project / "ok.toml").write_text('id = "ok"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    finished = run_orchestra("run", "ok.toml", "--json", cwd=project)
    assert finished.returncode == 0, finished.stderr
    (project / "slow.toml").write_text(
        'id = "slow"\n[[tasks]]\nid = "s"\nshell = true\n'
        'command = "echo started; echo $$ > pid; exec sleep 300"\n'
    )
    process = start_orchestra("run", "slow.toml", "--quiet", cwd=project)
    task = int(wait_for(lambda: (project / "pid").exists() and (project / "pid").read_text()))
    process.send_signal(signal.SIGKILL)
    process.wait()
    os.kill(task, signal.SIGKILL)  # the task outlives its orchestra: stop it here
    finished_id = json.loads(finished.stdout)["run"]
    (orphan,) = {path.stem for path in (project / ".orchestra" / "locks").iterdir()} - {finished_id}
    return finished_id, orphan


@pytest.mark.parametrize("log", ["with its write-ahead log", "closed cleanly"])
def test_a_read_only_database_reads_and_refuses_writes_in_one_line(tmp_path, log):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        finished, orphan = recorded_runs(disk)
        database = disk / ".orchestra" / "orchestra.db"
        wal = database.with_name("orchestra.db-wal")
        if log == "closed cleanly":  # no -wal, no -shm: SQLite cannot open it read-only
            with contextlib.closing(sqlite3.connect(database)) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert not wal.exists()
        else:
            assert wal.stat().st_size > 0  # the orphan's running state is only there
        remount(disk, "ro")

        listed = run_orchestra("runs", "--json", cwd=disk)
        assert listed.returncode == 0, listed.stderr
        assert {run["id"] for run in json.loads(listed.stdout)} == {finished, orphan}
        shown = run_orchestra("show", finished, cwd=disk)
        assert shown.returncode == 0 and "succeeded" in shown.stdout, shown.stderr
        assert run_orchestra("status", orphan, cwd=disk).returncode == 0
        assert run_orchestra("logs", orphan, "s", cwd=disk).returncode == 0

        for command in (["run", "ok.toml"], ["resume", orphan], ["cancel", orphan]):
            refused = run_orchestra(*command, cwd=disk)
            error = one_error_line(refused.stderr)
            assert refused.returncode == 2, (command, error)
            assert str(database) in error and "read-only" in error, (command, error)
        elsewhere = run_orchestra("run", "ok.toml", "--db", "new/orchestra.db", cwd=disk)
        error = one_error_line(elsewhere.stderr)
        assert elsewhere.returncode == 2 and str(disk / "new") in error, error


# -- a run killed before its first step started ----------------------------------------------


#: a sink that holds orchestra in its open(), which comes before the run is recorded
#: running: the run is pending for as long as it blocks
BLOCKING_SINK = """
import threading
from pathlib import Path

import orchestra

class Blocker:
    name = "blocker"

    def open(self, context):
        Path(context.project_root, "blocked").touch()
        threading.Event().wait()

    def emit(self, event):
        pass

    def close(self):
        pass

@orchestra.hookimpl
def orchestra_register_sinks(register):
    register(Blocker())
"""


@pytest.mark.parametrize("then", ["resume", "cancel"])
def test_a_run_killed_while_pending_resumes_from_the_start_or_cancels(tmp_path, then):
    site = make_distribution(
        tmp_path / "site", "orchestra-blocker", {"blocker": BLOCKING_SINK}, {"blocker": "blocker"}
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "a"\ncommand = "echo a >> out.txt"\nshell = true\n'
        '[[tasks]]\nid = "b"\ndepends_on = ["a"]\ncommand = "echo b >> out.txt"\nshell = true\n'
    )
    database = project / ".orchestra" / "orchestra.db"
    process = start_orchestra("run", "ws.toml", "--sink", "blocker", cwd=project, extra_path=[site])
    try:
        wait_for(lambda: (project / "blocked").exists())
        (run,) = rows(database, "SELECT id, state FROM runs")
        assert run["state"] == "pending"
        # while its orchestra lives, the pending run is claimed: not taken for dead
        alive = run_orchestra("status", run["id"], cwd=project)
        assert f"run {run['id']}  pending" in alive.stdout, alive.stdout + alive.stderr
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    run_id = run["id"]
    assert rows(database, "SELECT state FROM runs")[0]["state"] == "pending"

    status = run_orchestra("status", run_id, cwd=project)
    assert f"run {run_id}  interrupted" in status.stdout, status.stdout + status.stderr
    if then == "resume":
        resumed = run_orchestra("resume", run_id, "--json", cwd=project)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["steps"] == {"succeeded": 2}
        assert (project / "out.txt").read_text() == "a\nb\n"
    else:
        canceled = run_orchestra("cancel", run_id, cwd=project)
        assert canceled.returncode == 0, canceled.stderr
        assert rows(database, "SELECT state FROM runs")[0]["state"] == "canceled"
        assert not (project / "out.txt").exists()
