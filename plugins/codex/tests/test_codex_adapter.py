"""The codex adapter finds the real codex and its version without touching ~/.codex."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from orchestra_codex import CodexAdapter

import orchestra
from orchestra.testing import run_orchestra


def profile(**options: object) -> orchestra.ToolProfile:
    return orchestra.ToolProfile("codex", options=options)


def files_under(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def test_finds_the_real_codex_on_path(real_codex: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{real_codex.parent}{os.pathsep}{os.environ['PATH']}")

    found = CodexAdapter().available(profile())

    assert found == orchestra.Availability(True, version="0.169.0", path=str(real_codex))


def test_unavailable_when_codex_is_not_on_path(
    empty_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_dir))

    found = CodexAdapter().available(profile())

    assert found == orchestra.Availability(False, reason="codex not found on PATH")
    assert files_under(home) == []  # no CODEX_HOME made for a codex that is not there


def test_unavailable_when_binary_option_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "codex"

    found = CodexAdapter().available(profile(binary=str(missing)))

    assert found == orchestra.Availability(False, reason=f"{missing} not found")


def test_unavailable_when_codex_version_fails(
    fake_program, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = fake_program(
        "codex", "echo 'Missing optional dependency @openai/codex-linux-x64' >&2\nexit 1"
    )
    monkeypatch.setenv("PATH", str(broken.parent))

    found = CodexAdapter().available(profile())

    assert not found.available
    assert found.path == str(broken)
    assert "exited 1" in found.reason
    assert "Missing optional dependency" in found.reason


def test_binary_option_points_at_native_codex_outside_path(
    native_codex: Path, empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_dir))

    found = CodexAdapter().available(profile(binary=str(native_codex)))

    assert found == orchestra.Availability(True, version="0.169.0", path=str(native_codex))


def test_binary_option_points_at_npm_launcher_with_only_node_on_path(
    real_codex: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = shutil.which("node")
    assert node is not None, "the npm codex launcher needs node on PATH"
    only_node = tmp_path / "only-node"
    only_node.mkdir()
    (only_node / "node").symlink_to(node)
    monkeypatch.setenv("PATH", str(only_node))

    found = CodexAdapter().available(profile(binary=str(real_codex)))

    assert found == orchestra.Availability(True, version="0.169.0", path=str(real_codex))


def test_npm_launcher_without_node_is_unavailable_and_says_so(
    real_codex: Path, empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_dir))

    found = CodexAdapter().available(profile(binary=str(real_codex)))

    assert not found.available
    assert "node" in found.reason


def test_version_check_leaves_home_alone_but_for_the_cache(
    real_codex: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{real_codex.parent}{os.pathsep}{os.environ['PATH']}")

    assert CodexAdapter().available(profile()).available

    codex_home = home / ".cache" / "orchestra" / "codex-home"
    assert not (home / ".codex").exists()
    assert {path.split(os.sep)[0] for path in files_under(home)} == {".cache"}
    assert stat.S_IMODE(codex_home.stat().st_mode) == 0o700
    # codex did run with this home: it put its helper links there.
    assert (codex_home / "tmp" / "arg0-linux").is_dir()


def test_codex_itself_would_write_into_home(
    real_codex: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control for the test above: without the adapter's CODEX_HOME, ~/.codex appears."""
    monkeypatch.setenv("PATH", f"{real_codex.parent}{os.pathsep}{os.environ['PATH']}")

    subprocess.run([str(real_codex), "--version"], stdin=subprocess.DEVNULL, check=True)

    assert (home / ".codex" / "tmp").is_dir()


def test_codex_home_follows_xdg_cache_home(
    real_codex: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("PATH", f"{real_codex.parent}{os.pathsep}{os.environ['PATH']}")

    assert CodexAdapter().available(profile()).available

    assert files_under(home) == []
    assert (cache / "orchestra" / "codex-home" / "tmp" / "arg0-linux").is_dir()


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_orchestra_tools_lists_codex(real_codex: Path, home: Path, tmp_path: Path) -> None:
    path = f"{real_codex.parent}{os.pathsep}{os.environ['PATH']}"
    completed = run_orchestra("tools", "--json", cwd=tmp_path, env={"PATH": path})

    assert completed.returncode == 0, completed.stderr
    rows = {row["name"]: row for row in json.loads(completed.stdout)}
    assert "codex" in rows, completed.stderr
    expected = {
        "name": "codex",
        "plugin": "codex",
        "distribution": "orchestra-codex",
        "capabilities": sorted(CodexAdapter.capabilities),
        "available": True,
        "version": "0.169.0",
        "path": str(real_codex),
        "reason": None,
    }
    assert {key: rows["codex"].get(key) for key in expected} == expected
    assert {"prompt", "edit", "python"} <= set(rows["codex"]["capabilities"])
    assert not (home / ".codex").exists()
