"""Judging an attempt from aider's output, and what the adapter refuses, without the real aider."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from orchestra_aider import AiderAdapter, command
from orchestra_aider.outcome import AiderOutput, judge, parse_count, parse_retry_after

import orchestra

DONE = orchestra.ProcessResult(0, 3.0)


def output_of(text: str) -> AiderOutput:
    output = AiderOutput()
    for line in text.splitlines():
        output.take(line)
    return output


@pytest.mark.parametrize(
    ("text", "count"), [("930", 930), ("2.4k", 2400), ("1.2M", 1_200_000), ("x", None)]
)
def test_rounded_counts_are_read(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("Please try again in 7s.", 7.0),
        ("Please try again in 1m30s.", 90.0),
        ("Please try again in 250ms.", 0.25),
        ("Please retry after 20 seconds", 20.0),
        ("rate limited, no hint", None),
    ],
)
def test_the_providers_delay_is_read_from_its_message(message, seconds):
    assert parse_retry_after(message) == seconds


def test_a_wrapped_rate_limit_message_is_unwrapped_and_its_delay_found():
    output = output_of(
        "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for\n"
        "requests. Please try again in\n"
        "12s.\n"
        "The API provider has rate limited you. Try again later or check your quotas.\n"
        "Retrying in 0.2 seconds...\n"
    )

    result = judge(orchestra.ProcessResult(75, 5.0), output, [], orchestra.Usage())

    assert (result.error_class, result.retry_after) == ("rate_limited", 12.0)
    assert result.message == (
        "RateLimitError: OpenAIException - Rate limit reached for requests. "
        "Please try again in 12s."
    )


@pytest.mark.parametrize(
    ("printed", "error_class"),
    [
        (
            "litellm.InternalServerError: InternalServerError: OpenAIException - boom",
            "provider_error",
        ),
        (
            "litellm.APIConnectionError: APIConnectionError: Expecting property name",
            "provider_error",
        ),
        ("litellm.AuthenticationError: AuthenticationError: bad key", "auth"),
        ("litellm.ContextWindowExceededError: too long", "context_overflow"),
        (
            "Your estimated chat context of 200,000 tokens exceeds the 128,000 token limit",
            "context_overflow",
        ),
        ("Only 3 reflections allowed, stopping.", "invalid_output"),
        ("Sure, here is an explanation.", "invalid_output"),
    ],
)
def test_an_attempt_that_changed_nothing_gets_the_class_of_what_aider_printed(printed, error_class):
    result = judge(DONE, output_of(printed), [], orchestra.Usage())

    assert (result.outcome, result.error_class) == ("failed", error_class)


def test_a_change_is_success_even_after_an_error_aider_recovered_from():
    output = output_of("litellm.InternalServerError: boom\nRetrying in 0.2 seconds...\n")

    result = judge(DONE, output, ["hello.py"], orchestra.Usage(input_tokens=5))

    assert (result.outcome, result.message) == ("succeeded", "aider changed hello.py")
    assert result.usage.input_tokens == 5


def test_refused_arguments_and_crashes_are_told_apart():
    refused = output_of("usage: aider [-h] ...\naider: error: unrecognized arguments: --bogus\n")
    crash = output_of("Traceback (most recent call last):\nKeyError: 'x'\n")

    assert judge(orchestra.ProcessResult(2, 1.0), refused, [], orchestra.Usage()).error_class == (
        "exit_status"
    )
    crashed = judge(orchestra.ProcessResult(1, 1.0), crash, [], orchestra.Usage())
    assert crashed.error_class == "crashed" and "KeyError" in crashed.message


def test_the_printed_tokens_line_is_the_usage_when_there_is_no_analytics_log():
    from orchestra_aider.outcome import usage_from_output

    output = output_of(
        "Tokens: 2.4k sent, 32 received. Cost: $0.0025 message, $0.0025 session.\n"
        "Tokens: 1.0k sent, 8 received. Cost: $0.0011 message, $0.0036 session.\n"
    )

    assert usage_from_output(output) == orchestra.Usage(
        input_tokens=3400, output_tokens=40, cost_usd=0.0036
    )


def request_for(task: orchestra.Task, **options) -> orchestra.ExecutionRequest:
    profile = orchestra.ToolProfile("aider", options=options)
    return orchestra.ExecutionRequest("r", task, 1, ".", profile)


class Context:
    """Enough of an execution context for the refusals, which run nothing."""

    def __init__(self, cwd: Path, scratch: Path) -> None:
        self.cwd, self.scratch_dir, self.events = str(cwd), scratch, []

    def emit(self, kind, payload=None):
        self.events.append(kind)

    def redact(self, text):
        return text

    def run(self, argv, *, env=None, on_line=None):
        raise AssertionError("nothing should run")


def test_an_aider_too_old_to_drive_is_refused_with_a_clear_message(fake_program, tmp_path):
    old = fake_program("aider", "echo 'aider 0.50.1'")
    task = orchestra.Task(id="t", prompt="do it")

    result = AiderAdapter().execute(request_for(task, binary=str(old)), Context(tmp_path, tmp_path))

    assert (result.outcome, result.error_class) == ("failed", "tool_missing")
    assert result.message == (
        f"aider 0.50.1 at {old} is too old: orchestra-aider drives aider 0.86 or newer "
        "(pip install -U aider-chat)"
    )


def test_a_directory_outside_git_is_refused(fake_program, tmp_path):
    aider = fake_program("aider", "echo 'aider 0.86.2'")
    outside = tmp_path / "plain"
    outside.mkdir()
    task = orchestra.Task(id="t", prompt="do it")

    result = AiderAdapter().execute(
        request_for(task, binary=str(aider)), Context(outside, tmp_path)
    )

    assert result.error_class == "tool_missing"
    assert result.message == f"{outside} is not in a git repository"


def test_an_option_of_the_wrong_type_is_named(fake_program, git_repo, tmp_path):
    aider = fake_program("aider", "echo 'aider 0.86.2'")
    task = orchestra.Task(id="t", prompt="do it")
    request = request_for(task, binary=str(aider), edit_format=["diff"])

    result = AiderAdapter().execute(request, Context(git_repo, tmp_path))

    assert result.error_class == "tool_missing"
    assert result.message == "[tools.aider] edit_format must be a string, got ['diff']"


def test_the_model_metadata_comes_from_the_profile_and_names_the_provider():
    profile = orchestra.ToolProfile(
        "aider", model="openrouter/meta/llama-3", options={"context_window": 32000}
    )

    assert command.model_metadata(profile) == {
        "openrouter/meta/llama-3": {
            "max_input_tokens": 32000,
            "max_tokens": 8192,
            "litellm_provider": "openrouter",
            "mode": "chat",
        }
    }
    assert command.model_metadata(orchestra.ToolProfile("aider", model="gpt-4o")) == {}


def test_the_profiles_args_come_last_and_no_key_flag_is_added(git_repo, tmp_path):
    profile = orchestra.ToolProfile(
        "aider", model="openai/x", args=("--weak-model", "openai/y"), options={"api_base": "u"}
    )
    task = orchestra.Task(id="t", prompt="do it")
    request = orchestra.ExecutionRequest("r", task, 1, str(git_repo), profile)

    built = command.build(request, tmp_path, str(git_repo), "/bin/aider", str)

    assert not any("api-key" in argument for argument in built.argv)
    assert built.argv[-2:] == ["--weak-model", "openai/y"]  # the profile's args come last
    assert set(built.env) == {"HOME", "LITELLM_LOCAL_MODEL_COST_MAP", "PYTHONUNBUFFERED"}
    assert (
        subprocess.run(["git", "status", "--porcelain"], cwd=git_repo, capture_output=True).stdout
        == b""
    )
