"""Fixtures for the aider adapter tests, which drive the real aider from <repo>/.tools/bin
against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs
import pytest

# pytest runs with --import-mode=importlib, which puts no test directory on sys.path;
# the tests import the fake server as a plain module.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai import API_KEY, FakeOpenAI
from orchestra_aider import AiderAdapter

import orchestra
from orchestra import LocalContext, build_environment
from orchestra.testing import make_git_repo

REPO = Path(__file__).resolve().parents[3]
TOOLS_BIN = REPO / ".tools" / "bin"
HELLO = 'def greet():\n    return "hello"\n'
#: prices and a context window, so aider prints costs and never looks for model info online
PRICED = {"context_window": 128000, "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}


@pytest.fixture
def real_aider() -> Path:
    """Return the real aider that scripts/install-tools installs; fail (never skip) without it."""
    path = TOOLS_BIN / "aider"
    if not os.access(path, os.X_OK):
        pytest.fail(f"the real aider is not installed at {path}: run scripts/install-tools")
    return path


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return an empty HOME for the test, so no test reads or writes the user's."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def aider_on_path(real_aider: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the real aider first on PATH (the adapter's default program is ``aider``)."""
    monkeypatch.setenv("PATH", f"{real_aider.parent}{os.pathsep}{os.environ['PATH']}")
    return real_aider


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    """Return a running fake OpenAI-compatible server on 127.0.0.1."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Return a git repository holding hello.py, committed."""
    return make_git_repo(tmp_path / "repo", {"hello.py": HELLO})


@dataclass
class Attempt:
    """One attempt's result, the progress events the adapter emitted, and its log."""

    result: orchestra.StepResult
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    log: str = ""
    #: what the attempt's scratch directory held before the host removed it
    scratch_files: list[str] = field(default_factory=list)
    #: those of its files that held the key (what a SIGKILLed orchestra would leave behind)
    scratch_with_key: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def aider_profile(llm: FakeOpenAI, **options: Any) -> orchestra.ToolProfile:
    """Return a [tools.aider] profile pointing aider at ``llm``, the key passed by env."""
    return orchestra.ToolProfile(
        "aider",
        model=f"openai/{llm.model}",
        pass_env=("OPENAI_API_KEY",),
        options={"api_base": llm.url, "edit_format": "whole", **PRICED, **options},
    )


@pytest.fixture(scope="session")
def adapter() -> AiderAdapter:
    """Return one adapter for the session: it asks ``aider --version`` once, as in a run."""
    return AiderAdapter()


@pytest.fixture
def run_attempt(
    aider_on_path: Path, repo: Path, tmp_path: Path, llm: FakeOpenAI, adapter: AiderAdapter
) -> Callable[..., Attempt]:
    """Return a function that runs one attempt of a task through the host's LocalContext
    (``review=True``: one review, ``AiderAdapter.review``)."""

    def run(
        prompt: str = "Make greet return hello, world",
        *,
        files: orchestra.FileScope | None = None,
        feedback: str | None = None,
        idle_timeout: float | None = None,
        timeout: float = 60,
        args: tuple[str, ...] = (),
        review: bool = False,
        **options: Any,
    ) -> Attempt:
        profile = attrs.evolve(aider_profile(llm, **options), args=args)
        scope = files if files is not None else orchestra.FileScope(write=("hello.py",))
        task = orchestra.Task(id="greet", prompt=prompt, files=scope)
        request = orchestra.ExecutionRequest(
            "run-1", task, 1, str(repo), profile, timeout, idle_timeout, feedback
        )
        environ = {**os.environ, "OPENAI_API_KEY": API_KEY}
        events: list[tuple[str, dict[str, Any]]] = []
        log_path = tmp_path / "logs" / "greet.1.log"
        ctx = LocalContext(
            cwd=repo,
            env=build_environment(environ, profile.env, profile.pass_env),
            log_path=log_path,
            timeout=timeout,
            idle_timeout=idle_timeout,
            emit=lambda kind, payload: events.append((kind, dict(payload))),
            scratch_root=tmp_path / "scratch",
        )
        try:
            result = (adapter.review if review else adapter.execute)(request, ctx)
            scratch = ctx.scratch_dir
            kept = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*") if p.is_file())
            with_key = [path for path in kept if API_KEY.encode() in (scratch / path).read_bytes()]
        finally:
            ctx.cleanup()
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        return Attempt(result, events, log, kept, with_key)

    return run
