"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for driving the real aider.

Each POST to ``/v1/chat/completions`` takes the next scripted ``Reply`` (the last one repeats
once the script is used up) and answers it the way aider 0.86.2 expects
(``shared/notes/real-tools.md`` section 3.3): a JSON completion, or with ``"stream": true``
server-sent events ending in ``data: [DONE]``. Every request is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: the key tests give aider (through OPENAI_API_KEY); it must never show in a log
API_KEY = "sk-orchestra-aider-test-0123456789"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: model text, or an HTTP error, or a raw (malformed) body."""

    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: sent as is instead of a completion (with ``status``), e.g. an error document
    body: str | None = None
    #: seconds to fall silent after the first streamed chunk (or before a plain reply)
    stall: float = 0.0
    prompt_tokens: int = 900
    completion_tokens: int = 40


@dataclass(frozen=True)
class Request:
    """What aider sent: the path, the headers and the JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def last_user_message(self) -> str:
        """Return the text of the last user message (the task plus aider's reminder)."""
        users = [m for m in self.body.get("messages", []) if m.get("role") == "user"]
        return _text(users[-1]["content"]) if users else ""

    @property
    def all_text(self) -> str:
        """Return every message's text, joined."""
        return "\n".join(_text(m.get("content")) for m in self.body.get("messages", []))


def _text(content: Any) -> str:
    if isinstance(content, list):  # the parts form: [{"type": "text", "text": ...}]
        return "\n".join(str(part.get("text", "")) for part in content)
    return str(content or "")


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """Return an OpenAI-style error answer with ``status``."""
    document = {"error": {"message": message, "type": "fake_error", "code": str(status)}}
    return Reply(status=status, headers=headers or {}, body=json.dumps(document))


def whole_edit(path: str, content: str, intro: str = "I will update the file.") -> str:
    """Return a model answer in aider's ``whole`` edit format: the path, then the new file."""
    return f"{intro}\n\n{path}\n```\n{content}```\n"


def diff_edit(path: str, search: str, replace: str) -> str:
    """Return a model answer in aider's ``diff`` format: one SEARCH/REPLACE block."""
    block = f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"
    return f"Changing {path}.\n\n{path}\n```\n{block}```\n"


class FakeOpenAI:
    """The server: ``with FakeOpenAI() as server: server.script(...)``; ``server.url`` is
    the API base (``http://127.0.0.1:PORT/v1``)."""

    model = "fake-model"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._replies: list[Reply] = [Reply("I have nothing to change.")]
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Return the API base aider is given."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply | str) -> None:
        """Answer the next requests with ``replies`` in order (a str is model text)."""
        with self._lock:
            self._replies = [Reply(r) if isinstance(r, str) else r for r in replies]

    def next_reply(self, request: Request) -> Reply:
        """Record ``request`` and return its scripted reply."""
        with self._lock:
            self.requests.append(request)
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closing.set()  # a stalled answer gives up at once
        self._server.shutdown()
        self._server.server_close()


def _handler_for(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"unparsed": raw.decode(errors="replace")}
            request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            reply = server.next_reply(request)
            try:
                self._answer(reply, bool(body.get("stream")))
            except (BrokenPipeError, ConnectionResetError):
                pass  # aider was stopped while we answered

        def _answer(self, reply: Reply, stream: bool) -> None:
            if reply.body is not None or reply.status != 200:
                if reply.stall:
                    server.closing.wait(reply.stall)
                self._send(reply.status, "application/json", (reply.body or "").encode(), reply)
            elif stream:
                self._stream(reply)
            else:
                if reply.stall:
                    server.closing.wait(reply.stall)
                self._send(200, "application/json", json.dumps(_completion(reply)).encode(), reply)

        def _send(self, status: int, kind: str, data: bytes, reply: Reply) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.close_connection = True
            for index, chunk in enumerate(_chunks(reply)):
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
                if index == 0 and reply.stall:
                    server.closing.wait(reply.stall)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


def _completion(reply: Reply) -> dict[str, Any]:
    message = {"role": "assistant", "content": reply.content}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": FakeOpenAI.model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def _chunks(reply: Reply) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": FakeOpenAI.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": ""})
    text = reply.content
    for start in range(0, len(text), 40):
        yield chunk({"content": text[start : start + 40]})
    yield chunk({}, "stop")
