"""The event reader and the judging rules, on output recorded from the real codex 0.169.0.

The fixtures are codex's merged stdout and stderr, as the host hands them over; see
record_fixtures.py for how each was made (and to re-record them for a new codex).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from orchestra_codex.events import MAX_TEXT, EventReader, Turn, parse_event, summarize_item
from orchestra_codex.judging import error_class, judge, retry_after
from orchestra_codex.settings import CodexSettings

import orchestra

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXITED_0 = orchestra.ProcessResult(0, 0.5)
EXITED_1 = orchestra.ProcessResult(1, 0.5)


def read(name: str, on_item=None) -> EventReader:
    reader = EventReader(on_item)
    for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
        reader.feed(line)
    reader.finish()
    return reader


def test_every_fixture_was_recorded_from_codex_0_169() -> None:
    names = sorted(path.stem for path in FIXTURES.glob("*.jsonl"))
    assert len(names) == 15
    for name in names:
        turn = read(name).turn
        assert turn.thread_id, name
        assert turn.unknown_types == set(), name


def test_a_completed_turn_gives_its_items_and_usage() -> None:
    seen: list[dict] = []
    turn = read("apply_patch", seen.append).turn

    assert turn.completed and turn.failure is None
    assert [item["type"] for item in seen] == ["agent_message", "file_change", "agent_message"]
    assert turn.items == seen
    assert (turn.usage.input_tokens, turn.usage.cached_input_tokens) == (2000, 400)
    assert turn.usage.output_tokens == 100
    assert turn.last_agent_message == "Updated hello.py."
    assert list(turn.text) == ["Reading additional input from stdin..."]


def test_a_failed_command_is_an_item_not_a_failed_turn() -> None:
    turn = read("command_fails").turn

    assert turn.completed
    [command] = [item for item in turn.items if item["type"] == "command_execution"]
    assert (command["status"], command["exit_code"]) == ("failed", 3)


def test_an_error_item_is_no_failure() -> None:
    turn = read("unknown_model").turn

    assert turn.completed and turn.failure is None
    assert turn.items[0]["type"] == "error"


@pytest.mark.parametrize(
    ("fixture", "expected", "wait"),
    [
        ("response_failed", "turn_failed", None),
        ("http_401", "auth", None),
        ("missing_key", "auth", None),
        ("http_429", "rate_limited", 60.0),
        ("rate_limit_in_stream", "rate_limited", 11.054),
        ("context_window", "context_overflow", None),
        ("http_500_retried", "provider_error", None),
        ("unreachable", "provider_error", None),
    ],
)
def test_failed_turns_get_their_error_class(fixture: str, expected: str, wait) -> None:
    turn = read(fixture).turn

    result = judge(EXITED_1, turn, [], CodexSettings())

    assert (result.outcome, result.error_class, result.retry_after) == ("failed", expected, wait)
    assert result.message == turn.failure
    assert result.exit_code == 1


@pytest.mark.parametrize("fixture", ["no_change", "reasoning", "patch_fails", "command_fails"])
def test_a_completed_turn_without_a_change_is_invalid_output(fixture: str) -> None:
    result = judge(EXITED_0, read(fixture).turn, [], CodexSettings())

    assert (result.outcome, result.error_class) == ("failed", "invalid_output")
    assert result.message.startswith("codex finished its turn without changing any file")


def test_a_completed_turn_with_a_change_succeeds_with_its_cost() -> None:
    prices = CodexSettings(
        input_cost_per_token=2.0, cached_input_cost_per_token=0.5, output_cost_per_token=10.0
    )

    result = judge(EXITED_0, read("shell_command").turn, ["hello.py"], prices)

    assert result.outcome == "succeeded"
    assert result.usage == orchestra.Usage(2000, 400, 100, 1600 * 2.0 + 400 * 0.5 + 100 * 10.0)


def test_without_both_prices_there_is_no_cost() -> None:
    result = judge(
        EXITED_0, read("apply_patch").turn, ["hello.py"], CodexSettings(input_cost_per_token=1.0)
    )

    assert result.usage.cost_usd is None
    assert result.usage.input_tokens == 2000


def test_a_codex_that_stops_without_an_event_is_crashed_with_its_words() -> None:
    reader = EventReader()
    reader.feed('Error loading config.toml: `wire_api = "chat"` is no longer supported.')
    reader.finish()

    result = judge(EXITED_1, reader.turn, [], CodexSettings())

    assert result.error_class == "crashed"
    assert result.message == (
        "codex exited 1 before finishing its turn:"
        ' Error loading config.toml: `wire_api = "chat"` is no longer supported.'
    )


def test_a_codex_killed_mid_turn_is_crashed() -> None:
    killed = orchestra.ProcessResult(None, 0.5, signal=9)

    result = judge(killed, Turn(), [], CodexSettings())

    assert result.error_class == "crashed"
    assert result.message == "codex was killed by signal 9 (SIGKILL) before finishing its turn"


def test_stopped_attempts_are_timed_out_or_canceled() -> None:
    turn = read("http_500_retried").turn
    idle = orchestra.ProcessResult(None, 3.0, stopped="idle", signal=15)
    canceled = orchestra.ProcessResult(None, 3.0, stopped="canceled", signal=15)

    timed_out = judge(idle, turn, None, CodexSettings())

    assert (timed_out.outcome, timed_out.error_class) == ("timed_out", "idle")
    assert timed_out.message.startswith("codex printed nothing for its idle_timeout; its last")
    assert judge(canceled, turn, None, CodexSettings()).outcome == "canceled"


def test_unknown_events_and_fields_are_ignored() -> None:
    seen: list[dict] = []
    reader = EventReader(seen.append)
    for event in [
        {"type": "thread.started", "thread_id": "t1", "new_field": [1, 2]},
        {"type": "session.configured", "model": "gpt-9"},
        {"type": "item.updated", "item": {"type": "todo_list", "items": []}},
        {"type": "item.completed", "item": {"type": "web_search", "query": "x", "extra": {}}},
        {"type": "turn.completed", "usage": {"input_tokens": 5, "output_tokens": "many"}},
    ]:
        reader.feed(json.dumps(event))
    for junk in ["[1, 2]", '{"no_type": 1}', '{"type": 7}', "{not json", ""]:
        reader.feed(junk)
    reader.finish()

    turn = reader.turn
    assert turn.completed and turn.thread_id == "t1"
    assert seen == [{"type": "web_search", "query": "x", "extra": {}}]
    assert (turn.usage.input_tokens, turn.usage.output_tokens) == (5, 0)
    assert turn.unknown_types == {"session.configured"}
    assert list(turn.text) == ["[1, 2]", '{"no_type": 1}', '{"type": 7}', "{not json"]


def test_an_event_the_host_split_into_pieces_is_put_back_together() -> None:
    output = "x" * 200_000
    item = {"type": "command_execution", "aggregated_output": output, "exit_code": 0}
    line = json.dumps({"type": "item.completed", "item": item})
    seen: list[dict] = []
    reader = EventReader(seen.append)

    for start in range(0, len(line), 65_536):  # the host writes long lines in 64 KiB pieces
        reader.feed(line[start : start + 65_536])
    reader.feed('{"type":"turn.completed","usage":{"input_tokens":1}}')

    assert seen == [item]
    assert reader.turn.completed and not reader.turn.text


def test_progress_events_are_cut_short() -> None:
    item = {"type": "command_execution", "aggregated_output": "y" * 10_000, "list": list(range(80))}

    summary = summarize_item(item)

    assert len(summary["aggregated_output"]) == MAX_TEXT
    assert summary["aggregated_output"].endswith("…")
    assert summary["list"][-1] == "… 30 more" and len(summary["list"]) == 51
    assert json.dumps(summary)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("unexpected status 403 Forbidden: no, url: http://127.0.0.1:429/v1/responses", "auth"),
        ("unexpected status 503 Service Unavailable: busy, url: http://h:401/v1", "provider_error"),
        ("Quota exceeded. Check your plan and billing details.", "auth"),
        ('{"error": {"message": "bad thing", "type": "error", "code": null}}', None),
        (
            "stream disconnected before completion: stream closed before response.completed",
            "provider_error",
        ),
    ],
)
def test_error_class_reads_the_status_not_the_port(message: str, expected) -> None:
    assert error_class(message) == expected


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("Please try again in 11.054s.", 11.054),
        ("try again in 250ms", 0.25),
        ("Try again in 2 minutes", 120.0),
        ("Try again at 3pm", None),
    ],
)
def test_retry_after_reads_the_wait_a_message_names(message: str, seconds) -> None:
    assert retry_after(message) == seconds


def test_parse_event_wants_an_object_with_a_string_type() -> None:
    assert parse_event(' {"type": "turn.started"} ') == {"type": "turn.started"}
    assert parse_event("Reading additional input from stdin...") is None
