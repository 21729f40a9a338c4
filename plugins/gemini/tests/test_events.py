"""The stream reader and the judging rules, on output recorded from the real Gemini CLI 0.61.0.

The fixtures are the CLI's merged stdout and stderr, as the host hands them over; see
record_fixtures.py for how each was made (and to re-record them for a new CLI).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from orchestra_gemini.events import MAX_TEXT, StreamReader, ToolCall, parse_event, summarize_call
from orchestra_gemini.judging import error_class, judge, retry_after, usage
from orchestra_gemini.settings import GeminiSettings

import orchestra

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SETTINGS = GeminiSettings()
#: the exit code each fixture's CLI gave (HTTP status mod 256 for API errors)
EXITS = {
    "http_401": 145,
    "http_429_retry_info": 173,
    "http_429_retry_text": 173,
    "http_500": 244,
    "unreachable": 1,
    "no_key": 41,
    "unknown_flag": 1,
}


def read(name: str, on_call=None) -> StreamReader:
    reader = StreamReader(on_call)
    for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
        reader.feed(line)
    reader.finish()
    return reader


def exited(name: str) -> orchestra.ProcessResult:
    return orchestra.ProcessResult(EXITS.get(name, 0), 1.5)


def test_every_fixture_was_recorded_from_gemini_0_61() -> None:
    names = sorted(path.stem for path in FIXTURES.glob("*.jsonl"))
    assert len(names) == 14
    for name in names:
        session = read(name).session
        assert session.unknown_types == set(), name
        if name not in ("no_key", "unknown_flag"):  # these stop before the session starts
            assert session.session_id and session.model == "gemini-2.5-pro", name
            assert session.result is not None, name


def test_an_edit_gives_its_calls_in_order_and_the_runs_usage() -> None:
    seen: list[ToolCall] = []
    session = read("replace", seen.append).session

    assert session.succeeded
    assert [(call.name, call.status) for call in seen] == [
        ("read_file", "success"),
        ("replace", "success"),
    ]
    assert seen[1].parameters["new_string"] == 'return "hello, world"'
    assert session.last_text == "Done."
    spent = usage(session, GeminiSettings(input_cost_per_token=1.0, output_cost_per_token=10.0))
    assert (spent.input_tokens, spent.cached_input_tokens, spent.output_tokens) == (3000, 600, 150)
    assert spent.cost_usd == 3000 * 1.0 + 150 * 10.0
    cheaper_cache = GeminiSettings(
        input_cost_per_token=1.0, cached_input_cost_per_token=0.25, output_cost_per_token=10.0
    )
    assert usage(session, cheaper_cache).cost_usd == 2400 * 1.0 + 600 * 0.25 + 150 * 10.0


@pytest.mark.parametrize(
    ("fixture", "changed", "outcome", "kind", "wait", "words"),
    [
        ("replace", ["hello.py"], "succeeded", None, None, None),
        ("write_file", ["NOTES.md"], "succeeded", None, None, None),
        ("shell", ["x"], "succeeded", None, None, None),
        ("replace", [], "failed", "invalid_output", None, "edits changed none of the task's"),
        ("text_only", [], "failed", "invalid_output", None, "message: Nothing needs to change."),
        ("edit_fails", [], "failed", "invalid_output", None, "every edit failed (1; the last"),
        ("tool_not_registered", [], "failed", "invalid_output", None, "did not offer it"),
        ("empty_reply", [], "failed", "invalid_output", None, "empty response"),
        ("http_401", [], "failed", "auth", None, "API key not valid"),
        ("http_429_retry_info", [], "failed", "rate_limited", 2.0, "Suggested retry after 2s"),
        ("http_429_retry_text", [], "failed", "rate_limited", 3.5, "Please retry in 3.5s"),
        ("http_500", [], "failed", "provider_error", None, "Internal error encountered"),
        ("unreachable", [], "failed", "provider_error", None, "fetch failed"),
        ("no_key", [], "failed", "auth", None, "gemini exited 41 without a result: When using"),
        ("unknown_flag", [], "failed", "crashed", None, "Unknown arguments: such-flag"),
    ],
)
def test_each_recorded_ending_is_judged(fixture, changed, outcome, kind, wait, words) -> None:
    result = judge(exited(fixture), read(fixture).session, changed, SETTINGS)

    assert (result.outcome, result.error_class) == (outcome, kind), result
    assert result.retry_after == wait
    if words is not None:
        assert words in (result.message or "")


def test_a_change_without_a_result_is_no_success() -> None:
    """SIGTERM makes the CLI exit 0 without a result line: that is not a success."""
    reader = StreamReader()
    for line in (FIXTURES / "replace.jsonl").read_text().splitlines()[:-1]:
        if '"type":"result"' not in line:
            reader.feed(line)

    result = judge(orchestra.ProcessResult(0, 1.0), reader.session, ["hello.py"], SETTINGS)

    assert (result.outcome, result.error_class) == ("failed", "crashed")
    assert result.message.startswith("gemini exited 0 without a result")


def test_a_stopped_cli_is_timed_out_with_its_last_words() -> None:
    session = read("text_only").session
    session.result = None
    stopped = orchestra.ProcessResult(None, 3.0, stopped="idle", signal=15)

    result = judge(stopped, session, [], SETTINGS)

    assert (result.outcome, result.error_class) == ("timed_out", "idle")
    assert result.message.startswith("gemini printed nothing for its idle_timeout")


def test_a_canceled_run_is_canceled() -> None:
    canceled = orchestra.ProcessResult(None, 1.0, stopped="canceled")

    assert judge(canceled, read("replace").session, ["hello.py"], SETTINGS).outcome == "canceled"


def test_a_rate_limit_without_a_wait_waits_rate_limit_wait() -> None:
    session = read("http_429_retry_info").session
    assert session.result is not None
    session.result["error"]["message"] = "[API Error: Resource has been exhausted.]"

    result = judge(exited("http_429_retry_info"), session, [], GeminiSettings(rate_limit_wait=9))

    assert (result.error_class, result.retry_after) == ("rate_limited", 9.0)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ('[API Error: {"error":{"code":403,"message":"denied"}}]', "auth"),
        ('[API Error: {\\"error\\":{\\"code\\":429}}]', "rate_limited"),
        ('[API Error: {"error":{"code":503,"message":"overloaded"}}]', "provider_error"),
        (
            "The input token count (2000000) exceeds the maximum number of tokens",
            "context_overflow",
        ),
        ("something else entirely", None),
    ],
)
def test_error_classes_from_the_clis_words(message, kind) -> None:
    assert error_class(message) == kind


@pytest.mark.parametrize(
    ("message", "wait"),
    [
        ("Suggested retry after 2s.", 2.0),
        ("Please retry in 3.5s.", 3.5),
        ("Please retry in 750ms.", 0.75),
        ('"retryDelay":"12s"', 12.0),
        ("Please wait and try again later.", None),
    ],
)
def test_the_wait_a_rate_limit_names(message, wait) -> None:
    assert retry_after(message) == wait


def test_a_long_event_split_by_the_host_is_joined_again() -> None:
    content = "x" * 70_000
    line = json.dumps({"type": "message", "role": "assistant", "content": content})
    reader = StreamReader()

    for start in range(0, len(line), 64 * 1024):
        reader.feed(line[start : start + 64 * 1024])
    reader.finish()

    assert reader.session.last_text == content
    assert list(reader.session.text) == []


def test_a_call_is_summarized_with_long_strings_cut() -> None:
    call = ToolCall("write_file", {"file_path": "big.txt", "content": "y" * 5000}, "success")

    summary = summarize_call(call)

    assert summary["path"] == "big.txt" and summary["status"] == "success"
    assert len(summary["parameters"]["content"]) == MAX_TEXT


def test_only_json_objects_with_a_type_are_events() -> None:
    assert parse_event('{"type":"init"}') == {"type": "init"}
    assert parse_event("[1, 2]") is None
    assert parse_event('{"no":"type"}') is None
    assert parse_event("Ripgrep is not available.") is None
