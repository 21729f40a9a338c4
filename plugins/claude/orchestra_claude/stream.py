"""Reading ``claude -p --output-format stream-json --verbose``: one JSON object a line.

The host hands over the merged stdout and stderr line by line. Lines that are not JSON
objects with a string ``type`` (claude's stderr, the supervisor's ``claude: …`` lines)
are kept, the last few, for a message when claude stops without a ``result`` line.
Unknown types and fields are ignored. What the lines of claude 2.1.328 hold is in
shared/notes/claude-code.md, section 5, and in the recorded streams in tests/fixtures.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: the host splits a line longer than 64 KiB; shorter unparseable lines are plain text
SPLIT_LINE = 60 * 1024
#: a split line longer than this is given up
MAX_EVENT = 32 * 1024 * 1024
#: the tools that change files
EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})


@dataclass
class ToolCall:
    """One tool call of the model, and its result once claude reports it."""

    id: str
    name: str
    input: dict[str, Any]
    #: None until the result arrives
    is_error: bool | None = None
    output: str = ""

    @property
    def edits(self) -> bool:
        """Return whether the call changes a file."""
        return self.name in EDIT_TOOLS

    @property
    def path(self) -> str | None:
        """Return the file the call works on, if it names one."""
        path = self.input.get("file_path") or self.input.get("notebook_path")
        return path if isinstance(path, str) else None


@dataclass
class Session:
    """What claude's stream said about the attempt."""

    version: str | None = None
    model: str | None = None
    #: the directory claude worked in, as its init line says
    cwd: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    #: the ``api_retry`` lines, in order
    retries: list[dict[str, Any]] = field(default_factory=list)
    #: the ``permission_denied`` lines, in order
    refusals: list[dict[str, Any]] = field(default_factory=list)
    #: the usage of each model response, by message id, as its assistant lines report it
    #: (the output count there is the stream's first, not its last: a lower bound)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the final ``result`` line; None when claude stopped without one
    result: dict[str, Any] | None = None
    #: the last lines that were not stream-json
    text: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    def call(self, call_id: str) -> ToolCall | None:
        """Return the tool call with ``call_id``."""
        for call in self.calls:
            if call.id == call_id:
                return call
        return None

    def shown(self, path: str) -> str:
        """Return ``path`` as a message shows it: relative to claude's working directory
        when inside it, else absolute, without ``..``."""
        path = os.path.normpath(path)
        if self.cwd is not None and path.startswith(self.cwd.rstrip(os.sep) + os.sep):
            return path[len(self.cwd.rstrip(os.sep)) + 1 :]
        return path

    @property
    def denials(self) -> list[dict[str, Any]]:
        """Return the refused tool calls: the result's ``permission_denials``, else the
        ``permission_denied`` lines."""
        if self.result is not None:
            denied = self.result.get("permission_denials")
            if isinstance(denied, list) and denied:
                return [entry for entry in denied if isinstance(entry, dict)]
        return self.refusals


class StreamReader:
    """Takes output lines and builds a ``Session``; ``on_call`` gets each tool call once
    its result has come, ``on_retry`` each ``api_retry`` line."""

    def __init__(
        self,
        on_call: Callable[[ToolCall], None] | None = None,
        on_retry: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.session = Session()
        self._on_call = on_call
        self._on_retry = on_retry
        self._partial: str | None = None

    def feed(self, line: str) -> None:
        """Take one line of output."""
        if self._partial is not None:
            joined = self._partial + line
            self._partial = None
            if self._take_json(joined):
                return
            if len(joined) < MAX_EVENT and len(line) >= SPLIT_LINE:
                self._partial = joined  # still not whole: the line goes on
                return
        if self._take_json(line):
            return
        if line.lstrip().startswith("{") and len(line) >= SPLIT_LINE:
            self._partial = line  # the host cut a long line: wait for the rest
            return
        if line.strip():
            self.session.text.append(line.rstrip("\n"))

    def finish(self) -> None:
        """Say the output has ended: an unfinished split line counts as text."""
        if self._partial is not None:
            self.session.text.append(self._partial[:2000])
            self._partial = None

    def _take_json(self, line: str) -> bool:
        event = parse_line(line)
        if event is None:
            return False
        kind, subtype = event["type"], event.get("subtype")
        if kind == "system" and subtype == "init":
            self._init(event)
        elif kind == "system" and subtype == "api_retry":
            self.session.retries.append(event)
            if self._on_retry is not None:
                self._on_retry(event)
        elif kind == "system" and subtype == "permission_denied":
            self.session.refusals.append(event)
        elif kind == "assistant":
            self._assistant(event)
        elif kind == "user":
            self._user(event)
        elif kind == "result":
            self.session.result = event
        return True

    def _init(self, event: Mapping[str, Any]) -> None:
        if isinstance(event.get("claude_code_version"), str):
            self.session.version = event["claude_code_version"]
        if isinstance(event.get("model"), str):
            self.session.model = event["model"]
        if isinstance(event.get("cwd"), str):
            self.session.cwd = event["cwd"]

    def _assistant(self, event: Mapping[str, Any]) -> None:
        message = event.get("message")
        if isinstance(message, Mapping) and isinstance(message.get("id"), str):
            usage = message.get("usage")
            if isinstance(usage, Mapping):
                self.session.responses[message["id"]] = dict(usage)
        for block in _blocks(event):
            if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                tool_input = block.get("input")
                self.session.calls.append(
                    ToolCall(
                        block["id"],
                        str(block.get("name")),
                        dict(tool_input) if isinstance(tool_input, Mapping) else {},
                    )
                )

    def _user(self, event: Mapping[str, Any]) -> None:
        for block in _blocks(event):
            if block.get("type") != "tool_result":
                continue
            call = self.session.call(str(block.get("tool_use_id")))
            if call is None:
                continue
            call.is_error = bool(block.get("is_error"))
            call.output = content_text(block.get("content"))
            if self._on_call is not None:
                self._on_call(call)


def parse_line(line: str) -> dict[str, Any] | None:
    """Return the stream-json object on ``line``: a JSON object with a string ``type``."""
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


def content_text(content: Any) -> str:
    """Return a tool result's content as text (a string, or a list of text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def _blocks(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, Mapping)]
