"""The recorded runs through ``import orchestra`` alone, as a plugin such as orchestra-ui
reads them: the same database, the same facts and the same cancel as the commands."""

import json
import subprocess
import sys

import pytest

import orchestra
from orchestra.testing import run_orchestra

WORKSTREAM = """
id = "recorded"

[[tasks]]
id = "say"
command = "echo said-by-say"
shell = true

[[tasks]]
id = "after"
depends_on = ["say"]
command = "echo boom; exit 4"
shell = true
max_attempts = 1

[[tasks]]
id = "never"
depends_on = ["after"]
command = ["true"]
"""


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A project with one finished run (one task succeeded, one failed, one skipped);
    the working directory is the project."""
    (tmp_path / "work.toml").write_text(WORKSTREAM)
    finished = run_orchestra("run", "--json", "work.toml", cwd=tmp_path)
    assert finished.returncode == 1, finished.stderr
    monkeypatch.chdir(tmp_path)
    return tmp_path, json.loads(finished.stdout)["run"]


def test_the_database_is_the_one_the_commands_use(recorded):
    project, run_id = recorded
    path = orchestra.run_database_path()
    assert path == project / ".orchestra" / "orchestra.db"
    assert orchestra.run_database_path("elsewhere.db") == project / "elsewhere.db"
    with orchestra.open_run_database(path) as store:
        assert [run.id for run in store.runs()] == [run_id]


def test_a_missing_database_is_an_error_and_is_not_made(tmp_path):
    missing = tmp_path / "none.db"
    with pytest.raises(orchestra.OrchestraError, match="no run database at"):
        orchestra.open_run_database(missing)
    assert not missing.exists()


def test_counts_and_usage_of_many_runs_in_one_read(recorded):
    _, run_id = recorded
    with orchestra.open_run_database(orchestra.run_database_path()) as store:
        counts = store.step_counts()
        assert counts == {run_id: {"succeeded": 1, "failed": 1, "skipped": 1}}
        assert store.step_counts([run_id]) == counts
        assert store.step_counts(["no-such-run"]) == {}
        assert store.usage_by_run() == {run_id: (0, 0.0)}


def test_the_facts_are_the_reports(recorded):
    project, run_id = recorded
    with orchestra.open_run_database(orchestra.run_database_path()) as store:
        facts = orchestra.gather_run(store, run_id)
        light = orchestra.gather_run(store, run_id, logs=False)
        with pytest.raises(orchestra.UnknownRun):
            orchestra.gather_run(store, "no-such-run")
    assert isinstance(facts, orchestra.RunFacts)
    assert [task.state for task in facts.tasks] == ["succeeded", "failed", "skipped"]
    assert facts.waves == (("say",), ("after",), ("never",))
    say = facts.tasks[0]
    assert any("said-by-say" in line for line in say.log_tail)
    assert all(task.log_tail == () for task in light.tasks)
    assert [task.attempts for task in light.tasks] == [task.attempts for task in facts.tasks]
    report = json.loads(run_orchestra("report", run_id, "--format", "json", cwd=project).stdout)
    assert report["tasks_by_state"] == facts.tasks_by_state


def test_cancel_says_what_the_command_says(recorded):
    project, run_id = recorded
    with orchestra.open_run_database(orchestra.run_database_path()) as store:
        with pytest.raises(orchestra.OrchestraError) as raised:
            orchestra.request_cancel(store, run_id)
    command = run_orchestra("cancel", run_id, cwd=project)
    assert command.returncode == 2
    assert str(raised.value) in command.stderr


def test_the_end_of_a_log(tmp_path):
    log = tmp_path / "attempt.log"
    log.write_text("".join(f"line {number}\n" for number in range(1000)))
    assert orchestra.tail_lines(log, 2) == ("line 998", "line 999")
    assert orchestra.tail_lines(tmp_path / "missing.log", 2) == ()


def test_python_dash_m_orchestra_is_the_command(tmp_path):
    ran = subprocess.run(
        [sys.executable, "-m", "orchestra", "validate", "work.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2
    assert "work.toml" in ran.stderr and "Traceback" not in ran.stderr


def test_events_as_json_are_the_events(recorded):
    """What a page's event stream forwards unread is what ``events`` decodes."""
    _, run_id = recorded
    with orchestra.open_run_database(orchestra.run_database_path()) as store:
        decoded = store.events(run_id)
        forwarded = store.events_json(run_id)
        assert store.events_json(run_id, after_seq=3, limit=2) == forwarded[3:5]
    assert [(seq, kind) for seq, kind, _ in forwarded] == [(e.seq, e.type) for e in decoded]
    for (_, _, text), event in zip(forwarded, decoded, strict=True):
        assert json.loads(text) == {
            "seq": event.seq,
            "at": pytest.approx(event.at, abs=1e-3),
            "type": event.type,
            "task_id": event.task_id,
            "attempt": event.attempt,
            "payload": dict(event.payload),
        }
