"""What a task's command does to git behind orchestra's back, without the sandbox.

Each test runs a real `orchestra run` (sandbox off: these hold whatever the sandbox does)
whose task tries one way out through git: moving the run branch (its name is in the
task's environment) so that a forbidden file is merged, naming a program in the
repository's configuration for orchestra's own git commands to run with its keys,
pointing its worktree's HEAD or git directory at the user's branch, or committing a
symbolic link that points outside the repository. Each must be refused as
`scope_violation`, and the user's repository left as it was.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from orchestra.testing import make_git_repo, run_orchestra

NO_SANDBOX = {"ORCHESTRA_SANDBOX": "none"}
#: what the tasks declare they write: each gets a worktree of its own, whose change
#: orchestra's git commits (a task that declares no writes shares one, and lands nothing)
OUT = '{ create = ["out.txt"] }'
#: a provider key orchestra holds: no program orchestra's git runs may see it
KEY = {"FAKE_PROVIDER_API_KEY": "sk-live-do-not-leak-4242"}


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def attempts(repo: Path) -> list[tuple]:
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        return db.execute(
            "SELECT task_id, number, outcome, error_class, message FROM attempts"
            " ORDER BY task_id, number"
        ).fetchall()


def project(tmp_path: Path, command: str, **task: str) -> Path:
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n", ".gitignore": ".orchestra/\n"})
    extra = "".join(f"{key} = {value}\n" for key, value in task.items())
    (repo / "ws.toml").write_text(
        'id = "w"\n[defaults]\nmax_attempts = 1\n'
        f'[[tasks]]\nid = "sly"\nshell = true\ncommand = {json.dumps(command)}\n{extra}'
    )
    git(repo, "add", "ws.toml")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "workstream")
    return repo


def run(repo: Path, *arguments: str) -> dict:
    result = run_orchestra(
        "run", "ws.toml", "--json", *arguments, cwd=repo, env={**NO_SANDBOX, **KEY}
    )
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_a_task_that_moves_the_run_branch_gets_nothing_merged(tmp_path):
    # the task commits a forbidden file straight onto the run branch and leaves its own
    # worktree clean, so that its "change" is empty and passes the scope check
    move = (
        "git show HEAD:README.md > /dev/null && "
        "blob=$(echo stolen | git hash-object -w --stdin) && "
        'tree=$(printf "100644 blob %s\\tsecret.txt\\n" "$blob" | git mktree) && '
        'commit=$(git commit-tree -p HEAD -m "innocent" "$tree") && '
        'git update-ref "refs/heads/orchestra/$ORCHESTRA_RUN_ID" "$commit"'
    )
    repo = project(tmp_path, move, files='{ write = ["out.txt"], forbidden = ["secret.txt"] }')
    main_before = git(repo, "rev-parse", "main")

    summary = run(repo, "--merge-into", "main")

    assert summary["state"] == "failed"
    [(_, _, outcome, error_class, message)] = attempts(repo)
    assert (outcome, error_class) == ("failed", "scope_violation")
    assert f"branch orchestra/{summary['run']} was moved" in message
    assert "'innocent'" in message and "put it back" in message
    # put back at its start, the branch held nothing of the run's: it is gone
    assert not git(repo, "branch", "--list", f"orchestra/{summary['run']}")
    assert "secret.txt" not in git(repo, "log", "--all", "--name-only", "--format=")
    assert git(repo, "rev-parse", "main") == main_before
    assert "secret.txt" not in git(repo, "ls-tree", "-r", "--name-only", "main")


def test_a_program_named_in_the_repository_config_never_runs_with_orchestras_keys(tmp_path):
    spy = tmp_path / "spy.sh"
    seen = tmp_path / "spy-ran.txt"
    spy.write_text(f"#!/bin/sh\nenv >> {seen}\nexit 1\n")
    spy.chmod(0o755)
    # core.fsmonitor runs on every status, diff or add; a filter runs when a file is
    # added; a merge driver when two changes meet; in the user's .git/config
    command = (
        f"git config core.fsmonitor {spy} && "
        f"git config filter.spy.clean {spy} && git config filter.spy.smudge {spy} && "
        f"git config merge.spy.driver {spy} && "
        "echo '* filter=spy merge=spy' > .gitattributes && echo hi > out.txt"
    )
    repo = project(tmp_path, command, files='{ create = ["out.txt", ".gitattributes"] }')

    summary = run(repo)

    assert not seen.exists(), seen.read_text()  # neither with the key nor without it
    [(_, _, outcome, error_class, message)] = attempts(repo)
    assert (outcome, error_class) == ("failed", "scope_violation")
    assert "configuration" in message and "put back" in message
    config = (repo / ".git" / "config").read_text()
    assert "fsmonitor" not in config and "spy" not in config  # as the user had it
    assert summary["state"] == "failed"
    assert git(repo, "status", "--porcelain") == ""  # the user's own git runs no spy now
    assert not seen.exists()


def test_orchestras_git_sees_none_of_its_secrets_even_through_a_users_own_config(tmp_path):
    # a program the user's own configuration names (a filter for *.txt) is neutralised
    # too: orchestra's commits pass contents through untouched and run nothing
    spy = tmp_path / "spy.sh"
    seen = tmp_path / "spy-ran.txt"
    spy.write_text(f"#!/bin/sh\nenv >> {seen}\ncat\n")
    spy.chmod(0o755)
    repo = project(tmp_path, "echo hi > out.txt", files=OUT)
    git(repo, "config", "filter.spy.clean", str(spy))
    (repo / ".gitattributes").write_text("*.txt filter=spy\n")
    git(repo, "add", ".gitattributes")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "attrs")
    seen.unlink(missing_ok=True)

    summary = run(repo)

    assert summary["state"] == "succeeded"
    assert not seen.exists()
    assert git(repo, "show", f"orchestra/{summary['run']}:out.txt") == "hi\n"


def test_a_task_that_points_its_worktree_head_at_the_users_branch_moves_nothing(tmp_path):
    repo = project(
        tmp_path, "git symbolic-ref HEAD refs/heads/main && echo hi > out.txt", files=OUT
    )
    main_before = git(repo, "rev-parse", "main")

    summary = run(repo)

    assert summary["state"] == "failed"
    [(_, _, outcome, error_class, message)] = attempts(repo)
    assert (outcome, error_class) == ("failed", "scope_violation")
    assert "HEAD was moved" in message and "main" in message
    assert git(repo, "rev-parse", "main") == main_before
    assert git(repo, "status", "--porcelain") == ""


def test_a_task_that_rewrites_its_worktrees_git_file_does_not_reach_the_users_repo(tmp_path):
    # the .git file says where the repository is; orchestra does not ask it
    repo = project(
        tmp_path,
        'echo "gitdir: $(git rev-parse --git-common-dir)" > .git; echo hi > out.txt',
        files=OUT,
    )
    main_before = git(repo, "rev-parse", "main")

    summary = run(repo)

    assert git(repo, "rev-parse", "main") == main_before
    assert git(repo, "status", "--porcelain") == ""
    assert "out.txt" not in git(repo, "ls-tree", "--name-only", "main")
    assert not list((repo / ".git" / "worktrees").glob("*"))
    assert not git(repo, "branch", "--list", "orchestra-tasks/*")
    logs = list((repo / ".orchestra" / "runs" / summary["run"]).glob("*.log"))
    assert not any("could not clean up" in log.read_text() for log in logs)
    if summary["state"] == "succeeded":
        branch = f"orchestra/{summary['run']}"
        assert git(repo, "show", f"{branch}:out.txt") == "hi\n"


def test_a_symbolic_link_out_of_the_repository_is_a_scope_violation(tmp_path):
    (tmp_path / "outside").mkdir()
    repo = project(
        tmp_path,
        f"ln -s {tmp_path / 'outside'} escape && ln -s ../../.. up",
        files='{ create = ["escape", "up"] }',
    )

    summary = run(repo)

    assert summary["state"] == "failed"
    [(_, _, outcome, error_class, message)] = attempts(repo)
    assert (outcome, error_class) == ("failed", "scope_violation")
    assert f"made escape a symbolic link to {tmp_path / 'outside'}" in message
    assert "made up a symbolic link to ../../.." in message
    assert not git(repo, "branch", "--list", f"orchestra/{summary['run']}")  # nothing landed
    assert "escape" not in git(repo, "log", "--all", "--name-only", "--format=")


def test_a_symbolic_link_inside_the_repository_is_fine(tmp_path):
    repo = project(
        tmp_path,
        "mkdir -p docs && ln -s ../README.md docs/readme",
        files='{ create = ["docs/readme"] }',
    )
    summary = run(repo)
    assert summary["state"] == "succeeded"
    assert git(repo, "show", f"orchestra/{summary['run']}:docs/readme") == "../README.md"
