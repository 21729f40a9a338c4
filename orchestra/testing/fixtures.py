"""orchestra's pytest fixtures, for orchestra's tests and any plugin's.

Installing orchestra registers this module as a pytest plugin (entry point ``pytest11``),
so the fixtures are there in every test suite of an environment that has orchestra and
pytest, without a ``conftest.py`` line. The helpers they use live in
``orchestra.testing``, which imports without pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestra.plugin.host import PluginHost
from orchestra.testing import builtin_plugin_host, make_git_repo


@pytest.fixture
def plugin_host() -> PluginHost:
    """A plugin host of the test's own: orchestra's built-in plugins, and what the test
    registers (``register_plugin``); no other installed plugin, so that neither a plugin
    that happens to be installed nor the one under test, installed, changes the test."""
    return builtin_plugin_host()


@pytest.fixture
def register_plugin(plugin_host: PluginHost) -> Iterator[Callable[..., str]]:
    """Register throwaway plugin objects on ``plugin_host`` for one test.

    ``register_plugin(obj, name="x")`` returns the name; all are unregistered afterwards.
    """
    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered = plugin_host.register(plugin, name=name)
        names.append(registered)
        return registered

    yield register
    for name in names:
        plugin_host.unregister(name)


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A git repository with one commit, in a temporary directory."""
    return make_git_repo(tmp_path / "repo")


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    """An empty directory, to use as a PATH on which no program is found."""
    path = tmp_path / "empty"
    path.mkdir()
    return path


@pytest.fixture
def fake_program(tmp_path: Path) -> Callable[[str, str], Path]:
    """A function that writes an executable ``/bin/sh`` script and returns its path.

    For the failures a real program cannot be made to show on demand (a ``--version``
    that exits 1, say); use the real program for everything else.
    """

    def write(name: str, body: str) -> Path:
        directory = tmp_path / "fake-bin"
        directory.mkdir(exist_ok=True)
        path = directory / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return path

    return write
