"""Both AI tools in one run: a Python task routed to the real aider and a JavaScript task
routed to the real codex by capability, each against its fake provider, then a shell
check over both changes on the run's branch. And with only the codex plugin, naming
aider fails validation saying which plugin to install."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fake_responses import API_KEY as CODEX_KEY
from fake_responses import Reply, apply_patch, message

from orchestra.testing import make_git_repo, run_orchestra

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "plugins" / "aider" / "tests"))

from fake_openai import API_KEY as AIDER_KEY  # noqa: E402
from fake_openai import FakeOpenAI, whole_edit  # noqa: E402

pytestmark = pytest.mark.slow  # the real aider and codex in one run

HELLO_PY = 'def greet():\n    return "hello"\n'
WORLD_PY = 'def greet():\n    return "hello, world"\n'
HELLO_JS = 'export const greet = () => "hello";\n'
PATCH = (
    "*** Begin Patch\n*** Update File: greet.js\n@@\n"
    '-export const greet = () => "hello";\n+export const greet = () => "hello, world";\n'
    "*** End Patch\n"
)
WORKSTREAM = """\
id = "both"
[defaults]
routing = "auto"
backoff = { initial = "0.1s", jitter = false }

[[tasks]]
id = "python"
prompt = "Make greet in hello.py return hello, world"
tools = ["aider", "codex"]  # of the installed tools, the two this test gives a provider
capabilities = ["python"]
files = { write = ["hello.py"] }

[[tasks]]
id = "javascript"
prompt = "Make greet in greet.js return hello, world"
tools = ["aider", "codex"]
capabilities = ["javascript"]
files = { write = ["greet.js"] }

[[tasks]]
id = "check"
depends_on = ["python", "javascript"]
command = ["grep", "-c", "hello, world", "hello.py", "greet.js"]
"""


def configure(root: Path, llm: FakeOpenAI, codex_url: str, native_codex: Path) -> None:
    (root / "orchestra.toml").write_text(
        f"""\
[tools.aider]
capabilities = ["prompt", "edit", "python"]
model = "openai/{llm.model}"
pass_env = ["OPENAI_API_KEY"]
api_base = "{llm.url}"
edit_format = "whole"
context_window = 128000

[tools.codex]
capabilities = ["prompt", "edit", "javascript"]
model = "gpt-5.5"
pass_env = ["FAKE_LLM_API_KEY"]
binary = "{native_codex}"
base_url = "{codex_url}"
env_key = "FAKE_LLM_API_KEY"
request_max_retries = 0
stream_max_retries = 0
"""
    )


def test_a_workstream_for_aider_and_codex_runs_end_to_end(tmp_path, native_codex, fake_responses):
    aider = REPO / ".tools" / "bin" / "aider"
    root = make_git_repo(
        tmp_path / "project", {"hello.py": HELLO_PY, "greet.js": HELLO_JS, "ws.toml": WORKSTREAM}
    )
    codex = fake_responses(
        Reply([message("Updating greet.js."), apply_patch(PATCH)]), Reply([message("Done.")])
    )
    with FakeOpenAI() as llm:
        llm.script(whole_edit("hello.py", WORLD_PY))
        configure(root, llm, codex.base_url, native_codex)
        env = {
            "PATH": f"{aider.parent}{os.pathsep}{os.environ['PATH']}",
            "OPENAI_API_KEY": AIDER_KEY,
            "FAKE_LLM_API_KEY": CODEX_KEY,
        }

        completed = run_orchestra("run", "ws.toml", "--json", cwd=root, env=env, timeout=300)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(completed.stdout)
    with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
        tools = dict(db.execute("SELECT task_id, tool FROM attempts WHERE outcome = 'succeeded'"))
    assert tools == {"python": "aider", "javascript": "codex", "check": "shell"}
    branch = f"orchestra/{summary['run']}"

    def landed(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{branch}:{path}"], cwd=root, capture_output=True, text=True
        ).stdout

    assert landed("hello.py") == WORLD_PY
    assert "hello, world" in landed("greet.js")


def test_with_the_aider_plugin_blocked_an_aider_task_fails_validation_naming_the_plugin(tmp_path):
    root = make_git_repo(tmp_path / "project", {"hello.py": HELLO_PY})
    (root / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "python"\nprompt = "p"\ntool = "aider"\n'
    )

    checked = run_orchestra(
        "validate", "ws.toml", cwd=root, env={"ORCHESTRA_DISABLE_PLUGINS": "orchestra-aider"}
    )

    assert checked.returncode == 2
    assert "unknown tool 'aider'" in checked.stderr
    assert "a plugin called 'aider' (orchestra-aider 0.1.0) is blocked" in checked.stderr
