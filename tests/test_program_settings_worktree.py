"""Every file of settings git reads for the repository is guarded, not only ``.git/config``:
``config.worktree`` (main and linked worktrees, read once ``extensions.worktreeConfig`` is
on), the files an ``include.path`` names; and the keys that say where git finds them
(``extensions.*``, ``core.worktree``, ``core.bare``). A task that changes one fails with
``scope_violation`` and the settings are put back. Real runs without the sandbox, real
git."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from orchestra.git.program_settings import SettingsGuard
from orchestra.testing import make_git_repo, run_orchestra

NO_SANDBOX = {"ORCHESTRA_SANDBOX": "none"}


def git(where: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=where, capture_output=True, text=True, check=True
    ).stdout.strip()


def setting(where: Path, *arguments: str) -> str:
    """``git config`` without check: a missing key is an empty answer."""
    return subprocess.run(
        ["git", "config", *arguments], cwd=where, capture_output=True, text=True
    ).stdout.strip()


def run_task(repo: Path, script: str) -> tuple[str, str | None, str]:
    """Run one shell task (it creates ``out.txt``, so it has a worktree of its own) in
    ``repo`` without the sandbox; return its attempt's (outcome, error_class, message)."""
    (repo / "ws.toml").write_text(
        'id = "w"\n[defaults]\nmax_attempts = 1\n'
        f'[[tasks]]\nid = "t"\nshell = true\ncommand = {json.dumps(script)}\n'
        'files = { create = ["out.txt"] }\n'
    )
    result = run_orchestra("run", "ws.toml", "--json", cwd=repo, env=NO_SANDBOX)
    assert "Traceback" not in result.stderr, result.stderr
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        (attempt,) = db.execute("SELECT outcome, error_class, message FROM attempts").fetchall()
    return attempt


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n"})


def test_a_program_in_the_main_config_worktree_fails_the_attempt(repo: Path, tmp_path: Path):
    marker = tmp_path / "ran"
    script = (
        'C=$(git rev-parse --git-common-dir); git config --file "$C/config"'
        f" extensions.worktreeConfig true; printf '[core]\\n\\tfsmonitor = \"touch {marker};"
        ' false"\\n\\tuntrackedCache = true\\n\' > "$C/config.worktree"; echo hi > out.txt'
    )

    outcome, error_class, message = run_task(repo, script)
    git(repo, "status", "--short")

    assert (outcome, error_class) == ("failed", "scope_violation")
    assert "config: orchestra put back extensions.worktreeconfig, which name programs or" in message
    assert "config.worktree: orchestra put back core.fsmonitor, which name programs" in message
    assert not marker.exists(), "the user's git ran the program the task named"
    assert setting(repo, "--get", "extensions.worktreeConfig") == ""
    worktree_file = repo / ".git" / "config.worktree"
    assert setting(repo, "--file", str(worktree_file), "--get", "core.untrackedcache") == "true"


def test_a_program_in_a_linked_worktree_of_the_user_fails_the_attempt(repo: Path, tmp_path: Path):
    feature = tmp_path / "feature"
    git(repo, "config", "extensions.worktreeConfig", "true")
    git(repo, "worktree", "add", "-q", "-b", "feature", str(feature))
    git(feature, "config", "--worktree", "user.note", "mine")
    marker = tmp_path / "ran"
    script = (
        f"git -C {feature} config --worktree core.fsmonitor 'touch {marker}; false';"
        " echo hi > out.txt"
    )

    outcome, error_class, message = run_task(repo, script)
    git(feature, "status", "--short")

    assert (outcome, error_class) == ("failed", "scope_violation")
    assert "worktrees/feature/config.worktree: orchestra put back core.fsmonitor" in message
    assert not marker.exists(), "the user's git ran the program the task named"
    assert setting(feature, "--worktree", "--get", "user.note") == "mine"


def test_moving_the_users_work_tree_fails_the_attempt(repo: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = f'git config --file "$(git rev-parse --git-common-dir)/config" core.worktree {elsewhere}; echo hi > out.txt'

    outcome, error_class, message = run_task(repo, script)

    assert (outcome, error_class) == ("failed", "scope_violation")
    assert "core.worktree, which name programs or where git finds" in message
    assert setting(repo, "--get", "core.worktree") == ""
    assert git(repo, "rev-parse", "--show-toplevel") == str(repo.resolve())


def test_a_program_in_a_file_the_configuration_includes_is_put_back(repo: Path) -> None:
    included = repo / ".git" / "extra.config"
    included.write_text("[user]\n\tnote = mine\n")
    git(repo, "config", "include.path", "extra.config")  # relative to .git/config
    guard = SettingsGuard(repo)
    git(repo, "config", "--file", str(included), "core.pager", "/opt/evil")
    git(repo, "config", "--file", str(included), "user.note", "changed")

    said = guard.check()

    assert said == (
        "(extra.config: orchestra put back core.pager, which name programs, as the run found them)"
    )
    assert setting(repo, "--file", str(included), "--get", "core.pager") == ""
    assert setting(repo, "--file", str(included), "--get", "user.note") == "changed"
    assert guard.check() is None


def test_a_worktree_added_during_the_run_is_held_to_having_no_settings(repo: Path) -> None:
    guard = SettingsGuard(repo)
    added = repo.parent / "added"
    git(repo, "worktree", "add", "-q", "--detach", str(added))
    own = repo / ".git" / "worktrees" / "added" / "config.worktree"
    own.write_text("[core]\n\tsshCommand = /opt/evil\n\tsparseCheckout = true\n")

    said = guard.check()

    assert said and "worktrees/added/config.worktree: orchestra put back core.sshcommand" in said
    assert "sshCommand" not in own.read_text()
    assert "sparseCheckout = true" in own.read_text()
    git(repo, "worktree", "remove", "--force", str(added))
    assert guard.check() is None  # removed with its worktree: nothing to put back


def test_a_new_file_git_cannot_read_is_removed(repo: Path) -> None:
    guard = SettingsGuard(repo)
    path = repo / ".git" / "config.worktree"
    path.write_text("[core\n\tfsmonitor = /bin/false\n")  # broken

    said = guard.check()

    assert (
        said
        == "(config.worktree: git could not read it, and the run found none: orchestra removed it)"
    )
    assert not path.exists()
    assert guard.check() is None


def test_a_worktree_added_during_the_run_may_have_what_git_copies_into_it(repo: Path) -> None:
    git(repo, "config", "extensions.worktreeConfig", "true")
    git(repo, "config", "--worktree", "alias.st", "!git status")  # the user's, per worktree
    guard = SettingsGuard(repo)
    added = repo.parent / "added"
    git(repo, "worktree", "add", "-q", "--detach", str(added))  # copies config.worktree
    assert setting(added, "--worktree", "--get", "alias.st") == "!git status"

    assert guard.check() is None
    assert setting(added, "--worktree", "--get", "alias.st") == "!git status"


def test_a_repository_with_worktree_configuration_on_runs_its_tasks(repo: Path):
    """Sparse checkout turns ``extensions.worktreeConfig`` on, and git then copies the
    main ``config.worktree`` into every new worktree: an attempt's worktree holding that
    copy was given no configuration of its own."""
    git(repo, "config", "extensions.worktreeConfig", "true")
    git(repo, "config", "--worktree", "core.sparseCheckout", "false")

    assert run_task(repo, "echo hi > out.txt") == ("succeeded", None, None)


def test_a_program_in_the_attempts_own_config_worktree_fails_it(repo: Path):
    git(repo, "config", "extensions.worktreeConfig", "true")

    outcome, error_class, message = run_task(
        repo, "git config --worktree core.fsmonitor /bin/true && echo hi > out.txt"
    )

    assert (outcome, error_class) == ("failed", "scope_violation")
    assert "core.fsmonitor" in message
