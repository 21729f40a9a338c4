"""What the claude tests share besides fixtures: a project set up for ``orchestra run``
with claude, its finished runs, the recorded streams, and the processes left running.

A module of its own name, not conftest: the tests of several plugins run in one pytest
process, and a plain ``import conftest`` would find whichever plugin's came first.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_anthropic import API_KEY

from orchestra.testing import run_orchestra

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / ".tools"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
HELLO = 'def greet():\n    return "hello"\n'
WORLD = 'def greet():\n    return "hello, world"\n'


@dataclass
class Project:
    """A git repository set up for ``orchestra run`` with claude against a fake server."""

    root: Path
    claude: Path

    def configure(self, base_url: str, **options: Any) -> None:
        """Write orchestra.toml's ``[tools.claude]``: the fake model, the server, one
        request per scripted reply unless ``options`` say otherwise."""
        values: dict[str, Any] = {
            "binary": str(self.claude),
            "base_url": base_url,
            "max_retries": 0,
            **options,
        }
        lines = ["[tools.claude]", 'model = "claude-fake"', 'pass_env = ["ANTHROPIC_API_KEY"]']
        lines += [f"{name} = {_toml(value)}" for name, value in values.items()]
        (self.root / "orchestra.toml").write_text("\n".join(lines) + "\n")

    def workstream(self, text: str, name: str = "ws.toml") -> None:
        (self.root / name).write_text(text)

    def run(self, *arguments: str, timeout: float = 120) -> Ran:
        """Run ``orchestra run ws.toml`` with the key in the environment; time it."""
        start = time.monotonic()
        completed = run_orchestra(
            "run",
            "ws.toml",
            *arguments,
            cwd=self.root,
            env={"ANTHROPIC_API_KEY": API_KEY},
            timeout=timeout,
        )
        return Ran(completed, time.monotonic() - start, self.root)


@dataclass
class Ran:
    """A finished ``orchestra run``: its process, its wall time, and its database."""

    completed: subprocess.CompletedProcess[str]
    seconds: float
    root: Path

    @property
    def output(self) -> str:
        return self.completed.stdout + self.completed.stderr

    def rows(self, query: str) -> list[sqlite3.Row]:
        with sqlite3.connect(self.root / ".orchestra" / "orchestra.db") as db:
            db.row_factory = sqlite3.Row
            return db.execute(query).fetchall()

    def attempts(self) -> list[sqlite3.Row]:
        return self.rows("SELECT * FROM attempts ORDER BY task_id, number")

    @property
    def run_id(self) -> str:
        (run_id,) = [row["id"] for row in self.rows("SELECT id FROM runs")]
        return str(run_id)

    def landed(self, path: str) -> str | None:
        """Return ``path`` on the run's branch, None when it is not there."""
        shown = subprocess.run(
            ["git", "show", f"orchestra/{self.run_id}:{path}"],
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        return shown.stdout if shown.returncode == 0 else None

    def log(self, task: str = "greet", number: int = 1) -> str:
        return (
            self.root / ".orchestra" / "runs" / self.run_id / f"{task}.{number}.log"
        ).read_text()

    def events(self, prefix: str = "tool.") -> list[tuple[str, str]]:
        query = "SELECT type, payload FROM events ORDER BY seq"
        return [(row[0], row[1]) for row in self.rows(query) if row[0].startswith(prefix)]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(entry) for entry in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def fixture_lines(name: str) -> list[str]:
    """Return the lines of ``fixtures/<name>.jsonl`` as the host hands them over."""
    return (FIXTURES / f"{name}.jsonl").read_text().splitlines()


def claude_processes(marker: str) -> list[int]:
    """Return the pids of live processes whose command line or environment holds ``marker``
    (a test's directory): what an attempt left running."""
    wanted = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if (wanted in environ or wanted in cmdline) and state != b"Z":
            found.append(int(entry))
    return found
