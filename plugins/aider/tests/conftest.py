"""Fixtures for the aider adapter tests, which drive the real aider from <repo>/.tools/bin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TOOLS_BIN = REPO / ".tools" / "bin"


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
