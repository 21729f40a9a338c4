"""A scripted Gemini API on 127.0.0.1, for driving the real Gemini CLI in tests.

Gemini CLI 0.61 sends ``POST {base}/v1beta/models/<model>:streamGenerateContent?alt=sse``
and reads Server-Sent Events, each ``data: <GenerateContentResponse JSON>`` (see
shared/notes/gemini-cli.md, section 4). Each request takes the next reply of the script;
a request past the end gets an HTTP 400 (which the CLI does not retry), so a test that
sends one request too many fails loudly. Every request is logged (path, headers, body).

    with FakeGemini([Reply([call("read_file", file_path="hello.py")]), Reply([text("ok")])]):
        ... base_url = server.base_url ...
        server.requests[0].body["contents"]
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: the key the tests give gemini (through its environment), to look for in logs
API_KEY = "AIzaFAKE-test-9Qw3Er7Ty2Ui5Op1"
#: the usage of a reply unless it says otherwise
DEFAULT_USAGE = {
    "promptTokenCount": 1000,
    "candidatesTokenCount": 50,
    "totalTokenCount": 1050,
    "cachedContentTokenCount": 200,
}


def text(words: str) -> dict[str, Any]:
    """Return a text part saying ``words``."""
    return {"text": words}


def call(name: str, **args: Any) -> dict[str, Any]:
    """Return a function-call part calling the CLI's tool ``name`` with ``args``."""
    return {"functionCall": {"name": name, "args": args}}


def replace(path: str, old: str, new: str) -> dict[str, Any]:
    """Return a call of the CLI's ``replace`` tool, which edits ``path`` in place."""
    instruction = f"replace {old!r} with {new!r}"
    return call("replace", file_path=path, instruction=instruction, old_string=old, new_string=new)


def write_file(path: str, content: str) -> dict[str, Any]:
    """Return a call of the CLI's ``write_file`` tool, which creates or overwrites ``path``."""
    return call("write_file", file_path=path, content=content)


@dataclass(frozen=True)
class Reply:
    """One streamed answer: text parts one chunk each, then a last chunk with the other
    parts (function calls), ``finishReason`` and the usage.

    No parts at all is the "empty response" the CLI retries and then gives up on.
    ``stall`` sends the text chunks and then nothing, holding the connection open until the
    server is closed.
    """

    parts: Sequence[Mapping[str, Any]] = ()
    usage: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_USAGE))
    stall: bool = False


@dataclass(frozen=True)
class Status:
    """A plain HTTP error with a Google API error body; ``retry_delay`` ("2s") adds a
    ``google.rpc.RetryInfo`` detail, the only wait the CLI reads."""

    status: int
    message: str
    retry_delay: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """Return the JSON error body Google's APIs send for this status."""
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
        }
        if self.retry_delay is not None:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": self.retry_delay,
                }
            ]
        return {"error": error}


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass(frozen=True)
class Request:
    """What the server received."""

    path: str
    #: names in lower case
    headers: Mapping[str, str]
    body: Any

    def texts(self) -> list[str]:
        """Return the text parts of the user turns, in order."""
        contents = self.body.get("contents", []) if isinstance(self.body, dict) else []
        return [
            part["text"]
            for content in contents
            if content.get("role") == "user"
            for part in content.get("parts", [])
            if isinstance(part.get("text"), str)
        ]

    def tools(self) -> list[str]:
        """Return the names of the tools the CLI declared to the model."""
        declared = self.body.get("tools", []) if isinstance(self.body, dict) else []
        return [
            function["name"]
            for group in declared
            for function in group.get("functionDeclarations", [])
        ]


def chunks(reply: Reply) -> Iterator[dict[str, Any]]:
    """Return the GenerateContentResponse chunks of ``reply``, in the order they stream."""
    texts = [part for part in reply.parts if "text" in part]
    others = [part for part in reply.parts if "text" not in part]
    for part in texts:
        yield {"candidates": [{"content": {"role": "model", "parts": [dict(part)]}, "index": 0}]}
    if reply.stall:
        return
    last: dict[str, Any] = {"finishReason": "STOP", "index": 0}
    if others or not texts:
        last["content"] = {"role": "model", "parts": [dict(part) for part in others]}
    yield {"candidates": [last], "usageMetadata": dict(reply.usage), "modelVersion": "fake"}


class FakeGemini:
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
        """Return the URL to give the CLI (GOOGLE_GEMINI_BASE_URL: no version suffix)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeGemini:
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
        fake: FakeGemini = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = fake.take(Request(self.path, headers, body))
        if reply is None:
            reply = Status(400, "the fake server's script has no reply left")
        if isinstance(reply, Status):
            self._send_status(reply)
        else:
            self._send_stream(reply, fake.closing)

    def _send_status(self, reply: Status) -> None:
        data = json.dumps(reply.body()).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json; charset=UTF-8")
        self.send_header("content-length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, reply: Reply, closing: threading.Event) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in chunks(reply):
                self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
                self.wfile.flush()
            if reply.stall:
                closing.wait()
        except (BrokenPipeError, ConnectionResetError):  # the CLI gave up: nothing to tell
            pass
