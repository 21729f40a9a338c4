"""What a tool adapter gets from the host while it runs an attempt: progress events, a
scratch directory, a state directory, the attempt's identity in the environment, and a
check's own timeout. In-process runs through the real run loop, store and processes."""

import json
import sqlite3
import threading
from pathlib import Path

from orchestra.config import find_project
from orchestra.engine.runs import start_run
from orchestra.models import Availability, StepResult
from orchestra.planning import load_checked
from orchestra.plugin.markers import hookimpl


class RecordingTool:
    """Runs a command through the context, emits progress, notes the directories it got."""

    name = "recording"
    capabilities = frozenset({"prompt"})

    def __init__(self) -> None:
        self.scratch: list[Path] = []
        self.state: list[Path] = []

    def available(self, profile):
        return Availability(True, version="4.2.0", path="/usr/bin/recording")

    def execute(self, request, ctx):
        scratch, state = ctx.scratch_dir, ctx.state_dir
        (scratch / "note.txt").write_text("private")
        self.scratch.append(scratch)
        self.state.append(state)
        lines: list[str] = []
        finished = ctx.run(
            ["/bin/sh", "-c", 'echo "run=$ORCHESTRA_RUN_ID task=$ORCHESTRA_TASK_ID"'],
            on_line=lines.append,
        )
        ctx.emit("progress", {"said": lines, "token": "sk-secret-value-123"})
        outcome = "succeeded" if finished.exit_code == 0 else "failed"
        return StepResult(outcome, exit_code=finished.exit_code)


class Plugin:
    def __init__(self, tool) -> None:
        self.tool = tool

    @hookimpl
    def orchestra_register_tools(self, register) -> None:
        register(self.tool)


def run_in(project: Path, text: str, plugin_host, register_plugin, monkeypatch, **flags):
    (project / "ws.toml").write_text(text)
    monkeypatch.chdir(project)
    monkeypatch.setenv("TEST_API_TOKEN", "sk-secret-value-123")
    tool = RecordingTool()
    register_plugin(Plugin(tool), name="recording")
    found = find_project(project)
    workstream, settings = load_checked(str(project / "ws.toml"), found, plugin_host, flags)
    outcome = start_run(
        str(project / "ws.toml"),
        workstream,
        settings,
        found,
        plugin_host,
        sinks=[],
        cancel=threading.Event(),
    )
    database = sqlite3.connect(project / ".orchestra" / "orchestra.db")
    database.row_factory = sqlite3.Row
    return tool, outcome, database


def test_an_adapter_reports_progress_and_gets_private_directories(
    tmp_path, plugin_host, register_plugin, monkeypatch
):
    (tmp_path / "orchestra.toml").write_text('[tools.recording]\npass_env = ["TEST_API_TOKEN"]\n')
    tool, outcome, db = run_in(
        tmp_path,
        'id = "w"\n[[tasks]]\nid = "edit"\nprompt = "do it"\ntool = "recording"\n',
        plugin_host,
        register_plugin,
        monkeypatch,
    )

    assert outcome.state == "succeeded"
    (event,) = db.execute("SELECT * FROM events WHERE type = 'tool.progress'").fetchall()
    payload = json.loads(event["payload"])
    assert (event["task_id"], event["attempt"]) == ("edit", 1)
    assert payload == {"said": [f"run={outcome.run_id} task=edit"], "token": "***"}
    # the scratch directory is gone after the attempt; the state directory stays, per tool
    assert tool.scratch and not tool.scratch[0].exists()
    assert tool.state == [tmp_path / ".orchestra" / "tools" / "recording"]
    assert tool.state[0].is_dir()
    (attempt,) = db.execute("SELECT * FROM attempts").fetchall()
    assert attempt["tool_version"] == "4.2.0"
    assert "sk-secret-value-123" not in (tmp_path / ".orchestra" / "orchestra.db").read_text(
        errors="replace"
    )


def test_a_check_gets_its_own_timeout(tmp_path, plugin_host, register_plugin, monkeypatch):
    _, outcome, db = run_in(
        tmp_path,
        """
id = "w"
[[tasks]]
id = "slow-check"
prompt = "do it"
tool = "recording"
max_attempts = 1
timeout = "60s"
checks = [{ command = ["sleep", "30"], timeout = "0.5s" }]
""",
        plugin_host,
        register_plugin,
        monkeypatch,
    )

    assert outcome.state == "failed"
    (attempt,) = db.execute("SELECT * FROM attempts").fetchall()
    assert attempt["error_class"] == "check_failed"
    assert "timed out" in attempt["message"]
    assert attempt["ended_at"] - attempt["started_at"] < 20
