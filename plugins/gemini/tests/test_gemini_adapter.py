"""The gemini adapter finds the real Gemini CLI and its version without touching ~/.gemini,
``orchestra tools`` and ``orchestra init`` show it, and ``plan`` warns about a profile that
cannot reach the model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from orchestra_gemini import GeminiAdapter, configured

import orchestra
from orchestra.testing import make_git_repo, run_orchestra

GEMINI_TASK = 'id = "w"\n[[tasks]]\nid = "t"\nprompt = "Say hello"\ntool = "gemini"\n'


def profile(**options: object) -> orchestra.ToolProfile:
    return orchestra.ToolProfile("gemini", options=options)


def with_gemini(real_gemini: Path) -> str:
    return f"{real_gemini.parent}{os.pathsep}{os.environ['PATH']}"


def test_finds_the_real_gemini_on_path_and_leaves_home_alone(
    real_gemini: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", with_gemini(real_gemini))

    found = GeminiAdapter().available(profile())

    assert found == orchestra.Availability(True, version="0.61.0", path=str(real_gemini))
    assert not (home / ".gemini").exists()  # `gemini --version` ran with a HOME of its own
    assert os.listdir(os.environ["TMPDIR"]) == []


def test_unavailable_when_gemini_is_not_on_path(
    empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_dir))

    found = GeminiAdapter().available(profile())

    assert found == orchestra.Availability(False, reason="gemini not found on PATH")


def test_an_older_gemini_is_unavailable_and_says_why(fake_program) -> None:
    old = fake_program("gemini", "echo 0.50.1")

    found = GeminiAdapter().available(profile(binary=str(old)))

    assert not found.available
    assert (found.version, found.path) == ("0.50.1", str(old))
    assert found.reason == (
        f"gemini 0.50.1 at {old} is too old: orchestra-gemini drives gemini 0.61 or newer"
        " (npm install -g @google/gemini-cli)"
    )


def test_the_npm_launcher_without_node_is_unavailable(
    real_gemini: Path, empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_dir))

    found = GeminiAdapter().available(profile(binary=str(real_gemini)))

    assert not found.available
    assert "node" in (found.reason or "")


def test_the_npm_launcher_runs_with_only_node_on_path(
    real_gemini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = shutil.which("node")
    assert node is not None, "the Gemini CLI needs node on PATH"
    only_node = tmp_path / "only-node"
    only_node.mkdir()
    (only_node / "node").symlink_to(node)
    monkeypatch.setenv("PATH", str(only_node))

    found = GeminiAdapter().available(profile(binary=str(real_gemini)))

    assert found == orchestra.Availability(True, version="0.61.0", path=str(real_gemini))


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_orchestra_tools_lists_gemini_with_its_version(
    real_gemini: Path, home: Path, tmp_path: Path
) -> None:
    completed = run_orchestra(
        "tools", "--json", cwd=tmp_path, env={"PATH": with_gemini(real_gemini)}
    )

    assert completed.returncode == 0, completed.stderr
    rows = {row["name"]: row for row in json.loads(completed.stdout)}
    expected = {
        "name": "gemini",
        "plugin": "gemini",
        "distribution": "orchestra-gemini",
        "capabilities": sorted(GeminiAdapter.capabilities),
        "available": True,
        "version": "0.61.0",
        "path": str(real_gemini),
        "reason": None,
    }
    assert {key: rows["gemini"].get(key) for key in expected} == expected
    assert not (home / ".gemini").exists()


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_orchestra_init_offers_gemini(real_gemini: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"

    completed = run_orchestra(
        "init", "-C", str(project), cwd=tmp_path, env={"PATH": with_gemini(real_gemini)}
    )

    assert completed.returncode == 0, completed.stderr
    assert "[tools.gemini]   # found: gemini 0.61.0" in (project / "orchestra.toml").read_text()
    assert '"gemini"' in (project / "workstreams" / "example.toml").read_text()


@pytest.mark.parametrize(
    ("settings", "environ", "problems"),
    [
        ({"model": "m"}, {}, ["no API key reaches gemini"]),
        ({"model": "m"}, {"GEMINI_API_KEY": "k"}, []),
        (
            {"model": "m", "pass_env": ("GEMINI_API_KEY",)},
            {},
            ["GEMINI_API_KEY is in pass_env in [tools.gemini] but not set here"],
        ),
        ({}, {"GEMINI_API_KEY": "k"}, []),  # no model: the adapter gives its default
        ({"model": "m", "options": {"shell": "yes"}}, {}, ["shell must be true or false"]),
        (
            {"model": "m", "args": ("--yolo",)},
            {"GEMINI_API_KEY": "k"},
            ["args in [tools.gemini] sets --yolo"],
        ),
    ],
)
def test_the_configuration_check_names_what_is_missing(tmp_path, settings, environ, problems):
    setup = orchestra.ToolSetup(environ=environ, root=tmp_path, state_dir=tmp_path / "gemini")

    found = configured.problems(orchestra.ToolProfile("gemini", **settings), setup)

    assert len(found) == len(problems), found
    for sentence, problem in zip(found, problems, strict=True):
        assert problem in sentence and "[tools.gemini]" in sentence


@pytest.mark.slow  # orchestra plan with the real gemini's --version
def test_plan_warns_about_a_gemini_without_a_key(real_gemini: Path, tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    (repo / "ws.toml").write_text(GEMINI_TASK)
    (repo / "orchestra.toml").write_text('[tools.gemini]\nmodel = "gemini-2.5-pro"\n')
    path = with_gemini(real_gemini)

    warned = run_orchestra("plan", "ws.toml", cwd=repo, env={"PATH": path})
    (repo / "orchestra.toml").write_text(
        '[tools.gemini]\nmodel = "gemini-2.5-pro"\npass_env = ["GEMINI_API_KEY"]\n'
    )
    passed = run_orchestra("plan", "ws.toml", cwd=repo, env={"PATH": path, "GEMINI_API_KEY": "k"})

    assert warned.returncode == 0, warned.stderr
    [warning] = warned.stderr.splitlines()
    assert warning.startswith("warning: ") and "tool gemini: no API key reaches gemini" in warning
    assert passed.returncode == 0 and passed.stderr == ""
