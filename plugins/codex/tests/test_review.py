"""The real codex as a reviewer (``CodexAdapter.review``), against the fake Responses API.

orchestra writes the whole review prompt; the adapter passes it unchanged, runs codex in
its read-only sandbox whatever the profile says, and returns codex's last message as the
answer, judged as an attempt is judged up to there.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from fake_responses import Reply, Status, apply_patch, message, reasoning
from orchestra_codex import CodexAdapter

PROMPT = (
    "Review the change below to task greet (Make greet return hello, world).\n\n"
    '```diff\n-    return "hello"\n+    return "hello, world"\n```\n\n'
    'Answer last with a JSON object: {"verdict": "approve" | "request_changes", '
    '"comments": "..."}'
)
VERDICT = json.dumps({"verdict": "request_changes", "comments": "greet lacks a test."})
PATCH = (
    "*** Begin Patch\n*** Update File: hello.py\n@@\n def greet():\n"
    '-    return "hello"\n+    return "hello, world"\n*** End Patch\n'
)


def test_review_is_a_capability() -> None:
    assert "review" in CodexAdapter.capabilities


def test_the_answer_is_codexs_last_message_and_the_prompt_reaches_it_unchanged(
    fake_responses, run_codex
):
    server = fake_responses(Reply([message("Reading the diff."), message(VERDICT, "msg_2")]))

    review = run_codex(
        server,
        prompt=PROMPT,
        review=True,
        options={"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6},
    )

    result = review.result
    assert (result.outcome, result.error_class, result.answer) == ("succeeded", None, VERDICT)
    usage = result.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (1000, 200, 50)
    assert usage.cost_usd == pytest.approx(800 * 1e-6 + 200 * 1e-6 + 50 * 4e-6)
    [request] = server.requests
    texts = [
        part["text"]
        for item in request.body["input"]
        if item.get("role") == "user"
        for part in item["content"]
    ]
    assert texts[-1] == PROMPT
    [command] = [line for line in review.log.splitlines() if line.startswith("$ ")]
    assert " --sandbox read-only " in command
    assert "workspace-write" not in command


def test_codex_reviews_read_only_whatever_the_profiles_sandbox(fake_responses, run_codex):
    approve = json.dumps({"verdict": "approve", "comments": ""})
    server = fake_responses(Reply([apply_patch(PATCH)]), Reply([message(approve)]))

    review = run_codex(
        server, prompt=PROMPT, review=True, options={"sandbox": "danger-full-access"}
    )

    assert (review.result.outcome, review.result.answer) == ("succeeded", approve)
    assert (review.repo / "hello.py").read_text() == 'def greet():\n    return "hello"\n'
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", ".", ":(exclude).orchestra"],
        cwd=review.repo,
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""
    # what codex told the model of its patch: refused by the sandbox
    outputs = [
        item["output"]
        for item in server.requests[1].body["input"]
        if item.get("type") == "custom_tool_call_output"
    ]
    assert len(outputs) == 1 and "read-only sandbox" in outputs[0]
    [command] = [line for line in review.log.splitlines() if line.startswith("$ ")]
    assert " --sandbox read-only " in command


def test_a_turn_without_a_message_is_invalid_output_not_an_answer(fake_responses, run_codex):
    server = fake_responses(Reply([reasoning("Thinking about the diff.")]))

    review = run_codex(server, prompt=PROMPT, review=True)

    result = review.result
    assert (result.outcome, result.error_class, result.answer) == (
        "failed",
        "invalid_output",
        None,
    )
    assert result.message == "codex finished its review without an answer (no agent_message)"
    assert result.usage.input_tokens == 1000


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (Status(429, "Rate limit reached", headers={"retry-after": "1"}), "rate_limited"),
        (Status(401, "Incorrect API key provided", code="invalid_api_key"), "auth"),
        (Status(500, "The server had an error"), "provider_error"),
    ],
)
def test_a_failing_provider_is_judged_as_for_an_attempt_with_no_answer(
    fake_responses, run_codex, reply, error_class
):
    server = fake_responses(reply)

    review = run_codex(server, prompt=PROMPT, review=True, options={"rate_limit_wait": 45})

    result = review.result
    assert (result.outcome, result.error_class, result.answer) == ("failed", error_class, None)
    assert result.retry_after == (45 if error_class == "rate_limited" else None)


def test_a_bad_option_fails_the_review_without_running_codex(fake_responses, run_codex):
    server = fake_responses()

    review = run_codex(server, prompt=PROMPT, review=True, options={"sandbox": "none"})

    assert (review.result.error_class, review.result.answer) == ("tool_missing", None)
    assert server.requests == []
