"""A scripted Anthropic Messages API on 127.0.0.1, for driving the real claude in tests.

Claude Code 2.1.328 posts to ``{base}/v1/messages?beta=true``, normally with
``stream: true`` (Server-Sent Events), and repeats a request with ``stream: false`` after
a stream failed or stalled (shared/notes/claude-code.md, section 4). Each request takes
the next reply of the script; a request past the end gets an HTTP 500 that tells the CLI
not to retry, so a test that sends one request too many fails loudly. Every request is
logged (path, headers, JSON body).

Tool inputs need absolute paths. The fake model does not know where the CLI runs, so a
string of a reply may hold ``{cwd}``: it becomes the working directory the request names
("Primary working directory: …", or "CWD: …" under ``--bare``).

    with FakeAnthropic([Reply([text("On it."), edit("hello.py", "a", "b")]), Reply([text("Done.")])]) as server:
        ... base_url = server.base_url ...
        server.requests[0].body["model"]
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: the key the tests give claude (through its environment), to look for in files and logs
API_KEY = "sk-ant-test-Qm4v8ZkT2pXw7LcN"
#: what a reply reports unless it says otherwise
DEFAULT_USAGE = {
    "input_tokens": 1000,
    "output_tokens": 50,
    "cache_read_input_tokens": 200,
    "cache_creation_input_tokens": 0,
}
#: where the CLI says which directory it works in
_WORKING_DIRECTORY = re.compile(r"(?:Primary working directory|CWD): (/[^\n]*)")


def text(words: str) -> dict[str, Any]:
    """Return a text block saying ``words``."""
    return {"type": "text", "text": words}


def tool_use(name: str, tool_input: Mapping[str, Any], block_id: str = "") -> dict[str, Any]:
    """Return a call of the CLI's tool ``name`` (an id is made up when none is given)."""
    return {"type": "tool_use", "id": block_id, "name": name, "input": dict(tool_input)}


def read(path: str) -> dict[str, Any]:
    """Return a Read of ``path``, relative to the working directory."""
    return tool_use("Read", {"file_path": f"{{cwd}}/{path}"})


def edit(path: str, old: str, new: str) -> dict[str, Any]:
    """Return an Edit of ``path`` (relative to the working directory) replacing ``old``."""
    return tool_use("Edit", {"file_path": f"{{cwd}}/{path}", "old_string": old, "new_string": new})


def write(path: str, content: str) -> dict[str, Any]:
    """Return a Write of ``content`` to ``path``, relative to the working directory."""
    return tool_use("Write", {"file_path": f"{{cwd}}/{path}", "content": content})


def bash(command: str) -> dict[str, Any]:
    """Return a Bash call running ``command``."""
    return tool_use("Bash", {"command": command, "description": "run a command"})


@dataclass(frozen=True)
class Reply:
    """One assistant message: ``blocks`` (text and tool_use), then its usage.

    ``stop_reason`` defaults to ``tool_use`` when a block calls a tool, else ``end_turn``.
    ``stall`` sends the headers and ``message_start``, then nothing until the server is
    closed.
    """

    blocks: Sequence[Mapping[str, Any]] = ()
    usage: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_USAGE))
    stop_reason: str | None = None
    stall: bool = False


@dataclass(frozen=True)
class Status:
    """A plain HTTP error: ``status`` with an Anthropic-style JSON error body and headers."""

    status: int
    message: str
    error_type: str = "api_error"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Garbage:
    """A 200 answer whose body is no Messages API at all: ``body``, as an event stream
    when the request asked for one, else as JSON."""

    body: str = "this is not json\n\n"


@dataclass(frozen=True)
class Request:
    """What the server received."""

    path: str
    #: names in lower case
    headers: Mapping[str, str]
    body: Any

    @property
    def streamed(self) -> bool:
        """Return whether the CLI asked for a stream."""
        return isinstance(self.body, dict) and bool(self.body.get("stream"))

    def prompt(self) -> str:
        """Return the text of the first user message: the task's prompt is its last block."""
        for message in self.body.get("messages", []):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    def tool_results(self) -> list[dict[str, Any]]:
        """Return the tool_result blocks of the last user message."""
        for message in reversed(self.body.get("messages", [])):
            if message.get("role") == "user":  # the CLI may append a "system" one after it
                content = message.get("content")
                if isinstance(content, list):
                    return [block for block in content if block.get("type") == "tool_result"]
                return []
        return []


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


def working_directory(body: Any) -> str:
    """Return the directory the CLI says it works in, or "" when the request names none."""
    found = _WORKING_DIRECTORY.search(json.dumps(body, ensure_ascii=False).replace("\\n", "\n"))
    return found.group(1) if found else ""


def _filled(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return value.replace("{cwd}", cwd)
    if isinstance(value, Mapping):
        return {key: _filled(entry, cwd) for key, entry in value.items()}
    if isinstance(value, (list, tuple)):
        return [_filled(entry, cwd) for entry in value]
    return value


def message_body(reply: Reply, message_id: str, model: str, cwd: str) -> dict[str, Any]:
    """Return ``reply`` as a whole Messages API response (for ``stream: false``)."""
    blocks = []
    for index, block in enumerate(reply.blocks):
        block = _filled(dict(block), cwd)
        if block["type"] == "tool_use" and not block["id"]:
            block["id"] = f"toolu_{message_id}_{index}"
        blocks.append(block)
    calls_tool = any(block["type"] == "tool_use" for block in blocks)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": reply.stop_reason or ("tool_use" if calls_tool else "end_turn"),
        "stop_sequence": None,
        "usage": dict(reply.usage),
    }


def sse_events(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Return the events streaming the message ``body``, in the Messages API's order."""
    start = {**body, "content": [], "stop_reason": None}
    start["usage"] = {**body["usage"], "output_tokens": 1}
    yield {"type": "message_start", "message": start}
    yield {"type": "ping"}
    for index, block in enumerate(body["content"]):
        if block["type"] == "tool_use":
            empty = {**block, "input": {}}
            yield {"type": "content_block_start", "index": index, "content_block": empty}
            arguments = json.dumps(block["input"])
            middle = len(arguments) // 2  # in two pieces, as a model streams them
            for piece in (arguments[:middle], arguments[middle:]):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield {"type": "content_block_delta", "index": index, "delta": delta}
        else:
            empty = {"type": "text", "text": ""}
            yield {"type": "content_block_start", "index": index, "content_block": empty}
            delta = {"type": "text_delta", "text": block["text"]}
            yield {"type": "content_block_delta", "index": index, "delta": delta}
        yield {"type": "content_block_stop", "index": index}
    usage = {"output_tokens": body["usage"].get("output_tokens", 0)}
    delta = {"stop_reason": body["stop_reason"], "stop_sequence": None}
    yield {"type": "message_delta", "delta": delta, "usage": usage}
    yield {"type": "message_stop"}


class FakeAnthropic:
    """The server: start with ``with``, read ``base_url`` and ``requests``."""

    def __init__(self, script: Iterable[Reply | Status | Garbage] = ()) -> None:
        self.script: list[Reply | Status | Garbage] = list(script)
        self.requests: list[Request] = []
        self.closing = threading.Event()
        self._lock = threading.Condition()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def base_url(self) -> str:
        """Return ANTHROPIC_BASE_URL for the CLI: without ``/v1``, which it appends."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release stalled streams, stop serving and close the socket."""
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def take(self, request: Request) -> Reply | Status | Garbage | None:
        """Log ``request`` and return the next reply of the script (None past its end)."""
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            return self.script.pop(0) if self.script else None

    def wait_for_requests(self, count: int, timeout: float = 30) -> bool:
        """Wait until ``count`` requests have come (at most ``timeout`` s); return whether."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= count, timeout)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no stderr per request
        pass

    def do_GET(self) -> None:  # the connectivity probe, sent only with nonessential traffic on
        self._send_json(200, {"message": "hello"})

    def do_HEAD(self) -> None:
        self._send_json(200, {})

    def do_POST(self) -> None:
        fake: FakeAnthropic = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.path, headers, body)
        reply = fake.take(request)
        if reply is None:
            message = "the fake server's script has no reply left"
            reply = Status(500, message, headers={"x-should-retry": "false"})
        if isinstance(reply, Status):
            self._send_status(reply)
            return
        if isinstance(reply, Garbage):
            kind = "text/event-stream" if request.streamed else "application/json"
            self._send_raw(reply.body.encode(), kind)
            return
        model = body.get("model", "claude-fake") if isinstance(body, dict) else "claude-fake"
        message = message_body(reply, f"msg_{len(fake.requests)}", model, working_directory(body))
        if request.streamed:
            self._send_stream(message, reply.stall, fake.closing)
        elif reply.stall:
            fake.closing.wait()
        else:
            self._send_json(200, message)

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_raw(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_status(self, reply: Status) -> None:
        error = {"type": reply.error_type, "message": reply.message}
        self._send_json(reply.status, {"type": "error", "error": error}, reply.headers)

    def _send_stream(
        self, message: Mapping[str, Any], stall: bool, closing: threading.Event
    ) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for event in sse_events(message):
                frame = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                self.wfile.write(frame.encode())
                self.wfile.flush()
                if stall and event["type"] == "message_start":
                    closing.wait()
                    return
        except (BrokenPipeError, ConnectionResetError):  # the CLI gave up: nothing to tell
            pass
