"""`orchestra ui` over HTTP: the command line, the JSON of runs, a run, a task and a log,
live events from one poller per run, cancel and resume, each against real `orchestra run`
processes writing to a real database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading

import pytest
from ui_helpers import (
    database,
    finished_run,
    follow_threads,
    make_project,
    run_state,
    running_ui,
    server_in_process,
    sleeper,
    start_ui,
    started_run,
    stop_marked,
    stop_ui,
)

import orchestra
from orchestra.testing import make_git_repo, run_orchestra, start_orchestra, wait_for

SERVED = """
id = "served"
title = "served workstream"

[[tasks]]
id = "say"
title = "say something"
command = "echo said-by-say; echo second line"
shell = true

[[tasks]]
id = "checked"
depends_on = ["say"]
command = "echo attempting"
shell = true
max_attempts = 2
checks = [{ command = "echo the-check-says-fix-it; exit 1", shell = true }]

[[tasks]]
id = "never"
depends_on = ["checked"]
command = ["true"]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A project with one finished (failed) run, and an `orchestra ui` serving it."""
    project = make_project(tmp_path_factory.mktemp("served"), SERVED)
    run_id = finished_run(project)
    ui = start_ui(project)
    yield project, run_id, ui
    assert stop_ui(ui) == 0


# -- the command line ----------------------------------------------------------------------


def test_the_command_prints_where_it_serves_with_a_token(served):
    project, _, ui = served
    assert ui.db == str(database(project))
    assert ui.url == f"http://127.0.0.1:{ui.port}/?token={ui.token}"
    assert len(ui.token) >= 32


def test_mistakes_on_the_command_line_are_one_line_and_exit_2(tmp_path, served):
    project, _, ui = served
    cases = [
        (tmp_path, (), "error: no run database at"),  # nothing has run here
        (
            project,
            ("--host", "0.0.0.0", "--no-token"),
            "orchestra ui: --host 0.0.0.0 is not a loopback address: a token is required"
            " there (drop --no-token)",
        ),
        (project, ("--token", "abc", "--no-token"), "orchestra ui: --token and --no-token"),
        (project, ("--port", str(ui.port)), "orchestra ui: cannot listen on 127.0.0.1:"),
    ]
    for where, arguments, said in cases:
        ran = run_orchestra("ui", *arguments, cwd=where, timeout=30)
        assert ran.returncode == 2, ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
        assert ran.stderr.startswith(said), ran.stderr
        assert ran.stdout == ""
    assert not (tmp_path / ".orchestra").exists()  # a missing database is not made


def test_without_a_token_on_loopback_reads_need_none(served):
    project, run_id, _ = served
    with running_ui(project, "--no-token") as ui:
        assert ui.token is None and ui.url == f"http://127.0.0.1:{ui.port}/"
        assert ui.get("/api/runs", auth=None).status == 200
        page = ui.get("/", auth=None)
        assert page.status == 200 and b'name="orchestra-token" content=""' in page.body
        forged = ui.post(
            f"/api/runs/{run_id}/cancel", auth=None, headers={"Origin": "http://evil.example"}
        )
        assert forged.status == 403  # no token, but still not from another site


# -- what the page reads -------------------------------------------------------------------


def test_the_runs_newest_first_with_their_progress(served):
    _, run_id, ui = served
    answer = ui.get("/api/runs")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    (run,) = answer.json()["runs"]
    assert run["id"] == run_id and run["state"] == "failed" and run["workstream"] == "served"
    assert run["tasks"] == 3 and run["done"] == 3
    # the check fails the same way twice: the loop breaker quarantines the task
    assert run["counts"] == {"succeeded": 1, "quarantined": 1, "skipped": 1}
    assert run["seconds"] > 0 and run["ended_at"] >= run["started_at"]
    assert run["file"].endswith("ws.toml") and run["tokens"] == 0
    assert ui.get("/api/runs?state=failed").json()["runs"] == [run]
    assert ui.get("/api/runs?state=succeeded").json() == {"runs": []}
    bad = ui.get("/api/runs?state=exploded")
    assert bad.status == 400 and "exploded" in bad.json()["error"]


def test_a_run_its_graph_tasks_and_timeline(served):
    project, run_id, ui = served
    view = ui.get(f"/api/runs/{run_id}").json()
    assert view["run"]["id"] == run_id and view["run"]["counts"]["quarantined"] == 1
    assert view["waves"] == [["say"], ["checked"], ["never"]]
    assert view["graph_note"] is None
    assert view["budget"] == {"tokens": None, "cost_usd": None}
    rows = {row["id"]: row for row in view["tasks"]}
    assert [row["id"] for row in view["tasks"]] == ["say", "checked", "never"]
    assert rows["say"]["title"] == "say something" and rows["say"]["tool"] == "shell"
    assert rows["checked"]["depends_on"] == ["say"] and rows["checked"]["attempts"] == 2
    assert rows["checked"]["route_reason"]
    assert rows["never"]["state"] == "skipped" and rows["never"]["attempts"] == 0
    bars = view["attempts"]
    assert [(bar["task"], bar["number"]) for bar in bars] == [
        ("say", 1),
        ("checked", 1),
        ("checked", 2),
    ]
    assert view["lanes"] == 1 and {bar["lane"] for bar in bars} == {0}
    assert [bar["outcome"] for bar in bars] == ["succeeded", "failed", "failed"]
    with orchestra.open_run_database(database(project)) as store:
        assert view["last_seq"] == store.last_event_seq(run_id)


def test_a_task_its_attempts_checks_feedback_and_log(served):
    _, run_id, ui = served
    view = ui.get(f"/api/runs/{run_id}/tasks/checked").json()
    assert view["run"] == run_id
    task = view["task"]
    assert task["state"] == "quarantined" and "2 times in a row" in task["reason"]
    assert task["checks"] == ["echo the-check-says-fix-it; exit 1"]
    assert any("the-check-says-fix-it" in line for line in task["log_tail"])
    first, second = view["attempts"]
    assert (first["number"], second["number"]) == (1, 2)
    assert first["outcome"] == "failed" and first["error_class"] == "check_failed"
    assert "the-check-says-fix-it" in (first["feedback"] or "")
    assert first["landed"] == "none" and first["refused_why"] is None
    assert first["has_log"] and first["seconds"] >= 0 and first["tool"] == "shell"
    assert first["files"] == [] and first["diff"] is None

    say = ui.get(f"/api/runs/{run_id}/tasks/say/attempts/1/log").json()
    assert "said-by-say\nsecond line\n" in say["text"]
    assert say["ended"] is True and say["offset"] == say["size"] == len(say["text"].encode())
    rest = ui.get(f"/api/runs/{run_id}/tasks/say/attempts/1/log?offset={say['offset']}").json()
    assert rest["text"] == "" and rest["offset"] == say["size"]
    middle = ui.get(f"/api/runs/{run_id}/tasks/say/attempts/1/log?offset=5").json()
    assert middle["text"] == say["text"][5:]
    end = ui.get(f"/api/runs/{run_id}/tasks/say/attempts/1/log?offset=-1").json()
    assert end["text"] == say["text"]  # shorter than the last 64 KiB: all of it


def test_a_long_log_in_pieces_keeps_its_characters_whole(tmp_path):
    make_project(
        tmp_path,
        'id = "long-log"\n\n[[tasks]]\nid = "talk"\n'
        'command = ["python3", "-c", "print(\'x\' + chr(233) * 200000)"]\n',
    )
    run_id = finished_run(tmp_path)
    with running_ui(tmp_path) as ui:
        log = f"/api/runs/{run_id}/tasks/talk/attempts/1/log"
        pieces, offset = [], 0
        while True:
            piece = ui.get(f"{log}?offset={offset}").json()
            pieces.append(piece["text"])
            if piece["offset"] == offset:
                break
            assert piece["offset"] - offset <= 256 * 1024
            offset = piece["offset"]
        end = ui.get(f"{log}?offset=-1").json()
    text = "".join(pieces)
    assert offset == piece["size"] and len(pieces) > 2  # read in pieces, to its end
    assert text.count("\u00e9") == 200000 and "\ufffd" not in text
    assert end["offset"] == piece["size"] and "\ufffd" not in end["text"]
    assert 64 * 1024 - 4 < len(end["text"].encode()) <= 64 * 1024


def test_unknown_runs_tasks_and_attempts_are_404(served):
    _, run_id, ui = served
    for path in (
        "/api/runs/20000101-000000-abcd",
        f"/api/runs/{run_id}/tasks/nope",
        f"/api/runs/{run_id}/tasks/say/attempts/7/log",
        "/api/runs/20000101-000000-abcd/events",
        "/api/nothing",
    ):
        answer = ui.get(path)
        assert answer.status == 404, path
        assert answer.json()["error"]


def test_a_change_its_files_and_what_landed(tmp_path):
    project = make_git_repo(tmp_path / "repo", {"README.md": "hello\n", "old.txt": "old\n"})
    (project / "orchestra.toml").write_text('sandbox = "none"\n')
    (project / "ws.toml").write_text(
        'id = "changes"\n\n[[tasks]]\nid = "write"\nshell = true\n'
        "command = \"echo 'print(1)' > new.py; echo more >> README.md; git rm -q old.txt\"\n"
        'files = { create = ["new.py"], write = ["README.md", "old.txt"] }\n'
    )
    subprocess.run(["git", "add", "ws.toml", "orchestra.toml"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "workstream"], cwd=project, check=True)
    run_id = finished_run(project)
    with running_ui(project) as ui:
        (attempt,) = ui.get(f"/api/runs/{run_id}/tasks/write").json()["attempts"]
    assert attempt["landed"] == "merged"
    assert "+print(1)" in attempt["diff"]
    files = {change["path"]: change for change in attempt["files"]}
    assert files["new.py"] == {"path": "new.py", "status": "added", "added": 1, "removed": 0}
    assert files["README.md"]["status"] == "modified" and files["README.md"]["added"] == 1
    assert files["old.txt"]["status"] == "deleted" and files["old.txt"]["removed"] == 1


# -- following a run live ------------------------------------------------------------------

GATED = """
id = "gated"

[[tasks]]
id = "gate"
command = "while [ ! -e {flag} ]; do sleep 0.05; done; echo through"
shell = true

[[tasks]]
id = "after"
depends_on = ["gate"]
command = "echo after"
shell = true
"""


def start_gated_run(project):
    """Start a run whose first task waits for a flag file; return (the process, the run
    id, the flag) once that task is running."""
    flag = project / "go.flag"
    make_project(project, GATED.replace("{flag}", str(flag)))
    process = start_orchestra("run", "--plain", "ws.toml", cwd=project, new_session=True)
    run_id = started_run(project, process)
    with orchestra.open_run_database(database(project)) as store:
        wait_for(lambda: store.step(run_id, "gate").state.value == "running", what="gate runs")
    return process, run_id, flag


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_twenty_pages_follow_a_run_through_one_poller(tmp_path, monkeypatch):
    process, run_id, flag = start_gated_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = threading.active_count()
    try:
        with server_in_process(tmp_path) as ui:
            after = ui.get(f"/api/runs/{run_id}").json()["last_seq"]
            streams = [ui.stream(f"/api/runs/{run_id}/events?after={after}") for _ in range(20)]
            assert {stream.status for stream in streams} == {200}
            assert streams[0].headers["content-type"] == "text/event-stream; charset=utf-8"
            assert len(follow_threads(run_id)) == 1  # one poller for twenty pages
            assert ui.extra["server"].followers.followed() == {run_id: 20}
            flag.touch()
            for stream in streams:
                seen = []
                for event in stream.events():
                    assert event["seq"] > after
                    seen.append((event["type"], event["task_id"]))
                    if event["type"] == "run.succeeded":
                        break
                assert ("step.succeeded", "gate") in seen and ("step.succeeded", "after") in seen
            for stream in streams[:-1]:
                stream.close()
            wait_for(lambda: ui.extra["server"].followers.followed() == {run_id: 1})
            assert len(follow_threads(run_id)) == 1
            streams[-1].close()  # the last page leaves: its poller stops
            wait_for(lambda: not follow_threads(run_id), what="the poller stopping")
            wait_for(lambda: threading.active_count() <= before + 1, what="threads ending")
    finally:
        flag.touch()
        process.communicate(timeout=30)


def test_a_stream_sends_what_was_missed_then_stays_open(served):
    _, run_id, ui = served
    stream = ui.stream(f"/api/runs/{run_id}/events?after=0")
    try:
        seqs, types = [], []
        for event in stream.events(timeout=5):
            seqs.append(event["seq"])
            types.append(event["type"])
            assert set(event) == {"seq", "at", "type", "task_id", "attempt", "payload"}
            if event["type"] == "run.failed":
                break
        assert seqs == list(range(1, len(seqs) + 1)) and types[0] == "run.created"
        resumed = ui.stream(
            f"/api/runs/{run_id}/events?after=0", headers={"Last-Event-ID": str(seqs[-2])}
        )
        assert [event["seq"] for event in resumed.events(timeout=2)] == [seqs[-1]]
        resumed.close()
    finally:
        stream.close()


def test_sigterm_stops_the_server_and_ends_its_streams(served):
    project, run_id, _ = served
    ui = start_ui(project)
    stream = ui.stream(f"/api/runs/{run_id}/events")
    next(stream.events(timeout=10))
    ui.process.send_signal(signal.SIGTERM)
    list(stream.messages(timeout=10))
    assert stream.ended  # the server closed the stream, not the test's patience
    assert stop_ui(ui) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ui.port), timeout=2)


# -- actions -------------------------------------------------------------------------------


def test_cancel_a_live_run(tmp_path):
    command, marker = sleeper()
    make_project(
        tmp_path, f'id = "long"\n\n[[tasks]]\nid = "nap"\ncommand = "{command}"\nshell = true\n'
    )
    process = start_orchestra("run", "--plain", "ws.toml", cwd=tmp_path, new_session=True)
    try:
        run_id = started_run(tmp_path, process)
        wait_for(lambda: run_state(tmp_path, run_id) == "running")
        with running_ui(tmp_path) as ui:
            answer = ui.post(f"/api/runs/{run_id}/cancel")
            assert answer.status == 200, answer.text
            assert run_id in answer.json()["message"]
            wait_for(lambda: run_state(tmp_path, run_id) == "canceled", what="canceled")
            again = ui.post(f"/api/runs/{run_id}/cancel")
            assert again.status == 409 and again.json()["error"]
            assert ui.post("/api/runs/20000101-000000-abcd/cancel").status == 404
        process.communicate(timeout=30)
    finally:
        stop_marked(marker)
        if process.poll() is None:
            process.kill()


def test_resume_an_interrupted_run(tmp_path):
    command, marker = sleeper()
    flag = tmp_path / "once.flag"
    make_project(
        tmp_path,
        'id = "resumable"\n\n[[tasks]]\nid = "nap"\nshell = true\n'
        f'command = "if [ -e {flag} ]; then echo second-time; else touch {flag}; {command}; fi"\n'
        '\n[[tasks]]\nid = "then"\ndepends_on = ["nap"]\ncommand = ["true"]\n',
    )
    process = start_orchestra("run", "--plain", "ws.toml", cwd=tmp_path, new_session=True)
    try:
        run_id = started_run(tmp_path, process)
        wait_for(flag.exists, what="the task running")
        with running_ui(tmp_path) as ui:
            refused = ui.post(f"/api/runs/{run_id}/resume")
            assert refused.status == 409 and "running" in refused.json()["error"]
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=30)

            def listed_interrupted() -> bool:
                runs = json.loads(run_orchestra("runs", "--json", cwd=tmp_path).stdout)
                return runs[0]["state"] == "interrupted"

            wait_for(listed_interrupted, what="orchestra runs showing it interrupted")
            answer = ui.post(f"/api/runs/{run_id}/resume")
            assert answer.status == 202, answer.text
            pid = answer.json()["pid"]
            assert answer.json()["message"] == f"resuming run {run_id} (pid {pid})"
            wait_for(lambda: run_state(tmp_path, run_id) == "succeeded", timeout=60)
            log = database(tmp_path).parent / "runs" / run_id / "ui-resume-1.log"
            assert log.exists()
            (_, nap) = ui.get(f"/api/runs/{run_id}/tasks/nap").json()["attempts"]
            assert nap["outcome"] == "succeeded"
            done = ui.post(f"/api/runs/{run_id}/resume")
            assert done.status == 409 and "succeeded" in done.json()["error"]
    finally:
        stop_marked(marker)
        if process.poll() is None:
            process.kill()
