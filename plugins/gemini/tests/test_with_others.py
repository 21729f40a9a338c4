"""Four AI tools in one run: a Python task routed to the real aider, a JavaScript task to the
real codex, a TypeScript task to the real gemini and a Markdown task to the real claude,
each by capability and against its fake provider, then a shell check over all four changes
on the run's branch."""

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
# the fake server by path, not claude's conftest: a plain ``import conftest`` would find
# whichever plugin's came first when the tests of several plugins run in one process
sys.path.insert(0, str(REPO / "plugins" / "claude" / "tests"))

from fake_anthropic import API_KEY as CLAUDE_KEY  # noqa: E402
from fake_anthropic import FakeAnthropic, edit  # noqa: E402
from fake_anthropic import Reply as ClaudeReply  # noqa: E402
from fake_anthropic import text as claude_text  # noqa: E402
from fake_openai import API_KEY as AIDER_KEY  # noqa: E402
from fake_openai import FakeOpenAI, whole_edit  # noqa: E402
from fake_responses import API_KEY as CODEX_KEY  # noqa: E402
from fake_responses import FakeResponses, apply_patch, message  # noqa: E402
from fake_responses import Reply as CodexReply  # noqa: E402

pytestmark = pytest.mark.slow  # the real aider, codex, gemini and claude in one run

HELLO_PY = 'def greet():\n    return "hello"\n'
WORLD_PY = 'def greet():\n    return "hello, world"\n'
HELLO_JS = 'export const greet = () => "hello";\n'
HELLO_TS = 'export const greet = (): string => "hello";\n'
NOTES = "# Greeting\n\ngreet says hello.\n"
PATCH = (
    "*** Begin Patch\n*** Update File: greet.js\n@@\n"
    '-export const greet = () => "hello";\n+export const greet = () => "hello, world";\n'
    "*** End Patch\n"
)
WORKSTREAM = """\
id = "four"
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
id = "docs"
prompt = "Say in NOTES.md that greet says hello, world"
capabilities = ["markdown"]
files = { write = ["NOTES.md"] }

[[tasks]]
id = "check"
depends_on = ["python", "javascript", "typescript", "docs"]
command = ["grep", "-c", "hello, world", "hello.py", "greet.js", "greet.ts", "NOTES.md"]
"""


def native_codex() -> Path:
    found = sorted(
        (TOOLS / "codex" / "node_modules" / "@openai").glob("codex-*/vendor/*/bin/codex")
    )
    if not found:
        pytest.fail(f"no native codex binary under {TOOLS / 'codex'}: run scripts/install-tools")
    return found[0]


def real_claude() -> Path:
    """Return the real claude from scripts/install-tools; fail without it (claude's
    ``real_claude`` fixture lives in its conftest, which this plugin's tests cannot use)."""
    path = TOOLS / "bin" / "claude"
    if not os.access(path, os.X_OK):
        pytest.fail(f"the real claude is not installed at {path}: run scripts/install-tools")
    return path


def configure(
    root: Path, llm: FakeOpenAI, codex_url: str, gemini_url: str, gemini: Path, claude_url: str
) -> None:
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

[tools.claude]
capabilities = ["prompt", "edit", "markdown"]
model = "claude-fake"
pass_env = ["ANTHROPIC_API_KEY"]
binary = "{real_claude()}"
base_url = "{claude_url}"
max_retries = 0
"""
    )


def test_a_workstream_for_aider_codex_gemini_and_claude_runs_end_to_end(
    tmp_path, real_gemini, fake_gemini
):
    aider = TOOLS / "bin" / "aider"
    files = {"hello.py": HELLO_PY, "greet.js": HELLO_JS, "greet.ts": HELLO_TS, "NOTES.md": NOTES}
    root = make_git_repo(tmp_path / "project", {**files, "ws.toml": WORKSTREAM})
    gemini = fake_gemini(
        Reply([replace("greet.ts", '=> "hello"', '=> "hello, world"')]), Reply([text("Done.")])
    )
    codex_script = [
        CodexReply([message("Updating greet.js."), apply_patch(PATCH)]),
        CodexReply([message("Done.")]),
    ]
    claude_script = [
        ClaudeReply([edit("NOTES.md", "says hello.", "says hello, world.")]),
        ClaudeReply([claude_text("Done.")]),
    ]
    with (
        FakeOpenAI() as llm,
        FakeResponses(codex_script) as codex,
        FakeAnthropic(claude_script) as claude,
    ):
        llm.script(whole_edit("hello.py", WORLD_PY))
        configure(root, llm, codex.base_url, gemini.base_url, real_gemini, claude.base_url)
        env = {
            "PATH": f"{aider.parent}{os.pathsep}{os.environ['PATH']}",
            "OPENAI_API_KEY": AIDER_KEY,
            "FAKE_LLM_API_KEY": CODEX_KEY,
            "GEMINI_API_KEY": GEMINI_KEY,
            "ANTHROPIC_API_KEY": CLAUDE_KEY,
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
        "docs": "claude",
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
    assert landed("NOTES.md") == "# Greeting\n\ngreet says hello, world.\n"
    assert "Say in NOTES.md" in claude.requests[0].prompt()
