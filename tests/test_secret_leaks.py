"""Secret values never reach the run database, the logs, the events or what the CLI
prints (docs/configuration.md, "secrets"; docs/architecture.md, "Secret redaction";
docs/sinks.md, "Secrets are already replaced by *** in every event").

Each test runs the real ``orchestra`` on a small workstream with a canary secret, then
reads every byte orchestra left behind (the ``.orchestra`` directory with its SQLite
file, the reports, the CLI's own output) and looks for the canary. Each is a way a
secret got through once, found by an audit that attacked the promise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orchestra.testing import run_orchestra

#: how long a task waits for something orchestra does (a condition, not a pause)
WAIT = 20


def _toml(value: object) -> str:
    """A TOML value for ``value`` (JSON's strings and arrays are TOML's)."""
    return json.dumps(value)


def _python(code: str) -> str:
    """A task's command running ``code`` with this Python, as a TOML array."""
    return _toml([sys.executable, "-c", code])


#: the files of a project that are the user's own, not orchestra's
USERS_FILES = {"ws.toml", "orchestra.toml", "config.py", "settings.env"}


def _everything(project: Path, *outputs: str) -> bytes:
    """Every byte orchestra left in ``project`` (its state directory, reports, event
    files) and the CLI's ``outputs``; the user's own files excepted."""
    kept = [
        path.read_bytes()
        for path in project.rglob("*")
        if path.is_file() and path.name not in USERS_FILES and ".git" not in path.parts
    ]
    return b"\n".join(kept) + "\n".join(outputs).encode()


def _run_and_read(project: Path, workstream: str, config: str = "", **env: str) -> bytes:
    """Run ``workstream``, then show and report the run; return all that was written."""
    (project / "ws.toml").write_text(workstream)
    if config:
        (project / "orchestra.toml").write_text(config)
    run = run_orchestra("run", "ws.toml", cwd=project, env=env)
    assert "Traceback" not in run.stderr, run.stderr
    runs = run_orchestra("runs", cwd=project)
    run_id = runs.stdout.split()[0]
    show = run_orchestra("show", run_id, cwd=project)
    report = run_orchestra("report", run_id, "--format", "json", "-o", "-", cwd=project)
    return _everything(project, run.stdout, run.stderr, show.stdout, report.stdout)


def _assert_absent(canary: str, written: bytes) -> None:
    """Fail, showing where, when ``canary`` is anywhere in ``written``."""
    at = written.find(canary.encode())
    if at >= 0:
        pytest.fail(f"{canary} leaked: {written[max(0, at - 160) : at + 60]!r}")


def test_a_secret_after_an_api_key_option_of_a_failing_check_is_not_recorded(tmp_path):
    """A check's label is its command, and a failing check's message quotes it: in the
    attempt's message and feedback, the step's reason, the events, `show`, the console
    and the report. The secret written in it is masked there as in the log."""
    canary = "CANARYcheck0009"
    check = {"command": [sys.executable, "-c", "raise SystemExit(1)", "--api-key", canary]}
    workstream = (
        'id = "check-label"\n[[tasks]]\nid = "deploy"\ncommand = ["true"]\nmax_attempts = 1\n'
        f"checks = [{{ command = {_toml(check['command'])} }}]\n"
    )
    written = _run_and_read(tmp_path, workstream)
    _assert_absent(canary, written)


def test_a_multi_line_secret_printed_a_line_at_a_time_is_redacted(tmp_path):
    """The output is redacted a line at a time (``output.py`` emits up to the last
    newline read), so a secret holding a newline (a private key) that arrives in two
    reads is never seen whole: each of its lines is a secret of its own."""
    first, second = "CANARYmultiA0001", "CANARYmultiB0002"
    code = (
        "import os, sys, time, pathlib\n"
        "first, second = os.environ['DEPLOY_SSH_KEY'].split('\\n')\n"
        "print('key:', first, flush=True)\n"
        "log = pathlib.Path('.orchestra/runs', os.environ['ORCHESTRA_RUN_ID'],"
        " os.environ['ORCHESTRA_TASK_ID'] + '.1.log')\n"
        f"deadline = time.monotonic() + {WAIT}\n"
        "while time.monotonic() < deadline and b'key:' not in"
        " (log.read_bytes() if log.exists() else b''):\n"
        "    time.sleep(0.05)\n"
        "print(second, flush=True)\n"
    )
    workstream = (
        'id = "multi-line"\n[[tasks]]\nid = "print-key"\nmax_attempts = 1\n'
        f"env = {{ DEPLOY_SSH_KEY = {_toml(first + chr(10) + second)} }}\n"
        f"command = {_python(code)}\n"
    )
    written = _run_and_read(tmp_path, workstream)
    for canary in (first, second):
        _assert_absent(canary, written)


def test_a_secret_with_a_trailing_newline_is_redacted_when_printed_without_it(tmp_path):
    """A token pasted with its newline (a CI secret, `kubectl create secret`) is printed
    without it by every program that strips it: the token alone is a secret too."""
    canary = "ghp_CANARYnewline0014"
    code = (
        "import os\n"
        "token = os.environ['GITHUB_TOKEN'].strip()\n"
        "raise SystemExit(f'cannot clone https://x-access-token:{token}@github.com/o/r.git')\n"
    )
    workstream = (
        'id = "trailing"\n[[tasks]]\nid = "push"\nmax_attempts = 1\n'
        f"env = {{ GITHUB_TOKEN = {_toml(canary + chr(10))} }}\n"
        f"command = {_python(code)}\n"
    )
    written = _run_and_read(tmp_path, workstream)
    _assert_absent(canary, written)


def test_a_secret_after_a_token_option_is_masked(tmp_path):
    """`--token VALUE` (huggingface-cli login, many CLIs) names a secret as `*_TOKEN`
    does: masked in the stored command and the `$ command` line, redacted in the output."""
    canary = "hf_CANARYdashtoken0016"
    code = "import sys; print('logging in with', sys.argv[2]); raise SystemExit(1)"
    command = [sys.executable, "-c", code, "--token", canary]
    workstream = (
        'id = "token-option"\n[[tasks]]\nid = "login"\nmax_attempts = 1\n'
        f"command = {_toml(command)}\n"
    )
    written = _run_and_read(tmp_path, workstream)
    _assert_absent(canary, written)


def test_a_secret_a_task_writes_into_a_file_is_not_stored_with_its_diff(tmp_path):
    """The store keeps each attempt's diff, which ``run_writes.finish_attempt`` says
    "must already be redacted": a task (or an AI tool) that writes its key into a file
    must not put it in the database and every report."""
    import subprocess

    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    (tmp_path / "README").write_text("hi\n")
    subprocess.run(["git", "add", "README"], cwd=tmp_path, check=True)
    subprocess.run(
        ["git", "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "init"],
        cwd=tmp_path,
        check=True,
    )
    canary = "sk-CANARYdiff0001"
    workstream = (
        'id = "diff"\n[[tasks]]\nid = "configure"\nmax_attempts = 1\nshell = true\n'
        'files = { write = ["config.py"] }\n'
        f"env = {{ OPENAI_API_KEY = {_toml(canary)} }}\n"
        'command = "echo \\"API_KEY = \'$OPENAI_API_KEY\'\\" > config.py"\n'
    )
    written = _run_and_read(tmp_path, workstream)
    _assert_absent(canary, written)


def test_a_secret_of_orchestras_environment_printed_by_a_task_is_redacted(tmp_path):
    """A key of the environment orchestra runs with, which the task does not get but
    found elsewhere (a `.env` file, a tool's config), is redacted as the task's own are."""
    canary = "sk-CANARYenv0001"
    (tmp_path / "settings.env").write_text(f"OPENAI_API_KEY={canary}\n")
    workstream = (
        'id = "outside"\n[[tasks]]\nid = "show-config"\nmax_attempts = 1\n'
        'command = ["cat", "settings.env"]\n'
    )
    written = _run_and_read(tmp_path, workstream, OPENAI_API_KEY=canary)
    _assert_absent(canary, written)


def _wait_for(path: str) -> str:
    """A task's code that waits (bounded) until ``path`` exists."""
    return (
        "import pathlib, time\n"
        f"deadline = time.monotonic() + {WAIT}\n"
        f"while time.monotonic() < deadline and not pathlib.Path({path!r}).exists():\n"
        "    time.sleep(0.05)\n"
    )


def test_the_command_sinks_stderr_does_not_put_a_passed_secret_in_the_events(tmp_path):
    """The command sink's warning quotes the last line its command wrote to stderr: a
    notifier given `SLACK_TOKEN` through `pass_env` whose HTTP library says `... for
    url: https://hooks.example.com/services/<token>` must not put the token in the
    database (event `sink.warning`)."""
    canary = "CANARYslack0013"
    notifier = (
        "import os, pathlib, sys\n"
        "pathlib.Path('notified').touch()\n"
        "sys.exit('HTTPError: 404 Client Error: Not Found for url: '"
        " 'https://hooks.example.com/services/' + os.environ['SLACK_TOKEN'])\n"
    )
    config = (
        'sinks = ["console", "command"]\n[sink.command]\nkinds = ["run.running"]\n'
        f'pass_env = ["SLACK_TOKEN"]\ncommand = {_python(notifier)}\n'
    )
    workstream = (
        'id = "notify"\n[[tasks]]\nid = "work"\nmax_attempts = 1\n'
        f"command = {_python(_wait_for('notified'))}\n"
    )
    written = _run_and_read(tmp_path, workstream, config, SLACK_TOKEN=canary)
    _assert_absent(canary, written)


def test_a_webhook_header_secret_is_not_put_in_a_sink_warning(tmp_path):
    """A header value the webhook sink fills from the environment that http.client
    refuses (a token read from a file with CRLF ends) fails with `ValueError: Invalid
    header value b'Bearer <token>\\r'`: the warning (database, jsonl file, console)
    shows the token masked."""
    canary = "CANARYhook0012"
    config = (
        'sinks = ["console", "jsonl", "webhook"]\n[sink.jsonl]\npath = "events.jsonl"\n'
        '[sink.webhook]\nurl = "http://127.0.0.1:9/hook"\nretries = 0\ntimeout = 1\n'
        'headers = { Authorization = "Bearer $HOOK_TOKEN" }\n'
    )
    waits = (
        "import pathlib, time\n"
        f"deadline = time.monotonic() + {WAIT}\n"
        "events = pathlib.Path('events.jsonl')\n"
        "while time.monotonic() < deadline and b'sink.warning' not in"
        " (events.read_bytes() if events.exists() else b''):\n"
        "    time.sleep(0.05)\n"
    )
    workstream = (
        f'id = "hook"\n[[tasks]]\nid = "work"\nmax_attempts = 1\ncommand = {_python(waits)}\n'
    )
    written = _run_and_read(tmp_path, workstream, config, HOOK_TOKEN=canary + "\r")
    _assert_absent(canary, written)
