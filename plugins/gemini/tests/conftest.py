"""Fixtures for the gemini adapter tests, which drive the real Gemini CLI from
<repo>/.tools/bin against a fake Gemini API on 127.0.0.1."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# pytest runs with --import-mode=importlib, which puts no test directory on sys.path;
# the tests and record_fixtures.py import the fake server as a plain module.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_gemini import API_KEY, FakeGemini, Reply, Status
from orchestra_gemini import GeminiAdapter

import orchestra
from orchestra import LocalContext, build_environment
from orchestra.testing import make_git_repo

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / ".tools"
HELLO = {"hello.py": 'def greet():\n    return "hello"\n'}


@pytest.fixture
def real_gemini() -> Path:
    """Return the real gemini (the npm launcher) from scripts/install-tools; fail without it."""
    path = TOOLS / "bin" / "gemini"
    if not os.access(path, os.X_OK):
        pytest.fail(f"the real gemini is not installed at {path}: run scripts/install-tools")
    return path


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return an empty HOME for the test, so no test reads or writes the user's; TMPDIR
    moves too, so that what the CLI would leave there is seen."""
    home = tmp_path / "home"
    home.mkdir()
    temporary = tmp_path / "tmpdir"
    temporary.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(temporary))
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def fake_gemini() -> Iterator[Callable[..., FakeGemini]]:
    """Return a function that starts a FakeGemini server with a script; all are closed
    after the test."""
    servers: list[FakeGemini] = []

    def start(*script: Reply | Status) -> FakeGemini:
        server = FakeGemini(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@dataclass
class Attempt:
    """One attempt of the gemini adapter, run through the host's LocalContext."""

    result: orchestra.StepResult
    events: list[tuple[str, dict[str, Any]]]
    log: str
    seconds: float
    repo: Path
    scratch: Path

    def calls(self) -> list[dict[str, Any]]:
        """Return the payloads of the ``call`` events, in order."""
        return [payload for name, payload in self.events if name == "call"]


@pytest.fixture
def run_gemini(real_gemini: Path, tmp_path: Path) -> Callable[..., Attempt]:
    """Return a function that runs one attempt of the real gemini on a fresh repository
    (``review=True``: one review, ``GeminiAdapter.review``)."""

    def run(
        server: FakeGemini | None,
        *,
        prompt: str = "Make greet return hello, world",
        options: Mapping[str, Any] | None = None,
        feedback: str | None = None,
        timeout: float = 60,
        idle_timeout: float = 30,
        files: Mapping[str, str] = HELLO,
        scope: orchestra.FileScope | None = None,
        git: bool = True,
        args: tuple[str, ...] = (),
        secrets: tuple[str, ...] = (),
        key: str | None = API_KEY,
        cancel: threading.Event | None = None,
        review: bool = False,
    ) -> Attempt:
        repo = tmp_path / "repo"
        if git:
            make_git_repo(repo, dict(files))
        else:
            repo.mkdir()
        base_url = server.base_url if server is not None else "http://127.0.0.1:9"
        profile = orchestra.ToolProfile(
            "gemini",
            model="gemini-2.5-pro",
            args=args,
            secrets=secrets,
            pass_env=("GEMINI_API_KEY",),
            options={
                "binary": str(real_gemini),
                "base_url": base_url,
                "max_attempts": 1,  # each scripted reply is met once
                **(options or {}),
            },
        )
        task = orchestra.Task(id="t", prompt=prompt, files=scope or orchestra.FileScope())
        request = orchestra.ExecutionRequest(
            run_id="r",
            task=task,
            attempt=1,
            workdir=str(repo),
            profile=profile,
            timeout=timeout,
            idle_timeout=idle_timeout,
            feedback=feedback,
        )
        events: list[tuple[str, dict[str, Any]]] = []
        scratch = tmp_path / "scratch"
        scratch.mkdir(exist_ok=True)
        context = LocalContext(
            cwd=repo,
            env=build_environment(os.environ, {"GEMINI_API_KEY": key} if key else {}, ()),
            log_path=tmp_path / "attempt.log",
            timeout=timeout,
            idle_timeout=idle_timeout,
            grace=1.0,
            cancel=cancel,
            secret_names=secrets,
            emit=lambda kind, payload: events.append((kind, dict(payload))),
            state_dir=repo / ".orchestra" / "tools" / "gemini",
            scratch_root=scratch,
        )
        start = time.monotonic()
        try:
            adapter = GeminiAdapter()
            result = (adapter.review if review else adapter.execute)(request, context)
        finally:
            context.cleanup()
        seconds = time.monotonic() - start
        log_path = tmp_path / "attempt.log"
        log = log_path.read_text() if log_path.exists() else ""
        return Attempt(result, events, log, seconds, repo, scratch)

    return run
