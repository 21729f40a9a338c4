"""Reading ``gemini -p --output-format stream-json``: one JSON event a line, mixed with stderr.

The host hands over the merged stdout and stderr line by line. Lines that are not JSON
objects with a string ``type`` are kept (the last few) as the CLI's own words, for when it
stops without a ``result``. The events Gemini CLI 0.61 prints are ``init``, ``message``
(the prompt, then the model's text in deltas), ``tool_use``, ``tool_result``, ``error``
(not fatal by itself) and, last, ``result`` with the status and the token counts. Unknown
event types and fields are ignored.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: strings in a progress event are cut to this many characters
MAX_TEXT = 2000
#: the host splits a line longer than 64 KiB; shorter unparseable lines are plain text
SPLIT_LINE = 60 * 1024
#: a split event longer than this is given up
MAX_EVENT = 32 * 1024 * 1024
#: how many of the first lines of text are kept
MAX_FIRST_LINES = 10
#: the CLI's tools that change files (auto_edit offers them; the default mode does not)
EDIT_TOOLS = frozenset({"replace", "write_file"})


@dataclass
class ToolCall:
    """One tool the model had the CLI run, and how it went."""

    name: str
    parameters: dict[str, Any]
    #: "success" or "error"; None while no ``tool_result`` came
    status: str | None = None
    error_type: str | None = None
    error_message: str | None = None


@dataclass
class Session:
    """What the event stream said about the CLI's run."""

    session_id: str | None = None
    model: str | None = None
    #: the ``result`` event: None when the CLI stopped without one
    result: dict[str, Any] | None = None
    #: the messages of ``error`` events, in order
    errors: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    #: the model's text since its last tool call (the deltas joined)
    last_text: str = ""
    #: the first and the last lines that were not events (the CLI's stderr): a complaint
    #: about its arguments comes first, before the usage text
    first_text: list[str] = field(default_factory=list)
    text: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    unknown_types: set[str] = field(default_factory=set)

    @property
    def succeeded(self) -> bool:
        """Return whether the CLI ended its run with ``result.status: "success"``."""
        return self.result is not None and self.result.get("status") == "success"

    @property
    def failure(self) -> str | None:
        """Return what the ``result`` or the last ``error`` event said went wrong."""
        error = self.result.get("error") if self.result is not None else None
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
        return self.errors[-1] if self.errors else None

    @property
    def stats(self) -> Mapping[str, Any]:
        """Return the ``result``'s token counts ({} without a result)."""
        stats = self.result.get("stats") if self.result is not None else None
        return stats if isinstance(stats, Mapping) else {}

    def edits(self) -> list[ToolCall]:
        """Return the calls of the tools that change files."""
        return [call for call in self.calls if call.name in EDIT_TOOLS]


class StreamReader:
    """Takes output lines and builds a ``Session``; ``on_call`` gets each finished tool
    call."""

    def __init__(self, on_call: Callable[[ToolCall], None] | None = None) -> None:
        self.session = Session()
        self._on_call = on_call
        self._open: dict[str, ToolCall] = {}
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
            if len(self.session.first_text) < MAX_FIRST_LINES:
                self.session.first_text.append(line)
            self.session.text.append(line)

    def finish(self) -> None:
        """Say the output has ended: an unfinished split line counts as text."""
        if self._partial is not None:
            self.session.text.append(self._partial[:MAX_TEXT])
            self._partial = None

    def _take_json(self, line: str) -> bool:
        event = parse_event(line)
        if event is None:
            return False
        handler = _HANDLERS.get(event["type"])
        if handler is None:
            self.session.unknown_types.add(event["type"])
        else:
            handler(self, event)
        return True

    def _init(self, event: Mapping[str, Any]) -> None:
        if isinstance(event.get("session_id"), str):
            self.session.session_id = event["session_id"]
        if isinstance(event.get("model"), str):
            self.session.model = event["model"]

    def _message(self, event: Mapping[str, Any]) -> None:
        if event.get("role") == "assistant" and isinstance(event.get("content"), str):
            self.session.last_text += event["content"]

    def _tool_use(self, event: Mapping[str, Any]) -> None:
        name = event.get("tool_name")
        parameters = event.get("parameters")
        call = ToolCall(
            name if isinstance(name, str) else "?",
            dict(parameters) if isinstance(parameters, Mapping) else {},
        )
        self.session.calls.append(call)
        self.session.last_text = ""
        if isinstance(event.get("tool_id"), str):
            self._open[event["tool_id"]] = call

    def _tool_result(self, event: Mapping[str, Any]) -> None:
        call = self._open.pop(str(event.get("tool_id")), None)
        if call is None:
            return
        call.status = str(event.get("status"))
        error = event.get("error")
        if isinstance(error, Mapping):
            call.error_type = _string(error.get("type"))
            call.error_message = _string(error.get("message"))
        if self._on_call is not None:
            self._on_call(call)

    def _error(self, event: Mapping[str, Any]) -> None:
        if isinstance(event.get("message"), str):
            self.session.errors.append(event["message"])

    def _result(self, event: Mapping[str, Any]) -> None:
        self.session.result = dict(event)


_HANDLERS: dict[str, Callable[[StreamReader, Mapping[str, Any]], None]] = {
    "init": StreamReader._init,
    "message": StreamReader._message,
    "tool_use": StreamReader._tool_use,
    "tool_result": StreamReader._tool_result,
    "error": StreamReader._error,
    "result": StreamReader._result,
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


def summarize_call(call: ToolCall) -> dict[str, Any]:
    """Return ``call`` fit for an orchestra event: its tool, path, status and error, with
    long strings (a whole file's ``content``) cut short."""
    summary: dict[str, Any] = {"tool": call.name, "status": call.status}
    path = call.parameters.get("file_path")
    if isinstance(path, str):
        summary["path"] = path
    summary["parameters"] = {name: _cut(value) for name, value in call.parameters.items()}
    if call.error_type or call.error_message:
        summary["error"] = {"type": call.error_type, "message": _cut(call.error_message)}
    return summary


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[: MAX_TEXT - 1] + "…"
    return value


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None
