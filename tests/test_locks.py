"""git's lock files in the user's repository: orchestra removes only a lock a killed git
left, and never anything else.

git says a configuration file is locked by naming the file, not its lock ("could not lock
config file .git/config: File exists"), and names it relative to where it worked: the
lock to consider is ``<file>.lock`` there, and the file itself must never go.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from orchestra.git import command, locks, merging, worktrees
from orchestra.testing import make_git_repo


def user_git(repo: Path, *arguments: str) -> None:
    identity = ("-c", "user.name=t", "-c", "user.email=t@t.invalid")
    subprocess.run(["git", *identity, *arguments], cwd=repo, check=True, capture_output=True)


def config_value(repo: Path, key: str) -> str:
    completed = subprocess.run(
        ["git", "config", "--get", key], cwd=repo, capture_output=True, text=True
    )
    return completed.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    made = make_git_repo(tmp_path / "repo")
    subprocess.run(["git", "config", "user.mine", "kept"], cwd=made, check=True)
    return made


def test_git_names_the_configuration_file_and_a_path_relative_to_where_it_worked(
    repo: Path,
) -> None:
    """What git 2.39 really prints when ``.git/config.lock`` exists: the file, relative."""
    (repo / ".git" / "config.lock").write_text("")
    (repo / "sub").mkdir()
    said = subprocess.run(
        ["git", "config", "x.y", "z"], cwd=repo / "sub", capture_output=True, text=True
    )
    assert said.returncode != 0
    assert "could not lock config file .git/config: File exists" in said.stderr
    assert locks.lock_in(said.stderr, repo) == repo / ".git" / "config.lock"


@pytest.mark.parametrize("where", ["top", "subdirectory"])
def test_a_stale_config_lock_goes_and_the_configuration_stays(
    repo: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the process works in the repository, as when the user runs orchestra there: a
    # relative ".git/config" read against the process's directory names the real file
    monkeypatch.chdir(repo)
    (repo / "sub").mkdir()
    lock = repo / ".git" / "config.lock"
    lock.write_text("")  # a `git config` killed long ago
    ran_in = repo if where == "top" else repo / "sub"

    command.run_git(ran_in, "config", "x.y", "z")

    assert not lock.exists()
    assert config_value(repo, "user.mine") == "kept"
    assert config_value(repo, "x.y") == "z"
    assert locks.take_removed() == [lock]


def test_a_stale_config_lock_met_in_a_linked_worktree_leaves_the_configuration(
    repo: Path, tmp_path: Path
) -> None:
    tree = worktrees.add_worktree(repo, tmp_path / "wt", "side", "HEAD")
    lock = repo / ".git" / "config.lock"
    lock.write_text("")

    command.run_git(tree, "config", "x.y", "z")  # git names the file by its absolute path

    assert not lock.exists()
    assert config_value(repo, "user.mine") == "kept"
    assert config_value(repo, "x.y") == "z"
    locks.take_removed()


def test_only_a_lock_file_is_ever_removed(repo: Path) -> None:
    config = repo / ".git" / "config"
    places = [repo, repo / ".git"]
    assert not locks.remove_if_stale(config, places)
    assert not locks.remove_if_stale(repo / ".git" / ".lock", places)
    assert config.exists() and config_value(repo, "user.mine") == "kept"
    assert locks.take_removed() == []


def test_a_lock_that_cannot_be_removed_is_waited_for_not_spun_on(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``config.lock`` that is a dangling link: git cannot create the lock, and there is
    no lock file to remove. Every retry waits; the command fails at the deadline."""
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    shims = tmp_path / "bin"
    shims.mkdir()
    calls = tmp_path / "calls"
    shim = shims / "git"
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{real_git}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(command, "LOCK_WAIT", 0.5)
    command.common_dir(repo)  # known before counting
    os.symlink(tmp_path / "nowhere", repo / ".git" / "config.lock")

    with pytest.raises(command.GitError, match="could not lock config file"):
        command.run_git(repo, "config", "x.y", "z")

    # one run, then one per 0.05 s wait until the deadline: never a run without a wait
    runs = [line for line in calls.read_text().splitlines() if line.endswith(" config x.y z")]
    assert 1 <= len(runs) <= 0.5 / 0.05 + 1
    assert os.path.islink(repo / ".git" / "config.lock")
    assert config_value(repo, "user.mine") == "kept"


def test_every_worktree_orchestra_adds_is_added_holding_the_worktrees_lock(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``repair`` holds the worktrees lock while it removes half-made worktrees: one that
    ``git worktree add`` is still making must be made under the same lock (a merge's
    temporary worktree too), or repair could take it for a killed git's leftover."""
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    flock = subprocess.run(["which", "flock"], capture_output=True, text=True).stdout.strip()
    if not flock:
        pytest.skip("no flock program here to probe the lock with")
    structure = repo / ".git" / worktrees.STRUCTURE_LOCK
    seen = tmp_path / "seen"
    shims = tmp_path / "bin"
    shims.mkdir()
    shim = shims / "git"
    shim.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" worktree add "*)\n'
        f'  if "{flock}" -n "{structure}" true; then echo free; else echo held; fi >> "{seen}"\n'
        "esac\n"
        f'exec "{real_git}" "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    for branch in ("feature", "release"):  # two branches apart: merging is a real merge
        user_git(repo, "checkout", "-q", "-b", branch, "main")
        (repo / f"{branch}.txt").write_text(f"{branch}\n")
        user_git(repo, "add", f"{branch}.txt")
        user_git(repo, "commit", "-qm", branch)
    user_git(repo, "checkout", "-q", "main")
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")

    worktrees.add_worktree(repo, tmp_path / "two", "other", "main")
    assert merging.merge_into(repo, "feature", "release") == "merge"

    assert seen.read_text().split() == ["held", "held"]
