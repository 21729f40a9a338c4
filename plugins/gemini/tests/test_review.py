"""The real Gemini CLI as a reviewer (``GeminiAdapter.review``), against the fake Gemini API.

orchestra writes the whole review prompt; the adapter passes it unchanged, runs the CLI
in the approval mode that declares only its read-only tools, and returns the model's
final text as the answer, judged as an attempt is judged up to there.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from fake_gemini import Reply, Status, call, replace, text, write_file
from orchestra_gemini import GeminiAdapter

pytestmark = pytest.mark.slow  # the real gemini: a second or more per test

PROMPT = (
    "Review the change below to task greet (Make greet return hello, world).\n\n"
    '```diff\n-    return "hello"\n+    return "hello, world"\n```\n\n'
    'Answer last with a JSON object: {"verdict": "approve" | "request_changes", '
    '"comments": "..."}'
)
VERDICT = json.dumps({"verdict": "request_changes", "comments": "greet lacks a test."})
HELLO = 'def greet():\n    return "hello"\n'


def command(log: str) -> list[str]:
    """Return the command of the attempt's log (its ``$`` line), split at spaces."""
    [line] = [line for line in log.splitlines() if line.startswith("$ ")]
    return line.split()


def test_review_is_a_capability() -> None:
    assert "review" in GeminiAdapter.capabilities


def test_the_answer_is_the_models_final_text_and_the_prompt_reaches_it_unchanged(
    fake_gemini, run_gemini
):
    server = fake_gemini(
        Reply([call("read_file", file_path="hello.py")]),
        Reply([text("The change is small.\n"), text(VERDICT)]),
    )

    review = run_gemini(
        server,
        prompt=PROMPT,
        review=True,
        options={"shell": True, "input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6},
    )

    result = review.result
    assert (result.outcome, result.error_class) == ("succeeded", None), result
    assert result.answer == "The change is small.\n" + VERDICT
    usage = result.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (2000, 400, 100)
    assert usage.cost_usd == pytest.approx(1600 * 1e-6 + 400 * 1e-6 + 100 * 4e-6)
    first = server.requests[0]
    assert first.texts()[-1].rstrip("\n") == PROMPT  # no file scope, no retry note added
    argv = command(review.log)
    assert argv[argv.index("--approval-mode") + 1] == "default"  # not the profile's yolo
    tools = set(first.tools())
    assert "read_file" in tools
    assert not tools & {"replace", "write_file", "run_shell_command"}


def test_an_edit_and_a_new_file_are_refused(fake_gemini, run_gemini):
    server = fake_gemini(
        Reply([replace("hello.py", 'return "hello"', 'return "hello, world"')]),
        Reply([write_file("NOTES.md", "# Notes\n")]),
        Reply([text(VERDICT)]),
    )

    review = run_gemini(server, prompt=PROMPT, review=True)

    assert (review.result.outcome, review.result.answer) == ("succeeded", VERDICT)
    assert (review.repo / "hello.py").read_text() == HELLO
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", ".", ":(exclude).orchestra"],
        cwd=review.repo,
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""
    assert [(c["tool"], c["status"], c["error"]["type"]) for c in review.calls()] == [
        ("replace", "error", "tool_not_registered"),
        ("write_file", "error", "tool_not_registered"),
    ]


def test_no_text_after_the_last_tool_call_is_invalid_output_not_an_answer(fake_gemini, run_gemini):
    server = fake_gemini(
        Reply([text(VERDICT), call("read_file", file_path="hello.py")]), Reply([text(" \n")])
    )

    review = run_gemini(server, prompt=PROMPT, review=True)

    result = review.result
    assert (result.outcome, result.error_class, result.answer) == (
        "failed",
        "invalid_output",
        None,
    ), result
    assert result.message == (
        "gemini finished its review without an answer (no text after its last tool call)"
    )
    assert result.usage.input_tokens == 2000


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (Status(429, "Resource has been exhausted.", headers={"retry-after": "3"}), "rate_limited"),
        (Status(401, "API key not valid. Please pass a valid API key."), "auth"),
        (Status(500, "Internal error encountered."), "provider_error"),
    ],
)
def test_a_failing_provider_is_judged_as_for_an_attempt_with_no_answer(
    fake_gemini, run_gemini, reply, error_class
):
    server = fake_gemini(reply)

    review = run_gemini(server, prompt=PROMPT, review=True, options={"rate_limit_wait": 45})

    result = review.result
    assert (result.outcome, result.error_class, result.answer) == ("failed", error_class, None)
    assert result.retry_after == (45 if error_class == "rate_limited" else None)


def test_a_bad_option_fails_the_review_without_running_gemini(fake_gemini, run_gemini):
    server = fake_gemini()

    review = run_gemini(server, prompt=PROMPT, review=True, options={"max_attempts": 0})

    assert (review.result.error_class, review.result.answer) == ("tool_missing", None)
    assert server.requests == []
