"""orchestra run, resume, cancel: real processes, real SQLite files, real signals."""

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from orchestra.testing import run_orchestra, start_orchestra, wait_for


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def db_rows(project: Path, query: str, *args):
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def chain_workstream(count: int, seconds: float) -> str:
    """A layered workstream: tasks in layers of 5, each depending on one of the layer before;
    every task appends its id to out.txt, then sleeps."""
    lines = ['id = "many"']
    for index in range(count):
        lines += ["[[tasks]]", f'id = "t{index:02d}"']
        lines.append(f'command = "echo t{index:02d} >> out.txt; sleep {seconds}"')
        lines.append("shell = true")
        if index >= 5:
            lines.append(f'depends_on = ["t{index - 5:02d}"]')
    return "\n".join(lines) + "\n"


def test_a_run_goes_through_retries_failures_and_skips_with_the_exit_codes(tmp_path):
    write(
        tmp_path / "ws.toml",
        """
id = "demo"
[[tasks]]
id = "flaky"
command = "test -f flag || { touch flag; exit 3; }"
shell = true
max_attempts = 2
backoff = { initial = "0.1s", jitter = false }
[[tasks]]
id = "broken"
command = ["false"]
max_attempts = 1
[[tasks]]
id = "after-broken"
depends_on = ["broken"]
command = ["true"]
[[tasks]]
id = "after-flaky"
depends_on = ["flaky"]
command = ["true"]
""",
    )
    result = run_orchestra("run", "ws.toml", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "failed" and summary["failed"] == ["broken"]
    assert summary["steps"] == {"succeeded": 2, "failed": 1, "skipped": 1}
    steps = {row["task_id"]: row for row in db_rows(tmp_path, "SELECT * FROM steps")}
    assert steps["flaky"]["attempts"] == 2 and steps["flaky"]["state"] == "succeeded"
    assert steps["after-broken"]["state"] == "skipped"
    assert steps["after-broken"]["reason"] == "dependency broken failed"
    # the run database holds the whole story: one event per transition, numbered 1..n
    seqs = [row["seq"] for row in db_rows(tmp_path, "SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    show = json.loads(run_orchestra("show", summary["run"], "--json", cwd=tmp_path).stdout)
    flaky = next(step for step in show["steps"] if step["task"] == "flaky")
    assert [a["outcome"] for a in flaky["attempts"]] == ["failed", "succeeded"]
    log = run_orchestra("logs", summary["run"], "flaky", "--attempt", "1", cwd=tmp_path)
    assert "test -f flag" in log.stdout

    (tmp_path / "flag").unlink()
    write(tmp_path / "ok.toml", 'id = "ok"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    assert run_orchestra("run", "ok.toml", "--quiet", cwd=tmp_path).returncode == 0
    bad = run_orchestra("run", "missing.toml", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr == "error: missing.toml: no such file\n"


def test_fail_fast_cancels_what_has_not_finished(tmp_path):
    write(
        tmp_path / "ws.toml",
        'id = "w"\n[[tasks]]\nid = "slow"\ncommand = ["sleep", "30"]\n'
        '[[tasks]]\nid = "bad"\ncommand = "sleep 0.3; exit 1"\nshell = true\nmax_attempts = 1\n',
    )
    started = time.monotonic()
    result = run_orchestra("run", "ws.toml", "--fail-fast", "--json", cwd=tmp_path)
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    states = {row["task_id"]: row["state"] for row in db_rows(tmp_path, "SELECT * FROM steps")}
    assert states == {"slow": "canceled", "bad": "failed"}


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_parallel_tasks_overlap_but_never_exceed_max_parallel(tmp_path):
    tasks = "".join(f'[[tasks]]\nid = "s{i}"\ncommand = ["sleep", "1"]\n' for i in range(6))
    write(tmp_path / "ws.toml", 'id = "par"\n' + tasks)
    started = time.monotonic()
    result = run_orchestra("run", "ws.toml", "--max-parallel", "3", "--quiet", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    spans = [
        (row["started_at"], row["ended_at"]) for row in db_rows(tmp_path, "SELECT * FROM attempts")
    ]
    assert len(spans) == 6
    most = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert most == 3
    assert elapsed < 5.0  # about 2 s of sleeping in two rounds of three; serial would be 6 s


def test_secrets_never_reach_the_database_or_the_logs(tmp_path):
    secret = "sk-live-7f3c9a2b1e8d4f60"
    write(
        tmp_path / "ws.toml",
        f'id = "s"\n[[tasks]]\nid = "leak"\ncommand = "echo key=$SERVICE_API_KEY; echo {secret}; exit 1"\n'
        f'shell = true\nmax_attempts = 1\nenv = {{ SERVICE_API_KEY = "{secret}" }}\n',
    )
    result = run_orchestra("run", "ws.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert secret not in result.stdout + result.stderr
    files = [p for p in (tmp_path / ".orchestra").rglob("*") if p.is_file()]
    assert any(p.name.startswith("orchestra.db") for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    log = next(p for p in files if p.suffix == ".log")
    assert "key=***" in log.read_text()


def lines_written(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 17, 38])
def test_a_killed_run_resumes_without_redoing_what_succeeded(tmp_path, kill_at):
    write(tmp_path / "ws.toml", chain_workstream(50, 0.1))
    process = start_orchestra("run", "ws.toml", "--max-parallel", "4", "--quiet", cwd=tmp_path)
    # kill when kill_at tasks have started: a point in the run, whatever the machine's speed
    wait_for(lambda: lines_written(tmp_path / "out.txt") >= kill_at)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    (run_id,) = [row["id"] for row in db_rows(tmp_path, "SELECT id FROM runs")]
    done_before = {
        row["task_id"]
        for row in db_rows(tmp_path, "SELECT task_id FROM steps WHERE state = 'succeeded'")
    }
    assert len(done_before) < 50, "the run finished before it was killed: kill earlier"
    status = run_orchestra("status", run_id, cwd=tmp_path)
    assert f"run {run_id}  interrupted" in status.stdout

    resumed = run_orchestra("resume", run_id, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == {"succeeded": 50}
    lines = (tmp_path / "out.txt").read_text().split()
    assert set(lines) == {f"t{i:02d}" for i in range(50)}
    for task in done_before:
        assert lines.count(task) == 1, f"{task} succeeded before the kill but ran again"
    assert db_rows(tmp_path, "PRAGMA integrity_check")[0][0] == "ok"


def test_resume_refuses_a_changed_file_and_a_finished_run(tmp_path):
    write(tmp_path / "ws.toml", chain_workstream(20, 0.1))
    process = start_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path)
    wait_for(lambda: (tmp_path / "out.txt").exists())
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    (run_id,) = [row["id"] for row in db_rows(tmp_path, "SELECT id FROM runs")]
    write(tmp_path / "ws.toml", chain_workstream(20, 0.1) + "# edited\n")
    refused = run_orchestra("resume", run_id, cwd=tmp_path)
    assert refused.returncode == 2
    assert "changed since run" in refused.stderr and "--force" in refused.stderr
    forced = run_orchestra("resume", run_id, "--force", "--quiet", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    again = run_orchestra("resume", run_id, cwd=tmp_path)
    assert again.returncode == 2 and "only an interrupted or canceled run resumes" in again.stderr


def test_resume_force_of_a_workstream_with_other_tasks_is_refused_and_changes_nothing(tmp_path):
    # --force runs the new version of the tasks the run has; a task added or removed has
    # no place in its record: one line, status 2, and the database as it was
    write(
        tmp_path / "ws.toml",
        'id = "w"\n[[tasks]]\nid = "slow"\ncommand = ["sleep", "60"]\n'
        '[[tasks]]\nid = "after"\ndepends_on = ["slow"]\ncommand = ["true"]\n',
    )
    process = start_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path)
    wait_for(lambda: rows_once_made(tmp_path, "SELECT * FROM attempts"))
    (run_id,) = [row["id"] for row in db_rows(tmp_path, "SELECT id FROM runs")]
    assert run_orchestra("cancel", run_id, cwd=tmp_path).returncode == 0
    process.wait(timeout=30)
    before = [dict(row) for row in db_rows(tmp_path, "SELECT * FROM steps ORDER BY task_id")]
    write(
        tmp_path / "ws.toml",
        'id = "w"\n[[tasks]]\nid = "slow2"\ncommand = ["true"]\n'
        '[[tasks]]\nid = "after"\ndepends_on = ["slow2"]\ncommand = ["true"]\n',
    )

    forced = run_orchestra("resume", run_id, "--force", cwd=tmp_path)

    assert forced.returncode == 2, forced.stdout + forced.stderr
    assert "Traceback" not in forced.stderr
    assert forced.stderr.strip() == (
        f"error: the workstream adds 1 (slow2) and lacks 1 (slow) of the tasks of run {run_id}:"
        " resume carries on a run's own tasks; start a new run (orchestra run) for the new set"
    )
    assert [
        dict(row) for row in db_rows(tmp_path, "SELECT * FROM steps ORDER BY task_id")
    ] == before
    (run,) = db_rows(tmp_path, "SELECT state FROM runs")
    assert run["state"] == "canceled"


@pytest.mark.parametrize("how", ["sigint", "cancel-command"])
def test_cancel_stops_the_running_attempts_and_exits_130(tmp_path, how):
    write(
        tmp_path / "ws.toml",
        'id = "w"\n[[tasks]]\nid = "long"\ncommand = "echo $$ > pid; exec sleep 60"\nshell = true\n'
        '[[tasks]]\nid = "later"\ndepends_on = ["long"]\ncommand = ["true"]\n',
    )
    process = start_orchestra("run", "ws.toml", cwd=tmp_path)
    pid = int(
        wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip())
    )
    if how == "sigint":
        process.send_signal(signal.SIGINT)
    else:
        (run_id,) = [row["id"] for row in db_rows(tmp_path, "SELECT id FROM runs")]
        told = run_orchestra("cancel", run_id, cwd=tmp_path)
        assert told.returncode == 0 and "cancel" in told.stdout
    assert process.wait(timeout=30) == 130
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    states = {row["task_id"]: row["state"] for row in db_rows(tmp_path, "SELECT * FROM steps")}
    assert states == {"long": "canceled", "later": "canceled"}
    assert db_rows(tmp_path, "SELECT state FROM runs")[0]["state"] == "canceled"


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_two_orchestrators_never_drive_one_run(tmp_path):
    write(
        tmp_path / "ws.toml",
        'id = "w"\n[[tasks]]\nid = "long"\ncommand = "touch started; sleep 3"\nshell = true\n',
    )
    process = start_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path)
    wait_for(lambda: (tmp_path / "started").exists())
    (run_id,) = [row["id"] for row in db_rows(tmp_path, "SELECT id FROM runs")]
    second = run_orchestra("resume", run_id, cwd=tmp_path)
    assert second.returncode == 2 and "only an interrupted or canceled run resumes" in second.stderr
    assert process.wait(timeout=30) == 0


def test_the_readme_example_runs_with_one_retry(tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "demo" / "workstream.toml"
    result = run_orchestra("run", str(example), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["steps"] == {"succeeded": 5}
    attempts = {row["task_id"]: row["attempts"] for row in db_rows(tmp_path, "SELECT * FROM steps")}
    assert attempts["flaky-network"] == 2
    log = subprocess.run(
        ["git", "-C", str(tmp_path / "build" / "demo"), "log", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.splitlines() == ["greet the world", "start"]


def test_ctrl_c_during_a_retry_delay_cancels_the_waiting_dependents(tmp_path):
    write(
        tmp_path / "ws.toml",
        'id = "w"\n[[tasks]]\nid = "flaky"\ncommand = "touch tried; exit 1"\nshell = true\n'
        'max_attempts = 2\nbackoff = { initial = "30s", jitter = false }\n'
        '[[tasks]]\nid = "after"\ndepends_on = ["flaky"]\ncommand = ["true"]\n',
    )
    process = start_orchestra("run", "ws.toml", cwd=tmp_path)
    wait_for(lambda: (tmp_path / "tried").exists())
    wait_for(
        lambda: (
            db_rows(tmp_path, "SELECT state FROM steps WHERE task_id = 'flaky'")[0][0] == "retrying"
        )
    )
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130, process.stderr.read()
    states = {row["task_id"]: row["state"] for row in db_rows(tmp_path, "SELECT * FROM steps")}
    assert states == {"flaky": "canceled", "after": "canceled"}


def test_a_task_no_tool_can_run_fails_without_an_attempt(tmp_path):
    write(tmp_path / "ws.toml", 'id = "w"\n[[tasks]]\nid = "ai"\nprompt = "x"\ntools = ["shell"]\n')
    result = run_orchestra("run", "ws.toml", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    row = db_rows(tmp_path, "SELECT * FROM steps")[0]
    assert row["state"] == "failed" and row["attempts"] == 0
    assert row["reason"].startswith("no tool can run this task (shell: lacks capability prompt")


def test_reading_commands_refuse_bad_input_with_exit_2(tmp_path):
    missing = run_orchestra("cancel", "20260101-000000-abcd", cwd=tmp_path)
    assert missing.returncode == 2 and "no run database at" in missing.stderr
    assert not (tmp_path / ".orchestra").exists()  # nothing created just to say so
    write(tmp_path / "ok.toml", 'id = "ok"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    assert run_orchestra("run", "ok.toml", "-q", cwd=tmp_path).returncode == 0
    bogus = run_orchestra("runs", "--state", "bogus", cwd=tmp_path)
    assert bogus.returncode == 2 and "Traceback" not in bogus.stderr
    unknown = run_orchestra("show", "20260101-000000-abcd", cwd=tmp_path)
    assert unknown.returncode == 2 and "no run '20260101-000000-abcd'" in unknown.stderr


def test_canceling_an_interrupted_run_cancels_its_steps_too(tmp_path):
    write(tmp_path / "ws.toml", chain_workstream(10, 0.3))
    process = start_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path)
    wait_for(lambda: lines_written(tmp_path / "out.txt") >= 2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    (run_id,) = [row["id"] for row in db_rows(tmp_path, "SELECT id FROM runs")]
    canceled = run_orchestra("cancel", run_id, cwd=tmp_path)
    assert canceled.returncode == 0, canceled.stdout + canceled.stderr
    states = {row["state"] for row in db_rows(tmp_path, "SELECT state FROM steps")}
    assert states <= {"succeeded", "canceled"} and "canceled" in states, states
    open_attempts = db_rows(tmp_path, "SELECT * FROM attempts WHERE ended_at IS NULL")
    assert open_attempts == []
    assert db_rows(tmp_path, "SELECT state FROM runs")[0][0] == "canceled"


def test_a_tools_max_concurrency_holds_below_max_parallel(tmp_path):
    write(tmp_path / "orchestra.toml", "[tools.shell]\nmax_concurrency = 1\n")
    tasks = "".join(f'[[tasks]]\nid = "s{i}"\ncommand = ["sleep", "0.3"]\n' for i in range(4))
    write(tmp_path / "ws.toml", 'id = "one-at-a-time"\n' + tasks)
    result = run_orchestra("run", "ws.toml", "--max-parallel", "4", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    spans = sorted(
        (row["started_at"], row["ended_at"]) for row in db_rows(tmp_path, "SELECT * FROM attempts")
    )
    assert len(spans) == 4
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_a_second_ctrl_c_kills_at_once_and_still_records_the_run(tmp_path):
    write(
        tmp_path / "ws.toml",
        'id = "w"\n[[tasks]]\nid = "stubborn"\nshell = true\n'
        'command = "trap \\"\\" TERM; echo $$ > pid; while :; do sleep 0.1; done"\n',
    )
    process = start_orchestra("run", "ws.toml", cwd=tmp_path)
    pid = int(
        wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip())
    )
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the task ignores SIGTERM: without a second Ctrl-C this takes the 5 s grace
    second = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert time.monotonic() - second < 3.0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert db_rows(tmp_path, "SELECT state FROM runs")[0][0] == "canceled"
    log = next((tmp_path / ".orchestra" / "runs").rglob("*.log")).read_text()
    assert "sent SIGKILL at once (asked to stop now)" in log


def test_resume_stops_what_the_dead_orchestrator_left_running(tmp_path):
    # the first attempt leaves a child in its own process group that outlives a SIGKILLed
    # orchestrator; resume must stop it before trying the task again
    write(
        tmp_path / "ws.toml",
        'id = "w"\n[[tasks]]\nid = "long"\nshell = true\n'
        'command = "test -f first || { touch first; sleep 300 & echo $! > pid; wait; }"\n',
    )
    process = start_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path)
    pid = int(
        wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip())
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    os.kill(pid, 0)  # the orphan still runs
    (run_id,) = [row["id"] for row in db_rows(tmp_path, "SELECT id FROM runs")]

    resumed = run_orchestra("resume", run_id, "--json", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == {"succeeded": 1}
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or _is_zombie(pid), timeout=10)
    (event,) = db_rows(tmp_path, "SELECT * FROM events WHERE type = 'run.leftovers_stopped'")
    assert pid in json.loads(event["payload"])["pids"]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


@pytest.mark.slow
def test_resume_keeps_the_settings_the_run_started_with(tmp_path):
    write(tmp_path / "ws.toml", chain_workstream(20, 0.3))
    process = start_orchestra("run", "ws.toml", "--max-parallel", "1", "--quiet", cwd=tmp_path)
    wait_for(lambda: lines_written(tmp_path / "out.txt") >= 2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    (run_id,) = [row["id"] for row in db_rows(tmp_path, "SELECT id FROM runs")]

    resumed = run_orchestra("resume", run_id, "--quiet", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    spans = [
        (row["started_at"], row["ended_at"])
        for row in db_rows(tmp_path, "SELECT * FROM attempts WHERE outcome = 'succeeded'")
    ]
    most = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert most == 1, "the resumed run ran tasks in parallel though it started with 1"


def rows_once_made(project: Path, query: str) -> list:
    """The rows of ``query``, or none while the run database is not made yet."""
    if not (project / ".orchestra" / "orchestra.db").exists():
        return []  # (connecting would make it)
    try:
        return db_rows(project, query)
    except sqlite3.OperationalError:  # its tables not made yet
        return []
