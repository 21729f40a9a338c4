"""Aider with no model or no key: ``plan`` and ``validate`` warn, and an attempt that would
wait for a person (aider's sign-in to OpenRouter in a browser) fails at once instead of at
its timeout."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from orchestra_aider import AiderAdapter, configured

import orchestra
from orchestra import LocalContext, build_environment, processes_of_run
from orchestra.testing import run_orchestra

pytestmark = pytest.mark.slow  # the real aider

PROMPT_TASK = 'id = "w"\n[[tasks]]\nid = "greet"\nprompt = "Say hello"\ntool = "aider"\n'


def setup(tmp_path: Path, **environ: str) -> orchestra.ToolSetup:
    return orchestra.ToolSetup(environ=environ, root=tmp_path, state_dir=tmp_path / "state")


def test_an_attempt_without_model_or_key_fails_needing_input_instead_of_waiting(
    aider_on_path, repo, tmp_path
):
    profile = orchestra.ToolProfile("aider")  # what a user without [tools.aider] has
    task = orchestra.Task(id="greet", prompt="Make greet return hello, world")
    request = orchestra.ExecutionRequest("run-1", task, 1, str(repo), profile, timeout=120)
    log_path = tmp_path / "logs" / "greet.1.log"
    ctx = LocalContext(
        cwd=repo,
        env={**build_environment(os.environ, {}, ()), "ORCHESTRA_RUN_ID": "unconfigured-1"},
        log_path=log_path,
        timeout=120,  # aider alone waits 5 minutes for the browser, then gives up
        scratch_root=tmp_path / "scratch",
    )
    try:
        result = AiderAdapter().execute(request, ctx)
    finally:
        ctx.cleanup()

    assert (result.outcome, result.error_class) == ("failed", "needs_input")
    assert "no model and no API key" in result.message and "[tools.aider]" in result.message
    log = log_path.read_text()
    assert "No LLM model was specified and no API keys were provided." in log
    assert "stopped aider: it was waiting for a person to sign in in a browser" in log
    assert not processes_of_run("unconfigured-1")  # aider, and its sign-in server, are gone


@pytest.mark.slow  # orchestra, its sandbox and aider: several seconds
def test_orchestra_run_fails_the_task_once_with_needs_input(real_aider, repo):
    (repo / "greet.toml").write_text(PROMPT_TASK + 'timeout = "2m"\n')
    path = f"{real_aider.parent}{os.pathsep}{os.environ['PATH']}"

    completed = run_orchestra("run", "greet.toml", "--json", cwd=repo, env={"PATH": path})

    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert json.loads(completed.stdout)["state"] == "failed"
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        attempts = db.execute("SELECT outcome, error_class FROM attempts").fetchall()
    assert attempts == [("failed", "needs_input")]  # not retried: nobody will be there


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_plan_and_validate_warn_about_an_aider_without_model_or_key(real_aider, repo, command):
    (repo / "greet.toml").write_text(PROMPT_TASK)
    path = f"{real_aider.parent}{os.pathsep}{os.environ['PATH']}"

    unconfigured = run_orchestra(command, "greet.toml", cwd=repo, env={"PATH": path})
    (repo / "orchestra.toml").write_text(
        '[tools.aider]\nmodel = "openai/gpt-4.1"\npass_env = ["OPENAI_API_KEY"]\n'
    )
    configured_ = run_orchestra(
        command, "greet.toml", cwd=repo, env={"PATH": path, "OPENAI_API_KEY": "sk-test"}
    )

    assert unconfigured.returncode == 0, unconfigured.stderr
    [warning] = [line for line in unconfigured.stderr.splitlines() if "aider" in line]
    assert warning.startswith("warning: ") and "tool aider: no model and no API key" in warning
    assert "set model, and pass_env" in warning
    assert configured_.returncode == 0, configured_.stderr
    assert "warning" not in configured_.stderr


@pytest.mark.parametrize(
    ("profile", "environ", "files", "problem"),
    [
        ({}, {}, {}, "no model and no API key configured"),
        ({"pass_env": ("OPENAI_API_KEY",)}, {}, {}, "OPENAI_API_KEY: in pass_env, but not set"),
        ({"model": "gpt-4o"}, {}, {}, "no API key configured for model 'gpt-4o'"),
        ({}, {"ANTHROPIC_API_KEY": "k"}, {}, "no model set: aider picks one"),
        ({"model": "gpt-4o"}, {"OPENAI_API_KEY": "k"}, {}, None),
        ({"model": "openai/m"}, {"AIDER_OPENAI_API_KEY": "k"}, {}, None),
        ({"model": "ollama_chat/llama3"}, {}, {}, None),  # a local server needs no key
        ({"args": ("--model", "gpt-4o", "--api-key", "openai=k")}, {}, {}, None),
        ({"args": ("--sonnet",)}, {"ANTHROPIC_API_KEY": "k"}, {}, None),
        ({}, {}, {".aider.conf.yml": "model: gpt-4o\n", ".env": "OPENAI_API_KEY=k\n"}, None),
    ],
)
def test_the_configuration_check_names_what_is_missing(tmp_path, profile, environ, files, problem):
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    found = configured.problems(
        orchestra.ToolProfile("aider", **profile), setup(tmp_path, **environ)
    )

    if problem is None:
        assert found == []
    else:
        [sentence] = found
        assert problem in sentence and "[tools.aider]" in sentence
