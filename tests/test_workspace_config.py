"""The repository's ``.git/config`` during a run: a setting that names a program (for the
user's own git to run) is put back after the attempt that made it, and the attempt fails
with ``scope_violation``; any other edit of the file stays, and the file keeps its mode.
Real runs without the sandbox (with it, ``.git`` is read-only), real git."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from orchestra.git import command
from orchestra.git.program_settings import PROGRAM_KEYS, SettingsGuard
from orchestra.testing import make_git_repo, run_orchestra

NO_SANDBOX = {"ORCHESTRA_SANDBOX": "none"}


def config(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "config", *arguments], cwd=repo, capture_output=True, text=True
    ).stdout.strip()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_task(tmp_path: Path, script: str) -> tuple[Path, tuple]:
    """Run one shell task in a fresh repository (its .git/config mode 0640); return the
    repository and the attempt's (outcome, error_class, message). The task declares that
    it creates ``out.txt``: it gets a worktree of its own, whose change lands."""
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[defaults]\nmax_attempts = 1\n'
        f'[[tasks]]\nid = "t"\nshell = true\ncommand = {json.dumps(script)}\n'
        'files = { create = ["out.txt"] }\n'
    )
    os.chmod(repo / ".git" / "config", 0o640)
    result = run_orchestra("run", "ws.toml", "--json", cwd=repo, env=NO_SANDBOX)
    assert "Traceback" not in result.stderr, result.stderr
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        (attempt,) = db.execute("SELECT outcome, error_class, message FROM attempts").fetchall()
    return repo, attempt


def test_a_program_set_during_the_run_goes_and_the_users_other_edits_stay(tmp_path):
    script = (
        "git config core.fsmonitor /bin/false && git config alias.st '!sh -c true' && "
        "git config user.extra kept && echo hi > out.txt"
    )
    repo, (outcome, error_class, message) = run_task(tmp_path, script)

    assert (outcome, error_class) == ("failed", "scope_violation")
    assert "alias.st, core.fsmonitor, which name programs" in message
    assert config(repo, "--get-regexp", "^(core.fsmonitor|alias)") == ""
    assert config(repo, "--get", "user.extra") == "kept"
    assert mode(repo / ".git" / "config") == 0o640


def test_an_edit_of_a_setting_that_names_no_program_is_left_and_the_attempt_lands(tmp_path):
    repo, (outcome, error_class, message) = run_task(
        tmp_path, "git config branch.main.description 'the trunk' && echo hi > out.txt"
    )

    assert (outcome, error_class) == ("succeeded", None), message
    assert config(repo, "--get", "branch.main.description") == "the trunk"
    assert mode(repo / ".git" / "config") == 0o640


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    made = make_git_repo(tmp_path / "repo")
    subprocess.run(["git", "config", "filter.lfs.clean", "git-lfs clean -- %f"], cwd=made)
    os.chmod(made / ".git" / "config", 0o600)
    return made


def test_the_guard_puts_back_a_changed_program_and_keeps_the_users_one(repo: Path) -> None:
    guard = SettingsGuard(repo)
    assert guard.check() is None  # nothing changed: no git process either
    config(repo, "filter.lfs.clean", "/opt/evil/clean %f")
    config(repo, "--add", "credential.helper", "store")
    config(repo, "core.editor", "vim")
    config(repo, "user.name", "someone")  # not a program

    said = guard.check()

    assert said and "core.editor, credential.helper, filter.lfs.clean" in said
    assert config(repo, "--get-all", "filter.lfs.clean") == "git-lfs clean -- %f"
    assert config(repo, "--get-all", "credential.helper") == ""
    assert config(repo, "--get", "core.editor") == ""
    assert config(repo, "--get", "user.name") == "someone"
    assert mode(repo / ".git" / "config") == 0o600
    assert guard.check() is None


def test_the_guard_waits_for_a_config_lock_a_live_process_holds(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = SettingsGuard(repo)
    config(repo, "core.fsmonitor", "/bin/false")
    before = (repo / ".git" / "config").read_bytes()
    lock = repo / ".git" / "config.lock"
    monkeypatch.setattr(command, "LOCK_WAIT", 0.2)
    # the user's git, writing the file: another process with the lock open
    holder = subprocess.Popen(
        ["sh", "-c", 'exec 3>"$0"; echo ready; exec sleep 60', str(lock)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "ready\n"
        with pytest.raises(command.GitError, match="could not lock config file"):
            guard.check()
        assert (repo / ".git" / "config").read_bytes() == before
        assert lock.exists()
    finally:
        holder.kill()
        holder.wait()
    lock.unlink()

    assert guard.check() is not None
    assert config(repo, "--get", "core.fsmonitor") == ""


def test_a_configuration_git_cannot_read_is_put_back_whole_with_its_mode(repo: Path) -> None:
    guard = SettingsGuard(repo)
    path = repo / ".git" / "config"
    before = path.read_bytes()
    path.write_bytes(before + b"[core\n\tfsmonitor = /bin/false\n")  # broken

    said = guard.check()

    assert said == "(config: git could not read it, so orchestra put it back as it last read it)"
    assert path.read_bytes() == before
    assert mode(path) == 0o600
    assert not (repo / ".git" / "config.lock").exists()


@pytest.mark.parametrize(
    "key",
    ["core.hookspath", "core.fsmonitor", "core.sshcommand", "filter.x.smudge", "merge.x.driver"],
)
def test_every_program_orchestras_own_git_neutralises_is_guarded(key: str) -> None:
    assert PROGRAM_KEYS.match(key)


def test_settings_that_name_no_program_are_not_guarded() -> None:
    for key in ("user.name", "branch.main.remote", "core.autocrlf", "remote.origin.url"):
        assert not PROGRAM_KEYS.match(key)
