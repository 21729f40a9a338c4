"""Keys reach only codex: never a command the model runs, never a file, whatever the outcome.

The fake provider has the model run ``env`` through codex's ``exec_command`` tool. Codex
sends the command's output back in its next request, so that request is what a model (and
the provider) would see. After each attempt every file under the test's directory is read
(the repository, its ``.orchestra/`` with codex's home and its SQLite files, the log, HOME
and TMPDIR) and must not hold the key or another secret.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from codex_processes import processes_with_home
from fake_responses import API_KEY as KEY
from fake_responses import FakeResponses, Reply, Status, apply_patch, message, shell

from orchestra.testing import make_git_repo, run_orchestra

pytestmark = pytest.mark.slow  # the real codex in every way an attempt can end

#: variables of the task's environment: two named like secrets, one declared in ``secrets``
#: (its name says nothing), and one a command may see
TASK_ENV = {
    "SERVICE_TOKEN": "tok-Xq81vLw2mZ7pR4tY",
    "DB_PASSWORD": "pw-Kd93nBv6cX1zQ8wE",
    "DEPLOY_PHRASE": "phrase-Ty52uIo9pA3sD7fG",
    "GREETING": "visible-to-commands",
}
DECLARED = ("DEPLOY_PHRASE",)
SECRET_VALUES = (KEY, TASK_ENV["SERVICE_TOKEN"], TASK_ENV["DB_PASSWORD"], TASK_ENV["DEPLOY_PHRASE"])
PATCH = (
    "*** Begin Patch\n*** Update File: hello.py\n@@\n def greet():\n"
    '-    return "hello"\n+    return "hello, world"\n*** End Patch\n'
)
#: the model asks for ``env``, leaving the login shell to codex as models mostly do
ENV = shell("env", login=None)


def files_holding(root: Path, values: tuple[str, ...] = SECRET_VALUES) -> list[str]:
    """Return ``path: value`` for every file under ``root`` whose bytes hold one of ``values``."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {v}" for v in values if v.encode() in data]
    return found


def sent(server: FakeResponses | None) -> str:
    """Return every request body the provider received, as one string."""
    return "" if server is None else json.dumps([request.body for request in server.requests])


def command_outputs(server: FakeResponses) -> str:
    """Return the outputs of the model's commands that codex sent back to the provider."""
    return "\n".join(
        item["output"]
        for request in server.requests
        for item in request.body["input"]
        if item.get("type") == "function_call_output"
    )


def assert_no_secret_sent_or_kept(server: FakeResponses | None, tmp_path: Path) -> None:
    body = sent(server)
    assert [value for value in SECRET_VALUES if value in body] == []
    assert files_holding(tmp_path) == []


def test_the_models_env_shows_no_key_and_no_secret(fake_responses, run_codex, tmp_path):
    server = fake_responses(Reply([ENV]), Reply([apply_patch(PATCH)]), Reply([message("Done.")]))

    attempt = run_codex(server, task_env=TASK_ENV, secrets=DECLARED)

    assert attempt.result.outcome == "succeeded", attempt.result
    outputs = command_outputs(server)
    assert "GREETING=visible-to-commands" in outputs  # env ran, with the task's environment
    assert "FAKE_LLM_API_KEY" not in outputs
    assert "SERVICE_TOKEN" not in outputs and "DB_PASSWORD" not in outputs
    assert "DEPLOY_PHRASE" not in outputs
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # codex has the key
    assert_no_secret_sent_or_kept(server, tmp_path)


def test_the_users_startup_files_are_not_read_for_the_models_commands(
    fake_responses, run_codex, home
):
    exported = "sk-dotfile-Pq47wEr8tYu1iOp3"
    for name in (".bashrc", ".bash_profile", ".profile"):
        (home / name).write_text(f"export DOTFILE_API_KEY={exported}\n")
    server = fake_responses(Reply([ENV]), Reply([message("Nothing to change.")]))

    attempt = run_codex(server)

    assert attempt.result.error_class == "invalid_output"
    assert "PATH=" in command_outputs(server)  # env ran
    assert exported not in sent(server)
    assert files_holding(attempt.repo) == []


def test_a_session_kept_on_disk_holds_no_key(fake_responses, run_codex, tmp_path):
    server = fake_responses(Reply([ENV]), Reply([apply_patch(PATCH)]), Reply([message("Done.")]))

    attempt = run_codex(
        server, task_env=TASK_ENV, secrets=DECLARED, options={"keep_sessions": True}
    )

    assert attempt.result.outcome == "succeeded", attempt.result
    assert list((attempt.codex_home / "sessions").rglob("rollout-*.jsonl"))  # kept, and read
    assert_no_secret_sent_or_kept(server, tmp_path)


@pytest.mark.parametrize(
    ("script", "error_class"),
    [
        pytest.param([Reply([ENV]), Reply([message("No.")])], "invalid_output", id="no-edit"),
        pytest.param([Reply([ENV]), Reply([], fail="it broke")], "turn_failed", id="fail"),
        pytest.param([Status(401, f"Incorrect API key: {KEY}")], "auth", id="401"),
        pytest.param([Status(429, "Rate limit reached")], "rate_limited", id="429"),
        pytest.param(None, "provider_error", id="unreachable"),
    ],
)
def test_a_failed_attempt_leaves_no_key_on_disk(
    fake_responses, run_codex, tmp_path, script, error_class
):
    server = None if script is None else fake_responses(*script)

    attempt = run_codex(server, task_env=TASK_ENV, secrets=DECLARED)

    assert attempt.result.error_class == error_class, attempt.result
    assert_no_secret_sent_or_kept(server, tmp_path)


@pytest.mark.parametrize("limit", ["timeout", "idle_timeout"])
def test_an_attempt_cut_off_by_orchestra_leaves_no_key_on_disk(
    fake_responses, run_codex, tmp_path, limit
):
    server = fake_responses(Reply([ENV]), Reply([message("Thinking…")], stall=True))
    limits = {"timeout": 60, "idle_timeout": 30, limit: 3}

    attempt = run_codex(server, task_env=TASK_ENV, secrets=DECLARED, **limits)

    assert attempt.result.outcome == "timed_out", attempt.result
    assert len(server.requests) == 2  # the command ran before the stall
    assert_no_secret_sent_or_kept(server, tmp_path)


def test_a_canceled_attempt_leaves_no_key_on_disk(fake_responses, run_codex, tmp_path):
    server = fake_responses(Reply([ENV]), Reply([message("Thinking…")], stall=True))
    cancel = threading.Event()
    # codex sends a command's output in its next request: the second one means env has run
    waiter = threading.Thread(target=lambda: server.wait_for_requests(2) and cancel.set())
    waiter.start()

    attempt = run_codex(server, task_env=TASK_ENV, secrets=DECLARED, cancel=cancel)

    waiter.join()
    assert attempt.result.outcome == "canceled", attempt.result
    assert_no_secret_sent_or_kept(server, tmp_path)


def test_a_codex_killed_mid_attempt_leaves_no_key_on_disk(fake_responses, run_codex, tmp_path):
    server = fake_responses(Reply([ENV]), Reply([message("Thinking…")], stall=True))
    home = tmp_path / "repo" / ".orchestra" / "tools" / "codex" / "home"

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_codex, server, task_env=TASK_ENV, secrets=DECLARED)
        assert server.wait_for_requests(2)  # env has run
        for pid in processes_with_home(home):  # as a power cut would: no clean-up runs
            os.kill(pid, signal.SIGKILL)
        attempt = running.result()

    assert attempt.result.error_class == "crashed", attempt.result
    assert_no_secret_sent_or_kept(server, tmp_path)


def test_snapshots_an_earlier_attempt_left_are_removed(fake_responses, run_codex, tmp_path):
    # what an attempt of the plugin before this fix left when codex was stopped
    snapshots = tmp_path / "repo" / ".orchestra" / "tools" / "codex" / "home" / "shell_snapshots"
    server = fake_responses(Reply([message("No change.")]))

    def plant() -> None:
        snapshots.mkdir(parents=True)
        (snapshots / "0199.123.sh").write_text(f'declare -x FAKE_LLM_API_KEY="{KEY}"\n')

    attempt = run_codex(server, files={"hello.py": "x = 1\n"}, before=plant)

    assert attempt.result.error_class == "invalid_output"
    assert not snapshots.exists()
    assert files_holding(tmp_path) == []


def test_orchestra_run_keeps_the_key_out_of_the_project(tmp_path, native_codex, fake_responses):
    """End to end: the database, the logs, the scratch and codex's home of a real run."""
    server = fake_responses(Reply([ENV]), Reply([message("Nothing to change.")]))
    root = make_git_repo(
        tmp_path / "project",
        {
            "hello.py": 'def greet():\n    return "hello"\n',
            ".gitignore": ".orchestra/\n",
            "greet.toml": 'id = "greet"\n\n[[tasks]]\nid = "greet"\ntool = "codex"\n'
            'prompt = "Make greet return hello, world"\nmax_attempts = 1\n',
        },
    )
    (root / "orchestra.toml").write_text(
        "[tools.codex]\n"
        'model = "gpt-5.5"\n'
        'pass_env = ["FAKE_LLM_API_KEY", "SERVICE_TOKEN", "DB_PASSWORD", "DEPLOY_PHRASE"]\n'
        'secrets = ["DEPLOY_PHRASE"]\n'
        f'binary = "{native_codex}"\n'
        f'base_url = "{server.base_url}"\n'
        'env_key = "FAKE_LLM_API_KEY"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )

    # without orchestra's own sandbox: codex's bubblewrap cannot start inside it (no uid map)
    environ = {"FAKE_LLM_API_KEY": KEY, **TASK_ENV, "ORCHESTRA_SANDBOX": "none"}
    completed = run_orchestra("run", "greet.toml", cwd=root, env=environ)

    assert completed.returncode == 1, completed.stdout + completed.stderr  # no edit: failed
    assert "without changing any file" in completed.stdout
    assert "PATH=" in command_outputs(server)  # env ran
    assert "FAKE_LLM_API_KEY" not in command_outputs(server)
    assert (root / ".orchestra" / "orchestra.db").exists()
    assert_no_secret_sent_or_kept(server, tmp_path)
    assert KEY not in completed.stdout + completed.stderr
