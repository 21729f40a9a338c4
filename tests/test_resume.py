"""resume: a canceled run goes on where it stopped, and what resume records before the run
loop starts (leftovers stopped, attempts closed, steps reopened) reaches the sinks and the
console. Real git repositories and worktrees, real processes and signals."""

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from orchestra.testing import (
    make_git_repo,
    run_orchestra,
    run_orchestra_on_a_terminal,
    start_orchestra,
    wait_for,
)

#: `first` lands a change; `long` sleeps on its first attempt (until canceled) and lands a
#: change on the next; `after` waits for it. ORCHESTRA_ATTEMPT tells the attempts apart:
#: each starts in a fresh worktree, so no file could.
CANCELABLE = """
id = "cancelable"

[[tasks]]
id = "first"
shell = true
command = "echo one > first.txt"
files = { create = ["first.txt"] }

[[tasks]]
id = "long"
depends_on = ["first"]
shell = true
command = "if [ $ORCHESTRA_ATTEMPT = 1 ]; then echo started; exec sleep 60; fi; echo two > long.txt"
files = { create = ["long.txt"] }

[[tasks]]
id = "after"
depends_on = ["long"]
command = ["true"]
"""


def db_rows(project: Path, query: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def the_run(project: Path) -> str:
    (row,) = db_rows(project, "SELECT id FROM runs")
    return row["id"]


def first_attempt_started(project: Path, task: str) -> bool:
    """Whether attempt 1 of ``task`` has printed ``started`` in its log."""
    logs = list((project / ".orchestra" / "runs").glob(f"*/{task}.1.log"))
    return bool(logs) and "started" in logs[0].read_text()


def steps(project: Path) -> dict[str, str]:
    return {row["task_id"]: row["state"] for row in db_rows(project, "SELECT * FROM steps")}


def attempts(project: Path) -> dict[str, list[str]]:
    outcomes: dict[str, list[str]] = {}
    for row in db_rows(project, "SELECT task_id, outcome FROM attempts ORDER BY task_id, number"):
        outcomes.setdefault(row["task_id"], []).append(row["outcome"])
    return outcomes


def test_a_run_canceled_with_ctrl_c_resumes_without_redoing_what_succeeded(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "x\n", "ws.toml": CANCELABLE})
    process = start_orchestra("run", "ws.toml", "--plain", cwd=repo)
    wait_for(lambda: first_attempt_started(repo, "long"), what="long's first attempt")
    process.send_signal(signal.SIGINT)
    printed, _ = process.communicate(timeout=30)
    assert process.returncode == 130
    run_id = the_run(repo)
    assert steps(repo) == {"first": "succeeded", "long": "canceled", "after": "canceled"}
    assert f"to go on with it: orchestra resume {run_id}" in printed

    resumed = run_orchestra("resume", run_id, "--plain", cwd=repo)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"run {run_id} succeeded: 3 succeeded" in resumed.stdout
    # what resume reopened is said on the console, one line each
    assert "long  pending  — canceled; tried again on resume" in resumed.stdout
    assert "after  pending  — canceled; tried again on resume" in resumed.stdout
    assert steps(repo) == {"first": "succeeded", "long": "succeeded", "after": "succeeded"}
    assert attempts(repo) == {
        "first": ["succeeded"],  # not run again
        "long": ["canceled", "succeeded"],
        "after": ["succeeded"],
    }
    # each change is on the run branch once, the resumed one on top of the first
    branch = f"orchestra/{run_id}"
    assert git(repo, "log", "--format=%s", f"main..{branch}").splitlines() == ["long", "first"]
    assert git(repo, "show", f"{branch}:long.txt") == "two"
    (run,) = db_rows(repo, "SELECT state, started_at, ended_at FROM runs")
    assert run["state"] == "succeeded" and run["ended_at"] > run["started_at"]


def test_a_canceled_run_whose_branch_was_deleted_resumes_from_where_it_started(tmp_path):
    # nothing landed before the cancel, so the run branch may have been deleted at its end
    # (a run with no change keeps no branch); the user's branch has moved on since
    workstream = CANCELABLE.replace('"echo one > first.txt"', '"true"')
    repo = make_git_repo(tmp_path / "repo", {"README.md": "x\n", "ws.toml": workstream})
    started_at = git(repo, "rev-parse", "HEAD")
    process = start_orchestra("run", "ws.toml", "--quiet", cwd=repo)
    wait_for(lambda: first_attempt_started(repo, "long"), what="long's first attempt")
    run_id = the_run(repo)
    told = run_orchestra("cancel", run_id, cwd=repo)
    assert told.returncode == 0, told.stderr
    assert process.wait(timeout=30) == 130
    branch = f"orchestra/{run_id}"
    if git(repo, "branch", "--list", branch):
        git(repo, "branch", "-D", branch)
    (repo / "README.md").write_text("moved on\n")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qam", "later")

    resumed = run_orchestra("resume", run_id, "--json", cwd=repo)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == {"succeeded": 3}
    assert attempts(repo)["first"] == ["succeeded"]
    # the branch is made again where the run started, not at the user's moved HEAD
    assert git(repo, "log", "--format=%s", f"{started_at}..{branch}").splitlines() == ["long"]
    assert git(repo, "rev-parse", f"{branch}~1") == started_at


def test_resume_still_refuses_a_run_that_succeeded_or_failed(tmp_path):
    repo = make_git_repo(
        tmp_path / "repo",
        {"ws.toml": 'id = "w"\n[[tasks]]\nid = "bad"\ncommand = ["false"]\nmax_attempts = 1\n'},
    )
    failed = run_orchestra("run", "ws.toml", "--quiet", cwd=repo)
    assert failed.returncode == 1
    refused = run_orchestra("resume", the_run(repo), cwd=repo)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: run {the_run(repo)} is failed: only an interrupted or canceled run resumes"
    )


# -- what resume records reaches the sinks -------------------------------------------------

#: attempt 1 leaves a child in the background that outlives a killed orchestrator
LEAVES_A_CHILD = """
id = "crashing"

[[tasks]]
id = "long"
shell = true
command = "if [ $ORCHESTRA_ATTEMPT = 1 ]; then sleep 300 & echo started; wait; fi; echo two > long.txt"
files = { create = ["long.txt"] }
"""


def killed_mid_attempt(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose run was killed (SIGKILL) while its task ran; the run's id."""
    repo = make_git_repo(
        tmp_path / "repo",
        {"ws.toml": LEAVES_A_CHILD, "orchestra.toml": 'sinks = ["console", "jsonl"]\n'},
    )
    process = start_orchestra("run", "ws.toml", "--plain", cwd=repo)
    wait_for(lambda: first_attempt_started(repo, "long"), what="long's first attempt")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    return repo, the_run(repo)


def test_what_resume_recorded_reaches_the_jsonl_file_and_the_console(tmp_path):
    repo, run_id = killed_mid_attempt(tmp_path)
    events_file = repo / ".orchestra" / "runs" / run_id / "events.jsonl"
    before = len(events_file.read_text().splitlines())

    resumed = run_orchestra("resume", run_id, "--plain", cwd=repo)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    lines = [json.loads(line) for line in events_file.read_text().splitlines()[before:]]
    kinds = [line["type"] for line in lines]
    # what resume did comes first, in order, and then the run goes on
    assert kinds[:3] == ["run.leftovers_stopped", "step.retrying", "run.running"], kinds
    stopped, retrying = lines[0], lines[1]
    assert stopped["payload"]["pids"], stopped
    assert retrying["task"] == "long" and retrying["payload"]["attempt"] == 1
    assert "interrupted" in retrying["payload"]["reason"]
    assert "workspace.repaired" in kinds
    assert kinds[-1] == "run.succeeded"
    # the sinks saw what the database holds since, in the same order, but for the events
    # that stay in the database (an attempt's end is told by its step's next state)
    recorded = [row["type"] for row in db_rows(repo, "SELECT type FROM events ORDER BY seq")]
    database_only = {"run.claimed", "attempt.started", "attempt.finished"}
    assert [kind for kind in recorded if kind not in database_only][-len(kinds) :] == kinds

    shown = resumed.stdout.splitlines()
    pids = stopped["payload"]["pids"]
    what = "1 process" if len(pids) == 1 else f"{len(pids)} processes"
    said = f"stopped {what} its last orchestrator left (pid {', '.join(map(str, pids))})"
    assert any(said in line for line in shown), shown
    assert any(
        "long  retrying  (attempt 1)  — interrupted: the orchestrator stopped while it ran" in s
        for s in shown
    ), shown
    assert any("workspace worktree  repaired  — removed worktree" in s for s in shown), shown


def run_on_a_terminal(cwd: Path, *arguments: str) -> str:
    """Run orchestra with a pseudo-terminal as its stdout; return all it wrote."""
    status, output = run_orchestra_on_a_terminal(*arguments, cwd=cwd, columns=200)
    assert status == 0, output
    return output


def canceled_mid_attempt(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose run was canceled (Ctrl-C) while its task ran; the run's id."""
    repo = make_git_repo(tmp_path / "repo", {"README.md": "x\n", "ws.toml": CANCELABLE})
    process = start_orchestra("run", "ws.toml", "--quiet", cwd=repo)
    wait_for(lambda: first_attempt_started(repo, "long"), what="long's first attempt")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    return repo, the_run(repo)


@pytest.mark.parametrize(
    "stopped, expected",
    [
        (
            killed_mid_attempt,
            [
                "its last orchestrator left (pid ",
                "long  retrying  (attempt 1)  — interrupted",
            ],
        ),
        (
            canceled_mid_attempt,
            [
                "long  pending  — canceled; tried again on resume",
                "after  pending  — canceled; tried again on resume",
            ],
        ),
    ],
    ids=["killed", "canceled"],
)
def test_the_live_view_keeps_what_resume_did_above_it(tmp_path, stopped, expected):
    repo, run_id = stopped(tmp_path)

    shown = run_on_a_terminal(repo, "resume", run_id)

    assert "\x1b[" in shown  # the live view
    for line in expected:
        assert line in shown, shown


def test_resume_refuses_a_run_that_recorded_no_workstream_file(tmp_path):
    """A run made through the library API may record no file: resume says so in one line."""
    from orchestra.store import Store

    repo = make_git_repo(tmp_path / "repo")
    with Store.open(repo / ".orchestra" / "orchestra.db") as store:
        run_id = store.create_run("w", None, None, ["a"], {})
    refused = run_orchestra("resume", run_id, cwd=repo)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == (
        f"error: run {run_id} recorded no workstream file: it cannot be resumed"
    )
