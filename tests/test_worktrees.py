"""Isolation in real git repositories: a worktree per attempt, the run branch, scope,
merge conflicts and their retry, `.env` copied, `orchestra diff`, `--merge-into` and `gc`."""

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from orchestra.testing import (
    make_git_repo,
    orchestra_program,
    run_orchestra,
    scripted_tools_env,
    write_tool_script,
)
from orchestra.testing.scripted_tool import read_calls


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def rows(project: Path, query: str, *args):
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def edit(path: str, content: str, **more) -> dict:
    return {"action": "succeed", "edit": {"path": path, "content": content}, **more}


def run(project: Path, *arguments: str, env=None):
    return run_orchestra("run", "ws.toml", "--json", *arguments, cwd=project, env=env)


def worktrees(repo: Path) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def test_parallel_tasks_land_on_the_run_branch_and_the_users_tree_is_untouched(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    head, branch = git(repo, "rev-parse", "HEAD"), git(repo, "branch", "--show-current")
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [{}],
        tasks={name: [edit(f"{name}.txt", f"{name}\n")] for name in ("a", "b", "c")},
    )
    (repo / "ws.toml").write_text(
        'id = "w"\n'
        + "".join(
            f'[[tasks]]\nid = "{name}"\nprompt = "p"\ntool = "alpha"\n'
            f'files = {{ create = ["{name}.txt"] }}\n'
            for name in ("a", "b", "c")
        )
        + '[[tasks]]\nid = "after"\ncommand = ["sh", "-c", "cat a.txt b.txt c.txt"]\n'
        'depends_on = ["a", "b", "c"]\n'
    )

    result = run(repo, "--max-parallel", "3", env=scripted_tools_env(alpha=tool))

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    run_branch = f"orchestra/{summary['run']}"
    assert git(repo, "ls-tree", "--name-only", run_branch).split() == [
        "README.md",
        "a.txt",
        "b.txt",
        "c.txt",
    ]
    log = git(repo, "log", "--format=%s%n%b", run_branch)
    assert f"Orchestra-Run: {summary['run']}\nOrchestra-Task: b\nOrchestra-Attempt: 1\n" in log
    assert "Orchestra-Tool: alpha" in log
    # the dependent task ran on top of its dependencies' merged work
    (after,) = rows(repo, "SELECT * FROM attempts WHERE task_id = 'after'")
    assert after["outcome"] == "succeeded"
    # the user's branch, HEAD and working tree are as they were; no worktree is left
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "branch", "--show-current") == branch
    assert git(repo, "status", "--porcelain") == "?? ws.toml\n"
    assert worktrees(repo) == [str(repo.resolve())]
    assert not git(repo, "branch", "--list", "orchestra-tasks/*")
    assert run_branch in summary["notes"][0]
    # and the stored change of each attempt reads back
    diff = run_orchestra("diff", summary["run"], "b", cwd=repo)
    assert diff.returncode == 0 and "+b" in diff.stdout and "b.txt" in diff.stdout


def test_two_tasks_editing_the_same_line_conflict_and_the_retry_resolves(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"app.py": "VALUE = 0\n"})
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [{}],
        tasks={
            "first": [edit("app.py", "VALUE = 1\n")],
            # the second finishes later, from the same base: its change conflicts; its retry
            # starts from the tip that has the first one's change
            "second": [edit("app.py", "VALUE = 2\n", seconds=1.0), edit("app.py", "VALUE = 12\n")],
        },
    )
    (repo / "ws.toml").write_text(
        'id = "w"\n[defaults]\nbackoff = { initial = "0.05s", jitter = false }\n'
        '[[tasks]]\nid = "first"\nprompt = "p"\ntool = "alpha"\n'
        '[[tasks]]\nid = "second"\nprompt = "p"\ntool = "alpha"\n'
    )

    result = run(repo, "--max-parallel", "2", env=scripted_tools_env(alpha=tool))

    assert result.returncode == 0, result.stderr
    first, second = rows(repo, "SELECT * FROM attempts WHERE task_id = 'second' ORDER BY number")
    assert (first["error_class"], first["message"]) == (
        "merge_conflict",
        "merge conflict in app.py",
    )
    assert "conflicted, in app.py" in first["feedback"]
    assert second["outcome"] == "succeeded"
    # the retry is told why, and that it starts clean from the merged work
    retry = [call for call in read_calls(tool) if call["task"] == "second"][1]["prompt"]
    assert "conflicted, in app.py, with work merged meanwhile, and was not kept" in retry
    assert "This attempt starts clean from the work merged so far" in retry
    run_id = json.loads(result.stdout)["run"]
    assert git(repo, "show", f"orchestra/{run_id}:app.py") == "VALUE = 12\n"
    assert (repo / "app.py").read_text() == "VALUE = 0\n"


def test_a_change_outside_the_scope_is_refused_and_not_merged(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"allowed.txt": "a\n", "secret.txt": "s\n"})
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [
            {
                "action": "succeed",
                "edit": [
                    {"path": "allowed.txt", "content": "b\n"},
                    {"path": "secret.txt", "content": "leaked\n"},
                ],
            }
        ],
    )
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "t"\nprompt = "p"\ntool = "alpha"\n'
        'files = { write = ["allowed.txt"] }\n'
    )

    result = run(repo, env=scripted_tools_env(alpha=tool))

    assert result.returncode == 1
    (attempt,) = rows(repo, "SELECT * FROM attempts")
    assert attempt["error_class"] == "scope_violation"
    assert attempt["message"] == "changed secret.txt outside files.write/create"
    assert "leaked" in attempt["diff"]  # kept for the record, not merged
    # nothing was merged: the run leaves no branch, and says so
    summary = json.loads(result.stdout)
    assert not git(repo, "branch", "--list", f"orchestra/{summary['run']}")
    assert "left no branch" in summary["notes"][0]
    assert (repo / "secret.txt").read_text() == "s\n"


def test_env_is_copied_and_setup_runs_in_each_worktree_and_merge_into_fast_forwards(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {".gitignore": ".env\n"})
    (repo / ".env").write_text("TOKEN_NAME=demo\n")
    (repo / "orchestra.toml").write_text(
        '[workspace]\ncopy = [".env"]\nsetup = ["touch set-up-here"]\n'
    )
    git(repo, "add", "orchestra.toml")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "config")
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "t"\nshell = true\n'
        'command = "test -f set-up-here && grep -q TOKEN_NAME .env && echo done > out.txt"\n'
        'files = { create = ["out.txt", "set-up-here"] }\n'
    )
    branch = git(repo, "branch", "--show-current").strip()

    result = run(repo, "--merge-into", branch)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["merge"].startswith(f"merged orchestra/{summary['run']} into {branch}")
    # the checked-out branch moved forward and its working tree has the change
    assert (repo / "out.txt").read_text() == "done\n"
    assert "out.txt" in git(repo, "ls-files")


def test_gc_removes_what_a_crashed_run_left_and_keeps_a_live_runs_worktrees(tmp_path):
    repo = make_git_repo(tmp_path / "repo")
    tool = write_tool_script(tmp_path / "alpha.toml", [{"action": "hang", "seconds": 120}])
    (repo / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\nprompt = "p"\ntool = "alpha"\n')
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")},
        **scripted_tools_env(alpha=tool),
    }

    def start():
        return subprocess.Popen(
            [orchestra_program(), "run", "ws.toml", "--quiet"],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_for_worktrees(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(worktrees(repo)) < count + 1:
            assert time.monotonic() < deadline, "no worktree appeared"
            time.sleep(0.1)

    crashed = start()
    wait_for_worktrees(1)
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(timeout=10)
    subprocess.run(["pkill", "-f", str(tool)], check=False)  # its tool, left running
    live = start()
    try:
        wait_for_worktrees(2)
        dead_run, live_run = [row[0] for row in rows(repo, "SELECT id FROM runs ORDER BY rowid")]
        (dead_tree,) = [tree for tree in worktrees(repo) if dead_run in tree]
        (live_tree,) = [tree for tree in worktrees(repo) if live_run in tree]

        cleaned = run_orchestra("gc", cwd=repo)

        assert cleaned.returncode == 0, cleaned.stderr
        assert f"removed worktree {dead_tree}" in cleaned.stdout
        assert f"kept worktree {live_tree}: run {live_run} is running" in cleaned.stdout
        assert worktrees(repo)[1:] == [live_tree]
        assert not git(repo, "branch", "--list", f"orchestra-tasks/{dead_run}/*")
    finally:
        live.send_signal(signal.SIGINT)
        live.wait(timeout=30)


def test_a_twenty_task_run_leaves_no_worktree_behind(tmp_path):
    repo = make_git_repo(tmp_path / "repo")
    (repo / "ws.toml").write_text(
        'id = "w"\n'
        + "".join(
            f'[[tasks]]\nid = "t{i:02d}"\nshell = true\ncommand = "echo {i} > f{i:02d}.txt"\n'
            f'files = {{ create = ["f{i:02d}.txt"] }}\n'
            for i in range(20)
        )
    )

    result = run(repo, "--max-parallel", "4")

    assert result.returncode == 0, result.stdout + result.stderr
    run_id = json.loads(result.stdout)["run"]
    assert len(git(repo, "ls-tree", "--name-only", f"orchestra/{run_id}").split()) == 21  # + README
    assert worktrees(repo) == [str(repo.resolve())]
    assert not (repo / ".orchestra" / "worktrees" / run_id).exists() or not any(
        (repo / ".orchestra" / "worktrees" / run_id).iterdir()
    )


def test_a_tool_going_back_and_forth_is_quarantined_as_oscillating(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"value.txt": "0\n"})
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [edit("value.txt", "A\n"), edit("value.txt", "B\n"), edit("value.txt", "A\n")],
    )
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "t"\nprompt = "p"\ntool = "alpha"\nmax_attempts = 6\n'
        'backoff = { initial = "0.01s", jitter = false }\n'
        'checks = [{ command = "cat value.txt; false", shell = true }]\n'
    )

    result = run(repo, env=scripted_tools_env(alpha=tool))

    assert result.returncode == 1
    (step,) = rows(repo, "SELECT * FROM steps")
    assert step["state"] == "quarantined"
    assert step["reason"].startswith("oscillating: attempt 3 made the same change as attempt 1")
    assert len(rows(repo, "SELECT * FROM attempts")) == 3


def test_a_failing_setup_fails_the_attempt_and_a_too_large_change_is_refused(tmp_path):
    repo = make_git_repo(tmp_path / "repo")
    (repo / "orchestra.toml").write_text(
        "[workspace]\nsetup = [\"sh -c 'echo no network; exit 3'\"]\n"
    )
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "t"\ncommand = ["true"]\nmax_attempts = 1\n'
    )

    result = run(repo)

    assert result.returncode == 1
    (attempt,) = rows(repo, "SELECT * FROM attempts")
    assert attempt["error_class"] == "setup_failed"
    assert "exited 3" in attempt["message"]
    log = Path(attempt["log_path"]).read_text()
    assert "no network" in log  # the setup's output is in the attempt's log

    (repo / "orchestra.toml").unlink()
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "big"\nshell = true\nmax_attempts = 1\n'
        'command = "echo 1 > a; echo 2 > b; echo 3 > c"\nmax_files_changed = 2\n'
        'files = { create = ["a", "b", "c"] }\n'
    )
    result = run(repo)
    assert result.returncode == 1
    big = rows(repo, "SELECT * FROM attempts WHERE task_id = 'big'")[0]
    assert (big["error_class"], big["message"]) == (
        "scope_violation",
        "changed 3 files, more than 2",
    )


def test_a_setup_line_that_cannot_be_split_and_a_missing_merge_target_are_refused_up_front(
    tmp_path,
):
    repo = make_git_repo(tmp_path / "repo")
    (repo / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\ncommand = ["true"]\n')
    (repo / "orchestra.toml").write_text('[workspace]\nsetup = ["echo \'unclosed"]\n')

    unsplittable = run(repo)

    assert unsplittable.returncode == 2
    assert "field 'workspace.setup[0]': cannot split" in unsplittable.stderr
    (repo / "orchestra.toml").unlink()

    missing = run(repo, "--merge-into", "no-such-branch")

    assert missing.returncode == 2
    assert "--merge-into: there is no branch 'no-such-branch'" in missing.stderr
    assert not (repo / ".orchestra" / "orchestra.db").exists()  # nothing ran


def test_a_project_outside_git_runs_in_place_and_needs_no_git_program(tmp_path):
    from orchestra.git import has_git_marker

    project = tmp_path / "project"
    project.mkdir()
    assert not has_git_marker(project)  # the premise: no repository above the test's directory
    (project / "ws.toml").write_text(
        'id = "plain"\n\n[[tasks]]\nid = "a"\n'
        'command = ["/bin/sh", "-c", "echo done > made-here.txt"]\n'
    )
    no_programs = tmp_path / "empty-bin"  # PATH with no git on it
    no_programs.mkdir()
    completed = run(project, env={"PATH": str(no_programs)})
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["state"] == "succeeded"
    assert (project / "made-here.txt").read_text() == "done\n"  # in the project itself
