"""What a newcomer's first runs in their own repository meet (issue 17), each with a real
`orchestra run` in a real git repository: uncommitted work is named at the start and can
be brought in; build output and what checks write never become the task's change; a
retry is told the truth about the working tree it starts in; and run branches do not
pile up.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from orchestra.testing import (
    make_git_repo,
    run_orchestra,
    scripted_tools_env,
    start_orchestra,
    wait_for,
    write_tool_script,
)
from orchestra.testing.scripted_tool import read_calls


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def commit(repo: Path, path: str, message: str) -> None:
    git(repo, "add", path)
    git(repo, "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-q", "-m", message)


def attempts(repo: Path, task: str | None = None) -> list[sqlite3.Row]:
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        where, args = ("WHERE task_id = ?", (task,)) if task else ("", ())
        return db.execute(
            f"SELECT * FROM attempts {where} ORDER BY task_id, number", args
        ).fetchall()


def workstream(repo: Path, body: str) -> None:
    (repo / "ws.toml").write_text('id = "w"\n[defaults]\nbackoff = { initial = "0.01s" }\n' + body)


def run(repo: Path, *arguments: str, env=None) -> subprocess.CompletedProcess[str]:
    result = run_orchestra("run", "ws.toml", "--json", *arguments, cwd=repo, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def run_branch(result: subprocess.CompletedProcess[str]) -> str:
    return f"orchestra/{json.loads(result.stdout)['run']}"


def run_worktrees(repo: Path) -> list[str]:
    """The worktrees of orchestra's runs: an attempt's own, or the one that the commands
    declaring no writes share (made when such an attempt starts)."""
    listed = git(repo, "worktree", "list", "--porcelain").splitlines()
    return [line for line in listed if line.startswith("worktree ") and "/.orchestra/" in line]


# -- 1. uncommitted work ------------------------------------------------------------------


def dirty_repository(tmp_path: Path) -> Path:
    files = {name: f"{name} as committed\n" for name in ("a.txt", "b.txt", "c.txt", "d.txt")}
    repo = make_git_repo(
        tmp_path / "repo", {".gitignore": ".orchestra/\n", "app.py": "V = 0\n", **files}
    )
    (repo / "app.py").write_text("V = 1  # edited\n")  # changed, not staged
    for name in ("a.txt", "b.txt"):
        (repo / name).write_text("edited\n")
    git(repo, "add", "b.txt")  # staged
    (repo / "c.txt").unlink()  # deleted
    (repo / "new.py").write_text("added\n")
    git(repo, "add", "new.py")  # a new file, added
    (repo / "scratch.txt").write_text("never added\n")  # untracked: never part of the run
    return repo


def test_uncommitted_changes_are_named_at_the_start_and_tasks_do_not_see_them(tmp_path):
    repo = dirty_repository(tmp_path)
    workstream(
        repo,
        '[[tasks]]\nid = "t"\nmax_attempts = 1\ncommand = ["grep", "-q", "edited", "app.py"]\n',
    )

    result = run(repo)

    assert result.returncode == 1  # the task saw app.py as committed
    notices = [line for line in result.stderr.splitlines() if "uncommitted" in line]
    assert notices == [
        "orchestra: 5 files have uncommitted changes (a.txt, app.py, b.txt and 2 more);"
        " tasks will not see them: they start from your last commit"
        " (--include-uncommitted brings them in)"
    ]


def test_include_uncommitted_starts_the_run_from_them_and_leaves_the_users_tree_alone(tmp_path):
    repo = dirty_repository(tmp_path)
    check = "grep -q edited app.py && grep -q edited b.txt && test ! -e c.txt && test -e new.py"
    workstream(
        repo,
        f'[[tasks]]\nid = "t"\nmax_attempts = 1\nshell = true\n'
        f'command = "{check} && test ! -e scratch.txt && echo done > out.txt"\n'
        'files = { create = ["out.txt"] }\n',
    )
    head, status = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")
    staged = git(repo, "diff", "--cached")

    result = run(repo, "--include-uncommitted")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the run starts from your last commit plus your uncommitted changes to 5 files" in (
        result.stderr
    )
    branch = run_branch(result)
    # the branch: a commit of the uncommitted changes on HEAD, then the task's change
    subjects = git(repo, "log", "--format=%s", f"{head.strip()}..{branch}").splitlines()
    assert subjects == ["t", "Uncommitted changes at the start of the run"]
    snapshot = git(repo, "log", "-1", "--format=%B", f"{branch}~1")
    assert "Orchestra-Snapshot: uncommitted" in snapshot
    assert git(repo, "show", f"{branch}:app.py") == "V = 1  # edited\n"
    assert "scratch.txt" not in git(repo, "ls-tree", "--name-only", branch)
    # nothing of the user's moved: HEAD, the index (b.txt and new.py still staged), the files
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "diff", "--cached") == staged
    assert git(repo, "status", "--porcelain") == status
    assert (repo / "app.py").read_text() == "V = 1  # edited\n"


def test_a_resumed_run_keeps_the_uncommitted_changes_it_started_from(tmp_path):
    repo = dirty_repository(tmp_path)
    flag = tmp_path / "go-on"
    workstream(
        repo,
        '[[tasks]]\nid = "t"\nshell = true\n'
        f'command = "grep -q edited app.py && until test -e {flag}; do sleep 0.05; done"\n',
    )
    running = start_orchestra("run", "ws.toml", "--include-uncommitted", cwd=repo, new_session=True)
    wait_for(lambda: run_worktrees(repo), what="the attempt's (shared) worktree")
    os.killpg(running.pid, signal.SIGKILL)
    running.wait(timeout=30)
    git(repo, "checkout", "--", "app.py")  # the user drops their edit meanwhile
    flag.touch()
    (run_id,) = {row["run_id"] for row in attempts(repo)}

    resumed = run_orchestra("resume", run_id, cwd=repo)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    last = attempts(repo, "t")[-1]
    assert (last["number"], last["outcome"]) == (2, "succeeded")  # it still saw the edit


# -- 2. build output and what checks write ------------------------------------------------


def test_a_read_only_test_run_commits_no_build_output(tmp_path):
    # no .gitignore at all: pytest's cache and bytecode are ignored all the same
    repo = make_git_repo(
        tmp_path / "repo",
        {"hello.py": "def greet():\n    return 'hi'\n", "test_hello.py": TEST_HELLO},
    )
    workstream(
        repo,
        '[[tasks]]\nid = "tests"\ntitle = "Run the tests"\nshell = true\n'
        f'command = "{sys.executable} -m pytest -q && ls .pytest_cache __pycache__"\n',
    )

    result = run(repo)

    assert result.returncode == 0, result.stdout + result.stderr
    [attempt] = attempts(repo)
    assert attempt["diff"] is None  # nothing of what pytest wrote is the task's change
    assert not git(repo, "branch", "--list", run_branch(result))


TEST_HELLO = "from hello import greet\n\ndef test_greet():\n    assert greet() == 'hi'\n"


def test_what_the_checks_write_is_not_the_tasks_change(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n", "hello.py": "X = 0\n"})
    tool = write_tool_script(
        tmp_path / "alpha.toml", [{"edit": {"path": "hello.py", "content": "X = 1\n"}}]
    )
    workstream(
        repo,
        '[[tasks]]\nid = "t"\nprompt = "p"\ntool = "alpha"\nmax_attempts = 1\n'
        'files = { write = ["hello.py"] }\n'
        f"checks = [\"{sys.executable} -c 'import hello'\","
        ' { command = "echo report > check-report.txt", shell = true }]\n',
    )

    result = run(repo, env=scripted_tools_env(alpha=tool))

    assert result.returncode == 0, result.stdout + result.stderr
    [attempt] = attempts(repo)
    assert attempt["outcome"] == "succeeded"  # no scope_violation for the check's files
    assert git(repo, "ls-tree", "-r", "--name-only", run_branch(result)).split() == [
        ".gitignore",
        "hello.py",
    ]
    assert git(repo, "show", f"{run_branch(result)}:hello.py") == "X = 1\n"


def test_the_ignore_setting_replaces_the_built_in_list(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n"})
    (repo / "orchestra.toml").write_text('[workspace]\nignore = ["*.log"]\n')
    workstream(
        repo,
        '[[tasks]]\nid = "t"\nshell = true\n'
        'command = "echo x > build.log && mkdir -p __pycache__ && echo y > __pycache__/m.pyc"\n'
        'files = { create = ["build.log", "__pycache__/m.pyc"] }\n',
    )

    result = run(repo)

    assert result.returncode == 0, result.stdout + result.stderr
    assert git(repo, "ls-tree", "-r", "--name-only", run_branch(result)).split() == [
        ".gitignore",
        "__pycache__/m.pyc",  # no longer ignored: the list was replaced
    ]
    (repo / "orchestra.toml").write_text('[workspace]\nignore = ["*.log", " "]\n')
    refused = run_orchestra("validate", "ws.toml", cwd=repo)
    assert refused.returncode == 2
    assert "workspace.ignore[1]" in refused.stderr and "Traceback" not in refused.stderr


# -- 3. what a retry starts from, and what it is told -------------------------------------


def test_a_retry_after_a_failed_check_goes_on_from_the_previous_change_and_says_so(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n", "hello.txt": "zero\n"})
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [
            {
                "edit": [
                    {"path": "hello.txt", "content": "first\n"},
                    {"path": "extra.txt", "content": "kept\n"},
                ]
            },
            {"append": {"path": "hello.txt", "text": "second\n"}},
        ],
    )
    workstream(
        repo,
        '[[tasks]]\nid = "t"\nprompt = "Write hello.txt"\ntool = "alpha"\n'
        'checks = ["grep -q second hello.txt"]\n',
    )

    result = run(repo, env=scripted_tools_env(alpha=tool))

    assert result.returncode == 0, result.stdout + result.stderr
    first, second = attempts(repo)
    assert (first["error_class"], second["outcome"]) == ("check_failed", "succeeded")
    branch = run_branch(result)
    assert git(repo, "show", f"{branch}:hello.txt") == "first\nsecond\n"
    assert git(repo, "show", f"{branch}:extra.txt") == "kept\n"
    retry = read_calls(tool)[1]["prompt"]
    assert "The check `grep -q second hello.txt` exited 1 after your last attempt." in retry
    assert "Your last attempt's change is already in the working tree, uncommitted" in retry


def test_a_continued_retry_sees_git_as_a_person_would(tmp_path):
    """The carried change shows in the retry's own git as changes, nothing else: not the
    repository's files as deleted and untracked (git 2.39's `apply --intent-to-add`
    writes an index of the new files alone)."""
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n", "a.txt": "a\n"})
    commit_status = "git status --porcelain > status.txt; echo x >> out.txt"
    workstream(
        repo,
        f'[[tasks]]\nid = "t"\nshell = true\ncommand = "{commit_status}"\n'
        'files = { create = ["status.txt", "out.txt"] }\n'
        'checks = [{ command = "test $(wc -l < out.txt) -ge 2", shell = true }]\n',
    )

    result = run(repo)

    assert result.returncode == 0, result.stdout + result.stderr
    seen = git(repo, "show", f"{run_branch(result)}:status.txt").splitlines()
    assert sorted(seen) == [" A out.txt", " A status.txt"]


def test_a_retry_whose_previous_change_no_longer_applies_starts_clean_and_says_so(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n", "app.py": "V = 0\n"})
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [{}],
        tasks={
            "a": [
                {"edit": {"path": "app.py", "content": "V = 1\n"}},
                {"edit": {"path": "app.py", "content": "V = 12\n"}},
            ],
            "b": [{"edit": {"path": "app.py", "content": "V = 2\n"}}],
        },
    )
    # a's first check fails only once b's change (to the same line) is on the run branch
    landed = (
        'until git log --format=%s "orchestra/$ORCHESTRA_RUN_ID" | grep -qx b; do sleep 0.05; done'
    )
    workstream(
        repo,
        '[[tasks]]\nid = "a"\nprompt = "p"\ntool = "alpha"\n'
        f"checks = [{{ command = {json.dumps(landed + ' && grep -q 12 app.py')}, shell = true }}]\n"
        '[[tasks]]\nid = "b"\nprompt = "p"\ntool = "alpha"\n',
    )

    result = run(repo, "--max-parallel", "2", env=scripted_tools_env(alpha=tool))

    assert result.returncode == 0, result.stdout + result.stderr
    first, second = attempts(repo, "a")
    assert (first["error_class"], second["outcome"]) == ("check_failed", "succeeded")
    retry = [call for call in read_calls(tool) if call["task"] == "a"][1]["prompt"]
    assert "Your last attempt's change no longer applies to the work merged since" in retry
    assert git(repo, "show", f"{run_branch(result)}:app.py") == "V = 12\n"


def test_a_retry_after_a_refused_change_starts_clean_and_says_so(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n"})
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [
            {"edit": [{"path": "ok.txt", "content": "1\n"}, {"path": "bad.txt", "content": "x\n"}]},
            {"edit": {"path": "ok.txt", "content": "2\n"}},
        ],
    )
    workstream(
        repo,
        '[[tasks]]\nid = "t"\nprompt = "p"\ntool = "alpha"\nnon_retryable = []\n'
        'files = { create = ["ok.txt"] }\n',
    )

    result = run(repo, env=scripted_tools_env(alpha=tool))

    assert result.returncode == 0, result.stdout + result.stderr
    first, second = attempts(repo)
    assert (first["error_class"], second["outcome"]) == ("scope_violation", "succeeded")
    retry = read_calls(tool)[1]["prompt"]
    assert "Your last attempt's change was refused, and not kept: changed bad.txt" in retry
    assert "This attempt starts clean from the work merged so far" in retry
    # had bad.txt still been there, the second change would have been refused again
    assert git(repo, "ls-tree", "--name-only", run_branch(result)).split() == [
        ".gitignore",
        "ok.txt",
    ]


def test_in_place_a_retry_is_told_the_directory_is_as_the_last_attempt_left_it(tmp_path):
    project = tmp_path / "project"  # no git: the inplace workspace
    project.mkdir()
    tool = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "fail", "message": "not yet"}, {"action": "succeed"}]
    )
    workstream(project, '[[tasks]]\nid = "t"\nprompt = "p"\ntool = "alpha"\n')

    result = run(project, env=scripted_tools_env(alpha=tool))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "as your last attempt left it" in read_calls(tool)[1]["prompt"]


# -- 4. run branches ----------------------------------------------------------------------


def test_a_run_that_merged_nothing_leaves_no_branch_canceled_or_not(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n"})
    workstream(repo, '[[tasks]]\nid = "t"\ncommand = ["true"]\n')

    result = run(repo)

    assert result.returncode == 0, result.stdout + result.stderr
    branch = run_branch(result)
    assert not git(repo, "branch", "--list", branch)
    notes = json.loads(result.stdout)["notes"]
    assert notes == [f"no changes were merged, so the run left no branch ({branch} removed)"]

    workstream(repo, '[[tasks]]\nid = "t"\ncommand = ["sleep", "60"]\n')
    running = start_orchestra("run", "ws.toml", cwd=repo)
    wait_for(lambda: run_worktrees(repo), what="the attempt's (shared) worktree")
    running.send_signal(signal.SIGTERM)
    out, err = running.communicate(timeout=60)
    assert running.returncode == 130, out + err
    assert "left no branch" in out
    assert git(repo, "branch", "--list", "orchestra/*") == ""


def test_gc_prunes_old_run_branches_and_never_a_users_or_a_live_runs(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".orchestra/\n"})
    made = []
    for number in range(3):
        workstream(
            repo,
            f'[[tasks]]\nid = "t"\nshell = true\ncommand = "echo {number} > n.txt"\n'
            'files = { create = ["n.txt"] }\n',
        )
        made.append(run_branch(run(repo)))
    # a branch the user made with a name like orchestra's, and one they committed on
    git(repo, "branch", "orchestra/20200101-000000-abcd")
    git(repo, "checkout", "-q", made[0])
    (repo / "mine.txt").write_text("mine\n")
    commit(repo, "mine.txt", "my own work")
    git(repo, "checkout", "-q", "main")
    workstream(repo, '[[tasks]]\nid = "t"\ncommand = ["sleep", "60"]\n')
    live = start_orchestra("run", "ws.toml", "--json", cwd=repo)
    wait_for(lambda: run_worktrees(repo), what="the live run's (shared) worktree")
    live_branch = git(repo, "branch", "--list", "--format=%(refname:short)", "orchestra/*")
    live_branch = (set(live_branch.split()) - set(made) - {"orchestra/20200101-000000-abcd"}).pop()

    try:
        refused = run_orchestra("gc", "--branches", cwd=repo)
        dry = run_orchestra("gc", "--branches", "--keep", "2", "--dry-run", cwd=repo)
        young = run_orchestra("gc", "--branches", "--older-than", "7d", cwd=repo)
        pruned = run_orchestra("gc", "--branches", "--keep", "0", cwd=repo)
        left = set(
            git(repo, "branch", "--list", "--format=%(refname:short)", "orchestra/*").split()
        )
    finally:
        live.send_signal(signal.SIGTERM)
        live.communicate(timeout=60)

    assert refused.returncode == 2 and "--branches needs --older-than, --keep" in refused.stderr
    assert dry.returncode == 0, dry.stderr
    assert f"would remove branch {made[1]}" in dry.stdout
    assert f"branch {made[2]}" not in dry.stdout  # the live run's and this one: the 2 newest
    assert f"kept branch {made[0]}: it moved since run" in dry.stdout
    assert young.returncode == 0 and "branch orchestra/" not in young.stdout
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    live_run = live_branch.removeprefix("orchestra/")
    assert f"kept branch {live_branch}: run {live_run} is running" in pruned.stdout
    assert f"removed branch {made[1]}" in pruned.stdout
    assert f"removed branch {made[2]}" in pruned.stdout
    assert left == {made[0], live_branch, "orchestra/20200101-000000-abcd"}


def test_the_built_in_ignore_list_is_the_documented_one():
    from orchestra.config import DEFAULT_IGNORE

    docs = Path(__file__).resolve().parents[1] / "docs"
    listed = (docs / "workspaces.md").read_text().split("## Build output and caches")[1]
    block = listed.split("```")[1].split()
    assert block == list(DEFAULT_IGNORE)
    configuration = (docs / "configuration.md").read_text()
    assert all(f"`{pattern}`" in configuration for pattern in DEFAULT_IGNORE)
