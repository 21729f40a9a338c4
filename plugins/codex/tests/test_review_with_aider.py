"""A review gate with the real programs: the real aider writes a change against its fake
provider, the real codex reviews it against its own, asks for changes, and approves the
second attempt; only the approved change lands, and `orchestra show` tells the story."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fake_responses import API_KEY as CODEX_KEY
from fake_responses import Reply, message

from orchestra.testing import make_git_repo, run_orchestra

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "plugins" / "aider" / "tests"))

from fake_openai import API_KEY as AIDER_KEY  # noqa: E402
from fake_openai import FakeOpenAI, whole_edit  # noqa: E402

pytestmark = pytest.mark.slow  # the real aider and codex in one run

SLUGIFY = "def slugify(text):\n    return text.lower()\n"
FIRST = 'def slugify(text):\n    return text.lower().replace(" ", "-")\n'
SECOND = (
    "import re\n\n\ndef slugify(text):\n"
    '    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")\n'
)
REJECT = {
    "verdict": "request_changes",
    "comments": "slugify keeps punctuation: 'Hello, World!' gives 'hello,-world!'."
    " Replace every run of non-alphanumerics with one dash and strip dashes at the ends.",
}
APPROVE = {"verdict": "approve", "comments": "Punctuation and spaces become single dashes."}
WORKSTREAM = """\
id = "reviewed"
[defaults]
backoff = { initial = "0.1s", jitter = false }

[[tasks]]
id = "slugify"
title = "Make slugify produce URL slugs"
prompt = "Make slugify in slug.py turn any text into a URL slug"
tool = "aider"
files = { write = ["slug.py"] }
review = { tools = ["codex"], prompt = "Punctuation must not reach a URL." }
"""


def configure(root: Path, llm: FakeOpenAI, codex_url: str, native_codex: Path) -> None:
    (root / "orchestra.toml").write_text(
        f"""\
[tools.aider]
model = "openai/{llm.model}"
pass_env = ["OPENAI_API_KEY"]
api_base = "{llm.url}"
edit_format = "whole"
context_window = 128000

[tools.codex]
capabilities = ["prompt", "review"]
model = "gpt-5.5"
pass_env = ["FAKE_LLM_API_KEY"]
binary = "{native_codex}"
base_url = "{codex_url}"
env_key = "FAKE_LLM_API_KEY"
request_max_retries = 0
stream_max_retries = 0
"""
    )


def test_aider_writes_codex_asks_for_changes_then_approves(tmp_path, native_codex, fake_responses):
    aider = REPO / ".tools" / "bin" / "aider"
    root = make_git_repo(tmp_path / "project", {"slug.py": SLUGIFY, "ws.toml": WORKSTREAM})
    codex = fake_responses(
        Reply([message("I read the diff.\n" + json.dumps(REJECT))]),
        Reply([message(json.dumps(APPROVE))]),
    )
    with FakeOpenAI() as llm:
        llm.script(whole_edit("slug.py", FIRST), whole_edit("slug.py", SECOND))
        configure(root, llm, codex.base_url, native_codex)
        env = {
            "PATH": f"{aider.parent}{os.pathsep}{os.environ['PATH']}",
            "OPENAI_API_KEY": AIDER_KEY,
            "FAKE_LLM_API_KEY": CODEX_KEY,
        }

        completed = run_orchestra("run", "ws.toml", "--json", cwd=root, env=env, timeout=300)
        second_prompt = json.dumps(llm.requests[-1].body) if llm.requests else ""

    assert completed.returncode == 0, completed.stdout + completed.stderr
    run_id = json.loads(completed.stdout)["run"]
    with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
        attempts = db.execute(
            "SELECT tool, outcome, error_class FROM attempts ORDER BY number"
        ).fetchall()
        reviews = db.execute(
            "SELECT attempt, tool, verdict, landed, input_tokens FROM reviews ORDER BY id"
        ).fetchall()
    assert attempts == [("aider", "failed", "review_rejected"), ("aider", "succeeded", None)]
    assert [row[:4] for row in reviews] == [
        (1, "codex", "request_changes", 0),
        (2, "codex", "approve", 1),
    ]
    assert all(row[4] for row in reviews)  # codex's usage is recorded with each review
    # codex was asked read-only, about the change aider made
    asked = json.dumps(codex.requests[0].body)
    assert "slugify" in asked and "replace(" in asked and "Punctuation must not" in asked
    # the comments reached aider's second attempt
    assert "hello,-world!" in second_prompt
    landed = subprocess.run(
        ["git", "show", f"orchestra/{run_id}:slug.py"], cwd=root, capture_output=True, text=True
    ).stdout
    assert landed == SECOND

    shown = run_orchestra("show", run_id, "slugify", cwd=root, env=env)
    assert shown.returncode == 0, shown.stderr
    print(shown.stdout)  # the closing note of issue 24 quotes it
    assert "review by codex (round 1)  requested changes" in shown.stdout
    assert "review by codex (round 2)  approved" in shown.stdout
    assert "hello,-world!" in shown.stdout
