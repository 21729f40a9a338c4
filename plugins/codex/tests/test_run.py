"""End to end: ``orchestra run`` routes a task to the real codex, configured in orchestra.toml.

Each attempt runs in a git worktree; orchestra commits a successful attempt's edit
(codex never commits) and merges it into the run's branch, which the tests read.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from fake_responses import API_KEY, Reply, Status, apply_patch, message

from orchestra.testing import make_git_repo, run_orchestra

PATCH = (
    "*** Begin Patch\n*** Update File: hello.py\n@@\n def greet():\n"
    '-    return "hello"\n+    return "hello, world"\n*** End Patch\n'
)
WORKSTREAM = """\
id = "greet"

[[tasks]]
id = "greet"
tool = "codex"
prompt = "Make greet return hello, world"
max_attempts = 2
checks = ["grep -q 'hello, world' hello.py"]
"""


def project(tmp_path: Path, native_codex: Path, base_url: str) -> Path:
    root = make_git_repo(
        tmp_path / "project",
        {
            "hello.py": 'def greet():\n    return "hello"\n',
            ".gitignore": ".orchestra/\n",
            "greet.toml": WORKSTREAM,
        },
    )
    (root / "orchestra.toml").write_text(
        f"""\
[tools.codex]
model = "gpt-5.5"
pass_env = ["FAKE_LLM_API_KEY"]
binary = "{native_codex}"
base_url = "{base_url}"
env_key = "FAKE_LLM_API_KEY"
request_max_retries = 0
stream_max_retries = 0
input_cost_per_token = 0.000002
output_cost_per_token = 0.000008
"""
    )
    return root


def rows(root: Path, query: str) -> list[sqlite3.Row]:
    with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query).fetchall()


def run(root: Path):
    return run_orchestra("run", "greet.toml", cwd=root, env={"FAKE_LLM_API_KEY": API_KEY})


def test_orchestra_run_has_codex_edit_the_tree_and_records_usage_and_progress(
    tmp_path, native_codex, fake_responses
):
    server = fake_responses(
        Reply([message("Updating hello.py."), apply_patch(PATCH)]), Reply([message("Done.")])
    )
    root = project(tmp_path, native_codex, server.base_url)

    completed = run(root)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_id,) = [row["id"] for row in rows(root, "SELECT id FROM runs")]
    # orchestra committed codex's edit on the run's branch; the user's tree is untouched
    landed = subprocess.run(
        ["git", "show", f"orchestra/{run_id}:hello.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert landed == 'def greet():\n    return "hello, world"\n'
    assert (root / "hello.py").read_text() == 'def greet():\n    return "hello"\n'
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert (attempt["tool"], attempt["outcome"], attempt["exit_code"]) == ("codex", "succeeded", 0)
    usage = [attempt[name] for name in ("input_tokens", "cached_input_tokens", "output_tokens")]
    assert usage == [2000, 400, 100]
    assert abs(attempt["cost_usd"] - (1600 * 2e-6 + 400 * 2e-6 + 100 * 8e-6)) < 1e-12
    events = {
        (row["type"], row["payload"]) for row in rows(root, "SELECT type, payload FROM events")
    }
    tool_events = [
        (kind, json.loads(payload)) for kind, payload in events if kind.startswith("tool.")
    ]
    kinds = {kind for kind, _ in tool_events}
    assert {"tool.version", "tool.item", "tool.changes"} <= kinds
    items = [payload["type"] for kind, payload in tool_events if kind == "tool.item"]
    assert sorted(items) == ["agent_message", "agent_message", "file_change"]
    assert no_file_holds(root / ".orchestra", API_KEY)
    assert API_KEY not in completed.stdout + completed.stderr
    assert (root / ".orchestra" / "tools" / "codex" / "home" / "config.toml").is_file()


def test_orchestra_run_fails_a_401_as_auth_without_a_retry(tmp_path, native_codex, fake_responses):
    server = fake_responses(Status(401, "Incorrect API key provided"))
    root = project(tmp_path, native_codex, server.base_url)

    completed = run(root)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert (attempt["outcome"], attempt["error_class"]) == ("failed", "auth")
    assert "401 Unauthorized: Incorrect API key provided" in attempt["message"]
    assert len(server.requests) == 1


def no_file_holds(directory: Path, secret: str) -> bool:
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
            raise AssertionError(f"{path} holds the key")
    return os.path.isdir(directory)


def test_a_retry_after_a_failed_check_goes_on_from_codexs_last_change_and_is_told_so(
    tmp_path, native_codex, fake_responses
):
    there = PATCH.replace("hello, world", "hello, there")
    # this patch applies only where the first attempt's change is: it must be there
    fix = there.replace('-    return "hello"', '-    return "hello, there"').replace(
        '+    return "hello, there"', '+    return "hello, world"'
    )
    server = fake_responses(
        Reply([message("Updating hello.py."), apply_patch(there)]),
        Reply([message("Done.")]),
        Reply([message("Fixing hello.py."), apply_patch(fix, call_id="call_fix")]),
        Reply([message("Done.")]),
    )
    root = project(tmp_path, native_codex, server.base_url)
    workstream = WORKSTREAM.replace(
        'id = "greet"\n', 'id = "greet"\n[defaults]\nbackoff = { initial = "0.01s" }\n', 1
    )
    (root / "greet.toml").write_text(workstream)

    completed = run(root)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    first, second = rows(root, "SELECT * FROM attempts ORDER BY number")
    assert (first["error_class"], second["outcome"]) == ("check_failed", "succeeded")
    retry = json.dumps(server.requests[2].body)
    assert "did not succeed. What went wrong:" in retry and "exited 1 after your" in retry
    assert "last attempt's change is already in the working tree, uncommitted" in retry
    (run_id,) = [row["id"] for row in rows(root, "SELECT id FROM runs")]
    landed = subprocess.run(
        ["git", "show", f"orchestra/{run_id}:hello.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert landed == 'def greet():\n    return "hello, world"\n'
