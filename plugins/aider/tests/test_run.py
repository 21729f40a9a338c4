"""``orchestra run`` hands tasks to the real aider configured in orchestra.toml's [tools.aider].

Each attempt runs in a git worktree; orchestra commits a successful attempt's edit (aider's
own auto-commits are off) and merges it into the run's branch, which the tests read.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from fake_openai import API_KEY, FakeOpenAI, diff_edit, error_reply, whole_edit

from orchestra.testing import run_orchestra

pytestmark = pytest.mark.slow  # the real aider through orchestra run: seconds per test

WORLD = 'def greet():\n    return "hello, world"\n'
WORKSTREAM = """
id = "greet"

[[tasks]]
id = "greet"
prompt = "Make greet return hello, world"
tool = "aider"
files = { write = ["hello.py"] }
checks = [{ command = ["grep", "-q", "hello, world", "hello.py"], name = "says-world" }]
backoff = { initial = "0.1s", jitter = false }
"""


def configure(repo: Path, llm: FakeOpenAI) -> None:
    """Write orchestra.toml with a [tools.aider] profile pointing at ``llm``."""
    (repo / "orchestra.toml").write_text(
        f"""
[tools.aider]
model = "openai/{llm.model}"
pass_env = ["OPENAI_API_KEY"]
api_base = "{llm.url}"
edit_format = "whole"
context_window = 128000
input_cost_per_token = 0.000001
output_cost_per_token = 0.000002
"""
    )
    (repo / "greet.toml").write_text(WORKSTREAM)


def orchestra_run(repo: Path, aider: Path) -> subprocess.CompletedProcess[str]:
    path = f"{aider.parent}{os.pathsep}{os.environ['PATH']}"
    env = {"PATH": path, "OPENAI_API_KEY": API_KEY}
    return run_orchestra("run", "greet.toml", "--json", cwd=repo, env=env)


def landed(repo: Path, run_id: str, path: str) -> str:
    """Return ``path`` as committed on the run's branch."""
    return subprocess.run(
        ["git", "show", f"orchestra/{run_id}:{path}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def attempts(repo: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM attempts ORDER BY number").fetchall()


def database_text(repo: Path) -> str:
    """Return every value of every table of the run database, as text."""
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            repr(row) for table in tables for row in db.execute(f"SELECT * FROM {table}")
        )


def test_orchestra_run_has_aider_edit_the_file_and_records_usage(real_aider, repo, llm):
    configure(repo, llm)
    llm.script(whole_edit("hello.py", WORLD))

    completed = orchestra_run(repo, real_aider)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["state"] == "succeeded"
    # orchestra committed aider's edit on the run's branch; the user's tree is untouched
    assert landed(repo, summary["run"], "hello.py") == WORLD
    [attempt] = attempts(repo)
    assert (attempt["tool"], attempt["outcome"]) == ("aider", "succeeded")
    assert attempt["input_tokens"] > 0 and attempt["output_tokens"] > 0
    assert attempt["cost_usd"] > 0
    # aider left nothing in the repository (.orchestra/ is orchestra's own)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=normal"],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert sorted(status) == [
        "!! .orchestra/",
        "?? greet.toml",
        "?? orchestra.toml",
    ]
    assert not list(repo.glob(".aider*"))
    logs = "".join(p.read_text(errors="replace") for p in (repo / ".orchestra").rglob("*.log"))
    assert "Applied edit to hello.py" in logs
    assert API_KEY not in logs and API_KEY not in database_text(repo)


def test_a_rate_limited_attempt_is_retried_after_the_providers_delay(real_aider, repo, llm):
    configure(repo, llm)
    limited = error_reply(429, "Rate limit reached. Please try again in 1s.", {"retry-after": "1"})
    # the openai SDK in aider tries three times before aider reports the error
    llm.script(limited, limited, limited, whole_edit("hello.py", WORLD))

    completed = orchestra_run(repo, real_aider)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    first, second = attempts(repo)
    assert (first["outcome"], first["error_class"]) == ("failed", "rate_limited")
    assert first["retry_after"] == 1.0
    assert second["outcome"] == "succeeded"
    assert second["started_at"] - first["ended_at"] >= 1.0
    assert landed(repo, json.loads(completed.stdout)["run"], "hello.py") == WORLD


def test_a_failed_check_is_fed_back_to_aiders_next_attempt(real_aider, repo, llm):
    configure(repo, llm)
    llm.script(
        whole_edit("hello.py", 'def greet():\n    return "hello, there"\n'),
        whole_edit("hello.py", WORLD),
    )

    completed = orchestra_run(repo, real_aider)

    first, second = attempts(repo)
    assert (first["outcome"], first["error_class"]) == ("failed", "check_failed")
    assert second["outcome"] == "succeeded", completed.stdout + completed.stderr
    retry_prompt = llm.requests[1].last_user_message
    assert "previous attempt did not succeed" in retry_prompt
    # the retry goes on from the first attempt's change, and is told so
    assert "change is already in the working tree, uncommitted" in retry_prompt
    assert "says-world" in retry_prompt or "grep" in retry_prompt


def test_an_edit_in_the_diff_format_is_committed_on_the_run_branch(real_aider, repo, llm):
    configure(repo, llm)
    config = (repo / "orchestra.toml").read_text()
    (repo / "orchestra.toml").write_text(config.replace('"whole"', '"diff"'))
    llm.script(diff_edit("hello.py", '    return "hello"\n', '    return "hello, world"\n'))

    completed = orchestra_run(repo, real_aider)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    run_id = json.loads(completed.stdout)["run"]
    assert landed(repo, run_id, "hello.py") == WORLD
    message = subprocess.run(
        ["git", "log", "-1", "--format=%B", f"orchestra/{run_id}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Orchestra-Task: greet\nOrchestra-Attempt: 1\nOrchestra-Tool: aider" in message
