"""Fixtures for the codex adapter tests, which drive the real codex from <repo>/.tools/bin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
