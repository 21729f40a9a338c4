"""The claude adapter finds the real claude and its version, is listed by ``orchestra
tools`` and offered by ``orchestra init``, warns about a missing key, and runs an attempt
through the host's LocalContext."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fake_anthropic import API_KEY, Reply, edit, text
from orchestra_claude import ClaudeAdapter, too_old

import orchestra
from orchestra.testing import make_git_repo, run_orchestra


def profile(**options: object) -> orchestra.ToolProfile:
    return orchestra.ToolProfile("claude", options=options)


def test_finds_the_real_claude_on_path(real_claude: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{real_claude.parent}{os.pathsep}{os.environ['PATH']}")

    found = ClaudeAdapter().available(profile())

    assert found == orchestra.Availability(True, version="2.1.328", path=str(real_claude))


def test_unavailable_when_claude_is_not_on_path(
    empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_dir))

    found = ClaudeAdapter().available(profile())

    assert found == orchestra.Availability(False, reason="claude not found on PATH")


def test_an_older_claude_is_refused_with_its_version(fake_program) -> None:
    old = fake_program("claude", 'echo "2.0.9 (Claude Code)"')

    found = ClaudeAdapter().available(profile(binary=str(old)))

    assert (found.available, found.version, found.path) == (False, "2.0.9", str(old))
    assert found.reason is not None
    assert found.reason.startswith("claude 2.0.9 is older than 2.1.328, the oldest version")


def test_version_comparison() -> None:
    assert too_old("2.1.327") and too_old("1.99.999") and too_old("2.0.400 (Claude Code)")
    assert not too_old("2.1.328") and not too_old("2.2.0") and not too_old("3.0.0")
    assert not too_old("nightly")


def test_a_bad_binary_option_is_named() -> None:
    found = ClaudeAdapter().available(profile(binary=3))

    assert found == orchestra.Availability(
        False, reason="[tools.claude] binary must be a program name or path"
    )


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_orchestra_tools_lists_claude_with_its_version(
    real_claude: Path, home: Path, tmp_path: Path
) -> None:
    path = f"{real_claude.parent}{os.pathsep}{os.environ['PATH']}"
    completed = run_orchestra("tools", "--json", cwd=tmp_path, env={"PATH": path})

    assert completed.returncode == 0, completed.stderr
    rows = {row["name"]: row for row in json.loads(completed.stdout)}
    assert "claude" in rows, completed.stderr
    expected = {
        "name": "claude",
        "plugin": "claude",
        "distribution": "orchestra-claude",
        "capabilities": sorted(ClaudeAdapter.capabilities),
        "available": True,
        "version": "2.1.328",
        "path": str(real_claude),
        "reason": None,
    }
    assert {key: rows["claude"].get(key) for key in expected} == expected
    assert not list(home.glob(".claude*"))


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_orchestra_init_offers_claude(real_claude: Path, tmp_path: Path) -> None:
    path = f"{real_claude.parent}{os.pathsep}{os.environ['PATH']}"
    project = tmp_path / "project"

    completed = run_orchestra("init", "-C", str(project), cwd=tmp_path, env={"PATH": path})

    assert completed.returncode == 0, completed.stderr
    config = (project / "orchestra.toml").read_text()
    assert "[tools.claude]" in config and "2.1.328" in config, config


@pytest.mark.parametrize(
    ("pass_env", "environ", "problems"),
    [
        ((), {}, ["no API key reaches claude: its attempts would fail; list"]),
        (("ANTHROPIC_API_KEY",), {}, ["ANTHROPIC_API_KEY is in pass_env in [tools.claude] but"]),
        (("ANTHROPIC_API_KEY",), {"ANTHROPIC_API_KEY": "k"}, []),
        ((), {"ANTHROPIC_AUTH_TOKEN": "t"}, []),
    ],
)
def test_configuration_problems_name_a_key_that_does_not_reach_claude(
    tmp_path: Path, pass_env: tuple[str, ...], environ: dict[str, str], problems: list[str]
) -> None:
    claude = orchestra.ToolProfile("claude", pass_env=pass_env)
    setup = orchestra.ToolSetup(environ=environ, root=tmp_path, state_dir=tmp_path / "state")

    found = ClaudeAdapter().configuration_problems(claude, setup)

    assert len(found) == len(problems)
    assert all(line.startswith(start) for line, start in zip(found, problems, strict=True))


def test_a_bad_option_is_a_configuration_problem(tmp_path: Path) -> None:
    claude = orchestra.ToolProfile("claude", options={"permission_mode": "yolo"})
    setup = orchestra.ToolSetup(
        environ={"ANTHROPIC_API_KEY": "k"}, root=tmp_path, state_dir=tmp_path
    )

    [problem] = ClaudeAdapter().configuration_problems(claude, setup)

    assert problem.startswith("[tools.claude] permission_mode must be one of acceptEdits")
    assert problem.endswith(": every attempt would fail")


def attempt(
    repo: Path, tmp_path: Path, options: dict[str, object], events: list | None = None
) -> orchestra.StepResult:
    """Run one attempt of the adapter in ``repo`` through a LocalContext."""
    claude = orchestra.ToolProfile("claude", model="claude-fake", options=options)
    task = orchestra.Task(id="t", prompt="Make greet return hello, world")
    request = orchestra.ExecutionRequest(
        run_id="r", task=task, attempt=1, workdir=str(repo), profile=claude, timeout=60
    )
    context = orchestra.LocalContext(
        cwd=repo,
        env=orchestra.build_environment(os.environ, {"ANTHROPIC_API_KEY": API_KEY}, ()),
        log_path=tmp_path / "attempt.log",
        timeout=60,
        idle_timeout=30,
        grace=1.0,
        emit=lambda kind, payload: (events if events is not None else []).append((kind, payload)),
        scratch_root=tmp_path / "scratch",
    )
    try:
        return ClaudeAdapter().execute(request, context)
    finally:
        context.cleanup()


def test_an_attempt_through_the_hosts_context_edits_and_reports_progress(
    real_claude: Path, tmp_path: Path, fake_anthropic
) -> None:
    server = fake_anthropic(
        Reply([edit("hello.py", 'return "hello"', 'return "hello, world"')]), Reply([text("Done.")])
    )
    repo = make_git_repo(tmp_path / "repo", {"hello.py": 'def greet():\n    return "hello"\n'})
    events: list[tuple[str, dict]] = []

    result = attempt(
        repo, tmp_path, {"binary": str(real_claude), "base_url": server.base_url}, events
    )

    assert result.outcome == "succeeded", result
    assert 'return "hello, world"' in (repo / "hello.py").read_text()
    assert [kind for kind, _ in events] == ["version", "edit", "changes"]
    assert events[0][1] == {"program": str(real_claude), "version": "2.1.328"}
    assert events[2][1] == {"paths": ["hello.py"], "count": 1}
    assert list((tmp_path / "scratch").iterdir()) == []  # HOME, TMPDIR and prompt removed
    assert API_KEY not in (tmp_path / "attempt.log").read_text()


def test_outside_a_git_tree_claude_is_not_started(real_claude: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()

    result = attempt(plain, tmp_path, {"binary": str(real_claude)})

    assert (result.outcome, result.error_class) == ("failed", "tool_missing")
    assert result.message is not None
    assert result.message.startswith(f"claude runs in a git working tree; {plain} is not one")


def test_a_bad_option_fails_the_attempt_at_once(tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo", {"a": "a\n"})

    result = attempt(repo, tmp_path, {"max_turns": "many"})

    assert (result.outcome, result.error_class, result.message) == (
        "failed",
        "tool_missing",
        "[tools.claude] max_turns must be an integer, not 'many'",
    )
