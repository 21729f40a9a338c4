"""A scripted OpenAI Responses API on 127.0.0.1, for driving the real codex in tests.

Codex 0.169 speaks only ``POST {base_url}/responses`` with ``stream: true`` and reads
Server-Sent Events (see shared/notes/real-tools.md, section 4.4). Each request takes the
next reply of the script; a request past the end gets an HTTP 500, so a test that sends
one request too many fails loudly. Every request is logged (path, headers, JSON body).

    with FakeResponses([Reply(apply_patch(PATCH)), Reply(message("done"))]) as server:
        ... base_url = server.base_url ...
        server.requests[0].body["model"]
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: the key the tests give codex (through its environment), to look for in logs
API_KEY = "sk-test-7Hq2mV9xLw4pZ8rT"
#: what ``response.completed`` reports unless a reply says otherwise
DEFAULT_USAGE = {
    "input_tokens": 1000,
    "input_tokens_details": {"cached_tokens": 200},
    "output_tokens": 50,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 1050,
}


def message(text: str, item_id: str = "msg_1") -> dict[str, Any]:
    """Return an assistant message item saying ``text``."""
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": content,
    }


def apply_patch(patch: str, call_id: str = "call_patch") -> dict[str, Any]:
    """Return a call of codex's freeform ``apply_patch`` tool with ``patch``."""
    return {
        "type": "custom_tool_call",
        "id": f"ctc_{call_id}",
        "status": "completed",
        "call_id": call_id,
        "name": "apply_patch",
        "input": patch,
    }


def shell(command: str, call_id: str = "call_shell", login: bool | None = False) -> dict[str, Any]:
    """Return a call of codex's ``exec_command`` tool running ``command`` (no login shell;
    ``login=None`` leaves the choice to codex, as models mostly do)."""
    arguments = json.dumps({"cmd": command} if login is None else {"cmd": command, "login": login})
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "status": "completed",
        "call_id": call_id,
        "name": "exec_command",
        "arguments": arguments,
    }


def reasoning(text: str) -> dict[str, Any]:
    """Return a reasoning item with one summary ``text``."""
    return {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": text}]}


@dataclass(frozen=True)
class Reply:
    """One streamed response: ``items`` as output items, then ``response.completed``.

    ``fail`` ends the stream with ``response.failed`` carrying that message instead;
    ``stall`` stops after the items and holds the connection open, sending nothing,
    until the server is closed.
    """

    items: Sequence[Mapping[str, Any]] = ()
    usage: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_USAGE))
    fail: str | None = None
    fail_code: str = "server_error"
    stall: bool = False


@dataclass(frozen=True)
class Status:
    """A plain HTTP error: ``status`` with an OpenAI-style JSON error body and headers."""

    status: int
    message: str
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """What the server received."""

    path: str
    #: names in lower case
    headers: Mapping[str, str]
    body: Any


def sse_events(reply: Reply, response_id: str) -> Iterator[dict[str, Any]]:
    """Return the events of ``reply`` in the order the Responses API streams them."""
    response = {"id": response_id, "object": "response", "status": "in_progress", "output": []}
    yield {"type": "response.created", "response": response}
    yield {"type": "response.in_progress", "response": response}
    for index, item in enumerate(reply.items):
        yield from _item_events(index, dict(item))
    if reply.stall:
        return
    if reply.fail is not None:
        error = {"code": reply.fail_code, "message": reply.fail}
        yield {
            "type": "response.failed",
            "response": {**response, "status": "failed", "error": error},
        }
        return
    done = {**response, "status": "completed", "model": "fake", "usage": dict(reply.usage)}
    yield {"type": "response.completed", "response": done}


def _item_events(index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield {"type": "response.output_item.added", "output_index": index, "item": item}
    if item.get("type") == "message":
        text = item["content"][0]["text"]
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        yield {"type": "response.content_part.added", **where, "part": part}
        yield {"type": "response.output_text.delta", **where, "delta": text}
        yield {"type": "response.output_text.done", **where, "text": text}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


class FakeResponses:
    """The server: start with ``with``, read ``base_url`` and ``requests``."""

    def __init__(self, script: Iterable[Reply | Status] = ()) -> None:
        self.script: list[Reply | Status] = list(script)
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
        """Return the provider URL to give codex; it appends ``/responses``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeResponses:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release stalled streams, stop serving and close the socket."""
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def take(self, request: Request) -> Reply | Status | None:
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

    def do_POST(self) -> None:
        fake: FakeResponses = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        reply = fake.take(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if reply is None:
            reply = Status(500, "the fake server's script has no reply left")
        if isinstance(reply, Status):
            self._send_status(reply)
        else:
            self._send_stream(reply, f"resp_{len(fake.requests)}", fake.closing)

    def _send_status(self, reply: Status) -> None:
        error = {"message": reply.message, "type": "error", "code": reply.code}
        data = json.dumps({"error": error}).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, reply: Reply, response_id: str, closing: threading.Event) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for event in sse_events(reply, response_id):
                frame = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                self.wfile.write(frame.encode())
                self.wfile.flush()
            if reply.stall:
                closing.wait()
        except (BrokenPipeError, ConnectionResetError):  # codex gave up: nothing to tell
            pass
