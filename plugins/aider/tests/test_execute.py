"""One attempt of the real aider, through the host's LocalContext, against the fake server.

The host will commit a successful attempt's work (the worktree issue); until then these
tests find aider's edit, uncommitted, in the working tree, which is what orchestra commits.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from fake_openai import API_KEY, Reply, diff_edit, error_reply, whole_edit

import orchestra

pytestmark = pytest.mark.slow  # the real aider: seconds per test

HELLO = 'def greet():\n    return "hello"\n'
WORLD = 'def greet():\n    return "hello, world"\n'


def git_status(repo: Path) -> str:
    """Return git's short status, ignored files included."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def head_count(repo: Path) -> int:
    out = subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=repo, capture_output=True)
    return int(out.stdout)


def test_a_whole_file_edit_lands_in_the_working_tree_uncommitted(run_attempt, repo, llm, home):
    llm.script(whole_edit("hello.py", WORLD))

    attempt = run_attempt()

    assert attempt.result.outcome == "succeeded", attempt.log
    assert attempt.result.message == "aider changed hello.py"
    assert (repo / "hello.py").read_text() == WORLD
    # nothing else in the repository: no .gitignore, history, cache; no commit by aider
    assert git_status(repo) == " M hello.py\n"
    assert head_count(repo) == 1
    # aider's private files went to the attempt's scratch directory (its chat history to
    # nowhere), the user's HOME is untouched
    assert {"analytics.jsonl", "message.md"} <= set(attempt.scratch_files)
    assert "chat-history.md" not in attempt.scratch_files
    assert [path for path in home.rglob("*") if path.is_file()] in (
        [],
        [home / ".cache" / "orchestra" / "versions.json"],  # orchestra's, not aider's
    )
    request = llm.requests[0]
    assert request.body["model"] == "fake-model" and request.body["stream"] is True
    assert "Make greet return hello, world" in request.last_user_message
    assert HELLO in request.all_text  # hello.py was added to the chat
    assert attempt.kinds() == ["version", "started", "edit", "finished"]
    assert attempt.events[0][1]["version"] == "0.86.2"


def test_a_diff_edit_lands_and_usage_is_the_servers_exact_count(run_attempt, repo, llm):
    llm.script(
        Reply(
            diff_edit("hello.py", '    return "hello"\n', '    return "hello, world"\n'),
            prompt_tokens=1234,
            completion_tokens=56,
        )
    )

    attempt = run_attempt(edit_format="diff", stream=False)

    assert attempt.result.outcome == "succeeded", attempt.log
    assert (repo / "hello.py").read_text() == WORLD
    assert "SEARCH/REPLACE" in llm.requests[0].last_user_message
    assert "stream" not in llm.requests[0].body or not llm.requests[0].body["stream"]
    usage = attempt.result.usage
    assert (usage.input_tokens, usage.output_tokens) == (1234, 56)
    assert usage.cost_usd == round(1234 * 1e-06 + 56 * 2e-06, 8)


def test_an_answer_without_an_edit_is_invalid_output(run_attempt, repo, llm):
    llm.script("Looks good to me, nothing to change.")

    attempt = run_attempt()

    assert attempt.result.outcome == "failed"
    assert attempt.result.error_class == "invalid_output"
    assert "without an edit" in attempt.result.message
    assert (repo / "hello.py").read_text() == HELLO
    assert attempt.result.usage.input_tokens > 0  # the request was still paid for


def test_a_search_block_that_matches_nothing_is_invalid_output(run_attempt, repo, llm):
    # aider asks the model three more times ("reflections"); the same wrong block each time
    llm.script(diff_edit("hello.py", "    return 'no such line'\n", "    return 1\n"))

    attempt = run_attempt(edit_format="diff")

    assert attempt.result.error_class == "invalid_output", attempt.log
    assert "edit format" in attempt.result.message
    assert len(llm.requests) == 4
    assert (repo / "hello.py").read_text() == HELLO


def test_401_is_auth_and_the_key_reached_aider_only_through_its_environment(
    run_attempt, llm, tmp_path
):
    llm.script(error_reply(401, "Incorrect API key provided"))

    attempt = run_attempt()

    assert (attempt.result.outcome, attempt.result.error_class) == ("failed", "auth")
    assert "Incorrect API key provided" in attempt.result.message
    assert len(llm.requests) == 1  # aider does not retry an authentication error
    assert llm.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in attempt.log
    command = attempt.log.splitlines()[0]
    assert command.startswith("$ ") and "api-key" not in command and API_KEY not in command


def test_429_is_rate_limited_with_the_providers_delay_and_aider_is_not_left_retrying(
    run_attempt, llm
):
    message = "Rate limit reached for requests. Please try again in 1m30s."
    llm.script(error_reply(429, message, {"retry-after": "1"}))

    started = time.monotonic()
    attempt = run_attempt()

    assert (attempt.result.outcome, attempt.result.error_class) == ("failed", "rate_limited")
    assert attempt.result.retry_after == 90.0
    assert "Rate limit reached" in attempt.result.message
    # aider alone would retry for about a minute; the adapter stops it at its first retry
    assert time.monotonic() - started < 30
    assert "stopped aider: it was waiting out a rate limit" in attempt.log


def test_400_is_provider_error_and_a_context_overflow_is_named(run_attempt, llm):
    llm.script(error_reply(400, "fake bad request"))
    bad = run_attempt()
    llm.script(error_reply(400, "This model's maximum context length is 8192 tokens."))
    overflow = run_attempt()

    assert (bad.result.error_class, overflow.result.error_class) == (
        "provider_error",
        "context_overflow",
    )
    assert "fake bad request" in bad.result.message


def test_a_model_that_stalls_past_idle_timeout_is_killed_with_its_processes(run_attempt, llm):
    llm.script(Reply(whole_edit("hello.py", WORLD), stall=60))

    started = time.monotonic()
    attempt = run_attempt(idle_timeout=4)

    assert (attempt.result.outcome, attempt.result.error_class) == ("timed_out", "idle")
    assert time.monotonic() - started < 30
    assert "printed nothing for 4 s" in attempt.log
    assert not processes_mentioning(llm.url)


def processes_mentioning(text: str) -> list[str]:
    """Return the command lines of live processes whose arguments contain ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            continue
        if text in cmdline and state not in ("Z", "X"):
            found.append(cmdline)
    return found


def test_the_prompt_carries_the_scope_and_the_failed_checks_output(run_attempt, repo, llm):
    (repo / "notes.md").write_text("greet must say hello, world\n")
    (repo / "secret.py").write_text("TOKEN = 1\n")
    llm.script(whole_edit("hello.py", WORLD))
    scope = orchestra.FileScope(
        write=("*.py",), read=("notes.md",), create=("tests/test_hello.py",), forbidden=("secret*",)
    )

    feedback = "FAILED tests/test_hello.py::test_greet - AssertionError: 'hello' != 'hello, world'"

    attempt = run_attempt(files=scope, feedback=feedback)

    assert attempt.result.outcome == "succeeded", attempt.log
    prompt = llm.requests[0].last_user_message
    assert "Make greet return hello, world" in prompt
    assert "previous attempt did not succeed" in prompt and feedback in prompt
    # write globs are in the chat, read ones read-only, forbidden ones nowhere
    started = dict(attempt.events)["started"]
    assert started == {"files": ["hello.py"], "read": ["notes.md"]}
    text = llm.requests[0].all_text
    assert "greet must say hello, world" in text and "TOKEN = 1" not in text
    assert "You may create these new files: tests/test_hello.py" in text
    assert "Do not change these paths: secret*" in text


def test_a_change_outside_the_tasks_files_is_not_success(run_attempt, repo, llm):
    (repo / "other.py").write_text("x = 1\n")
    llm.script(whole_edit("other.py", "x = 2\n"))

    attempt = run_attempt()

    assert attempt.result.error_class == "invalid_output", attempt.log
    assert "no task file changed" in attempt.result.message
