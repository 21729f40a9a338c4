"""Judging an attempt from recorded claude streams (fixtures/, made by record_fixtures.py
from the real claude 2.1.328) and from how the process ended."""

from __future__ import annotations

import pytest
from claude_helpers import fixture_lines
from orchestra_claude.judging import error_class, judge, usage
from orchestra_claude.settings import ClaudeSettings
from orchestra_claude.stream import Session, StreamReader, ToolCall

import orchestra

DEFAULTS = ClaudeSettings()


def session_of(name: str) -> tuple[Session, list[ToolCall]]:
    """Return the session read from fixture ``name``, and the calls reported as they ended."""
    reported: list[ToolCall] = []
    reader = StreamReader(on_call=reported.append)
    for line in fixture_lines(name):
        reader.feed(line)
    reader.finish()
    return reader.session, reported


def ended(exit_code: int | None = 0, **fields: object) -> orchestra.ProcessResult:
    return orchestra.ProcessResult(exit_code, 1.0, **fields)  # type: ignore[arg-type]


def verdict(name: str, changed: list[str] | None, exit_code: int | None = 0, **settings: object):
    session, _ = session_of(name)
    return judge(ended(exit_code), session, changed, ClaudeSettings(**settings))  # type: ignore[arg-type]


def test_the_stream_of_an_edit_gives_the_calls_their_results_and_the_version() -> None:
    session, reported = session_of("edit")

    assert (session.version, session.model, session.cwd) == ("2.1.328", "claude-fake", "/repo")
    assert [(call.name, call.path, call.is_error) for call in reported] == [
        ("Read", "/repo/hello.py", False),
        ("Edit", "/repo/hello.py", False),
    ]
    assert reported[1].edits and not reported[0].edits
    assert session.result is not None and session.result["is_error"] is False
    # claude's stderr and the supervisor's lines are text, not events
    assert "claude: finished (completed) after 3 turns" in session.text


def test_a_finished_edit_that_changed_the_tree_succeeds_with_claudes_usage_and_cost() -> None:
    result = verdict("edit", ["hello.py"])

    assert (result.outcome, result.error_class, result.exit_code) == ("succeeded", None, 0)
    spent = result.usage
    assert (spent.input_tokens, spent.cached_input_tokens, spent.output_tokens) == (3600, 600, 150)
    assert spent.cost_usd == pytest.approx(0.01512)


def test_the_profiles_prices_replace_claudes_list_price_cost() -> None:
    session, _ = session_of("edit")
    prices = ClaudeSettings(
        input_cost_per_token=3e-6, output_cost_per_token=15e-6, cache_read_cost_per_token=3e-7
    )

    spent = usage(session, prices)

    assert spent.cost_usd == pytest.approx(3000 * 3e-6 + 600 * 3e-7 + 150 * 15e-6)


def test_a_finished_run_that_changed_nothing_fails_whatever_claude_says() -> None:
    result = verdict("edit", [])

    assert (result.outcome, result.error_class) == ("failed", "invalid_output")
    assert result.message == (
        "claude finished without changing any file; it made no edit; its answer: greet now"
        " returns hello, world."
    )


def test_a_text_only_answer_is_invalid_output_with_the_answer() -> None:
    result = verdict("text_only", [])

    assert (result.outcome, result.error_class, result.exit_code) == ("failed", "invalid_output", 0)
    assert result.message is not None
    assert result.message.endswith("its answer: greet already returns a greeting; nothing to do.")


def test_refused_and_failed_edits_are_named() -> None:
    result = verdict("refused", [])

    assert (result.outcome, result.error_class) == ("failed", "invalid_output")
    assert result.message == (
        "claude finished without changing any file; refused: Write /scratch/outside.txt,"
        " Bash python3 -c \"open('hello.py', 'w').write('x')\"; failed: Write"
        " /outside.txt: Claude requested permissions to write to /scratch/outside.txt,"
        " but you haven't granted it yet.; Edit hello.py: String to replace not found in file."
        " String: no such line; its answer: Done."
    )


def test_an_edit_that_does_not_apply_is_named() -> None:
    result = verdict("edit_fails", [])

    assert result.message == (
        "claude finished without changing any file; failed: Edit hello.py: String to replace"
        " not found in file. String: no such line; its answer: Done."
    )


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("http_401", "auth", "Invalid API key · Fix external API key"),
        ("http_429", "rate_limited", "API Error: Request rejected (429) · Number of requests"),
        ("http_500", "provider_error", "API Error: 500 Internal server error."),
        ("http_529", "provider_error", "API Error: 529 Overloaded."),
        ("unreachable", "provider_error", "API Error: Connection refused"),
        ("max_turns", "turn_limit", "Reached maximum number of turns (1)"),
    ],
)
def test_api_errors_reported_as_success_are_failures_of_their_class(
    name: str, kind: str, message: str
) -> None:
    # claude says subtype "success" for these, with is_error: true
    result = verdict(name, [], exit_code=1)

    assert (result.outcome, result.error_class, result.exit_code) == ("failed", kind, 1)
    assert result.message is not None and result.message.startswith(message)


def test_a_rate_limit_claude_gave_up_on_waits_rate_limit_wait() -> None:
    assert verdict("http_429", [], exit_code=1, rate_limit_wait=42.0).retry_after == 42.0
    assert verdict("http_500", [], exit_code=1).retry_after is None


def test_a_rate_limit_claude_waited_out_gives_its_wait() -> None:
    session, _ = session_of("http_429_retried")

    [retry] = session.retries
    assert (retry["error_status"], retry["error"]) == (429, "rate_limit")
    from orchestra_claude.judging import rate_limit_wait

    assert rate_limit_wait(session) == retry["retry_delay_ms"] / 1000


def test_a_run_without_a_result_line_crashed_with_claudes_last_words() -> None:
    session = Session()
    reader = StreamReader()
    for line in fixture_lines("edit")[:3]:
        reader.feed(line)
    reader.feed("Error: something broke inside claude")
    session = reader.session

    result = judge(ended(None, signal=9), session, ["hello.py"], DEFAULTS)

    assert (result.outcome, result.error_class) == ("failed", "crashed")
    assert result.message == (
        "claude was killed by signal 9 (SIGKILL) without a result: Error: something broke"
        " inside claude"
    )


def test_a_run_stopped_before_its_result_still_counts_the_responses_it_streamed() -> None:
    reader = StreamReader()
    for line in fixture_lines("edit"):
        if '"type":"result"' not in line:
            reader.feed(line)

    spent = judge(ended(None, stopped="timeout"), reader.session, [], DEFAULTS).usage

    # three responses of 1000 input, 200 cached, and at least 1 output token each
    assert (spent.input_tokens, spent.cached_input_tokens, spent.output_tokens) == (3600, 600, 3)
    assert spent.cost_usd is None  # claude's cost comes with its result only


def test_a_bad_flag_is_a_crash_with_claudes_error() -> None:
    reader = StreamReader()
    reader.feed("Error: When using --print, --output-format=stream-json requires --verbose")

    result = judge(ended(1), reader.session, [], DEFAULTS)

    assert result.error_class == "crashed"
    assert result.message == (
        "claude exited 1 without a result: Error: When using --print,"
        " --output-format=stream-json requires --verbose"
    )


@pytest.mark.parametrize(
    ("stopped", "outcome", "kind"),
    [
        ("timeout", "timed_out", "timeout"),
        ("idle", "timed_out", "idle"),
        ("canceled", "canceled", None),
    ],
)
def test_a_stopped_claude_is_timed_out_or_canceled(
    stopped: str, outcome: str, kind: str | None
) -> None:
    reader = StreamReader()
    for line in fixture_lines("http_429_retried")[:4]:
        reader.feed(line)

    result = judge(ended(None, stopped=stopped, signal=15), reader.session, [], DEFAULTS)

    assert (result.outcome, result.error_class) == (outcome, kind)
    if stopped == "idle":
        assert result.message == (
            "claude printed nothing for its idle_timeout (a stalled or unanswered request?);"
            " its last retry was after 429"
        )


def test_a_program_that_could_not_start_is_tool_missing() -> None:
    result = judge(ended(None, error="claude not found"), Session(), None, DEFAULTS)

    assert (result.outcome, result.error_class, result.message) == (
        "failed",
        "tool_missing",
        "claude not found",
    )


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (401, "", "auth"),
        (403, "", "auth"),
        (429, "", "rate_limited"),
        (413, "", "context_overflow"),
        (529, "", "provider_error"),
        (None, "API Error: Connection dropped (ECONNRESET)", "provider_error"),
        (None, "Request timed out. set API_TIMEOUT_MS above 10000.", "provider_error"),
        (None, "API Error: JSON Parse error: Unexpected identifier", "provider_error"),
        (None, "Prompt is too long", "context_overflow"),
        (None, "Not logged in · Please run /login", "auth"),
        (None, "something else", "turn_failed"),
    ],
)
def test_error_classes_by_status_then_by_words(status: int | None, message: str, kind: str) -> None:
    assert error_class(status, message) == kind


def test_a_long_line_split_by_the_host_is_joined() -> None:
    [line] = [line for line in fixture_lines("edit") if '"subtype":"init"' in line]
    padded = line[:-1] + ', "padding": "' + "x" * 70_000 + '"}'
    reader = StreamReader()

    for start in range(0, len(padded), 64 * 1024):
        reader.feed(padded[start : start + 64 * 1024])
    reader.finish()

    assert reader.session.version == "2.1.328"
    assert list(reader.session.text) == []
