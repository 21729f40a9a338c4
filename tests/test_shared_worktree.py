"""The worktree shared by the attempts that write nothing, through real `orchestra run`
processes in real git repositories: command tasks that declare no writes share one
worktree per run-branch tip, see their dependencies' merged work, cannot change the
user's checkout, the run branch or the tree (a write beyond build output fails, sandboxed
or not, and nothing of it lands), and leave nothing behind: not at the run's end, not
after a SIGKILL and a resume, not after `orchestra gc`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from orchestra.engine import sandbox
from orchestra.testing import (
    make_git_repo,
    run_orchestra,
    scripted_tools_env,
    start_orchestra,
    tool_calls,
    wait_for,
    write_tool_script,
)

BWRAP, _, UNUSABLE = sandbox.probe()
#: the two ways a run's attempts go: confined by bubblewrap, or not
SANDBOXES = [
    "none",
    pytest.param(
        "bwrap", marks=pytest.mark.skipif(BWRAP is None, reason=f"no sandbox: {UNUSABLE}")
    ),
]
#: prints where the command runs and what it sees: its directory and HEAD
WHERE = "pwd; git rev-parse HEAD; ls"


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def rows(repo: Path, query: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def command(task: str, line: str, **more: str) -> str:
    extra = "".join(f"{key} = {value}\n" for key, value in more.items())
    return (
        f"[[tasks]]\nid = {json.dumps(task)}\nshell = true\ncommand = {json.dumps(line)}\n{extra}"
    )


def project(tmp_path: Path, *tasks: str, defaults: str = "", ignore: str = "") -> Path:
    """A repository with the workstream ``ws.toml`` of ``tasks``, committed; ``ignore``:
    more lines of its ``.gitignore``."""
    files = {"README.md": "# app\n", ".gitignore": ".orchestra/\n" + ignore}
    repo = make_git_repo(tmp_path / "repo", files)
    (repo / "ws.toml").write_text(f'id = "w"\n[defaults]\n{defaults}\n' + "".join(tasks))
    git(repo, "add", "ws.toml")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "workstream")
    return repo


def run(repo: Path, *arguments: str, box: str = "none", **env: str) -> dict:
    result = run_orchestra(
        "run", "ws.toml", "--json", *arguments, cwd=repo, env={"ORCHESTRA_SANDBOX": box, **env}
    )
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def log_of(repo: Path, run_id: str, task: str, attempt: int = 1) -> str:
    return (repo / ".orchestra" / "runs" / run_id / f"{task}.{attempt}.log").read_text()


def where(repo: Path, run_id: str, task: str) -> tuple[str, str, str]:
    """The directory the task ran in, the HEAD it saw there, and the files it listed."""
    output = [line for line in log_of(repo, run_id, task).splitlines() if line.strip()]
    directory = next(line for line in output if line.startswith("/"))
    head = output[output.index(directory) + 1]
    return directory, head, " ".join(output[output.index(directory) + 2 :])


def worktrees(repo: Path) -> list[str]:
    listed = git(repo, "worktree", "list", "--porcelain").splitlines()
    return [line.split(" ", 1)[1] for line in listed if line.startswith("worktree ")][1:]


def assert_nothing_left(repo: Path, run_id: str) -> None:
    """No worktree, no record of one, no attempt branch, no directory of the run, no lock."""
    assert worktrees(repo) == []
    admin = repo / ".git" / "worktrees"
    assert not admin.exists() or not list(admin.iterdir())
    assert not git(repo, "branch", "--list", "orchestra-tasks/*")
    run_directory = repo / ".orchestra" / "worktrees" / run_id
    assert not run_directory.exists() or not list(run_directory.iterdir())
    locks = [p for p in (repo / ".git").rglob("*.lock") if p.name != "orchestra-worktrees.lock"]
    assert locks == []


@pytest.mark.parametrize("box", SANDBOXES)
def test_commands_that_write_nothing_share_one_worktree_of_the_tip(tmp_path, box):
    names = [f"c{number}" for number in range(8)]
    repo = project(tmp_path, *(command(name, WHERE) for name in names))
    head, branch = git(repo, "rev-parse", "HEAD"), git(repo, "branch", "--show-current")

    summary = run(repo, "--max-parallel", "4", box=box)

    assert summary["state"] == "succeeded", summary
    run_id = summary["run"]
    seen = {where(repo, run_id, name) for name in names}
    # one directory for all eight, at the run branch's start (HEAD), holding its files
    ((directory, tip, files),) = seen
    assert Path(directory).parent == (repo / ".orchestra" / "worktrees" / run_id).resolve()
    assert Path(directory).name.startswith("shared-") and "." not in Path(directory).name
    assert tip == head.strip()
    assert files == "README.md ws.toml"
    # the user's checkout and branch as they were; the run merged nothing, left nothing
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "branch", "--show-current") == branch
    assert git(repo, "status", "--porcelain") == ""
    assert not git(repo, "branch", "--list", f"orchestra/{run_id}")
    assert_nothing_left(repo, run_id)


def test_a_dependent_command_sees_its_dependencys_merged_work_in_a_new_tree(tmp_path):
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [{}],
        tasks={"make": [{"action": "succeed", "edit": {"path": "a.txt", "content": "made\n"}}]},
    )
    repo = project(
        tmp_path,
        command("before", WHERE),
        '[[tasks]]\nid = "make"\nprompt = "p"\ntool = "alpha"\nfiles = { create = ["a.txt"] }\n',
        command("after", WHERE + "; cat a.txt", depends_on='["make"]'),
    )
    start = git(repo, "rev-parse", "HEAD").strip()

    summary = run(repo, "--max-parallel", "2", **scripted_tools_env(alpha=tool))

    assert summary["state"] == "succeeded", summary
    run_id = summary["run"]
    tip = git(repo, "rev-parse", f"orchestra/{run_id}").strip()
    before, after = where(repo, run_id, "before"), where(repo, run_id, "after")
    assert before[1] == start and "a.txt" not in before[2]
    assert after[1] == tip != start  # the tip with the merged change ...
    assert "a.txt" in after[2] and "made" in log_of(repo, run_id, "after")
    assert after[0] != before[0]  # ... in a tree of its own tip
    assert Path(after[0]).name.startswith(f"shared-{tip[:12]}-")
    assert_nothing_left(repo, run_id)


@pytest.mark.parametrize("box", SANDBOXES)
def test_a_command_that_writes_though_it_declares_no_writes_fails_and_nothing_lands(tmp_path, box):
    repo = project(
        tmp_path,
        # one at a time, in priority order: the first finds the tree as made (and starts
        # watching it), the second writes in it, and the third, in the tree made afresh,
        # must not see that
        command("first", WHERE, priority="2"),
        command("stray", "echo stolen > stray.txt && echo more >> README.md", priority="1"),
        command("clean", "test ! -e stray.txt && git diff --quiet && " + WHERE),
        defaults="max_attempts = 1",
    )
    head = git(repo, "rev-parse", "HEAD")

    summary = run(repo, "--max-parallel", "1", box=box)

    run_id = summary["run"]
    (stray,) = rows(repo, "SELECT * FROM attempts WHERE task_id = 'stray'")
    # it could write (the sandbox lets it, as it lets any attempt write its tree), and
    # what it wrote was found: the same failure, sandboxed or not, saying what to do
    assert stray["outcome"] == "failed"
    assert stray["error_class"] == "scope_violation"
    assert "README.md, stray.txt" in stray["message"]
    assert "declares no writes" in stray["message"]
    assert 'declare them: files = { write = ["README.md", "stray.txt"] }' in stray["message"]
    (clean,) = rows(repo, "SELECT * FROM attempts WHERE task_id = 'clean'")
    assert clean["outcome"] == "succeeded", log_of(repo, run_id, "clean")
    assert where(repo, run_id, "clean")[2] == "README.md ws.toml"
    # the written tree was given up: the next attempt got one made afresh
    assert where(repo, run_id, "clean")[0] != where(repo, run_id, "first")[0]
    # nothing of it landed anywhere, and the user's checkout is as it was
    assert not git(repo, "branch", "--list", f"orchestra/{run_id}")
    assert "stray.txt" not in git(repo, "log", "--all", "--name-only", "--format=")
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "README.md").read_text() == "# app\n"
    assert_nothing_left(repo, run_id)


def test_a_command_moving_the_shared_trees_head_or_the_run_branch_is_refused(tmp_path):
    repo = project(
        tmp_path,
        command("checkout", "git checkout -q --detach HEAD~1", priority="1"),
        command("mover", "git update-ref refs/heads/orchestra/$ORCHESTRA_RUN_ID HEAD~1"),
        defaults="max_attempts = 1",
    )
    head = git(repo, "rev-parse", "HEAD")

    summary = run(repo, "--max-parallel", "1")

    assert summary["state"] == "failed"
    (checkout,) = rows(repo, "SELECT * FROM attempts WHERE task_id = 'checkout'")
    assert checkout["error_class"] == "scope_violation"
    assert "its HEAD was moved" in checkout["message"]
    (mover,) = rows(repo, "SELECT * FROM attempts WHERE task_id = 'mover'")
    assert mover["error_class"] == "scope_violation"
    assert f"branch orchestra/{summary['run']} was moved" in mover["message"]
    assert git(repo, "rev-parse", "HEAD") == head
    assert_nothing_left(repo, summary["run"])


@pytest.mark.parametrize("box", SANDBOXES)
def test_build_output_and_caches_are_no_change_sandboxed_or_not(tmp_path, box):
    # what the repository ignores (build/) and what [workspace] ignore names (a cache, a
    # .pyc) is not the tree's: a command and its check write them, and pass, also when
    # others then run in the same tree, which is kept (not given up) and not written
    # anywhere else; a directory made empty is no change either
    writes = (
        "mkdir -p .pytest_cache build/out empty pkg/__pycache__ && date +%N > .pytest_cache/x"
        " && date +%N > build/out/y && date +%N > pkg/__pycache__/m.cpython-311.pyc && " + WHERE
    )
    repo = project(
        tmp_path,
        *(command(f"c{n}", writes, checks='["test -s build/out/y"]') for n in range(3)),
        ignore="build/\n",
    )
    summary = run(repo, "--max-parallel", "1", box=box)

    assert summary["state"] == "succeeded", rows(repo, "SELECT message FROM attempts")
    run_id = summary["run"]
    assert len({where(repo, run_id, f"c{n}")[0] for n in range(3)}) == 1  # one tree for all
    assert git(repo, "status", "--porcelain", "--ignored") == "!! .orchestra/\n"
    assert_nothing_left(repo, run_id)


@pytest.mark.parametrize("box", SANDBOXES)
def test_a_file_written_in_a_directory_an_earlier_command_made_is_found(tmp_path, box):
    # the first leaves an empty directory (no change to git); the second writes in it,
    # which the tree's watch must see though the directory was made after it started
    repo = project(
        tmp_path,
        command("first", WHERE, priority="3"),
        command("mkdir", "mkdir -p made/deeper", priority="2"),
        command("writer", "echo x > made/deeper/stray.txt", priority="1"),
        defaults="max_attempts = 1",
    )
    summary = run(repo, "--max-parallel", "1", box=box)

    assert summary["state"] == "failed"
    found = {row["task_id"]: row for row in rows(repo, "SELECT * FROM attempts")}
    assert found["first"]["outcome"] == found["mkdir"]["outcome"] == "succeeded"
    assert found["writer"]["error_class"] == "scope_violation"
    assert "made/deeper/stray.txt" in found["writer"]["message"]
    assert_nothing_left(repo, summary["run"])


def test_a_command_with_a_review_of_its_own_gets_a_worktree_of_its_own(tmp_path):
    approve = {"answer": '{"verdict": "approve", "comments": "fine"}'}
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[approve])
    repo = project(tmp_path, command("t", WHERE, review='{ tools = ["beta"] }'))

    summary = run(repo, **scripted_tools_env(beta=beta))

    assert summary["state"] == "succeeded", summary
    assert Path(where(repo, summary["run"], "t")[0]).name == "t.1"
    assert_nothing_left(repo, summary["run"])


def shared_tree_made(repo: Path) -> list[str]:
    return [tree for tree in worktrees(repo) if Path(tree).name.startswith("shared-")]


def killed_in_the_shared_tree(tmp_path: Path) -> tuple[Path, str, Path]:
    """A run SIGKILLed while two commands run in the shared worktree (they hold while
    ``hold`` exists, outside the repository); returns the repository, the run id and
    ``hold``. The project copies an untracked ``.env`` into each worktree."""
    hold = tmp_path / "hold"
    hold.write_text("")
    wait = f"while [ -e {hold} ]; do sleep 0.1; done; " + WHERE
    repo = project(tmp_path, command("a", wait), command("b", wait))
    (repo / "orchestra.toml").write_text('[workspace]\ncopy = [".env"]\n')
    (repo / ".env").write_text("KEY=1\n")
    running = start_orchestra("run", "ws.toml", "--quiet", cwd=repo, new_session=True)
    try:
        wait_for(lambda: shared_tree_made(repo), what="the shared worktree")
        (tree,) = shared_tree_made(repo)
        wait_for(lambda: (Path(tree) / ".env").exists(), what="the copied .env")
        wait_for(
            lambda: len(rows(repo, "SELECT * FROM attempts")) == 2, what="both attempts started"
        )
    finally:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait(timeout=30)
    (run_id,) = [row[0] for row in rows(repo, "SELECT id FROM runs")]
    return repo, run_id, hold


def test_a_run_killed_in_the_shared_tree_is_resumed_and_leaves_nothing(tmp_path):
    repo, run_id, hold = killed_in_the_shared_tree(tmp_path)
    assert shared_tree_made(repo)  # what the dead run left
    hold.unlink()

    resumed = run_orchestra("resume", run_id, "--json", cwd=repo)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "succeeded"
    events = rows(repo, "SELECT payload FROM events WHERE type = 'workspace.repaired'")
    assert any(
        "removed worktree" in event["payload"] and "shared-" in event["payload"] for event in events
    )
    assert_nothing_left(repo, run_id)
    assert git(repo, "status", "--porcelain") == "?? .env\n?? orchestra.toml\n"


def test_gc_removes_a_shared_tree_a_dead_run_left_though_it_holds_a_copied_file(tmp_path):
    repo, run_id, hold = killed_in_the_shared_tree(tmp_path)
    (tree,) = shared_tree_made(repo)
    hold.unlink()

    cleaned = run_orchestra("gc", cwd=repo)  # no --force: it holds no attempt's work

    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert f"removed worktree {tree}" in cleaned.stdout
    assert_nothing_left(repo, run_id)


def test_a_command_reviewed_by_the_defaults_review_gets_a_worktree_of_its_own(tmp_path):
    # a review of [defaults] reaches the workspace with the task: the command gets its
    # own worktree, and its reviewer reads its change there before it lands
    approve = {"answer": '{"verdict": "approve", "comments": "fine"}'}
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[approve])
    repo = project(
        tmp_path,
        command("t", "echo reviewed > out.txt; " + WHERE),
        defaults='review = { tools = ["beta"] }',
    )

    summary = run(repo, **scripted_tools_env(beta=beta))

    assert summary["state"] == "succeeded", summary
    run_id = summary["run"]
    assert Path(where(repo, run_id, "t")[0]).name == "t.1"
    (review,) = rows(repo, "SELECT * FROM reviews WHERE task_id = 't'")
    assert (review["verdict"], review["landed"]) == ("approve", 1)
    (asked,) = [call for call in tool_calls(beta) if call["kind"] == "review"]
    assert "+reviewed" in asked["prompt"]  # the diff of its change
    assert Path(asked["cwd"]).name == "t.1"
    assert git(repo, "show", f"orchestra/{run_id}:out.txt") == "reviewed\n"
    assert_nothing_left(repo, run_id)


def test_a_write_found_while_others_ran_beside_it_fails_them_all(tmp_path):
    # without the sandbox, a change cannot be told to be one attempt's when others were
    # in the tree too: every one of them fails, each told of the others
    gate = tmp_path / "gate"
    gate.mkdir()
    writer = (
        f"until [ -e {gate}/reader-in ]; do sleep 0.05; done; "
        f"echo x > stray.txt; touch {gate}/writer-done"
    )
    reader = f"touch {gate}/reader-in; until [ -e {gate}/writer-done ]; do sleep 0.05; done"
    repo = project(
        tmp_path, command("writer", writer), command("reader", reader), defaults="max_attempts = 1"
    )

    summary = run(repo, "--max-parallel", "2")

    assert summary["state"] == "failed"
    found = {row["task_id"]: row for row in rows(repo, "SELECT * FROM attempts")}
    for task, other in (("writer", "reader.1"), ("reader", "writer.1")):
        assert found[task]["error_class"] == "scope_violation"
        assert "stray.txt" in found[task]["message"]
        assert f"by it or by an attempt beside it ({other}): stray.txt" in found[task]["message"]
    assert_nothing_left(repo, summary["run"])
