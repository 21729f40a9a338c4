"""End to end: ``orchestra run`` routes a task to the real Gemini CLI, configured in
orchestra.toml, against the fake Gemini API.

Each attempt runs in a git worktree (in orchestra's sandbox when bubblewrap is there);
orchestra commits a successful attempt's edit (gemini never commits) and merges it into
the run's branch, which the tests read. Every scenario of issue 22 is one test here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from fake_gemini import API_KEY, Reply, Status, call, replace, text, write_file
from gemini_processes import processes_for

from orchestra.testing import make_git_repo, run_orchestra

pytestmark = pytest.mark.slow  # orchestra and the real gemini: seconds per test

OLD, NEW = 'return "hello"', 'return "hello, world"'
HELLO = 'def greet():\n    return "hello"\n'
FIXED = 'def greet():\n    return "hello, world"\n'
EDIT = (
    Reply([call("read_file", file_path="hello.py")]),
    Reply([text("Updating hello.py."), replace("hello.py", OLD, NEW)]),
    Reply([text("Done.")]),
)
WORKSTREAM = """\
id = "greet"

[defaults]
backoff = {{ initial = "0.01s" }}

[[tasks]]
id = "greet"
tool = "gemini"
prompt = "Make greet return hello, world"
max_attempts = {attempts}
{limit}
checks = [{check}]
"""
CHECK = json.dumps("grep -q 'hello, world' hello.py")


def project(
    tmp_path: Path,
    real_gemini: Path,
    base_url: str,
    *,
    attempts: int = 1,
    limit: str = 'idle_timeout = "60s"',
    check: str = CHECK,
    options: str = "max_attempts = 1\n",
) -> Path:
    root = make_git_repo(
        tmp_path / "project",
        {
            "hello.py": HELLO,
            ".gitignore": ".orchestra/\n",
            "greet.toml": WORKSTREAM.format(attempts=attempts, limit=limit, check=check),
        },
    )
    (root / "orchestra.toml").write_text(
        f"""\
[tools.gemini]
model = "gemini-2.5-pro"
pass_env = ["GEMINI_API_KEY"]
binary = "{real_gemini}"
base_url = "{base_url}"
input_cost_per_token = 0.000002
output_cost_per_token = 0.000008
{options}"""
    )
    return root


def run(root: Path) -> subprocess.CompletedProcess[str]:
    return run_orchestra("run", "greet.toml", cwd=root, env={"GEMINI_API_KEY": API_KEY})


def rows(root: Path, query: str) -> list[sqlite3.Row]:
    with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query).fetchall()


def git(root: Path, *arguments: str) -> str:
    argv = ["git", *arguments]
    return subprocess.run(argv, cwd=root, capture_output=True, text=True, check=True).stdout


def landed(root: Path) -> str:
    """Return hello.py as the run's branch holds it."""
    (run_id,) = [row["id"] for row in rows(root, "SELECT id FROM runs")]
    return git(root, "show", f"orchestra/{run_id}:hello.py")


def tool_events(root: Path) -> list[tuple[str, dict]]:
    query = "SELECT type, payload FROM events WHERE type LIKE 'tool.%' ORDER BY seq"
    return [(row["type"], json.loads(row["payload"])) for row in rows(root, query)]


def no_file_holds(directory: Path, secret: str) -> bool:
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
            raise AssertionError(f"{path} holds the key")
    return directory.is_dir()


def test_gemini_edits_the_tree_through_orchestra_and_leaves_no_trace(
    tmp_path, real_gemini, fake_gemini, home
):
    # the model repeats the key, as a model that read it somewhere could
    server = fake_gemini(
        Reply([call("read_file", file_path="hello.py")]),
        Reply([text(f"The key is {API_KEY}."), replace("hello.py", OLD, NEW)]),
        Reply([text("Done.")]),
    )
    root = project(tmp_path, real_gemini, server.base_url)
    base = git(root, "rev-parse", "HEAD").strip()

    completed = run(root)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert landed(root) == FIXED
    assert (root / "hello.py").read_text() == HELLO  # the user's tree is untouched
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert (attempt["tool"], attempt["outcome"], attempt["exit_code"]) == ("gemini", "succeeded", 0)
    usage = [attempt[name] for name in ("input_tokens", "cached_input_tokens", "output_tokens")]
    assert usage == [3000, 600, 150]
    assert attempt["cost_usd"] == pytest.approx(3000 * 2e-6 + 150 * 8e-6)
    # the prompt went through stdin, not the command line the log shows first
    started = Path(attempt["log_path"]).read_text().splitlines()[0]
    assert " -p '' " in started and "Make greet" not in started, started
    events = tool_events(root)
    kinds = [kind for kind, _ in events]
    assert {"tool.version", "tool.call", "tool.session", "tool.changes"} <= set(kinds)
    calls = [
        (payload["tool"], payload["status"]) for kind, payload in events if kind == "tool.call"
    ]
    assert calls == [("read_file", "success"), ("replace", "success")]
    # hygiene: the key nowhere on disk or in output; nothing of gemini's in the repository,
    # the run's branch, the user's HOME or TMPDIR
    assert no_file_holds(root / ".orchestra", API_KEY)
    (run_id,) = [row["id"] for row in rows(root, "SELECT id FROM runs")]
    logs = run_orchestra("logs", run_id, "greet", cwd=root)
    shown = run_orchestra("show", run_id, "--json", cwd=root)
    assert "The key is ***." in logs.stdout
    for output in (completed, logs, shown):
        assert API_KEY not in output.stdout + output.stderr
    assert git(root, "diff", "--name-only", base, f"orchestra/{run_id}") == "hello.py\n"
    assert git(root, "status", "--porcelain", "--ignored") == "?? orchestra.toml\n!! .orchestra/\n"
    assert not list(home.rglob(".gemini"))
    assert os.listdir(os.environ["TMPDIR"]) == []
    assert processes_for(server.base_url) == []


def test_a_new_file_written_by_gemini_is_committed(tmp_path, real_gemini, fake_gemini):
    server = fake_gemini(Reply([write_file("NOTES.md", "# Notes\n")]), Reply([text("Wrote it.")]))
    root = project(tmp_path, real_gemini, server.base_url, check='"test -f NOTES.md"')

    completed = run(root)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_id,) = [row["id"] for row in rows(root, "SELECT id FROM runs")]
    assert git(root, "show", f"orchestra/{run_id}:NOTES.md") == "# Notes\n"


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            [Reply([text("Nothing needs to change.")])],
            "gemini finished without changing any file; its last message: Nothing needs to change.",
        ),
        (
            [
                Reply([call("run_shell_command", command="sed -i s/hello/hi/ hello.py")]),
                Reply([replace("hello.py", "no such line", NEW)]),
                Reply([text("I could not.")]),
            ],
            'the model called tools gemini did not offer it (Tool "run_shell_command" not found',
        ),
        ([Reply([])], "The model returned an empty response"),
    ],
    ids=["text-only", "tool-not-registered-and-edit-failed", "empty-reply"],
)
def test_a_run_without_a_change_is_invalid_output(
    tmp_path, real_gemini, fake_gemini, script, message
):
    server = fake_gemini(*script)
    root = project(tmp_path, real_gemini, server.base_url)

    completed = run(root)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert (attempt["outcome"], attempt["error_class"]) == ("failed", "invalid_output")
    assert message in attempt["message"]
    assert attempt["exit_code"] == 0  # the CLI's own verdict was success


def test_a_401_is_auth_and_not_retried(tmp_path, real_gemini, fake_gemini):
    server = fake_gemini(Status(401, "API key not valid. Please pass a valid API key."))
    root = project(tmp_path, real_gemini, server.base_url, attempts=3)

    completed = run(root)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert (attempt["outcome"], attempt["error_class"], attempt["exit_code"]) == (
        "failed",
        "auth",
        145,
    )
    assert "API key not valid" in attempt["message"]
    assert len(server.requests) == 1
    assert no_file_holds(root / ".orchestra", API_KEY)


def test_a_429_with_retry_info_is_retried_after_its_wait_and_then_succeeds(
    tmp_path, real_gemini, fake_gemini
):
    limited = Status(429, "Resource has been exhausted (e.g. check quota).", retry_delay="1s")
    server = fake_gemini(limited, *EDIT)
    root = project(tmp_path, real_gemini, server.base_url, attempts=2)

    completed = run(root)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    first, second = rows(root, "SELECT * FROM attempts ORDER BY number")
    assert (first["error_class"], first["retry_after"], first["exit_code"]) == (
        "rate_limited",
        1.0,
        173,
    )
    assert second["outcome"] == "succeeded"
    assert landed(root) == FIXED


def test_a_500_is_provider_error_after_the_clis_own_attempts(tmp_path, real_gemini, fake_gemini):
    failing = Status(500, "Internal error encountered.")
    server = fake_gemini(failing, failing)
    root = project(tmp_path, real_gemini, server.base_url, options="max_attempts = 2\n")

    completed = run(root)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert (attempt["error_class"], attempt["exit_code"]) == ("provider_error", 244)
    assert len(server.requests) == 2  # max_attempts bounds the CLI's own retries


def test_a_stalled_stream_is_stopped_at_the_idle_timeout_and_no_gemini_is_left(
    tmp_path, real_gemini, fake_gemini
):
    server = fake_gemini(Reply([text("Working on it…")], stall=True))
    root = project(tmp_path, real_gemini, server.base_url, limit='idle_timeout = "3s"')

    completed = run(root)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert (attempt["outcome"], attempt["error_class"]) == ("timed_out", "idle")
    assert "printed nothing for its idle_timeout" in attempt["message"]
    assert processes_for(server.base_url) == []


def test_an_unreachable_provider_fails_in_bounded_time(tmp_path, real_gemini):
    # the default max_attempts (2): one retry of the CLI's own, after its backoff; the CLI's
    # own default (10) would take about 4 minutes and be cut off by this timeout
    root = project(tmp_path, real_gemini, "http://127.0.0.1:9", limit='timeout = "60s"', options="")

    completed = run(root)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert attempt["error_class"] == "provider_error"
    assert "fetch failed" in attempt["message"]  # the CLI gave up by itself: not timed out


def test_a_failed_check_is_fixed_on_the_next_attempt_which_is_told_what_went_wrong(
    tmp_path, real_gemini, fake_gemini
):
    server = fake_gemini(
        Reply([replace("hello.py", OLD, 'return "hello, there"')]),
        Reply([text("Done.")]),
        Reply([replace("hello.py", 'return "hello, there"', NEW)]),
        Reply([text("Fixed.")]),
    )
    # a check that prints what it found before it fails
    shown = json.dumps("grep -n return hello.py && grep -q 'hello, world' hello.py")
    check = f"{{ command = {shown}, shell = true }}"
    root = project(tmp_path, real_gemini, server.base_url, attempts=2, check=check)

    completed = run(root)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    first, second = rows(root, "SELECT * FROM attempts ORDER BY number")
    assert (first["error_class"], second["outcome"]) == ("check_failed", "succeeded")
    retry = server.requests[2].texts()[-1]
    assert "did not succeed. What went wrong:" in retry
    assert '2:    return "hello, there"' in retry  # the check's output
    assert "last attempt's change is already in the working tree, uncommitted" in retry
    assert landed(root) == FIXED


def test_a_task_whose_budget_gemini_spent_is_not_tried_again(tmp_path, real_gemini, fake_gemini):
    server = fake_gemini(Reply([replace("hello.py", OLD, 'return "hi"')]), Reply([text("Done.")]))
    # the first attempt costs 2000 x 2e-6 + 100 x 8e-6 = 0.0048
    limit = 'idle_timeout = "60s"\nbudget = { cost = 0.004 }'
    root = project(tmp_path, real_gemini, server.base_url, attempts=3, limit=limit)

    completed = run(root)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    [attempt] = rows(root, "SELECT * FROM attempts")
    assert attempt["error_class"] == "check_failed"
    assert attempt["cost_usd"] == pytest.approx(0.0048)
    assert len(server.requests) == 2  # no second attempt
