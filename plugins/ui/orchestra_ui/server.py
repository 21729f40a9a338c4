"""The HTTP server of ``orchestra ui``: its routes, who may use them, and the headers of
every answer.

Standard library only: a ``ThreadingHTTPServer`` whose request threads are daemons. What
reaches a route from a URL is an id, looked up in the run database, or a number; nothing
of a URL ever names a file (the page's files come from a fixed table). Every request must
name this server in its Host header (against DNS rebinding) and carry the session's token
(``?token=`` once, then the cookie it sets, or the ``X-Orchestra-Token`` header); a
state-changing request is a POST with the header, which another site's page cannot send.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import re
import socket
import sys
import threading
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import orchestra
from orchestra_ui import views
from orchestra_ui.actions import ActionRefused, Resumer, cancel_run
from orchestra_ui.follow import Followers

#: headers of every answer
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
JSON_TYPE = "application/json; charset=utf-8"
#: the page's files: the only names under /static/, and their types
STATIC_FILES = {
    "app.css": "text/css; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "attempt.js": "text/javascript; charset=utf-8",
    "constants.js": "text/javascript; charset=utf-8",
    "diff.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "format.js": "text/javascript; charset=utf-8",
    "graph.js": "text/javascript; charset=utf-8",
    "graph_layout.js": "text/javascript; charset=utf-8",
    "graph_viewport.js": "text/javascript; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "log_follower.js": "text/javascript; charset=utf-8",
    "main.js": "text/javascript; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "review.js": "text/javascript; charset=utf-8",
    "router.js": "text/javascript; charset=utf-8",
    "routes.js": "text/javascript; charset=utf-8",
    "run_view.js": "text/javascript; charset=utf-8",
    "runs_view.js": "text/javascript; charset=utf-8",
    "task_view.js": "text/javascript; charset=utf-8",
    "tasks_table.js": "text/javascript; charset=utf-8",
    "throttle.js": "text/javascript; charset=utf-8",
    "timeline.js": "text/javascript; charset=utf-8",
}
STATIC_DIRECTORY = Path(__file__).with_name("static")
#: the session cookie's name is this and the port: cookies do not tell ports apart, and two
#: ``orchestra ui`` on one machine must not overwrite each other's
COOKIE_PREFIX = "orchestra_ui_token_"
TOKEN_HEADER = "X-Orchestra-Token"
#: the longest id (or other path segment) a route takes; task ids have at most 200
MAX_SEGMENT_LENGTH = 256
#: seconds between two keep-alive comments of an event stream
KEEP_ALIVE_SECONDS = 15.0
#: events in one message of an event stream's backlog
BACKLOG_BATCH = 500
_META_TOKEN = re.compile(r"<meta\s+name=[\"']orchestra-token[\"'][^>]*>", re.IGNORECASE)
_HEAD = re.compile(r"<head[^>]*>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HttpError(Exception):
    """An answer other than 200: its status and one line saying why."""

    def __init__(
        self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


class UiServer(ThreadingHTTPServer):
    """The server of one ``orchestra ui``: the run database, the session's token, the
    followed runs, and what it answers to."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        database: Path,
        store: orchestra.Store,
        host: str,
        port: int,
        token: str | None,
        workdir: Path,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), RequestHandler)
        self.database = database
        self.store = store
        self.host = host
        self.token = token
        self.runs = views.RunCache(store)
        self.followers = Followers(database, store)
        self.resumer = Resumer(database, workdir)
        #: set when the server stops: event streams end
        self.closing = threading.Event()
        self.allowed_hosts = _allowed_hosts(host, self.port)

    @property
    def port(self) -> int:
        """The port it listens on (the free one picked for port 0)."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The address to open: with the token, which sets the session's cookie."""
        host = self.host
        if _is_wildcard(host):
            host = "127.0.0.1" if self.address_family == socket.AF_INET else "::1"
        shown = f"[{host}]" if ":" in host else host
        query = "" if self.token is None else "?" + urlencode({"token": self.token})
        return f"http://{shown}:{self.port}/{query}"

    def warm_up(self) -> None:
        """Gather the newest run's facts in the background, so that the run most likely
        to be opened first (a finished 10,000-task one takes most of a second) is ready."""
        newest = self.store.runs(limit=1)
        if newest:
            threading.Thread(
                target=self.runs.view_json,
                args=(newest[0].id,),
                name="orchestra-ui-warm-up",
                daemon=True,
            ).start()

    def close(self) -> None:
        """Stop serving: end the event streams, stop the pollers, close the socket."""
        self.closing.set()
        self.followers.close()
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client gone mid-answer is not an error worth a traceback
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def is_loopback(host: str) -> bool:
    """Return whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The Host headers a request may carry, or None (any) on a wildcard address, where
    the token (required there) is what keeps other sites out."""
    if _is_wildcard(host):
        return None
    shown = f"[{host}]" if ":" in host else host
    names = {shown.lower(), "localhost", "127.0.0.1", "[::1]"}
    allowed = {f"{name}:{port}" for name in names}
    if port == 80:
        allowed |= names
    return frozenset(allowed)


# -- the routes ------------------------------------------------------------------------------

#: (method, path pattern, handler name): "{run}", "{task}", "{n}", "{name}" take a segment
ROUTES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("GET", ("",), "index"),
    ("GET", ("favicon.ico",), "favicon"),
    ("GET", ("static", "{name}"), "static"),
    ("GET", ("api", "runs"), "runs"),
    ("GET", ("api", "runs", "{run}"), "run"),
    ("GET", ("api", "runs", "{run}", "events"), "events"),
    ("GET", ("api", "runs", "{run}", "tasks", "{task}"), "task"),
    ("GET", ("api", "runs", "{run}", "tasks", "{task}", "attempts", "{n}", "log"), "log"),
    ("POST", ("api", "runs", "{run}", "cancel"), "cancel"),
    ("POST", ("api", "runs", "{run}", "resume"), "resume"),
)


def match_route(segments: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Return ({method: handler name}, the path's parameters) of the route ``segments``
    (decoded path segments) match; raise a 404 when none does."""
    methods: dict[str, str] = {}
    parameters: dict[str, str] = {}
    for method, pattern, name in ROUTES:
        if len(pattern) != len(segments):
            continue
        found = {}
        for expected, segment in zip(pattern, segments, strict=True):
            if expected.startswith("{"):
                found[expected[1:-1]] = segment
            elif expected != segment:
                break
        else:
            methods[method] = name
            parameters = found
    if not methods:
        raise HttpError(HTTPStatus.NOT_FOUND, "no such page")
    return methods, parameters


def path_segments(path: str) -> list[str]:
    """Return the decoded segments of a URL's path ("/api/runs/x" -> ["api", "runs", "x"]);
    a segment is decoded after the path is split, so "%2F" stays inside its segment.
    Raise a 400 for a segment too long, not UTF-8, or holding a control character."""
    segments = []
    for raw in path.removeprefix("/").split("/"):
        if len(raw) > 3 * MAX_SEGMENT_LENGTH:
            raise HttpError(HTTPStatus.BAD_REQUEST, "a path segment is too long")
        try:
            segment = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "a path segment is not UTF-8") from None
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise HttpError(HTTPStatus.BAD_REQUEST, "a path segment is too long")
        if _CONTROL.search(segment):
            raise HttpError(HTTPStatus.BAD_REQUEST, "a path segment holds a control character")
        segments.append(segment)
    return segments


class RequestHandler(BaseHTTPRequestHandler):
    """One request: checked (Host, token), routed, answered with the security headers."""

    server: UiServer
    protocol_version = "HTTP/1.1"
    server_version = "orchestra-ui"

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the terminal shows the one line the command prints

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    # -- checking and routing ---------------------------------------------------------------

    def _handle(self, method: str) -> None:
        try:
            if not self._host_allowed():
                self.close_connection = True
                self._send(HTTPStatus.FORBIDDEN, b"forbidden: unknown Host\n", "text/plain")
                return
            self._drain_body()
            url = urlsplit(self.path)
            segments = path_segments(url.path)
            methods, parameters = match_route(segments)
            name = methods.get(method)
            if name is None:
                raise HttpError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{method} is not allowed here",
                    {"Allow": ", ".join(sorted(methods))},
                )
            query = _query(url.query)
            if name == "index" and "token" in query:
                self._sign_in(query)
                return
            self._check_token(method, query)
            getattr(self, f"_route_{name}")(parameters, query)
        except HttpError as error:
            self._send_error(error.status, str(error), error.headers)
        except orchestra.UnknownRun as error:
            self._send_error(HTTPStatus.NOT_FOUND, str(error))
        except ActionRefused as error:
            self._send_error(HTTPStatus.CONFLICT, str(error))
        except ConnectionError:
            self.close_connection = True  # the client went away
        except Exception as error:  # a bug: said in one line to the page, in full here
            traceback.print_exc()
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {error!r}")

    def _host_allowed(self) -> bool:
        allowed = self.server.allowed_hosts
        host = (self.headers.get("Host") or "").strip().lower()
        return allowed is None or host in allowed

    def _drain_body(self) -> None:
        """Read (and drop) a request's body: no route takes one, and a body left unread
        would be taken for the next request of the connection."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HttpError(HTTPStatus.BAD_REQUEST, "a chunked body is not accepted")
        if length is None:
            return
        if not length.isdigit() or int(length) > 65536:
            self.close_connection = True
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is too large")
        self.rfile.read(int(length))

    def _sign_in(self, query: Mapping[str, str]) -> None:
        """``/?token=…``: a right token sets the cookie and goes to the same page without
        it in the address; a wrong one is refused."""
        token = self.server.token
        if token is not None and not _same(query["token"], token):
            raise HttpError(HTTPStatus.FORBIDDEN, "wrong token: open the link orchestra ui printed")
        rest = urlencode([(key, value) for key, value in query.items() if key != "token"])
        headers = {"Location": "/" + (f"?{rest}" if rest else "")}
        if token is not None:
            headers["Set-Cookie"] = (
                f"{COOKIE_PREFIX}{self.server.port}={quote(token, safe='')};"
                " HttpOnly; SameSite=Strict; Path=/"
            )
        self._send(HTTPStatus.FOUND, b"", "text/plain", headers)

    def _check_token(self, method: str, query: Mapping[str, str]) -> None:
        """Refuse (403) a request without the token; a POST must carry it in the header
        (a cookie alone is what a forged cross-site request has) and come from this
        server's own page if it says where it comes from."""
        token = self.server.token
        header = self.headers.get(TOKEN_HEADER)
        if method == "POST":
            self._check_same_origin()
            if token is not None and (header is None or not _same(header, token)):
                raise HttpError(HTTPStatus.FORBIDDEN, f"an action needs the {TOKEN_HEADER} header")
            return
        if token is None:
            return
        given = [*self._cookie_tokens(), header, query.get("token")]
        if not any(value is not None and _same(value, token) for value in given):
            raise HttpError(
                HTTPStatus.FORBIDDEN, "no token: open the link orchestra ui printed (?token=…)"
            )

    def _check_same_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None:
            host = (self.headers.get("Host") or "").lower()
            if urlsplit(origin).netloc.lower() != host:
                raise HttpError(HTTPStatus.FORBIDDEN, "an action must come from this page")
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise HttpError(HTTPStatus.FORBIDDEN, "an action must come from this page")

    def _cookie_tokens(self) -> list[str]:
        values = []
        for header in self.headers.get_all("Cookie") or ():
            for pair in header.split(";"):
                name, _, value = pair.strip().partition("=")
                if name == f"{COOKIE_PREFIX}{self.server.port}":
                    values.append(unquote(value.strip('"')))
        return values

    # -- the routes -------------------------------------------------------------------------

    def _route_index(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        try:
            page = (STATIC_DIRECTORY / "index.html").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise HttpError(HTTPStatus.NOT_FOUND, "the page is missing from orchestra-ui") from None
        self._send(HTTPStatus.OK, with_token(page, self.server.token).encode(), "text/html")

    def _route_favicon(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")

    def _route_static(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        name = parameters["name"]
        content_type = STATIC_FILES.get(name)
        if content_type is None:
            raise HttpError(HTTPStatus.NOT_FOUND, "no such file")
        try:
            body = (STATIC_DIRECTORY / name).read_bytes()
        except FileNotFoundError:
            raise HttpError(HTTPStatus.NOT_FOUND, "no such file") from None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if self.headers.get("If-None-Match") == etag:
            self._send(HTTPStatus.NOT_MODIFIED, b"", content_type, headers)
        else:
            self._send(HTTPStatus.OK, body, content_type, headers)

    def _route_runs(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        state = query.get("state") or None
        try:
            runs = views.runs_view(self.server.store, state)
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"no run state {state!r}") from None
        self._send_json(runs)

    def _route_run(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        body = self.server.runs.view_json(parameters["run"])
        self._send(HTTPStatus.OK, body, JSON_TYPE)

    def _route_task(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        run_id, task_id = parameters["run"], parameters["task"]
        cached = self.server.runs.facts(run_id)
        task = views.find_task(cached.facts, task_id)
        if task is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no task {task_id!r} in run {run_id}")
        records = self.server.store.attempts(run_id, task_id)
        self._send_json(views.task_view(cached.facts, task, records, cached.last_seq))

    def _route_log(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        number = _number(parameters["n"], "attempt number")
        offset = _number(query.get("offset", "0"), "offset", allow=(-1,))
        run_id, task_id = parameters["run"], parameters["task"]
        for attempt in self.server.store.attempts(run_id, task_id):
            if attempt.number == number:
                self._send_json(views.log_chunk(attempt, offset))
                return
        raise HttpError(
            HTTPStatus.NOT_FOUND, f"no attempt {number} of task {task_id!r} in run {run_id}"
        )

    def _route_cancel(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        message = cancel_run(self.server.store, parameters["run"])
        self._send_json({"message": message})

    def _route_resume(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        message, pid = self.server.resumer.resume(self.server.store, parameters["run"])
        self._send_json({"message": message, "pid": pid}, HTTPStatus.ACCEPTED)

    def _route_events(self, parameters: Mapping[str, str], query: Mapping[str, str]) -> None:
        """The run's events as a server-sent event stream: those after ``after`` (or the
        Last-Event-ID the browser sends when it reconnects), then each new one as it is
        written, until the page leaves or the server stops."""
        run_id = parameters["run"]
        store = self.server.store
        store.run(run_id)  # 404 before the stream starts
        last_id = self.headers.get("Last-Event-ID")
        after = _number(last_id if last_id is not None else query.get("after", "0"), "after")
        subscription = self.server.followers.subscribe(run_id)
        try:
            self._start_stream()
            written = after
            while True:  # the backlog: what the page has not seen, up to now
                backlog = store.events_json(run_id, after_seq=written, limit=BACKLOG_BATCH)
                if not backlog:
                    break
                self.wfile.write(views.event_message(backlog))
                written = backlog[-1][0]
                if len(backlog) < BACKLOG_BATCH or written >= subscription.start_seq:
                    break
            self._follow(subscription, written)
        finally:
            self.server.followers.unsubscribe(subscription)

    def _follow(self, subscription: Any, written: int) -> None:
        quiet = 0.0
        while not self.server.closing.is_set():
            batches = subscription.take(timeout=1.0)
            if batches is None:
                return
            for batch in batches:
                if batch.events[0][0] > written:  # all new: the bytes every page gets
                    self.wfile.write(batch.message)
                else:  # the first batch may repeat the end of the backlog
                    fresh = [event for event in batch.events if event[0] > written]
                    if fresh:
                        self.wfile.write(views.event_message(fresh))
                written, quiet = max(written, batch.events[-1][0]), 0.0
            if batches:
                continue
            quiet += 1.0
            if quiet >= KEEP_ALIVE_SECONDS:
                self.wfile.write(b": keep-alive\n\n")
                quiet = 0.0
            elif self._client_gone():
                return

    def _client_gone(self) -> bool:
        """Return whether the client closed its end (a page closed mid-stream)."""
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _start_stream(self) -> None:
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        for name, value in {
            **SECURITY_HEADERS,
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "Connection": "close",
            "X-Accel-Buffering": "no",
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"retry: 1000\n\n")

    # -- answering --------------------------------------------------------------------------

    def _send_json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, views.encode_json(value), JSON_TYPE)

    def _send_error(
        self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        line = " ".join(message.split())
        self._send(status, views.encode_json({"error": line}), JSON_TYPE, headers)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if content_type in ("text/plain", "text/html"):
            content_type += "; charset=utf-8"
        self.send_response(status)
        for name, value in {
            **SECURITY_HEADERS,
            "Content-Type": content_type,
            "Cache-Control": "no-store",
            **(headers or {}),
            "Content-Length": str(len(body)),
        }.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def with_token(page: str, token: str | None) -> str:
    """Return index.html with the session's token in its ``orchestra-token`` meta tag
    (added to its head if it has none), for its script's requests."""
    meta = f'<meta name="orchestra-token" content="{html.escape(token or "", quote=True)}">'
    if _META_TOKEN.search(page):
        return _META_TOKEN.sub(lambda _: meta, page, count=1)
    head = _HEAD.search(page)
    if head is None:
        return meta + page
    return page[: head.end()] + meta + page[head.end() :]


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def _query(query: str) -> dict[str, str]:
    """Return a URL's query as {name: value} (the last of a repeated name)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=20)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the query cannot be read") from None
    values = dict(pairs)
    if any(_CONTROL.search(value) or len(value) > 4096 for value in values.values()):
        raise HttpError(HTTPStatus.BAD_REQUEST, "a query value holds a control character")
    return values


def _number(text: str, what: str, allow: tuple[int, ...] = ()) -> int:
    """Return ``text`` as a whole number ≥ 0 (or one of ``allow``); raise a 400."""
    stripped = text.removeprefix("-")
    if stripped.isascii() and stripped.isdigit() and len(stripped) <= 15:
        value = int(text)
        if value >= 0 or value in allow:
            return value
    raise HttpError(HTTPStatus.BAD_REQUEST, f"the {what} must be a whole number")
