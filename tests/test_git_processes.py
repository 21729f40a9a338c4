"""How many git processes orchestra's git operations start: an attempt runs a dozen of
them, so one that asks git what it already knows (is a full commit id a commit? who is
the author?) costs every attempt. Counted with a ``git`` on PATH that notes each call and
runs the real one."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestra.git import changes, refs
from orchestra.git.command import GitError
from orchestra.testing import make_git_repo


@pytest.fixture(autouse=True)
def no_user_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No identity of the person running the tests: orchestra's fallback one applies."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NAME", "EMAIL"):
        for role in ("AUTHOR", "COMMITTER"):
            monkeypatch.delenv(f"GIT_{role}_{name}", raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    made = make_git_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    (made / "a.txt").write_text("alpha, changed\n")
    subprocess.run(["git", "add", "a.txt"], cwd=made, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "two"],
        cwd=made,
        check=True,
    )
    return made


@pytest.fixture
def git_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Put a counting ``git`` first on PATH; return what gives the commands run since
    the last call (each without orchestra's ``-c`` options)."""
    real = shutil.which("git")
    log = tmp_path / "git-calls"
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "git"
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")

    def taken() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.write_text("")
        # "-c k=v -c k=v ... command args": keep the command and its arguments
        words = [line.split(" ") for line in lines]
        commands = []
        for parts in words:
            while len(parts) >= 2 and parts[0] == "-c":
                parts = parts[2:]
            commands.append(" ".join(parts))
        return commands

    return taken


def test_operations_on_full_commit_ids_ask_git_nothing_else(repo: Path, git_calls) -> None:
    old, new = (
        subprocess.run(
            ["git", "rev-parse", name], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
        for name in ("HEAD~1", "HEAD")
    )
    refs.head_commit(repo)  # the repository's configuration is read once, here
    git_calls()

    assert "+alpha, changed" in changes.diff(repo, old, new)
    assert changes.count_changed_lines(repo, old, new) == 2
    assert changes.paths_between(repo, old, new) == ["a.txt"]

    commands = git_calls()
    assert [command.split(" ", 1)[0] for command in commands] == ["diff", "diff", "diff"]


def test_a_full_id_that_names_no_commit_still_fails(repo: Path) -> None:
    with pytest.raises(GitError):
        changes.diff(repo, "0" * 40, "HEAD")
    with pytest.raises(GitError):
        refs.create_branch(repo, "nowhere", "1" * 40)
    assert refs.branch_tip(repo, "nowhere") is None


def test_a_commit_asks_for_the_author_once_and_sees_a_later_change(repo: Path, git_calls) -> None:
    head = refs.head_commit(repo)
    tree = changes.state_tree(repo)
    git_calls()

    first = changes.commit_tree(repo, tree, head, "first")

    assert [command.split(" ", 1)[0] for command in git_calls()] == ["commit-tree"]
    author = ["git", "log", "-1", "--format=%an <%ae>"]
    shown = subprocess.run([*author, first], cwd=repo, capture_output=True, text=True)
    assert shown.stdout.strip() == "orchestra <orchestra@localhost>"

    subprocess.run(["git", "config", "user.name", "Ada"], cwd=repo, check=True)
    subprocess.run(["git", "config", "user.email", "ada@example.invalid"], cwd=repo, check=True)
    second = changes.commit_tree(repo, tree, head, "second")
    shown = subprocess.run([*author, second], cwd=repo, capture_output=True, text=True)
    assert shown.stdout.strip() == "Ada <ada@example.invalid>"
