"""The jsonl, webhook and command sinks, and a broken sink plugin, in real runs.

Each test runs the real ``orchestra`` program in a directory that is not a git repository
(tasks run in place), and the webhook tests post to a real HTTP server on 127.0.0.1.
"""

import json
import os
import random
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestra.testing import make_distribution, run_orchestra

#: events only the database has: sinks never see them
DATABASE_ONLY = {"run.created", "run.claimed", "run.interrupted"}

FLAKY_WORKSTREAM = """
id = "flaky"

[defaults]
backoff = { initial = 0.05, factor = 1, max = 0.05, jitter = false }

[[tasks]]
id = "first"
command = ["true"]

[[tasks]]
id = "flaky"
depends_on = ["first"]
shell = true
command = "test -f tried || { touch tried; exit 1; }"
max_attempts = 2

[[tasks]]
id = "broken"
depends_on = ["first"]
command = ["false"]
max_attempts = 1

[[tasks]]
id = "after-broken"
depends_on = ["broken"]
command = ["true"]
"""


def quick_workstream(count: int) -> str:
    tasks = "".join(f'\n[[tasks]]\nid = "t{n}"\ncommand = ["true"]\n' for n in range(count))
    return 'id = "quick"\n' + tasks


def project(tmp_path: Path, workstream: str, config: str = "") -> Path:
    (tmp_path / "ws.toml").write_text(workstream)
    (tmp_path / "orchestra.toml").write_text(config)
    return tmp_path


def run(directory: Path, *sinks: str, **keywords):
    arguments = [part for sink in sinks for part in ("--sink", sink)]
    return run_orchestra("run", "ws.toml", "--quiet", *arguments, cwd=directory, **keywords)


def db_events(directory: Path) -> list[dict]:
    with sqlite3.connect(directory / ".orchestra" / "orchestra.db") as db:
        rows = db.execute("SELECT run_id, type, task_id, payload FROM events ORDER BY run_id, seq")
        return [
            {"run": run, "type": kind, "task": task, "payload": json.loads(payload)}
            for run, kind, task, payload in rows
        ]


def warnings(directory: Path, sink: str) -> list[str]:
    return [
        event["payload"]["message"]
        for event in db_events(directory)
        if event["type"] == "sink.warning" and event["payload"]["sink"] == sink
    ]


def state_changes(events: list[dict]) -> list[tuple[str, str | None]]:
    return [
        (event["type"], event["task"])
        for event in events
        if event["type"].startswith(("run.", "step.")) and event["type"] not in DATABASE_ONLY
    ]


def read_lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a line was left unfinished"
    return [json.loads(line) for line in text.splitlines()]


# -- a real HTTP server ----------------------------------------------------------------------


class Endpoint:
    """An HTTP server on 127.0.0.1 that records each POST and answers as ``behaviour``
    says: "ok" (204), "fail" (500) or "slow" (answers after 30 s)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.received: list[tuple[dict, dict]] = []
        self.released = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.received.append((dict(self.headers), json.loads(body)))
                if endpoint.behaviour == "slow":
                    endpoint.released.wait(30)
                self.send_response(500 if endpoint.behaviour == "fail" else 204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator:
    started: list[Endpoint] = []

    def start(behaviour: str = "ok") -> Endpoint:
        started.append(Endpoint(behaviour))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# -- jsonl -----------------------------------------------------------------------------------


def test_jsonl_has_every_event_in_order_as_the_database_records_them(tmp_path):
    directory = project(tmp_path, FLAKY_WORKSTREAM)
    finished = run(directory, "jsonl")
    assert finished.returncode == 1, finished.stderr
    recorded = db_events(directory)
    run_id = recorded[0]["run"]
    lines = read_lines(directory / ".orchestra" / "runs" / run_id / "events.jsonl")
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert {line["run"] for line in lines} == {run_id}
    assert state_changes(lines) == state_changes(recorded)
    assert ("step.retrying", "flaky") in state_changes(lines)
    assert ("step.skipped", "after-broken") in state_changes(lines)
    assert lines[-1]["type"] == "run.failed" and lines[-1]["payload"]["summary"]


def test_jsonl_lines_can_be_read_while_the_run_goes_on(tmp_path):
    workstream = """
    id = "waits"

    [[tasks]]
    id = "quick"
    command = ["true"]

    [[tasks]]
    id = "waiting"
    depends_on = ["quick"]
    shell = true
    command = "for i in $(seq 200); do test -f go && exit 0; sleep 0.05; done; exit 1"
    """
    config = '[sink.jsonl]\npath = "logs/{run}.jsonl"\n'
    directory = project(tmp_path, workstream.replace("\n    ", "\n"), config)
    outcome: list = []
    runner = threading.Thread(target=lambda: outcome.append(run(directory, "jsonl")))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        seen: list[dict] = []
        while time.monotonic() < deadline and ("step.running", "waiting") not in seen:
            for path in (directory / "logs").glob("*.jsonl"):
                seen = [(line["type"], line["task"]) for line in read_lines(path)]
            time.sleep(0.02)
        assert ("step.running", "waiting") in seen
        assert ("run.succeeded", None) not in seen  # read during the run, not after it
    finally:
        (directory / "go").touch()
        runner.join()
    assert outcome[0].returncode == 0, outcome[0].stderr
    (path,) = (directory / "logs").glob("*.jsonl")
    assert read_lines(path)[-1]["type"] == "run.succeeded"


# -- webhook ---------------------------------------------------------------------------------


def test_webhook_posts_the_chosen_kinds_with_expanded_headers(tmp_path, endpoint):
    server = endpoint("ok")
    config = f"""
    [sink.webhook]
    url = "{server.url}"
    kinds = ["run.*", "step.failed"]
    headers = {{ Authorization = "Bearer $HOOK_TOKEN", X-Team = "build" }}
    """
    directory = project(tmp_path, FLAKY_WORKSTREAM, config.replace("\n    ", "\n"))
    finished = run(directory, "webhook", env={"HOOK_TOKEN": "tok-0123456789"})
    assert finished.returncode == 1, finished.stderr
    kinds = [(body["type"], body["task"]) for _, body in server.received]
    assert kinds == [("run.running", None), ("step.failed", "broken"), ("run.failed", None)]
    headers, body = server.received[-1]
    assert headers["Authorization"] == "Bearer tok-0123456789"
    assert headers["X-Team"] == "build" and headers["Content-Type"] == "application/json"
    assert set(body) == {"run", "type", "task", "at", "payload"}
    assert warnings(directory, "webhook") == []


@pytest.mark.slow  # seconds of real processes: the full suite runs it
@pytest.mark.parametrize(
    ("behaviour", "problem"),
    [("slow", "timed out"), ("fail", "HTTP 500"), ("down", "refused")],
)
def test_a_slow_failing_or_absent_endpoint_does_not_hold_the_run_up(
    tmp_path, endpoint, behaviour, problem
):
    url = closed_port_url() if behaviour == "down" else endpoint(behaviour).url
    config = f'[sink.webhook]\nurl = "{url}"\ntimeout = 0.5\nretries = 2\nqueue_size = 4\n'
    directory = project(tmp_path, quick_workstream(8), config)
    began = time.monotonic()
    finished = run(directory, "webhook")
    took = time.monotonic() - began
    assert finished.returncode == 0, finished.stderr
    # each request would hang 30 s, or fail after 1.5 s of backoff: the run waits for
    # neither, and close() gives up on the queue after 3 × timeout
    assert took < 5, f"the run took {took:.1f}s"
    told = warnings(directory, "webhook")
    assert any(problem in message for message in told), told
    # 8 tasks make 26 events for a queue of 4: the dropped ones are one warning
    dropped = [message for message in told if message.startswith("dropped")]
    assert len(dropped) == 1 and "queue of 4 was full" in dropped[0], told
    assert all(event["type"] != "sink.disabled" for event in db_events(directory))


def test_webhook_options_are_checked_when_the_run_opens_it(tmp_path):
    config = '[sink.webhook]\nurl = "ftp://example.invalid/"\n[sink.jsonl]\npaht = "x.jsonl"\n'
    directory = project(tmp_path, quick_workstream(1), config)
    finished = run(directory, "webhook", "jsonl")
    assert finished.returncode == 0, finished.stderr
    disabled = {
        event["payload"]["sink"]: event["payload"]
        for event in db_events(directory)
        if event["type"] == "sink.disabled"
    }
    assert disabled["webhook"]["plugin"] == "sinks"
    assert disabled["webhook"]["error"] == (
        "ConfigError: field 'sink.webhook.url': expected an http:// or https:// URL,"
        " got 'ftp://example.invalid/'"
    )
    unknown = "field 'sink.jsonl.paht': unknown option (did you mean 'path'?)"
    assert unknown in disabled["jsonl"]["error"]


# -- command ---------------------------------------------------------------------------------

RECORDER = """
import json, os, sys
event = json.load(sys.stdin)
names = ("ORCHESTRA_RUN_ID", "ORCHESTRA_EVENT", "ORCHESTRA_TASK_ID", "PATH", "DEPLOY", "OTHER")
with open("notified.jsonl", "a") as out:
    out.write(json.dumps({"event": event, "env": {n: os.environ.get(n) for n in names}}) + "\\n")
"""


def test_command_gets_the_event_on_stdin_and_its_variables(tmp_path):
    (tmp_path / "recorder.py").write_text(RECORDER)
    config = f"""
    [sink.command]
    command = [{json.dumps(sys.executable)}, "recorder.py"]
    kinds = ["run.*", "step.failed"]
    pass_env = ["DEPLOY"]
    """
    directory = project(tmp_path, FLAKY_WORKSTREAM, config.replace("\n    ", "\n"))
    finished = run(directory, "command", env={"DEPLOY": "staging", "OTHER": "hidden"})
    assert finished.returncode == 1, finished.stderr
    notified = read_lines(directory / "notified.jsonl")
    assert [(n["event"]["type"], n["event"]["task"]) for n in notified] == [
        ("run.running", None),
        ("step.failed", "broken"),
        ("run.failed", None),
    ]
    run_id = notified[0]["event"]["run"]
    for note in notified:
        env = note["env"]
        assert env["ORCHESTRA_RUN_ID"] == run_id
        assert env["ORCHESTRA_EVENT"] == note["event"]["type"]
        assert env["ORCHESTRA_TASK_ID"] == (note["event"]["task"] or "")
        assert env["PATH"] and env["DEPLOY"] == "staging" and env["OTHER"] is None
    assert warnings(directory, "command") == []


def test_a_command_that_hangs_is_killed_and_becomes_a_warning(tmp_path):
    config = '[sink.command]\nshell = true\ncommand = "sleep 30"\ntimeout = 0.5\n'
    directory = project(tmp_path, quick_workstream(2), config)
    began = time.monotonic()
    finished = run(directory, "command")
    assert finished.returncode == 0, finished.stderr
    assert time.monotonic() - began < 5
    assert warnings(directory, "command") == [
        "command for run.succeeded killed after 0.5s: sleep 30;"
        " further failures are counted until one works"
    ]


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_the_command_still_running_when_the_run_ends_is_stopped(tmp_path):
    # a command per event, each taking its whole timeout: the queue cannot drain in the
    # three timeouts close() waits, and the command under way then must not outlive the run
    marker = f"300.{random.randrange(10**11, 10**12)}"
    config = (
        f'[sink.command]\nshell = true\ncommand = "sleep {marker}"\nkinds = ["*"]\ntimeout = 1\n'
    )
    directory = project(tmp_path, quick_workstream(3), config)
    try:
        finished = run(directory, "command")
        assert finished.returncode == 0, finished.stderr
        assert running_with(marker) == []
    finally:
        for pid in running_with(marker):
            os.kill(pid, signal.SIGKILL)
    assert any(
        message.startswith("gave up after waiting 3s") for message in warnings(directory, "command")
    )


def running_with(marker: str) -> list[int]:
    """The running processes (not zombies) with ``marker`` in their command line."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if marker.encode() in command and stat[stat.rindex(")") + 2] not in "ZX":
            found.append(int(entry))
    return found


# -- a broken sink plugin --------------------------------------------------------------------

BROKEN_SINK = """
import orchestra


class Broken:
    name = "broken"

    def emit(self, event):
        if event["type"] == "step.running":
            raise RuntimeError("the broken sink broke")

    def close(self):
        pass


@orchestra.hookimpl
def orchestra_register_sinks(register):
    register(Broken())
"""


def test_a_sink_that_raises_is_disabled_and_the_run_goes_on(tmp_path):
    plugins = make_distribution(
        tmp_path / "site",
        "orchestra-broken",
        {"orchestra_broken": BROKEN_SINK},
        {"broken-sink": "orchestra_broken"},
    )
    (tmp_path / "project").mkdir()
    directory = project(tmp_path / "project", FLAKY_WORKSTREAM)
    finished = run(directory, "broken", "jsonl", extra_path=[plugins])
    assert finished.returncode == 1, finished.stderr
    recorded = db_events(directory)
    disabled = [event["payload"] for event in recorded if event["type"] == "sink.disabled"]
    assert disabled == [
        {
            "sink": "broken",
            "plugin": "broken-sink",
            "error": "RuntimeError: the broken sink broke",
        }
    ]
    lines = read_lines(directory / ".orchestra" / "runs" / recorded[0]["run"] / "events.jsonl")
    assert state_changes(lines) == state_changes(recorded)


def test_one_sink_object_serves_run_after_run(tmp_path, endpoint):
    """A process that drives several runs opens the same sink objects again: each open
    starts afresh (a new file and numbering, a new delivery thread)."""
    from orchestra.builtin.sinks import JsonlSink, WebhookSink
    from orchestra.models import SinkContext

    server = endpoint("ok")
    jsonl, webhook = JsonlSink(), WebhookSink()
    told: list[str] = []
    for run_id in ("run-1", "run-2"):
        options = {"jsonl": {"path": "{run}.jsonl"}, "webhook": {"url": server.url}}
        for sink in (jsonl, webhook):
            sink.open(
                SinkContext(run_id, options[sink.name], str(tmp_path), str(tmp_path), told.append)
            )
        for kind in ("run.running", "run.succeeded"):
            event = {"run": run_id, "type": kind, "task": None, "at": 0.0, "payload": {}}
            jsonl.emit(event)
            webhook.emit(event)
        jsonl.close()
        webhook.close()
    for run_id in ("run-1", "run-2"):
        lines = read_lines(tmp_path / f"{run_id}.jsonl")
        assert [(line["seq"], line["run"]) for line in lines] == [(1, run_id), (2, run_id)]
    assert [body["run"] for _, body in server.received] == ["run-1"] * 2 + ["run-2"] * 2
    assert told == []
