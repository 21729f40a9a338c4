"""Fixtures for the codex adapter tests, which drive the real codex from <repo>/.tools/bin."""

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

from fake_responses import API_KEY, FakeResponses, Reply, Status
from orchestra_codex import CodexAdapter

import orchestra
from orchestra import LocalContext, build_environment
from orchestra.testing import make_git_repo

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / ".tools"


@pytest.fixture
def real_codex() -> Path:
    """Return the real codex (the npm launcher) from scripts/install-tools; fail without it."""
    path = TOOLS / "bin" / "codex"
    if not os.access(path, os.X_OK):
        pytest.fail(f"the real codex is not installed at {path}: run scripts/install-tools")
    return path


@pytest.fixture
def native_codex(real_codex: Path) -> Path:
    """Return the native codex binary the npm launcher starts (it needs no node)."""
    found = sorted(
        (TOOLS / "codex" / "node_modules" / "@openai").glob("codex-*/vendor/*/bin/codex")
    )
    if not found:
        pytest.fail(f"no native codex binary under {TOOLS / 'codex'}: run scripts/install-tools")
    return found[0]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return an empty HOME for the test, so no test reads or writes the user's.

    TMPDIR moves too: codex declines to write under the temporary directory, so with
    HOME under /tmp a leak into ~/.codex would go unseen.
    """
    home = tmp_path / "home"
    home.mkdir()
    temporary = tmp_path / "tmpdir"
    temporary.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(temporary))
    for name in ("CODEX_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@dataclass
class Attempt:
    """One attempt of the codex adapter, run through the host's LocalContext."""

    result: orchestra.StepResult
    events: list[tuple[str, dict[str, Any]]]
    log: str
    seconds: float
    repo: Path
    codex_home: Path

    def items(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Return the payloads of the ``item`` events (of items of type ``kind``)."""
        return [
            payload
            for name, payload in self.events
            if name == "item" and (kind is None or payload.get("type") == kind)
        ]


HELLO = {"hello.py": 'def greet():\n    return "hello"\n'}


@pytest.fixture
def fake_responses() -> Iterator[Callable[..., FakeResponses]]:
    """Return a function that starts a FakeResponses server with a script; all are closed
    after the test."""
    servers: list[FakeResponses] = []

    def start(*script: Reply | Status) -> FakeResponses:
        server = FakeResponses(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def run_codex(native_codex: Path, tmp_path: Path) -> Callable[..., Attempt]:
    """Return a function that runs one attempt of the real codex on a fresh repository
    (``review=True``: one review, ``CodexAdapter.review``)."""

    def run(
        server: FakeResponses | None,
        *,
        prompt: str = "Make greet return hello, world",
        options: Mapping[str, Any] | None = None,
        feedback: str | None = None,
        timeout: float = 60,
        idle_timeout: float = 30,
        files: Mapping[str, str] = HELLO,
        task_env: Mapping[str, str] | None = None,
        git: bool = True,
        args: tuple[str, ...] = (),
        secrets: tuple[str, ...] = (),
        cancel: threading.Event | None = None,
        before: Callable[[], None] | None = None,
        review: bool = False,
    ) -> Attempt:
        repo = tmp_path / "repo"
        if git:
            make_git_repo(repo, dict(files))
        else:
            repo.mkdir()
        base_url = server.base_url if server is not None else "http://127.0.0.1:9/v1"
        profile = orchestra.ToolProfile(
            "codex",
            model="gpt-5.5",
            args=args,
            secrets=secrets,
            options={
                "binary": str(native_codex),
                "base_url": base_url,
                "env_key": "FAKE_LLM_API_KEY",
                "request_max_retries": 0,  # each scripted reply is met once
                "stream_max_retries": 0,
                **(options or {}),
            },
        )
        task = orchestra.Task(id="t", prompt=prompt, env=dict(task_env or {}))
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
        state_dir = repo / ".orchestra" / "tools" / "codex"
        if before is not None:  # e.g. leave something in codex's home, as a past attempt did
            before()
        context = LocalContext(
            cwd=repo,
            env=build_environment(os.environ, {"FAKE_LLM_API_KEY": API_KEY}, ()),
            log_path=tmp_path / "attempt.log",
            timeout=timeout,
            idle_timeout=idle_timeout,
            grace=1.0,
            cancel=cancel,
            secret_names=secrets,
            emit=lambda kind, payload: events.append((kind, dict(payload))),
            state_dir=state_dir,
        )
        start = time.monotonic()
        try:
            adapter = CodexAdapter()
            result = (adapter.review if review else adapter.execute)(request, context)
        finally:
            context.cleanup()
        seconds = time.monotonic() - start
        log_path = tmp_path / "attempt.log"
        log = log_path.read_text() if log_path.exists() else ""
        return Attempt(result, events, log, seconds, repo, state_dir / "home")

    return run
