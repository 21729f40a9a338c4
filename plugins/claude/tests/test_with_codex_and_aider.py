"""Three AI tools in one run: a Python task routed to the real aider, a JavaScript task to
the real codex and a Markdown task to the real claude, by capability, each against its
fake provider; then a shell check over the three changes on the run's branch (the
scenario of plugins/codex/tests/test_with_aider.py, with claude added). And tasks routed
between codex and claude by their track record."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from claude_helpers import HELLO, REPO, TOOLS, WORLD, Project
from fake_anthropic import API_KEY as CLAUDE_KEY
from fake_anthropic import Reply as ClaudeReply
from fake_anthropic import edit, text

sys.path.insert(0, str(REPO / "plugins" / "aider" / "tests"))
sys.path.insert(0, str(REPO / "plugins" / "codex" / "tests"))

from fake_openai import API_KEY as AIDER_KEY
from fake_openai import FakeOpenAI, whole_edit
from fake_responses import API_KEY as CODEX_KEY
from fake_responses import FakeResponses, apply_patch, message
from fake_responses import Reply as CodexReply

from orchestra.testing import make_git_repo, run_orchestra

pytestmark = pytest.mark.slow  # the real aider, codex and claude in one run

HELLO_JS = 'export const greet = () => "hello";\n'
NOTES = "# Greeting\n\ngreet says hello.\n"
PATCH = (
    "*** Begin Patch\n*** Update File: greet.js\n@@\n"
    '-export const greet = () => "hello";\n+export const greet = () => "hello, world";\n'
    "*** End Patch\n"
)
WORKSTREAM = """\
id = "three"
[defaults]
tools = ["aider", "codex", "claude"]
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
id = "docs"
prompt = "Say in NOTES.md that greet says hello, world"
capabilities = ["markdown"]
files = { write = ["NOTES.md"] }

[[tasks]]
id = "check"
depends_on = ["python", "javascript", "docs"]
tool = "shell"
command = ["grep", "-c", "hello, world", "hello.py", "greet.js", "NOTES.md"]
"""


def native_codex() -> Path:
    found = sorted(
        (TOOLS / "codex" / "node_modules" / "@openai").glob("codex-*/vendor/*/bin/codex")
    )
    if not found:
        pytest.fail(f"no native codex binary under {TOOLS / 'codex'}: run scripts/install-tools")
    return found[0]


def configure(root: Path, llm: FakeOpenAI, codex_url: str, claude_url: str, claude: Path) -> None:
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

[tools.claude]
capabilities = ["prompt", "edit", "markdown"]
model = "claude-fake"
pass_env = ["ANTHROPIC_API_KEY"]
binary = "{claude}"
base_url = "{claude_url}"
max_retries = 0
"""
    )


def test_a_workstream_for_aider_codex_and_claude_routes_each_task_by_capability(
    tmp_path: Path, real_claude: Path, fake_anthropic
) -> None:
    aider = TOOLS / "bin" / "aider"
    root = make_git_repo(
        tmp_path / "project",
        {
            "hello.py": HELLO,
            "greet.js": HELLO_JS,
            "NOTES.md": NOTES,
            ".gitignore": ".orchestra/\n",
            "ws.toml": WORKSTREAM,
        },
    )
    claude = fake_anthropic(
        ClaudeReply([edit("NOTES.md", "says hello.", "says hello, world.")]),
        ClaudeReply([text("Done.")]),
    )
    with (
        FakeResponses(
            [
                CodexReply([message("Updating greet.js."), apply_patch(PATCH)]),
                CodexReply([message("Done.")]),
            ]
        ) as codex,
        FakeOpenAI() as llm,
    ):
        llm.script(whole_edit("hello.py", WORLD))
        configure(root, llm, codex.base_url, claude.base_url, real_claude)
        env = {
            "PATH": f"{aider.parent}{os.pathsep}{os.environ['PATH']}",
            "OPENAI_API_KEY": AIDER_KEY,
            "FAKE_LLM_API_KEY": CODEX_KEY,
            "ANTHROPIC_API_KEY": CLAUDE_KEY,
        }

        completed = run_orchestra("run", "ws.toml", "--json", cwd=root, env=env, timeout=300)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(completed.stdout)
    with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
        tools = dict(db.execute("SELECT task_id, tool FROM attempts WHERE outcome = 'succeeded'"))
    assert tools == {"python": "aider", "javascript": "codex", "docs": "claude", "check": "shell"}
    branch = f"orchestra/{summary['run']}"

    def landed(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{branch}:{path}"], cwd=root, capture_output=True, text=True
        ).stdout

    assert landed("hello.py") == WORLD
    assert "hello, world" in landed("greet.js")
    assert landed("NOTES.md") == "# Greeting\n\ngreet says hello, world.\n"
    assert "Say in NOTES.md" in claude.requests[0].prompt()


def test_with_the_claude_plugin_blocked_a_claude_task_fails_validation_naming_it(
    project: Project,
) -> None:
    project.workstream('id = "w"\n[[tasks]]\nid = "t"\nprompt = "p"\ntool = "claude"\n')

    checked = run_orchestra(
        "validate",
        "ws.toml",
        cwd=project.root,
        env={"ORCHESTRA_DISABLE_PLUGINS": "orchestra-claude"},
    )

    assert checked.returncode == 2
    assert "unknown tool 'claude'" in checked.stderr
    assert "a plugin called 'claude' (orchestra-claude 0.1.0) is blocked" in checked.stderr


TRACK_RECORD = """\
id = "{id}"
[defaults]
tools = ["codex", "claude"]
routing = "auto"

[[tasks]]
id = "{id}"
prompt = "Make greet in {id}.py return hello, world"
capabilities = ["python"]
files = {{ write = ["{id}.py"] }}
max_attempts = 1
"""


def test_routing_between_codex_and_claude_follows_their_track_record(
    tmp_path: Path, real_claude: Path, fake_anthropic
) -> None:
    names = ("first", "second", "third")
    files = {f"{name}.py": HELLO for name in names}
    root = make_git_repo(tmp_path / "project", {**files, ".gitignore": ".orchestra/\n"})
    for name in names:
        (root / f"{name}.toml").write_text(TRACK_RECORD.format(id=name))
    claude = fake_anthropic(
        ClaudeReply([edit("second.py", 'return "hello"', 'return "hello, world"')]),
        ClaudeReply([text("Done.")]),
        ClaudeReply([edit("third.py", 'return "hello"', 'return "hello, world"')]),
        ClaudeReply([text("Done.")]),
    )
    # codex only answers, changing nothing: its attempt fails
    with FakeResponses([CodexReply([message("greet looks fine to me.")])]) as codex:
        (root / "orchestra.toml").write_text(
            f"""\
[tools.codex]
capabilities = ["prompt", "edit", "python"]
model = "gpt-5.5"
pass_env = ["FAKE_LLM_API_KEY"]
binary = "{native_codex()}"
base_url = "{codex.base_url}"
env_key = "FAKE_LLM_API_KEY"
request_max_retries = 0
stream_max_retries = 0

[tools.claude]
capabilities = ["prompt", "edit", "python"]
model = "claude-fake"
pass_env = ["ANTHROPIC_API_KEY"]
binary = "{real_claude}"
base_url = "{claude.base_url}"
max_retries = 0
"""
        )
        env = {"FAKE_LLM_API_KEY": CODEX_KEY, "ANTHROPIC_API_KEY": CLAUDE_KEY}

        runs = [
            run_orchestra("run", f"{name}.toml", cwd=root, env=env, timeout=300) for name in names
        ]

    assert [run.returncode for run in runs] == [1, 0, 0], [run.stdout for run in runs]
    with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
        query = "SELECT task_id, tool, outcome FROM attempts ORDER BY started_at"
        attempts = db.execute(query).fetchall()
    # an untried tool first (codex, then claude), then the better track record (claude's)
    assert attempts == [
        ("first", "codex", "failed"),
        ("second", "claude", "succeeded"),
        ("third", "claude", "succeeded"),
    ]
    assert len(codex.requests) == 1
