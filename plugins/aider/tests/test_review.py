"""The real aider as a reviewer (``AiderAdapter.review``), against the fake OpenAI server.

orchestra writes the whole review prompt; the adapter passes it as aider's message, runs
aider in its ``ask`` chat mode as a dry run with the task's files to read, and returns
the model's reply as the answer, judged as an attempt is judged up to there.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from fake_openai import Reply, error_reply, whole_edit
from orchestra_aider import AiderAdapter

import orchestra

pytestmark = pytest.mark.slow  # the real aider: seconds per test

HELLO = 'def greet():\n    return "hello"\n'
PROMPT = (
    "Review the change below to task greet (Make greet return hello, world).\n\n"
    '```diff\n-    return "hello"\n+    return "hello, world"\n```\n\n'
    'Answer last with a JSON object: {"verdict": "approve" | "request_changes", '
    '"comments": "..."}'
)
#: longer than aider's 80 columns, on one line: a wrapped reply would break it
VERDICT = json.dumps(
    {
        "verdict": "request_changes",
        "comments": "greet now says hello, world, but no test checks it; add one to "
        "tests/test_hello.py before this lands.",
    }
)


def command(log: str) -> list[str]:
    """Return the command of the attempt's log (its ``$`` line), split at spaces."""
    [line] = [line for line in log.splitlines() if line.startswith("$ ")]
    return line.split()


def test_review_is_a_capability() -> None:
    assert "review" in AiderAdapter.capabilities


def test_the_answer_is_the_models_reply_and_the_prompt_reaches_it_as_a_question(
    run_attempt, repo, llm
):
    (repo / "notes.md").write_text("greet must say hello, world\n")
    reply = f"The change does what the task asks.\n\n{VERDICT}"
    llm.script(Reply(reply, prompt_tokens=1234, completion_tokens=56))
    scope = orchestra.FileScope(write=("hello.py",), read=("notes.md",))

    review = run_attempt(PROMPT, files=scope, review=True, edit_format="diff", stream=False)

    result = review.result
    assert (result.outcome, result.error_class, result.answer) == ("succeeded", None, reply)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (1234, 56)
    assert result.usage.cost_usd == pytest.approx(1234 * 1e-6 + 56 * 2e-6)
    [request] = llm.requests
    assert request.last_user_message.startswith(PROMPT)  # aider adds its "Reply in English."
    assert "Act as an expert code analyst" in request.all_text  # ask mode's system prompt
    assert "Here are some READ ONLY files" in request.all_text
    assert HELLO in request.all_text and "greet must say hello, world" in request.all_text
    argv = command(review.log)
    # ask mode after the profile's edit format, which it overrides
    assert argv.index("--edit-format") < argv.index("--chat-mode")
    assert argv[argv.index("--chat-mode") + 1] == "ask"
    assert "--dry-run" in argv and "--no-auto-commits" in argv
    assert dict(review.events)["started"] == {"files": [], "read": ["hello.py", "notes.md"]}
    assert "llm-history.txt" in review.scratch_files  # not in the repository
    assert review.scratch_with_key == []


def test_an_edit_in_the_reply_is_not_applied(run_attempt, repo, llm):
    reply = whole_edit("hello.py", 'def greet():\n    return "hello, world"\n') + VERDICT
    llm.script(reply)

    review = run_attempt(PROMPT, review=True)

    assert (review.result.outcome, review.result.answer) == ("succeeded", reply.rstrip("\n"))
    assert (repo / "hello.py").read_text() == HELLO
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""


def test_an_empty_reply_is_invalid_output_not_an_answer(run_attempt, llm):
    llm.script(Reply(""))

    review = run_attempt(PROMPT, review=True)

    result = review.result
    assert (result.outcome, result.error_class, result.answer) == (
        "failed",
        "invalid_output",
        None,
    )
    assert result.message == (
        "aider finished its review without an answer (the model's reply was empty)"
    )
    assert result.usage.input_tokens > 0  # the request was still paid for


@pytest.mark.parametrize(
    ("reply", "error_class", "retry_after"),
    [
        (
            error_reply(429, "Rate limit reached. Please try again in 20s.", {"retry-after": "1"}),
            "rate_limited",
            20.0,
        ),
        (error_reply(401, "Incorrect API key provided"), "auth", None),
        # aider retries a 500 for about a minute (its RETRY_TIMEOUT, no flag changes it);
        # the header keeps the OpenAI client from retrying each of those too
        (
            error_reply(500, "The server had an error", {"x-should-retry": "false"}),
            "provider_error",
            None,
        ),
    ],
)
def test_a_failing_provider_is_judged_as_for_an_attempt_with_no_answer(
    run_attempt, llm, reply, error_class, retry_after
):
    llm.script(reply)

    started = time.monotonic()
    review = run_attempt(PROMPT, review=True, timeout=120)

    result = review.result
    assert (result.outcome, result.error_class, result.answer) == ("failed", error_class, None)
    assert result.retry_after == retry_after
    assert time.monotonic() - started < 100


def test_a_bad_option_fails_the_review_without_running_aider(run_attempt, llm):
    review = run_attempt(PROMPT, review=True, edit_format=3)

    assert (review.result.error_class, review.result.answer) == ("tool_missing", None)
    assert review.result.message == "[tools.aider] edit_format must be a string, got 3"
    assert llm.requests == [] and review.log == ""
