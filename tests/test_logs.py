"""Bounded output: an attempt's log is capped (``log_limit``) with a line saying what was
left out, and ``show``, ``logs --tail`` and ``report`` read only the end of a huge log or
line. Real runs of the real ``orchestra`` program, printing tens of megabytes."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from orchestra.testing import run_orchestra

MB = 1_000_000
#: orchestra's own lines in a log: the "$ command" line and the note about the limit
SLACK = 2_000

# 500,000 lines of 100 bytes (50 MB), numbered, then a last line
MANY_LINES = """
import sys
line = "x" * 86
for number in range(500_000):
    sys.stdout.write(f"line {number:07d} {line}\\n")
print("the last line")
"""

# one line of 20 MB, its end marked
HUGE_LINE = """
import sys
sys.stdout.write("a" * 20_000_000 + " END OF THE HUGE LINE\\n")
sys.exit(1)
"""


def project(tmp_path: Path, source: str, defaults: str = "", config: str = "") -> Path:
    command = json.dumps([sys.executable, "-c", source])
    (tmp_path / "ws.toml").write_text(
        f'id = "logs"\n{defaults}\n[[tasks]]\nid = "loud"\ncommand = {command}\nmax_attempts = 1\n'
    )
    (tmp_path / "orchestra.toml").write_text(config)
    return tmp_path


def run_id_of(directory: Path) -> str:
    with sqlite3.connect(directory / ".orchestra" / "orchestra.db") as db:
        ((run_id,),) = db.execute("SELECT id FROM runs").fetchall()
    return run_id


def log_of(directory: Path) -> Path:
    return next((directory / ".orchestra" / "runs").rglob("loud.1.log"))


def test_a_log_keeps_its_start_and_end_and_says_how_much_was_left_out(tmp_path):
    directory = project(tmp_path, MANY_LINES)

    finished = run_orchestra("run", "ws.toml", "--quiet", cwd=directory)

    assert finished.returncode == 0, finished.stderr
    log = log_of(directory).read_bytes()
    assert len(log) <= 10 * MB + SLACK  # the default log_limit, 10MB
    lines = log.decode().splitlines()
    assert lines[1].startswith("line 0000000 ")  # after the "$ command" line
    assert lines[-1] == "the last line"
    (note,) = [line for line in lines if line.startswith("orchestra: the log reached")]
    left_out = int(note.split(": ")[2].split(" bytes")[0].replace(",", ""))
    assert note.endswith("bytes of output left out here") and "(log_limit 10MB)" in note
    printed = 500_000 * 100 + len("the last line\n")
    kept = sum(len(line) + 1 for line in lines[1:] if not line.startswith("orchestra: "))
    assert kept + left_out == printed
    shown = run_orchestra("logs", run_id_of(directory), "loud", cwd=directory)
    assert shown.returncode == 0 and shown.stdout == log.decode()


def test_a_20mb_line_is_capped_too_and_keeps_its_end(tmp_path):
    directory = project(tmp_path, HUGE_LINE)

    finished = run_orchestra("run", "ws.toml", "--quiet", cwd=directory)

    assert finished.returncode == 1, finished.stderr
    log = log_of(directory).read_bytes()
    assert len(log) <= 10 * MB + SLACK
    assert b"\norchestra: the log reached its limit (log_limit 10MB): " in log
    assert log.endswith(b"a END OF THE HUGE LINE\norchestra: the command exited with status 1\n")


@pytest.mark.parametrize("where", ["flag", "variable", "defaults", "config"])
def test_the_log_limit_is_a_setting(tmp_path, where):
    arguments, env, defaults, config = [], {}, "", ""
    if where == "flag":
        arguments = ["--log-limit", "200kB"]
    elif where == "variable":
        env = {"ORCHESTRA_LOG_LIMIT": "200kB"}
    elif where == "defaults":
        defaults = '[defaults]\nlog_limit = "200kB"\n'
    else:
        config = "log_limit = 200_000\n"
    directory = project(tmp_path, MANY_LINES, defaults, config)

    finished = run_orchestra("run", "ws.toml", "--quiet", *arguments, cwd=directory, env=env)

    assert finished.returncode == 0, finished.stderr
    log = log_of(directory).read_text()
    assert len(log) <= 200_000 + SLACK
    assert "orchestra: the log reached its limit (log_limit 200kB)" in log
    assert log.endswith("the last line\n")


@pytest.mark.parametrize(
    "where, shown",
    [
        ("flag", "--log-limit"),
        ("variable", "ORCHESTRA_LOG_LIMIT"),
        ("defaults", "log_limit"),
        ("config", "log_limit"),
    ],
)
def test_a_log_limit_that_is_not_a_size_is_refused(tmp_path, where, shown):
    arguments, env, defaults, config = [], {}, "", ""
    if where == "flag":
        arguments = ["--log-limit", "0"]
    elif where == "variable":
        env = {"ORCHESTRA_LOG_LIMIT": "lots"}
    elif where == "defaults":
        defaults = '[defaults]\nlog_limit = "ten megabytes"\n'
    else:
        config = "log_limit = true\n"
    directory = project(tmp_path, 'print("hi")', defaults, config)

    refused = run_orchestra("run", "ws.toml", "--quiet", *arguments, cwd=directory, env=env)

    assert refused.returncode == 2
    assert shown in refused.stderr and "Traceback" not in refused.stderr
    assert not (directory / ".orchestra" / "orchestra.db").exists() or not run_ids(directory)


def run_ids(directory: Path) -> list[str]:
    with sqlite3.connect(directory / ".orchestra" / "orchestra.db") as db:
        return [row[0] for row in db.execute("SELECT id FROM runs")]


def test_show_logs_tail_and_report_read_only_the_end_of_a_huge_line(tmp_path):
    # a limit above the line's size: the readers must bound what they load themselves
    directory = project(tmp_path, HUGE_LINE)
    limit = {"ORCHESTRA_LOG_LIMIT": "100MB"}
    finished = run_orchestra("run", "ws.toml", "--quiet", cwd=directory, env=limit)
    assert finished.returncode == 1, finished.stderr
    assert log_of(directory).stat().st_size > 20 * MB
    run_id = run_id_of(directory)

    show = run_orchestra("show", run_id, cwd=directory)
    assert show.returncode == 0, show.stderr
    assert len(show.stdout) < 5_000
    (huge,) = [line for line in show.stdout.splitlines() if "END OF THE HUGE LINE" in line]
    assert huge.startswith("    | …a") and huge.endswith("a END OF THE HUGE LINE")

    tail = run_orchestra("logs", run_id, "loud", "--tail", "2", cwd=directory)
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout) <= 4 * 1024 * 1024 + SLACK  # at most 4 MiB of a file's end
    assert tail.stdout.endswith(
        "a END OF THE HUGE LINE\norchestra: the command exited with status 1\n"
    )

    report = run_orchestra("report", run_id, "--format", "json", cwd=directory)
    assert report.returncode == 0, report.stderr
    (task,) = json.loads(report.stdout)["tasks"]
    assert task["log_tail"][-2].endswith("a END OF THE HUGE LINE")
    assert all(len(line) <= 2_000 for line in task["log_tail"])
