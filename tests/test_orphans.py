"""No process outlives its attempt or its run: daemons, new groups and sessions, cleared
environments, timeouts, Ctrl-C, SIGHUP, and a killed orchestrator then ``cancel``.

Every test drives the real ``orchestra`` program. The processes a task leaves behind run
``sleep`` with a number no other process has (``sleep 300.<12 random digits>``), found
by that marker in /proc; the ``orphans`` fixture kills whatever carries it after the
test, whatever the outcome. Each case runs both ways orchestra holds processes: in a
cgroup (where one can be made: root, cgroup v1 pids) and as subreaper (elsewhere).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra import testing
from orchestra.engine.cgroups import hierarchy
from orchestra.engine.containment import remove_run_cgroups
from orchestra.testing import run_orchestra, wait_for

# A double fork: the child makes a session of its own, forks the daemon and exits; the
# daemon closes its output, so nothing ties it to the task; the task then exits 0.
DAEMONIZE = """
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execvp("sleep", ["sleep", sys.argv[1]])
    os._exit(0)
os.wait()
print("daemon started", flush=True)
"""

# A child in a new process group (setpgrp) or a new session (setsid), output closed.
NEW_GROUP = """
import os, subprocess, sys
how = {"setpgrp": dict(process_group=0), "setsid": dict(start_new_session=True)}[sys.argv[2]]
subprocess.Popen(["sleep", sys.argv[1]], stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL, **how)
print("child started", flush=True)
"""


@pytest.fixture(params=["cgroup", "subreaper"])
def tracking(request) -> dict[str, str]:
    """The environment that makes orchestra hold processes one way or the other."""
    if request.param == "cgroup":
        if hierarchy() is None:
            pytest.skip("no writable cgroup v1 pids hierarchy here (needs root)")
        return {}
    return {"ORCHESTRA_CGROUPS": "0"}


@pytest.fixture
def orphans(tmp_path):
    """Make markers; after the test, kill every process that carries one and remove the
    cgroups of the test's runs."""
    made: list[str] = []

    def marker() -> str:
        made.append(f"300.{random.randrange(10**11, 10**12)}")
        return made[-1]

    yield marker
    for pid in marked(*made):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for run_id in run_ids(tmp_path):
        remove_run_cgroups(run_id)


def marked(*markers: str) -> list[int]:
    """The running processes (not zombies) whose command line holds one of ``markers``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            arguments = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] in "ZX":
            continue
        if any(marker.encode() in argument for argument in arguments for marker in markers):
            found.append(int(entry))
    return found


def db_rows(project: Path, query: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def run_ids(project: Path) -> list[str]:
    if not (project / ".orchestra" / "orchestra.db").exists():
        return []
    return [row["id"] for row in db_rows(project, "SELECT id FROM runs")]


def workstream(project: Path, *tasks: str) -> None:
    (project / "ws.toml").write_text('id = "orphans"\n' + "".join(tasks))


def task(task_id: str, command: list[str] | str, extra: str = "") -> str:
    """A task table: an argument list, or a string run by the shell."""
    shell = "shell = true\n" if isinstance(command, str) else ""
    return f"[[tasks]]\nid = {json.dumps(task_id)}\n{shell}command = {json.dumps(command)}\n{extra}"


def python(source: str, *arguments: str) -> list[str]:
    return [sys.executable, "-c", source, *arguments]


def start_orchestra(project: Path, env: dict[str, str], *arguments: str) -> subprocess.Popen:
    """``orchestra run ws.toml`` in a session of its own, so that signals reach only it."""
    return testing.start_orchestra(
        "run", "ws.toml", "--quiet", *arguments, cwd=project, env=env, new_session=True
    )


def attempt_log(project: Path, task_id: str) -> str:
    return next((project / ".orchestra" / "runs").rglob(f"{task_id}.1.log")).read_text()


# -- at the attempt's end -------------------------------------------------------------------


def test_a_daemon_does_not_outlive_its_attempt(tmp_path, tracking, orphans):
    daemon = orphans()
    workstream(tmp_path, task("daemonize", python(DAEMONIZE, daemon)))

    finished = run_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path, env=tracking)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert marked(daemon) == []
    log = attempt_log(tmp_path, "daemonize")
    assert "the command left processes running outside its group: stopping them" in log


@pytest.mark.parametrize("how", ["setpgrp", "setsid"])
def test_a_child_in_a_new_group_or_session_does_not_outlive_its_attempt(
    tmp_path, tracking, orphans, how
):
    child = orphans()
    workstream(tmp_path, task("escape", python(NEW_GROUP, child, how)))

    finished = run_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path, env=tracking)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert marked(child) == []


def test_a_child_that_clears_its_environment_does_not_outlive_the_run(tmp_path, tracking, orphans):
    # without ORCHESTRA_* in its environment and in a session of its own, only a cgroup
    # ties it to its attempt; as subreaper, orchestra stops it at the run's end
    child = orphans()
    cleared = f"env -i setsid sh -c 'echo > left; exec sleep {child}' </dev/null >/dev/null 2>&1 &"
    # the task ends once its child has left its process group (and its variables behind)
    workstream(tmp_path, task("cleared", f"{cleared} while [ ! -f left ]; do sleep 0.05; done"))

    finished = run_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path, env=tracking)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert marked(child) == []


def test_an_attempts_end_leaves_another_attempts_processes_alone(tmp_path, tracking, orphans):
    # "keeper" orphans a child of its own and runs on until "checker" (which starts after
    # "quick" ended, and with it quick's sweep) has looked at that child
    kept, quick_daemon = orphans(), orphans()
    keeper = (
        f"setsid sh -c 'sleep {kept} </dev/null >/dev/null 2>&1 & echo $! > kept.pid'; "
        "while [ ! -f checked ]; do sleep 0.05; done"
    )
    checker = "if kill -0 $(cat kept.pid); then echo alive > checked; else echo gone > checked; fi"
    workstream(
        tmp_path,
        task("keeper", keeper, 'timeout = "60s"\n'),
        task("quick", f"while [ ! -f kept.pid ]; do sleep 0.05; done; {_daemon(quick_daemon)}"),
        task("checker", checker, 'depends_on = ["quick"]\n'),
    )

    finished = run_orchestra(
        "run", "ws.toml", "--quiet", "--max-parallel", "3", cwd=tmp_path, env=tracking
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert (tmp_path / "checked").read_text().strip() == "alive"
    assert marked(kept, quick_daemon) == []  # and the run's end stopped both


def _daemon(marker: str) -> str:
    """A shell line that leaves a daemon (a new session, its parent gone) running sleep."""
    return f"setsid sh -c 'sleep {marker} </dev/null >/dev/null 2>&1 &'"


def test_a_daemon_does_not_outlive_the_attempts_timeout(tmp_path, tracking, orphans):
    daemon = orphans()
    workstream(
        tmp_path,
        task("slow", f"{_daemon(daemon)}; exec sleep 60", 'timeout = "1s"\nmax_attempts = 1\n'),
    )

    finished = run_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path, env=tracking)

    assert finished.returncode == 1, finished.stdout + finished.stderr
    (attempt,) = db_rows(tmp_path, "SELECT outcome, error_class FROM attempts")
    assert (attempt["outcome"], attempt["error_class"]) == ("timed_out", "timeout")
    assert marked(daemon) == []
    assert "reached its timeout of 1 s" in attempt_log(tmp_path, "slow")


# -- Ctrl-C, SIGHUP, and a killed orchestrator -----------------------------------------------


def test_ctrl_c_stops_a_running_attempts_daemon(tmp_path, tracking, orphans):
    daemon, leader = orphans(), orphans()
    workstream(tmp_path, task("long", f"{_daemon(daemon)}; exec sleep {leader}"))
    process = start_orchestra(tmp_path, tracking)
    try:
        wait_for(lambda: marked(daemon) and marked(leader))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        process.kill()
    assert marked(daemon, leader) == []
    assert db_rows(tmp_path, "SELECT state FROM runs")[0]["state"] == "canceled"


def test_sighup_cancels_the_run_like_sigterm(tmp_path, orphans):
    # a closed terminal: the run is canceled and its attempts stopped, not left running
    # unsupervised past their timeout
    daemon, leader = orphans(), orphans()
    workstream(tmp_path, task("long", f"{_daemon(daemon)}; exec sleep {leader}"))
    process = start_orchestra(tmp_path, {})
    try:
        wait_for(lambda: marked(daemon) and marked(leader))
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=30) == 130
    finally:
        process.kill()
    assert "canceling the run" in process.stderr.read()
    assert marked(daemon, leader) == []
    assert db_rows(tmp_path, "SELECT state FROM runs")[0]["state"] == "canceled"
    assert db_rows(tmp_path, "SELECT state FROM steps")[0]["state"] == "canceled"


def test_cancel_of_a_killed_run_stops_what_its_orchestrator_left(tmp_path, tracking, orphans):
    # SIGKILL leaves the attempt's processes running (each in a session of its own);
    # `orchestra cancel` must stop them, as `resume` would, and say so
    daemon, leader = orphans(), orphans()
    tasks = [task("long", f"{_daemon(daemon)}; exec sleep {leader}")]
    escaped, left = [daemon], [daemon, leader]
    if "ORCHESTRA_CGROUPS" not in tracking:  # a cgroup holds one that cleared its variables
        cleared, its_leader = orphans(), orphans()
        tasks.append(task("cleared", f"env -i setsid sleep {cleared} & exec sleep {its_leader}"))
        escaped.append(cleared)
        left += [cleared, its_leader]
    workstream(tmp_path, *tasks)
    process = start_orchestra(tmp_path, tracking, "--max-parallel", "2")
    try:
        wait_for(lambda: all(marked(marker) for marker in left))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
    # the leaders may die with orchestra (a sandbox's --die-with-parent); what left their
    # session does not
    assert all(marked(marker) for marker in escaped)
    (run_id,) = run_ids(tmp_path)

    canceled = run_orchestra("cancel", run_id, cwd=tmp_path, env=tracking)

    assert canceled.returncode == 0, canceled.stdout + canceled.stderr
    assert marked(*left) == []
    assert db_rows(tmp_path, "SELECT state FROM runs")[0]["state"] == "canceled"
    (event,) = db_rows(tmp_path, "SELECT payload FROM events WHERE type = 'run.leftovers_stopped'")
    assert len(json.loads(event["payload"])["pids"]) >= len(escaped)


def test_a_run_removes_the_empty_cgroups_killed_runs_left_and_keeps_busy_ones(orphans):
    from orchestra.engine.containment import supervise_run

    tree = hierarchy()
    if tree is None:
        pytest.skip("no writable cgroup v1 pids hierarchy here (needs root)")
    empty = Path(tree.home, f"orchestra-{random.randrange(10**9)}-gone")
    busy = Path(tree.home, f"orchestra-{random.randrange(10**9)}-busy")
    (empty / "thread-1").mkdir(parents=True)
    busy.mkdir()
    sleeper = subprocess.Popen(["sleep", orphans()])
    try:
        (busy / "cgroup.procs").write_text(str(sleeper.pid))

        with supervise_run("pruning"):
            pass

        assert not empty.exists()
        assert busy.is_dir() and str(sleeper.pid) in (busy / "cgroup.procs").read_text()
    finally:
        sleeper.kill()
        sleeper.wait()
        for directory in (empty / "thread-1", empty, busy):
            if directory.exists():
                directory.rmdir()


def test_preparing_a_run_moves_no_thread_and_makes_no_cgroup():
    # the warm-up before a run (a helper's move to where it is) leaves every thread of
    # orchestra where it was and makes nothing in the hierarchy
    import threading

    from orchestra.engine.containment import prepare_run

    tree = hierarchy()
    if tree is None:
        pytest.skip("no writable cgroup v1 pids hierarchy here (needs root)")
    import re

    # other tests' runs (in parallel workers) come and go meanwhile
    others = re.compile(rf"orchestra-(\d{{8}}-|probe-|pid(?!{os.getpid()}$))")

    def listing() -> list[str]:
        return sorted(name for name in os.listdir(tree.home) if not others.match(name))

    before = listing()
    own = Path(f"/proc/self/task/{threading.get_native_id()}/cgroup").read_text()

    prepare_run()
    for thread in threading.enumerate():
        if thread.name == "orchestra-cgroup-warm-up":
            thread.join(timeout=5)
            assert not thread.is_alive()

    assert listing() == before
    assert Path(f"/proc/self/task/{threading.get_native_id()}/cgroup").read_text() == own
