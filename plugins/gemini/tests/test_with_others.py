"""Three AI tools in one run: a Python task routed to the real aider, a JavaScript task to the
real codex and a TypeScript task to the real gemini, each by capability and against its
fake provider, then a shell check over all three changes on the run's branch."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fake_gemini import API_KEY as GEMINI_KEY
from fake_gemini import Reply, replace, text

from orchestra.testing import make_git_repo, run_orchestra

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / ".tools"
sys.path.insert(0, str(REPO / "plugins" / "aider" / "tests"))
sys.path.insert(0, str(REPO / "plugins" / "codex" / "tests"))

from fake_openai import API_KEY as AIDER_KEY  # noqa: E402
from fake_openai import FakeOpenAI, whole_edit  # noqa: E402
from fake_responses import API_KEY as CODEX_KEY  # noqa: E402
from fake_responses import FakeResponses, apply_patch, message  # noqa: E402
from fake_responses import Reply as CodexReply  # noqa: E402

pytestmark = pytest.mark.slow  # the real aider, codex and gemini in one run

HELLO_PY = 'def greet():\n    return "hello"\n'
WORLD_PY = 'def greet():\n    return "hello, world"\n'
HELLO_JS = 'export const greet = () => "hello";\n'
HELLO_TS = 'export const greet = (): string => "hello";\n'
PATCH = (
    "*** Begin Patch\n*** Update File: greet.js\n@@\n"
    '-export const greet = () => "hello";\n+export const greet = () => "hello, world";\n'
    "*** End Patch\n"
)
WORKSTREAM = """\
id = "three"
[defaults]
routing = "auto"
backoff = { initial = "0.1s", jitter = false }

[[tasks]]
id = "python"
prompt = "Make greet in hello.py return hello, world"
capabilities = ["python"]
files = { write = ["hello.py"] }

[[tasks]]
id = "javascript"
prompt = "Make greet in greet.js return hello, world"
capabilities = ["javascript"]
files = { write = ["greet.js"] }

[[tasks]]
id = "typescript"
prompt = "Make greet in greet.ts return hello, world"
capabilities = ["typescript"]
files = { write = ["greet.ts"] }

[[tasks]]
id = "check"
depends_on = ["python", "javascript", "typescript"]
command = ["grep", "-c", "hello, world", "hello.py", "greet.js", "greet.ts"]
"""


def native_codex() -> Path:
    found = sorted(
        (TOOLS / "codex" / "node_modules" / "@openai").glob("codex-*/vendor/*/bin/codex")
    )
    if not found:
        pytest.fail(f"no native codex binary under {TOOLS / 'codex'}: run scripts/install-tools")
    return found[0]


def configure(root: Path, llm: FakeOpenAI, codex_url: str, gemini_url: str, gemini: Path) -> None:
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
binary = "{native_codex()}"
base_url = "{codex_url}"
env_key = "FAKE_LLM_API_KEY"
request_max_retries = 0
stream_max_retries = 0

[tools.gemini]
capabilities = ["prompt", "edit", "typescript"]
model = "gemini-2.5-pro"
pass_env = ["GEMINI_API_KEY"]
binary = "{gemini}"
base_url = "{gemini_url}"
max_attempts = 1
"""
    )


def test_a_workstream_for_aider_codex_and_gemini_runs_end_to_end(
    tmp_path, real_gemini, fake_gemini
):
    aider = TOOLS / "bin" / "aider"
    files = {"hello.py": HELLO_PY, "greet.js": HELLO_JS, "greet.ts": HELLO_TS}
    root = make_git_repo(tmp_path / "project", {**files, "ws.toml": WORKSTREAM})
    gemini = fake_gemini(
        Reply([replace("greet.ts", '=> "hello"', '=> "hello, world"')]), Reply([text("Done.")])
    )
    codex_script = [
        CodexReply([message("Updating greet.js."), apply_patch(PATCH)]),
        CodexReply([message("Done.")]),
    ]
    with FakeOpenAI() as llm, FakeResponses(codex_script) as codex:
        llm.script(whole_edit("hello.py", WORLD_PY))
        configure(root, llm, codex.base_url, gemini.base_url, real_gemini)
        env = {
            "PATH": f"{aider.parent}{os.pathsep}{os.environ['PATH']}",
            "OPENAI_API_KEY": AIDER_KEY,
            "FAKE_LLM_API_KEY": CODEX_KEY,
            "GEMINI_API_KEY": GEMINI_KEY,
        }

        completed = run_orchestra("run", "ws.toml", "--json", cwd=root, env=env, timeout=300)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(completed.stdout)
    with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
        tools = dict(db.execute("SELECT task_id, tool FROM attempts WHERE outcome = 'succeeded'"))
    assert tools == {
        "python": "aider",
        "javascript": "codex",
        "typescript": "gemini",
        "check": "shell",
    }
    branch = f"orchestra/{summary['run']}"

    def landed(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{branch}:{path}"], cwd=root, capture_output=True, text=True
        ).stdout

    assert landed("hello.py") == WORLD_PY
    assert "hello, world" in landed("greet.js")
    assert landed("greet.ts") == 'export const greet = (): string => "hello, world";\n'
