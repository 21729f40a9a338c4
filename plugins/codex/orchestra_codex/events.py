"""Reading ``codex exec --json`` output: one JSON event a line, mixed with stderr text.

The host hands over the merged stdout and stderr line by line. Lines that are not JSON
objects with a string ``type`` are kept (the last few) as codex's own words for when it
stops without an event. Unknown event types and fields are ignored: the format has
changed between codex releases. The events codex 0.169 sends are ``thread.started``,
``turn.started``, ``item.started``/``item.updated``/``item.completed``, ``turn.completed``
(with the usage), ``turn.failed`` and ``error``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: strings in a progress event are cut to this many characters
MAX_TEXT = 2000
#: lists in a progress event keep this many entries
MAX_ENTRIES = 50
#: the host splits a line longer than 64 KiB; shorter unparseable lines are plain text
SPLIT_LINE = 60 * 1024
#: a split event longer than this is given up
MAX_EVENT = 32 * 1024 * 1024


@dataclass
class TokenCounts:
    """Tokens a turn used, summed over ``turn.completed`` events."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class Turn:
    """What the event stream said about codex's turn."""

    thread_id: str | None = None
    completed: bool = False
    #: the message of ``turn.failed``
    failure: str | None = None
    #: messages of ``error`` events, in order (reconnects included)
    errors: list[str] = field(default_factory=list)
    usage: TokenCounts | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    #: the last lines that were not events (codex's stderr)
    text: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    #: event types this reader does not know, for the record
    unknown_types: set[str] = field(default_factory=set)

    @property
    def last_agent_message(self) -> str | None:
        """Return the text of the last ``agent_message`` item, if any."""
        for item in reversed(self.items):
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                return item["text"]
        return None

    @property
    def last_error(self) -> str | None:
        """Return the last fatal-looking message: ``turn.failed``, an ``error`` event, or an
        ``error`` item."""
        if self.failure:
            return self.failure
        if self.errors:
            return self.errors[-1]
        for item in reversed(self.items):
            if item.get("type") == "error" and isinstance(item.get("message"), str):
                return item["message"]
        return None


class EventReader:
    """Takes output lines and builds a ``Turn``; ``on_item`` gets each completed item."""

    def __init__(self, on_item: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.turn = Turn()
        self._on_item = on_item
        self._partial: str | None = None

    def feed(self, line: str) -> None:
        """Take one line of output."""
        if self._partial is not None:
            joined = self._partial + line
            self._partial = None
            if self._take_json(joined):
                return
            if len(joined) < MAX_EVENT and len(line) >= SPLIT_LINE:
                self._partial = joined  # still not whole: the event goes on
                return
        if self._take_json(line):
            return
        if line.lstrip().startswith("{") and len(line) >= SPLIT_LINE:
            self._partial = line  # the host cut a long line: wait for the rest
            return
        if line.strip():
            self.turn.text.append(line)

    def finish(self) -> None:
        """Say the output has ended: an unfinished split line counts as text."""
        if self._partial is not None:
            self.turn.text.append(self._partial[:MAX_TEXT])
            self._partial = None

    def _take_json(self, line: str) -> bool:
        event = parse_event(line)
        if event is None:
            return False
        handler = _HANDLERS.get(event["type"])
        if handler is None:
            if not event["type"].startswith("item."):
                self.turn.unknown_types.add(event["type"])
        else:
            handler(self, event)
        return True

    def _thread_started(self, event: Mapping[str, Any]) -> None:
        if isinstance(event.get("thread_id"), str):
            self.turn.thread_id = event["thread_id"]

    def _item_completed(self, event: Mapping[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            return
        self.turn.items.append(item)
        if self._on_item is not None:
            self._on_item(item)

    def _turn_completed(self, event: Mapping[str, Any]) -> None:
        self.turn.completed = True
        usage = event.get("usage")
        if isinstance(usage, Mapping):
            counts = self.turn.usage or TokenCounts()
            counts.input_tokens += _count(usage, "input_tokens")
            counts.cached_input_tokens += _count(usage, "cached_input_tokens")
            counts.output_tokens += _count(usage, "output_tokens")
            self.turn.usage = counts

    def _turn_failed(self, event: Mapping[str, Any]) -> None:
        error = event.get("error")
        message = error.get("message") if isinstance(error, Mapping) else None
        self.turn.failure = message if isinstance(message, str) else "codex's turn failed"

    def _error(self, event: Mapping[str, Any]) -> None:
        if isinstance(event.get("message"), str):
            self.turn.errors.append(event["message"])


_HANDLERS: dict[str, Callable[[EventReader, Mapping[str, Any]], None]] = {
    "thread.started": EventReader._thread_started,
    "turn.started": lambda reader, event: None,
    "item.completed": EventReader._item_completed,
    "turn.completed": EventReader._turn_completed,
    "turn.failed": EventReader._turn_failed,
    "error": EventReader._error,
}


def parse_event(line: str) -> dict[str, Any] | None:
    """Return the event on ``line``: a JSON object with a string ``type``; else None."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if isinstance(event, dict) and isinstance(event.get("type"), str):
        return event
    return None


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def summarize_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``item`` fit for an orchestra event: long strings and lists cut short."""
    return _shortened(item)


def _shortened(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    if isinstance(value, Mapping):
        return {str(key): _shortened(entry) for key, entry in value.items()}
    if isinstance(value, (list, tuple)):
        kept = [_shortened(entry) for entry in value[:MAX_ENTRIES]]
        if len(value) > MAX_ENTRIES:
            kept.append(f"… {len(value) - MAX_ENTRIES} more")
        return kept
    return value
