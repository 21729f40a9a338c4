"""Secrets a user writes literally in a command (``--api-key VALUE``, ``API_TOKEN=VALUE``)
are masked in the stored command line, the log's ``$ command`` line and the output."""

from __future__ import annotations

import json
import os
import sqlite3
import sys

import pytest

from orchestra.engine.environment import build_environment
from orchestra.engine.process import run_process
from orchestra.secrets import literal_secrets, mask_arguments, masked_command
from orchestra.testing import run_orchestra


@pytest.mark.parametrize(
    "argv, masked",
    [
        (["deploy", "API_TOKEN=tok-12345"], ["deploy", "API_TOKEN=***"]),
        (["tool", "--api-key", "sk-live-1"], ["tool", "--api-key", "***"]),
        (["tool", "--api-key=sk-live-1"], ["tool", "--api-key=***"]),
        (
            ["tool", "--password", "hunter22", "--verbose"],
            ["tool", "--password", "***", "--verbose"],
        ),
        (["tool", "--db-password=x", "next"], ["tool", "--db-password=***", "next"]),
        (["tool", "--client-secret", "-v"], ["tool", "--client-secret", "-v"]),  # an option
        (
            ["tool", "--key", "k", "SORT=a", "--tokens", "t", "--token", "t"],
            ["tool", "--key", "k", "SORT=a", "--tokens", "t", "--token", "***"],
        ),
        (
            [
                "/bin/sh",
                "-c",
                "curl --api-key 'sk live' && GH_TOKEN=\"a b\" ./x --password=p1; echo A=1",
            ],
            ["/bin/sh", "-c", "curl --api-key *** && GH_TOKEN=*** ./x --password=***; echo A=1"],
        ),
    ],
)
def test_literal_secrets_in_a_command_line_are_masked(argv, masked):
    assert mask_arguments(argv) == masked


def test_the_values_of_literal_secrets_are_found_unquoted():
    command = ["/bin/sh", "-c", 'run --api-key \'sk live\' MY_SECRET="s\\"q" --password=pw12']
    assert sorted(literal_secrets(command)) == ["pw12", 's"q', "sk live"]
    assert literal_secrets(["tool", "--password", "hunter22"]) == ["hunter22"]
    assert masked_command(("tool", "--password", "hunter22")) == "tool --password ***"
    assert masked_command("X_KEY=abcd ./go") == "X_KEY=*** ./go"


def test_a_secret_in_argv_is_masked_in_the_log_and_in_the_output(tmp_path):
    log = tmp_path / "attempt.log"
    echo = "import sys; print('given', *sys.argv[1:])"
    argv = [sys.executable, "-c", echo, "--api-key", "sk-live-abcdef", "DB_PASSWORD=pw-98765"]

    result = run_process(
        argv, cwd=tmp_path, env=build_environment(os.environ, {}, ()), log_path=log
    )

    assert result.exit_code == 0
    text = log.read_text()
    assert "sk-live-abcdef" not in text and "pw-98765" not in text
    assert text.splitlines()[0].endswith("--api-key '***' 'DB_PASSWORD=***'")  # quoted: a glob
    assert "given --api-key *** DB_PASSWORD=***" in text


def test_a_task_with_literal_secrets_stores_and_logs_them_masked(tmp_path):
    (tmp_path / "ws.toml").write_text(
        'id = "literal"\n'
        "[[tasks]]\n"
        'id = "listed"\n'
        f"command = {json.dumps([sys.executable, '-c', 'import sys; print(sys.argv)', '--password', 'hunter2-secret', 'API_TOKEN=tok-abcdef'])}\n"
        "[[tasks]]\n"
        'id = "shell"\n'
        "shell = true\n"
        'command = "echo deploying with --api-key=sk-shell-12345 && exit 3"\n'
        "max_attempts = 1\n"
    )

    finished = run_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path)

    assert finished.returncode == 1, finished.stderr
    with sqlite3.connect(tmp_path / ".orchestra" / "orchestra.db") as db:
        commands = dict(db.execute("SELECT task_id, command FROM attempts"))
        everything = "\n".join(map(str, db.execute("SELECT * FROM attempts"))) + "\n".join(
            map(str, db.execute("SELECT * FROM events"))
        )
    assert commands["listed"].endswith("--password *** API_TOKEN=***")
    assert commands["shell"] == "echo deploying with --api-key=*** && exit 3"
    logs = "".join(path.read_text() for path in (tmp_path / ".orchestra" / "runs").rglob("*.log"))
    for secret in ("hunter2-secret", "tok-abcdef", "sk-shell-12345"):
        assert secret not in everything and secret not in logs
    assert "deploying with --api-key=***" in logs
