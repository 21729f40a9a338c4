"""The real claude as a reviewer (``ClaudeAdapter.review``), against the fake Messages API.

orchestra writes the whole review prompt; the adapter passes it unchanged, runs claude
without its edit tools in the permission mode that refuses what is not read-only, and
returns claude's final result as the answer, judged as an attempt is judged up to there.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from claude_helpers import HELLO
from fake_anthropic import API_KEY, Reply, Status, bash, edit, text
from orchestra_claude import ClaudeAdapter

import orchestra
from orchestra.testing import make_git_repo

PROMPT = (
    "Review the change below to task greet (Make greet return hello, world).\n\n"
    '```diff\n-    return "hello"\n+    return "hello, world"\n```\n\n'
    'Answer last with a JSON object: {"verdict": "approve" | "request_changes", '
    '"comments": "..."}'
)
VERDICT = json.dumps({"verdict": "request_changes", "comments": "greet lacks a test."})
#: a command that writes, which the review's permission mode refuses
BASH_WRITE = "echo x > written.txt"


def review(
    real_claude: Path, tmp_path: Path, base_url: str, **options: object
) -> tuple[orchestra.StepResult, Path, str]:
    """Run one review by the adapter in a fresh repository through a LocalContext; return
    its result, the repository and the attempt's log."""
    repo = make_git_repo(tmp_path / "repo", {"hello.py": HELLO})
    claude = orchestra.ToolProfile(
        "claude",
        model="claude-fake",
        options={"binary": str(real_claude), "base_url": base_url, "max_retries": 0, **options},
    )
    task = orchestra.Task(id="greet", prompt=PROMPT, files=orchestra.FileScope(write=("hello.py",)))
    request = orchestra.ExecutionRequest(
        run_id="r", task=task, attempt=1, workdir=str(repo), profile=claude, timeout=60
    )
    context = orchestra.LocalContext(
        cwd=repo,
        env=orchestra.build_environment(os.environ, {"ANTHROPIC_API_KEY": API_KEY}, ()),
        log_path=tmp_path / "review.log",
        timeout=60,
        idle_timeout=30,
        grace=1.0,
        scratch_root=tmp_path / "scratch",
    )
    try:
        result = ClaudeAdapter().review(request, context)
    finally:
        context.cleanup()
    log = tmp_path / "review.log"
    return result, repo, log.read_text() if log.exists() else ""


def claude_argv(log: str) -> list[str]:
    """Return claude's own arguments from the ``$`` line of the log (after the supervisor's)."""
    [command] = [line for line in log.splitlines() if line.startswith("$ ")]
    return command.split(" -- ", 1)[1].split()


def test_review_is_a_capability() -> None:
    assert "review" in ClaudeAdapter.capabilities


def test_the_answer_is_claudes_result_and_the_prompt_reaches_it_unchanged(
    real_claude: Path, tmp_path: Path, fake_anthropic
) -> None:
    server = fake_anthropic(Reply([text(VERDICT)]))

    result, _, log = review(
        real_claude,
        tmp_path,
        server.base_url,
        allowed_tools=["Bash(pytest *)"],
        input_cost_per_token=1e-6,
        output_cost_per_token=4e-6,
    )

    assert (result.outcome, result.error_class, result.answer) == ("succeeded", None, VERDICT)
    usage = result.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (1200, 200, 50)
    assert usage.cost_usd == pytest.approx(1200 * 1e-6 + 50 * 4e-6)
    # the prompt as orchestra wrote it: no file scope, no retry note added
    [first] = [
        message for message in server.requests[0].body["messages"] if message["role"] == "user"
    ]
    assert first["content"][-1]["text"].rstrip("\n") == PROMPT
    argv = claude_argv(log)
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk"
    disallowed = argv.index("--disallowedTools")
    assert argv[disallowed + 1 : disallowed + 4] == ["Edit", "Write", "NotebookEdit"]
    assert "--allowedTools" not in argv  # the profile's are an attempt's, not a review's
    offered = {tool["name"] for tool in server.requests[0].body["tools"]}
    assert "Read" in offered and not offered & {"Edit", "Write", "NotebookEdit"}


def test_an_edit_and_a_writing_command_are_refused(
    real_claude: Path, tmp_path: Path, fake_anthropic
) -> None:
    server = fake_anthropic(
        Reply([edit("hello.py", 'return "hello"', 'return "hello, world"')]),
        Reply([bash(BASH_WRITE)]),
        Reply([text(VERDICT)]),
    )

    result, repo, _ = review(real_claude, tmp_path, server.base_url)

    assert (result.outcome, result.answer) == ("succeeded", VERDICT)
    assert (repo / "hello.py").read_text() == HELLO
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""
    [edit_result] = server.requests[1].tool_results()
    [bash_result] = server.requests[2].tool_results()
    assert edit_result["is_error"] and "No such tool available: Edit" in str(edit_result)
    assert bash_result["is_error"] and "denied" in str(bash_result)


def test_an_empty_result_is_invalid_output_not_an_answer(
    real_claude: Path, tmp_path: Path, fake_anthropic
) -> None:
    # claude asks once more after a reply with nothing visible, then gives up
    server = fake_anthropic(Reply([text("   ")]), Reply([text("   ")]))

    result, _, _ = review(real_claude, tmp_path, server.base_url)

    assert (result.outcome, result.error_class, result.answer) == (
        "failed",
        "invalid_output",
        None,
    )
    assert result.message == "claude finished its review without an answer (an empty result)"
    assert result.usage.input_tokens == 2400


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (
            Status(429, "Rate limited", "rate_limit_error", {"x-should-retry": "false"}),
            "rate_limited",
        ),
        (Status(401, "invalid x-api-key", "authentication_error"), "auth"),
        (Status(500, "Internal error", headers={"x-should-retry": "false"}), "provider_error"),
    ],
)
def test_a_failing_provider_is_judged_as_for_an_attempt_with_no_answer(
    real_claude: Path, tmp_path: Path, fake_anthropic, reply: Status, error_class: str
) -> None:
    server = fake_anthropic(reply)

    result, _, _ = review(real_claude, tmp_path, server.base_url, rate_limit_wait=45)

    assert (result.outcome, result.error_class, result.answer) == ("failed", error_class, None)
    assert result.retry_after == (45 if error_class == "rate_limited" else None)


def test_a_bad_option_fails_the_review_without_running_claude(tmp_path: Path) -> None:
    result, _, log = review(Path("claude"), tmp_path, "http://127.0.0.1:9", max_turns="many")

    assert (result.outcome, result.error_class, result.answer) == ("failed", "tool_missing", None)
    assert log == ""
    assert result.message == "[tools.claude] max_turns must be an integer, not 'many'"
