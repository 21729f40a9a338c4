"""The real codex, run by the adapter through the host's LocalContext, against a fake provider.

Each test scripts the fake Responses API, runs one attempt in a fresh git repository and
looks at what the host would record: the StepResult, the progress events, the log.
Codex never commits and orchestra commits after the checks (not built yet), so success
is asserted on the working tree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import tomllib
from codex_processes import processes_with_home
from fake_responses import API_KEY as KEY
from fake_responses import Reply, Status, apply_patch, message, shell

PATCH = (
    "*** Begin Patch\n*** Update File: hello.py\n@@\n def greet():\n"
    '-    return "hello"\n+    return "hello, world"\n*** End Patch\n'
)
SED = 'sed -i \'s/"hello"/"hello, world"/\' hello.py'
FIXED = 'def greet():\n    return "hello, world"\n'


def git_status(repo: Path) -> str:
    """Return ``git status --porcelain`` without orchestra's own directory."""
    argv = ["git", "status", "--porcelain", "--", ".", ":(exclude).orchestra"]
    return subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=True).stdout


def test_an_edit_through_apply_patch_lands_in_the_working_tree(fake_responses, run_codex):
    server = fake_responses(
        Reply([message("I'll update hello.py."), apply_patch(PATCH)]),
        Reply([message("Updated hello.py.")]),
    )

    attempt = run_codex(
        server, options={"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6}
    )

    assert attempt.result.outcome == "succeeded", attempt.result
    assert attempt.result.exit_code == 0
    assert (attempt.repo / "hello.py").read_text() == FIXED
    assert git_status(attempt.repo) == " M hello.py\n"  # uncommitted: orchestra commits later
    usage = attempt.result.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (2000, 400, 100)
    assert usage.cost_usd == 1600 * 1e-6 + 400 * 1e-6 + 100 * 4e-6
    assert [item["type"] for item in attempt.items()] == [
        "agent_message",
        "file_change",
        "agent_message",
    ]
    assert attempt.items("file_change")[0]["changes"] == [
        {"path": str(attempt.repo / "hello.py"), "kind": "update"}
    ]
    assert ("changes", {"paths": ["hello.py"], "count": 1}) in attempt.events
    assert ("version", {"program": attempt.events[0][1]["program"], "version": "0.169.0"}) in (
        attempt.events
    )


def test_an_edit_through_a_shell_command_lands_in_the_working_tree(fake_responses, run_codex):
    server = fake_responses(Reply([shell(SED)]), Reply([message("Done.")]))

    attempt = run_codex(server)

    assert attempt.result.outcome == "succeeded", attempt.result
    assert (attempt.repo / "hello.py").read_text() == FIXED
    [command] = attempt.items("command_execution")
    assert command["exit_code"] == 0 and "sed -i" in command["command"]


def test_codex_gets_the_prompt_the_model_and_the_key_and_keeps_no_session(
    fake_responses, run_codex
):
    server = fake_responses(Reply([message("Nothing to do.")]))

    attempt = run_codex(server, prompt="Say hi", feedback="FAILED test_greet: expected 'hi'")

    [request] = server.requests
    assert request.path == "/v1/responses"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["model"] == "gpt-5.5"
    texts = [
        part["text"]
        for item in request.body["input"]
        if item.get("role") == "user"
        for part in item["content"]
    ]
    assert texts[-1].startswith("Say hi\n\n")
    assert "FAILED test_greet: expected 'hi'" in texts[-1]
    home = attempt.codex_home
    assert not (home / "sessions").exists()  # --ephemeral
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["features"] == {
        "plugins": False,
        "shell_snapshot": False,
        "unbounded_connection_retries": False,
    }
    assert config["model_providers"]["orchestra"]["wire_api"] == "responses"
    assert config["model_providers"]["orchestra"]["env_key"] == "FAKE_LLM_API_KEY"
    assert KEY not in (home / "config.toml").read_text()
    assert git_status(attempt.repo) == ""  # codex's home is no change of codex's
    assert home.is_relative_to(attempt.repo / ".orchestra")


def test_a_turn_without_a_change_is_invalid_output(fake_responses, run_codex):
    server = fake_responses(Reply([message("Nothing needs to change.")]))

    attempt = run_codex(server)

    assert attempt.result.outcome == "failed"
    assert attempt.result.error_class == "invalid_output"
    assert attempt.result.message == (
        "codex finished its turn without changing any file;"
        " its last message: Nothing needs to change."
    )
    assert attempt.result.exit_code == 0
    assert attempt.result.usage.input_tokens == 1000


def test_a_failed_patch_is_invalid_output_with_codexs_complaint(fake_responses, run_codex):
    bad = PATCH.replace('-    return "hello"', '-    return "no such line"')
    server = fake_responses(Reply([apply_patch(bad)]), Reply([message("The patch failed.")]))

    attempt = run_codex(server)

    assert attempt.result.error_class == "invalid_output"
    assert "apply_patch verification failed" in attempt.result.message
    assert git_status(attempt.repo) == ""


def test_response_failed_fails_the_attempt_with_the_providers_message(fake_responses, run_codex):
    server = fake_responses(Reply([], fail="fake model failure"))

    attempt = run_codex(server)

    assert attempt.result.outcome == "failed"
    assert attempt.result.error_class == "turn_failed"
    assert attempt.result.message == "stream disconnected before completion: fake model failure"
    assert attempt.result.exit_code == 1


def test_http_401_is_auth(fake_responses, run_codex):
    server = fake_responses(Status(401, "Incorrect API key provided", code="invalid_api_key"))

    attempt = run_codex(server)

    assert attempt.result.error_class == "auth"
    assert "401 Unauthorized: Incorrect API key provided" in attempt.result.message


def test_http_429_is_rate_limited_with_a_wait(fake_responses, run_codex):
    limited = Status(429, "Rate limit reached", headers={"retry-after": "1"})
    server = fake_responses(limited)

    attempt = run_codex(server, options={"request_max_retries": 0, "rate_limit_wait": 45})

    assert attempt.result.error_class == "rate_limited"
    assert attempt.result.message == "exceeded retry limit, last status: 429 Too Many Requests"
    # codex honours Retry-After in its own retries but does not pass it on
    assert attempt.result.retry_after == 45


def test_a_rate_limit_in_the_stream_gives_the_wait_it_names(fake_responses, run_codex):
    failure = "Rate limit reached for gpt-5.5 on tokens per min. Please try again in 11.054s."
    server = fake_responses(Reply([], fail=failure, fail_code="rate_limit_exceeded"))

    attempt = run_codex(server)

    assert attempt.result.error_class == "rate_limited"
    assert attempt.result.retry_after == 11.054


def test_a_missing_key_is_auth(fake_responses, run_codex):
    server = fake_responses()

    attempt = run_codex(server, options={"env_key": "ORCHESTRA_TEST_NO_SUCH_KEY"})

    assert attempt.result.error_class == "auth"
    assert "ORCHESTRA_TEST_NO_SUCH_KEY" in attempt.result.message
    assert server.requests == []


def test_an_unreachable_provider_fails_within_seconds(run_codex):
    defaults = {"request_max_retries": 2, "stream_max_retries": 2}  # as when not configured
    attempt = run_codex(None, options=defaults)

    assert attempt.result.outcome == "failed"
    assert attempt.result.error_class == "provider_error"
    assert attempt.result.message == "Connection failed: error sending request"
    assert attempt.seconds < 10


def test_a_stalled_stream_is_cut_off_by_idle_timeout_and_leaves_no_codex(
    fake_responses, run_codex, real_codex
):
    server = fake_responses(Reply([message("Working on it…")], stall=True))

    # the npm launcher: node, then the native codex, both must go
    attempt = run_codex(server, idle_timeout=2, options={"binary": str(real_codex)})

    assert attempt.result.outcome == "timed_out"
    assert attempt.result.error_class == "idle"
    assert "printed nothing for its idle_timeout" in attempt.result.message
    assert 2 <= attempt.seconds < 10
    assert "orchestra: the command printed nothing for 2 s: stopping it" in attempt.log
    assert processes_with_home(attempt.codex_home) == []


def test_the_key_appears_nowhere_in_the_log_events_or_result(fake_responses, run_codex):
    leak = f"echo the key is $FAKE_LLM_API_KEY; echo {KEY} >&2; {SED}"
    server = fake_responses(Reply([shell(leak)]), Reply([message(f"I saw {KEY}")]))

    attempt = run_codex(server)

    assert attempt.result.outcome == "succeeded", attempt.result
    assert "the key is" in attempt.log  # the command ran, and its output reached the log
    assert KEY not in attempt.log
    assert KEY not in repr(attempt.events)
    assert KEY not in repr(attempt.result)


def test_a_bad_option_fails_without_running_codex(fake_responses, run_codex):
    server = fake_responses()

    attempt = run_codex(server, options={"sandbox": "none"})

    assert attempt.result.error_class == "tool_missing"
    assert "sandbox must be one of read-only, workspace-write" in attempt.result.message
    assert server.requests == []


def test_outside_a_git_tree_codex_is_not_started(fake_responses, run_codex):
    server = fake_responses()

    attempt = run_codex(server, git=False)

    assert attempt.result.error_class == "tool_missing"
    assert "codex runs in a git working tree;" in attempt.result.message
    assert attempt.log == "" and server.requests == []


def test_a_missing_program_is_tool_missing(fake_responses, run_codex, tmp_path):
    attempt = run_codex(fake_responses(), options={"binary": str(tmp_path / "no-codex")})

    assert attempt.result.error_class == "tool_missing"
    assert attempt.result.message == f"{tmp_path / 'no-codex'} not found"


def test_a_codex_that_refuses_its_arguments_is_crashed_with_its_words(fake_responses, run_codex):
    server = fake_responses()

    attempt = run_codex(server, args=("--full-auto",))  # gone in codex 0.169

    assert attempt.result.error_class == "crashed"
    assert attempt.result.exit_code == 2
    assert attempt.result.message == (
        "codex exited 2 before finishing its turn: error: unexpected argument '--full-auto' found"
    )
