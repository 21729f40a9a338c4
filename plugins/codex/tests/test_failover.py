"""Failover between the real aider and the real codex, each against its fake provider: a
task that lists both goes on with the other when one's key is refused or its provider is
down, with no setting but ``tools``, and each attempt records truthfully why it got its
tool (``orchestra show`` prints it)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from pathlib import Path

import pytest
from fake_responses import API_KEY as CODEX_KEY
from fake_responses import Reply, apply_patch, message

from orchestra.testing import make_git_repo, run_orchestra

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "plugins" / "aider" / "tests"))

from fake_openai import API_KEY as AIDER_KEY  # noqa: E402
from fake_openai import FakeOpenAI, error_reply, whole_edit  # noqa: E402

pytestmark = pytest.mark.slow  # the real aider and codex in one run

HELLO_PY = 'def greet():\n    return "hello"\n'
WORLD_PY = 'def greet():\n    return "hello, world"\n'
PATCH = (
    "*** Begin Patch\n*** Update File: hello.py\n@@\n"
    '-    return "hello"\n+    return "hello, world"\n'
    "*** End Patch\n"
)


def workstream(tools: str) -> str:
    return f"""\
id = "failover"
[defaults]
tools = {tools}

[[tasks]]
id = "greet"
prompt = "Make greet in hello.py return hello, world"
files = {{ write = ["hello.py"] }}
"""


def configure(root: Path, aider_url: str, aider_model: str, codex_url: str, codex: Path) -> None:
    (root / "orchestra.toml").write_text(
        f"""\
[tools.aider]
model = "openai/{aider_model}"
pass_env = ["OPENAI_API_KEY"]
api_base = "{aider_url}"
edit_format = "whole"
context_window = 128000

[tools.codex]
model = "gpt-5.5"
pass_env = ["FAKE_LLM_API_KEY"]
binary = "{codex}"
base_url = "{codex_url}"
env_key = "FAKE_LLM_API_KEY"
request_max_retries = 0
stream_max_retries = 0
"""
    )


def run(root: Path) -> tuple[str, list[sqlite3.Row]]:
    aider = REPO / ".tools" / "bin" / "aider"
    env = {
        "PATH": f"{aider.parent}{os.pathsep}{os.environ['PATH']}",
        "OPENAI_API_KEY": AIDER_KEY,
        "FAKE_LLM_API_KEY": CODEX_KEY,
    }
    completed = run_orchestra("run", "ws.toml", "--json", cwd=root, env=env, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    run_id = json.loads(completed.stdout)["run"]
    with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        attempts = db.execute("SELECT * FROM attempts ORDER BY id").fetchall()
    shown = run_orchestra("show", run_id, cwd=root, env=env)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout, attempts


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: a provider that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_aider_key_refused_codex_takes_over(tmp_path, native_codex, fake_responses):
    root = make_git_repo(
        tmp_path / "project", {"hello.py": HELLO_PY, "ws.toml": workstream('["aider", "codex"]')}
    )
    codex = fake_responses(
        Reply([message("Updating hello.py."), apply_patch(PATCH)]), Reply([message("Done.")])
    )
    with FakeOpenAI() as llm:
        llm.script(error_reply(401, "Incorrect API key provided"))
        configure(root, llm.url, llm.model, codex.base_url, native_codex)

        shown, attempts = run(root)

    assert [(row["tool"], row["error_class"]) for row in attempts] == [
        ("aider", "auth"),
        ("codex", None),
    ]
    why = "codex is the only tool left (passed over aider: failed the last attempt with auth)"
    assert attempts[1]["route_reason"] == why
    assert f"routed: {why}" in shown
    assert AIDER_KEY not in shown and CODEX_KEY not in shown


def test_codex_provider_down_aider_takes_over(tmp_path, native_codex):
    root = make_git_repo(
        tmp_path / "project", {"hello.py": HELLO_PY, "ws.toml": workstream('["codex", "aider"]')}
    )
    with FakeOpenAI() as llm:
        llm.script(whole_edit("hello.py", WORLD_PY))
        configure(root, llm.url, llm.model, closed_port_url(), native_codex)

        shown, attempts = run(root)

    assert [(row["tool"], row["error_class"]) for row in attempts] == [
        ("codex", "provider_error"),
        ("aider", None),
    ]
    why = (
        "aider is the only tool left (passed over codex: failed the last attempt with"
        " provider_error)"
    )
    assert attempts[1]["route_reason"] == why
    assert f"routed: {why}" in shown


def test_a_breaker_aider_opened_sends_the_next_task_to_codex(
    tmp_path, native_codex, fake_responses
):
    other = (
        "*** Begin Patch\n*** Update File: other.py\n@@\n"
        '-    return "hello"\n+    return "hello, world"\n'
        "*** End Patch\n"
    )
    tasks = (
        workstream('["aider", "codex"]')
        + '\n[[tasks]]\nid = "after"\nprompt = "Make greet in other.py return hello, world"\n'
        'files = { write = ["other.py"] }\ndepends_on = ["greet"]\n'
    )
    root = make_git_repo(
        tmp_path / "project", {"hello.py": HELLO_PY, "other.py": HELLO_PY, "ws.toml": tasks}
    )
    codex = fake_responses(
        Reply([message("Updating hello.py."), apply_patch(PATCH)]),
        Reply([message("Done.")]),
        Reply([message("Updating other.py."), apply_patch(other, call_id="call_other")]),
        Reply([message("Done.")]),
    )
    with FakeOpenAI() as llm:
        llm.script(error_reply(401, "Incorrect API key provided"))
        configure(root, llm.url, llm.model, codex.base_url, native_codex)
        text = (root / "orchestra.toml").read_text()  # one refused key opens the breaker
        (root / "orchestra.toml").write_text(
            text.replace("[tools.aider]\n", "[tools.aider]\nbreaker_failures = 1\n")
        )

        shown, attempts = run(root)

    assert [(row["task_id"], row["tool"]) for row in attempts] == [
        ("greet", "aider"),
        ("greet", "codex"),
        ("after", "codex"),
    ]
    # aider must not be tried again (its key was refused), its breaker open or not
    assert attempts[1]["route_reason"].startswith(
        "codex is the only tool left (passed over aider: failed the last attempt with auth;"
        " breaker open until "
    )
    # the next task: aider is passed over for its breaker alone
    assert attempts[2]["route_reason"].startswith(
        "codex is the only tool left (passed over aider: breaker open until "
    )
    assert attempts[2]["route_reason"].endswith("(1 × auth in a row))")
    assert f"routed: {attempts[2]['route_reason']}" in shown
