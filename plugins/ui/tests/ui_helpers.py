"""Helpers of the HTTP-level tests of orchestra-ui: projects with real runs, a real
``orchestra ui`` (or its server in this process) to talk to over 127.0.0.1, and the
processes a test starts, stopped by their ids afterwards."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import select
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orchestra
from orchestra.testing import run_orchestra, start_orchestra, wait_for

#: what `orchestra ui` prints first; the tests parse the URL out of it
SERVING_LINE = re.compile(
    r"^orchestra ui: serving (?P<db>.+) at (?P<url>http://(?P<host>[^/]+)/(\?token=(?P<token>\S+))?)"
    r" \(Ctrl-C to stop\)$"
)


# -- projects and runs ---------------------------------------------------------------------


def make_project(directory: Path, workstream: str, name: str = "ws.toml") -> Path:
    """Write a project (no git, attempts not sandboxed) with one workstream file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "orchestra.toml").write_text('sandbox = "none"\n')
    (directory / name).write_text(workstream)
    return directory


def finished_run(project: Path, name: str = "ws.toml", env: Mapping[str, str] | None = None) -> str:
    """Run the workstream with the real ``orchestra run`` to its end; return the run id."""
    ran = run_orchestra("run", "--json", name, cwd=project, env=env)
    assert ran.returncode in (0, 1), ran.stderr
    return json.loads(ran.stdout)["run"]


def database(project: Path) -> Path:
    return project / ".orchestra" / "orchestra.db"


def run_state(project: Path, run_id: str) -> str:
    """The run's state as the database holds it now (as ``orchestra runs`` sees it)."""
    with orchestra.open_run_database(database(project)) as store:
        return store.run(run_id).state.value


def newest_run(project: Path) -> str | None:
    if not database(project).exists():
        return None
    with orchestra.open_run_database(database(project)) as store:
        runs = store.runs(limit=1)
    return runs[0].id if runs else None


def started_run(project: Path, process: subprocess.Popen[str]) -> str:
    """Return the id of the run ``process`` (an ``orchestra run``) started, once it is in
    the database (the run its pid drives, whatever other runs the project has); fail with
    what it printed if it ended first."""

    def driven() -> str | None:
        if database(project).exists():
            with orchestra.open_run_database(database(project)) as store:
                for run in store.runs():
                    if run.owner_pid == process.pid:
                        return run.id
        if process.poll() is not None:
            raise AssertionError(
                f"orchestra run ended before it was found: {process.communicate()}"
            )
        return None

    return wait_for(driven, what="the run in the database")


def sleeper(seconds: int = 60) -> tuple[str, str]:
    """Return (a sleep command no other process has, its marker), so that what a test
    leaves sleeping is found and stopped by ``stop_marked``."""
    marker = f"{seconds}.{random.randrange(10**11, 10**12)}"
    return f"sleep {marker}", marker


def stop_marked(*markers: str) -> None:
    """SIGKILL the processes whose command line holds one of ``markers``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            arguments = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker.encode() in argument for argument in arguments for marker in markers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)


# -- talking HTTP --------------------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP answer: status, headers (names lower-case) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Ui:
    """A serving ``orchestra ui``: where it is and the token it printed."""

    port: int
    token: str | None
    process: subprocess.Popen[str] | None = None
    db: str = ""
    url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        auth: str | None = "header",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        """Send one request; ``auth`` is how the token goes: "header", "cookie" or None."""
        sent = {"Host": self.host, **self._auth(auth), **(headers or {})}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in sent.items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return Answer(
                response.status,
                {name.lower(): value for name, value in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def get(self, path: str, **options: Any) -> Answer:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> Answer:
        return self.request("POST", path, **options)

    def stream(self, path: str, headers: Mapping[str, str] | None = None) -> EventStream:
        """Open an event stream (the token as cookie, as the browser's EventSource sends it)."""
        return EventStream(self, path, {**self._auth("cookie"), **(headers or {})})

    def _auth(self, auth: str | None) -> dict[str, str]:
        if auth is None or self.token is None:
            return {}
        if auth == "cookie":
            return {"Cookie": f"orchestra_ui_token_{self.port}={self.token}"}
        return {"X-Orchestra-Token": self.token}


class EventStream:
    """A server-sent event stream read message by message."""

    def __init__(self, ui: Ui, path: str, headers: Mapping[str, str]) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=30)
        self.connection.connect()
        #: kept: the connection hands its socket to the response of a stream
        self.socket = self.connection.sock
        self.connection.request("GET", path, headers={"Host": ui.host, **headers})
        self.response = self.connection.getresponse()
        self.headers = {name.lower(): value for name, value in self.response.getheaders()}
        self.status = self.response.status
        #: whether the server ended the stream
        self.ended = False

    def messages(self, timeout: float = 20.0) -> Iterator[dict[str, str]]:
        """Yield each message ({"id", "event", "data"} or {"comment"}) until ``timeout``
        passes without one finishing; stop at the end of the stream."""
        message: dict[str, str] = {}
        while True:
            line = self._line(timeout)
            if line is None:
                return
            if line == "":
                if message:
                    yield message
                message = {}
            elif line.startswith(":"):
                yield {"comment": line[1:].strip()}
            else:
                name, _, value = line.partition(":")
                message[name] = value.removeprefix(" ")

    def events(self, timeout: float = 20.0) -> Iterator[dict[str, Any]]:
        """Yield each event object the stream carries (a batch's one by one)."""
        for message in self.messages(timeout):
            if "data" not in message:
                continue
            data = json.loads(message["data"])
            yield from data if message.get("event") == "batch" else [data]

    def _line(self, timeout: float) -> str | None:
        self.socket.settimeout(timeout)
        try:
            raw = self.response.fp.readline()
        except (TimeoutError, OSError):
            return None
        if not raw:
            self.ended = True
            return None
        return raw.decode("utf-8").rstrip("\r\n")

    def close(self) -> None:
        self.response.close()
        self.socket.close()


# -- starting the server -------------------------------------------------------------------


def start_ui(
    project: Path, *arguments: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> Ui:
    """Start the real ``orchestra ui`` in ``project`` and return it once it has printed
    its line (or fail with what it printed on stderr)."""
    process = start_orchestra("ui", *arguments, cwd=project, env=env)
    line = _first_line(process, timeout)
    match = SERVING_LINE.match(line or "")
    if match is None:
        process.kill()
        _, stderr = process.communicate(timeout=10)
        raise AssertionError(f"orchestra ui printed {line!r}; stderr: {stderr}")
    port = int(match["host"].rsplit(":", 1)[1])
    return Ui(port, match["token"], process, db=match["db"], url=match["url"])


def _first_line(process: subprocess.Popen[str], timeout: float) -> str | None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline().rstrip("\n") if ready else None


def stop_ui(ui: Ui, timeout: float = 10) -> int:
    """SIGTERM the ``orchestra ui`` and return its exit status."""
    assert ui.process is not None
    if ui.process.poll() is None:
        ui.process.send_signal(signal.SIGTERM)
    try:
        return ui.process.wait(timeout)
    finally:
        if ui.process.poll() is None:
            ui.process.kill()
        ui.process.communicate()


@contextlib.contextmanager
def running_ui(project: Path, *arguments: str, **options: Any) -> Iterator[Ui]:
    ui = start_ui(project, *arguments, **options)
    try:
        yield ui
    finally:
        stop_ui(ui)


@contextlib.contextmanager
def server_in_process(project: Path, token: str | None = "test-token") -> Iterator[Ui]:
    """Serve ``project``'s database from this process (its threads can be counted);
    the working directory must be the project."""
    from orchestra_ui.server import UiServer

    path = database(project)
    store = orchestra.open_run_database(path)
    server = UiServer(path, store, "127.0.0.1", 0, token, workdir=project)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    serving.start()
    try:
        yield Ui(server.port, token, extra={"server": server})
    finally:
        server.close()
        serving.join()
        store.close()


def follow_threads(run_id: str | None = None) -> list[threading.Thread]:
    """The poller threads of this process (of ``run_id`` only, if given)."""
    prefix = "orchestra-ui-follow-" + (run_id or "")
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefix)]
