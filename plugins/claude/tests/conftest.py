"""Fixtures for the claude adapter tests, which drive the real claude from <repo>/.tools/bin."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which puts no test directory on sys.path;
# the tests and record_fixtures.py import the fake server as a plain module.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from claude_helpers import HELLO, TOOLS, Project
from fake_anthropic import FakeAnthropic, Garbage, Reply, Status

from orchestra.testing import make_git_repo


@pytest.fixture
def real_claude() -> Path:
    """Return the real claude from scripts/install-tools; fail without it."""
    path = TOOLS / "bin" / "claude"
    if not os.access(path, os.X_OK):
        pytest.fail(f"the real claude is not installed at {path}: run scripts/install-tools")
    return path


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return an empty HOME for the test, so no test reads or writes the user's; TMPDIR
    moves too, so that whatever claude leaves there is seen (and removed with tmp_path)."""
    home = tmp_path / "home"
    home.mkdir()
    temporary = tmp_path / "tmpdir"
    temporary.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(temporary))
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def fake_anthropic() -> Iterator[Callable[..., FakeAnthropic]]:
    """Return a function that starts a FakeAnthropic server with a script; all are closed
    after the test."""
    servers: list[FakeAnthropic] = []

    def start(*script: Reply | Status | Garbage) -> FakeAnthropic:
        server = FakeAnthropic(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def project(tmp_path: Path, real_claude: Path) -> Project:
    """Return a project holding hello.py, with orchestra's directory ignored."""
    root = make_git_repo(tmp_path / "project", {"hello.py": HELLO, ".gitignore": ".orchestra/\n"})
    return Project(root, real_claude)
