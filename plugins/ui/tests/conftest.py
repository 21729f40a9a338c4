"""Fixtures of the browser tests: projects with real runs, a real ``orchestra ui`` serving
them, and headless Chromium (Debian's /usr/bin/chromium) driven through cdp.py.

The projects are real: a git repository, a workstream of command tasks, ``orchestra run``
as a user runs it. The server is the real command in a subprocess, its address read from
the line it prints, stopped with SIGTERM (as Ctrl-C would) at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which puts no test directory on sys.path
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cdp import CHROMIUM, Browser, Page, PageError, chromium_available
from ui_helpers import Ui, start_ui, stop_ui

import orchestra
from orchestra.testing import make_git_repo, run_orchestra, start_orchestra, wait_for

#: a small workstream whose first task prints a line and writes a file (a real diff), and
#: whose second runs after it
SMALL = """\
id = "small"
title = "Write the notes, then check them"

[[tasks]]
id = "write-notes"
title = "Write the notes"
shell = true
command = "echo notes-are-being-written; printf 'def answer():\\\\n    return 42\\\\n' > notes.py"
files = { create = ["notes.py"] }

[[tasks]]
id = "check-notes"
title = "Check the notes"
depends_on = ["write-notes"]
shell = true
command = "test -f notes.py && echo the-notes-are-there"
"""


UNSANDBOXED = 'sandbox = "none"\n'


@dataclass(frozen=True)
class Project:
    """A git repository with orchestra's database in it (``.orchestra/orchestra.db``)."""

    path: Path

    @property
    def database(self) -> Path:
        return self.path / ".orchestra" / "orchestra.db"

    def write(self, name: str, text: str) -> Path:
        path = self.path / name
        path.write_text(text)
        return path

    def run(self, workstream: str, *options: str, env: Mapping[str, str] | None = None) -> str:
        """Run the workstream file to its end with the real ``orchestra run``; return the
        run's id (whether it succeeded or failed)."""
        ran = run_orchestra("run", "--json", *options, workstream, cwd=self.path, env=env)
        assert ran.returncode in (0, 1), ran.stderr
        return str(json.loads(ran.stdout)["run"])

    def run_ids(self) -> set[str]:
        """The ids of the runs in the database now."""
        if not self.database.exists():
            return set()
        with orchestra.open_run_database(self.database) as store:
            return {run.id for run in store.runs()}

    def start(self, workstream: str, *options: str) -> subprocess.Popen[str]:
        """Start ``orchestra run --plain`` on the workstream file, in a process group of
        its own; return the process."""
        return start_orchestra(
            "run", "--plain", *options, workstream, cwd=self.path, new_session=True
        )

    def new_run(self, process: subprocess.Popen[str], known: set[str]) -> str:
        """Return the id of the run ``process`` started (the one not in ``known``), once
        it is in the database; fail with what it printed if it ended first."""

        def started() -> str | None:
            new = self.run_ids() - known
            if not new and process.poll() is not None:
                raise AssertionError(f"orchestra run ended: {process.communicate()}")
            return new.pop() if new else None

        return str(wait_for(started, what="the new run in the database"))

    def run_state(self, run_id: str) -> str:
        """The run's state as ``orchestra runs --json`` lists it."""
        listed = run_orchestra("runs", "--json", cwd=self.path)
        assert listed.returncode == 0, listed.stderr
        (found,) = (run for run in json.loads(listed.stdout) if run["id"] == run_id)
        return str(found["state"])


def make_project(directory: Path, git: bool = True) -> Project:
    """A project directory (a git repository with one commit, unless ``git`` is false)
    whose attempts run unsandboxed: faster, and what the UI shows does not depend on it."""
    if git:
        make_git_repo(directory, {"README.md": "a project\n", "orchestra.toml": UNSANDBOXED})
    else:
        directory.mkdir(parents=True)
        (directory / "orchestra.toml").write_text(UNSANDBOXED)
    return Project(directory)


@pytest.fixture
def new_project(tmp_path: Path) -> Callable[..., Project]:
    """``new_project(name, git=True)`` makes a project under the test's tmp_path."""
    return lambda name, git=True: make_project(tmp_path / name, git)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, str]:
    """A project with one finished run of SMALL (succeeded); returns it and the run id."""
    project = make_project(tmp_path_factory.mktemp("recorded"))
    project.write("small.toml", SMALL)
    return project, project.run("small.toml")


@pytest.fixture(scope="module")
def ui(recorded: tuple[Project, str]) -> Iterator[Ui]:
    """A running ``orchestra ui --port 0`` in the recorded project; it must stop cleanly."""
    project, _ = recorded
    served = start_ui(project.path, "--port", "0")
    yield served
    assert stop_ui(served) == 0, "orchestra ui did not exit 0 on SIGTERM"


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless Chromium, shared by the session's tests (each gets a page of its own).
    Without it the tests fail, as tests/test_report.py's do: a skip would let CI pass
    without ever opening the page."""
    if not chromium_available():
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/install-tools installs Debian's")
    with Browser.start(tmp_path_factory.mktemp("chromium")) as started:
        yield started


def page_errors(page: Page) -> list[PageError]:
    """What went wrong in the page, less the network errors of event streams that ended
    on purpose (the page left, or the server stopped)."""
    return [
        error for error in page.errors if not (error.source == "network" and "/events" in error.url)
    ]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own cookies); the test fails if a console error, an uncaught
    exception or a JavaScript dialog happened in it."""
    opened = browser.new_page()
    yield opened
    opened.close()
    errors = page_errors(opened)
    assert not errors, "errors in the page:\n" + "\n".join(map(str, errors))
    assert not opened.dialogs, f"dialogs opened: {opened.dialogs}"
