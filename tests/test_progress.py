"""Watching a run: the live view on a terminal, plain lines elsewhere, `status --watch`
from another process, and the final summary."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from orchestra.testing import orchestra_program, run_orchestra, run_orchestra_on_a_terminal

WORKSTREAM = """
id = "watched"
[[tasks]]
id = "talker"
shell = true
command = "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.3; done"
[[tasks]]
id = "broken"
shell = true
command = "echo about to fail; exit 2"
max_attempts = 1
[[tasks]]
id = "after"
depends_on = ["talker"]
command = ["true"]
"""


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}


def run_on_a_terminal(cwd: Path, *arguments: str) -> str:
    """Run orchestra with a pseudo-terminal as its stdout; return all it wrote."""
    return run_orchestra_on_a_terminal(*arguments, cwd=cwd)[1]


def test_a_terminal_gets_a_live_view_with_the_running_tasks_last_line(tmp_path):
    (tmp_path / "ws.toml").write_text(WORKSTREAM)

    shown = run_on_a_terminal(tmp_path, "run", "ws.toml")

    assert "\x1b[" in shown  # a live view redraws itself
    assert "talker" in shown and "last output" in shown
    assert "line-" in shown  # the running task's last line of output
    assert "broken  failed" in shown  # failures stay in the scrollback
    assert "failed: 1 failed, 2 succeeded" in shown


@pytest.mark.slow
def test_plain_output_has_no_control_characters_and_the_summary_says_why(tmp_path):
    (tmp_path / "ws.toml").write_text(WORKSTREAM)

    result = run_orchestra("run", "ws.toml", cwd=tmp_path, env={"TERM": "xterm"})

    assert result.returncode == 1
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.endswith("talker  running  with shell  (attempt 1)") for line in lines)
    assert "  broken: command exited with status 2" in lines
    assert any(line.startswith("  took ") for line in lines)
    quiet = run_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path)
    assert [line for line in quiet.stdout.splitlines() if "running" in line] == []
    summary = json.loads(run_orchestra("run", "ws.toml", "--json", cwd=tmp_path).stdout)
    assert summary["reasons"] == {"broken": "command exited with status 2"}
    assert summary["seconds"] > 1


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_status_watch_follows_a_run_from_another_process_until_it_ends(tmp_path):
    (tmp_path / "ws.toml").write_text(WORKSTREAM)
    runner = subprocess.Popen(
        [orchestra_program(), "run", "ws.toml", "--quiet"],
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = tmp_path / ".orchestra" / "orchestra.db"
    deadline = time.monotonic() + 30
    while not database.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)

    watched = run_orchestra("status", "--watch", "--interval", "0.2", cwd=tmp_path)

    assert runner.wait(timeout=30) == 1
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert any("running talker" in line for line in lines)
    assert "failed  3/3 done, 1 failed" in lines[-2]  # its last view, then the summary
    assert "\x1b" not in watched.stdout


def test_the_view_shows_a_row_per_worker_and_counts_the_attempts_queued_for_one():
    # quick commands are recorded as started while they wait in the pool for a worker;
    # the view shows the first started (those that run) and how many wait
    from io import StringIO

    from rich.console import Console

    from orchestra.progress import RunningTask, Snapshot, render

    running = [RunningTask(f"q{i:02d}", "shell", 1, 100.0 + i, None) for i in range(10)]
    snapshot = Snapshot(
        run_id="r1",
        state="running",
        total=20,
        counts={"running": 10, "pending": 10},
        running=list(reversed(running)),
        started=100.0,
        parallel=2,
    )
    out = StringIO()
    Console(file=out, width=120, color_system=None).print(render(snapshot, now=111.0))
    text = out.getvalue()
    assert "q00" in text and "q01" in text
    assert not any(f"q{i:02d}" in text for i in range(2, 10))
    assert "+ 8 more queued for a free worker" in text
