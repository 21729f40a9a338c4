"""The aider adapter finds the real aider and reports its version, or says why it cannot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from orchestra_aider import AiderAdapter

import orchestra
from orchestra.testing import run_orchestra


def profile(**options: object) -> orchestra.ToolProfile:
    return orchestra.ToolProfile("aider", options=options)


def test_finds_the_real_aider_on_path(real_aider: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{real_aider.parent}{os.pathsep}{os.environ['PATH']}")

    found = AiderAdapter().available(profile())

    assert found == orchestra.Availability(True, version="0.86.2", path=str(real_aider))


def test_unavailable_when_aider_is_not_on_path(
    empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_dir))

    found = AiderAdapter().available(profile())

    assert not found.available
    assert found.version is None
    assert "aider" in found.reason


def test_unavailable_when_aider_version_fails(
    fake_program, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = fake_program("aider", "echo 'ModuleNotFoundError: aider' >&2\nexit 3")
    monkeypatch.setenv("PATH", str(broken.parent))

    found = AiderAdapter().available(profile())

    assert not found.available
    assert found.path == str(broken)
    assert "exited 3" in found.reason
    assert "ModuleNotFoundError" in found.reason


def test_binary_option_points_at_aider_outside_path(
    real_aider: Path, empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_dir))

    found = AiderAdapter().available(profile(binary=str(real_aider)))

    assert found == orchestra.Availability(True, version="0.86.2", path=str(real_aider))


def test_binary_option_names_another_program_on_path(
    fake_program, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = fake_program("aider-nightly", "echo 'aider 0.99.0.dev3'")
    monkeypatch.setenv("PATH", str(other.parent))

    found = AiderAdapter().available(profile(binary="aider-nightly"))

    assert found == orchestra.Availability(True, version="0.99.0.dev3", path=str(other))


def test_binary_option_that_is_not_a_string_is_reported() -> None:
    found = AiderAdapter().available(profile(binary=["aider"]))

    assert not found.available
    assert "[tools.aider] binary" in found.reason


def test_version_check_writes_nothing_into_home(
    real_aider: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{real_aider.parent}{os.pathsep}{os.environ['PATH']}")

    assert AiderAdapter().available(profile()).available

    # but for orchestra's own cache of the versions it asked (orchestra/toolversion.py)
    files = sorted(str(path.relative_to(home)) for path in home.rglob("*") if path.is_file())
    assert files == [".cache/orchestra/versions.json"]


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_orchestra_tools_lists_aider(real_aider: Path, home: Path, tmp_path: Path) -> None:
    path = f"{real_aider.parent}{os.pathsep}{os.environ['PATH']}"
    completed = run_orchestra("tools", "--json", cwd=tmp_path, env={"PATH": path})

    assert completed.returncode == 0, completed.stderr
    rows = {row["name"]: row for row in json.loads(completed.stdout)}
    assert "aider" in rows, completed.stderr
    expected = {
        "name": "aider",
        "plugin": "aider",
        "distribution": "orchestra-aider",
        "capabilities": sorted(AiderAdapter.capabilities),
        "available": True,
        "version": "0.86.2",
        "path": str(real_aider),
        "reason": None,
    }
    assert {key: rows["aider"].get(key) for key in expected} == expected
    assert {"prompt", "edit", "python"} <= set(rows["aider"]["capabilities"])
