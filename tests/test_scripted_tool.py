"""The scripted tool: a real program whose behaviour per attempt comes from a TOML script,
run through a real execution context, and registered from ORCHESTRA_SCRIPTED_TOOLS in a
real `orchestra run`."""

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from orchestra.engine.context import LocalContext
from orchestra.engine.environment import build_environment
from orchestra.models import ExecutionRequest, StepResult, Task, ToolProfile, Usage
from orchestra.testing import (
    ScriptedToolAdapter,
    make_git_repo,
    run_orchestra,
    scripted_tools_env,
    tool_calls,
    write_tool_script,
)
from orchestra.testing.scripted_tool import parse_tools_variable


def running(pid: int) -> bool:
    """Whether the process still runs (a zombie awaiting its reaper does not count)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_git_repo(tmp_path / "repo")


def attempt(
    script: Path,
    repo: Path,
    number: int = 1,
    *,
    prompt: str = "Write hello.py",
    feedback: str | None = None,
    task_id: str = "t",
    **limits,
) -> tuple[StepResult, str]:
    """Run one attempt of the scripted tool in ``repo``; return its result and its log."""
    log = repo.parent / "logs" / f"{task_id}.{number}.log"
    env = {**build_environment(os.environ, {}, ()), "ORCHESTRA_TASK_ID": task_id}
    ctx = LocalContext(cwd=repo, env=env, log_path=log, grace=0.5, **limits)
    request = ExecutionRequest(
        run_id="r1",
        task=Task(id=task_id, prompt=prompt),
        attempt=number,
        workdir=str(repo),
        profile=ToolProfile(name="alpha"),
        feedback=feedback,
    )
    try:
        result = ScriptedToolAdapter("alpha", script).execute(request, ctx)
    finally:
        ctx.cleanup()
    return result, log.read_text() if log.exists() else ""


def test_a_success_makes_its_edits_in_the_working_directory_and_reports_usage(tmp_path, repo):
    script = write_tool_script(
        tmp_path / "alpha.toml",
        [
            {
                "action": "succeed",
                "output": ["thinking…", "wrote hello.py"],
                "edit": {"path": "src/hello.py", "content": "print('hello')\n"},
                "append": {"path": "README.md", "text": "more\n"},
                "usage": {"input_tokens": 1200, "output_tokens": 300, "cost_usd": 0.02},
            }
        ],
    )
    result, log = attempt(script, repo)
    assert result == StepResult(
        "succeeded",
        exit_code=0,
        usage=Usage(input_tokens=1200, output_tokens=300, cost_usd=0.02),
    )
    assert (repo / "src" / "hello.py").read_text() == "print('hello')\n"
    assert (repo / "README.md").read_text() == "test repository\nmore\n"
    assert "thinking…\nwrote hello.py\nORCHESTRA-SCRIPTED-RESULT {" in log


def test_a_failure_carries_its_error_class_and_message(tmp_path, repo):
    script = write_tool_script(
        tmp_path / "alpha.toml",
        [{"action": "fail", "error_class": "auth", "message": "invalid API key"}],
    )
    result, log = attempt(script, repo)
    assert result == StepResult(
        "failed", error_class="auth", message="invalid API key", exit_code=1
    )
    assert "invalid API key" in log


def test_a_rate_limit_says_when_to_retry(tmp_path, repo):
    script = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "rate_limit", "retry_after": 30}]
    )
    result, log = attempt(script, repo)
    assert (result.outcome, result.error_class, result.retry_after) == (
        "failed",
        "rate_limited",
        30,
    )
    assert result.message == "rate limit reached: retry after 30 seconds"
    assert "rate limit reached: retry after 30 seconds\n" in log


def test_a_hang_is_cut_by_the_idle_timeout_and_leaves_no_process(tmp_path, repo):
    script = write_tool_script(tmp_path / "alpha.toml", [{"action": "hang", "output": ["working"]}])
    result, log = attempt(script, repo, idle_timeout=0.5)
    assert (result.outcome, result.error_class) == ("timed_out", "idle")
    assert "working\norchestra: the command printed nothing for 0.5 s: stopping it" in log
    [call] = tool_calls(script)
    assert not running(call["pid"])


def test_each_attempt_plays_its_step_and_the_last_step_repeats(tmp_path, repo):
    script = write_tool_script(
        tmp_path / "alpha.toml",
        [{"action": "fail", "error_class": "crashed"}, {"action": "succeed"}],
    )
    outcomes = [attempt(script, repo, number)[0].outcome for number in (1, 2, 3)]
    assert outcomes == ["failed", "succeeded", "succeeded"]
    assert [(call["attempt"], call["step"]) for call in tool_calls(script)] == [
        (1, 1),
        (2, 2),
        (3, 2),
    ]


def test_a_task_can_have_steps_of_its_own(tmp_path, repo):
    script = write_tool_script(
        tmp_path / "alpha.toml",
        [{"action": "succeed"}],
        tasks={"stubborn": [{"action": "fail", "error_class": "turn_failed"}]},
    )
    assert attempt(script, repo, task_id="easy")[0].outcome == "succeeded"
    assert attempt(script, repo, task_id="stubborn")[0].error_class == "turn_failed"


def test_the_calls_log_records_the_prompt_and_the_feedback_of_a_retry(tmp_path, repo):
    script = write_tool_script(tmp_path / "alpha.toml", [{"action": "succeed"}])
    feedback = "check `pytest -q` failed:\nE   assert 1 == 2"
    attempt(script, repo, 1)
    _, log = attempt(script, repo, 2, feedback=feedback)
    first, retry = tool_calls(script)
    assert (first["prompt"], first["feedback"]) == ("Write hello.py", None)
    assert retry["prompt"] == "Write hello.py\n\n" + feedback
    assert retry["feedback"] == feedback
    assert (retry["attempt"], retry["task"], retry["cwd"]) == (2, "t", str(repo))
    # the prompt travels in a file, never on the command line
    assert "--prompt-file" in log and "Write hello.py" not in log


def test_a_crash_or_a_broken_script_is_a_crashed_attempt_naming_why(tmp_path, repo):
    script = write_tool_script(tmp_path / "alpha.toml", [{"action": "crash", "exit_code": 3}])
    result, _ = attempt(script, repo)
    assert result == StepResult(
        "failed",
        error_class="crashed",
        message="scripted tool printed no result (exit status 3)",
        exit_code=3,
    )
    (tmp_path / "typo.toml").write_text('[[attempt]]\nacton = "fail"\n')
    result, _ = attempt(tmp_path / "typo.toml", repo)
    assert (result.outcome, result.error_class) == ("failed", "crashed")
    assert "attempt[1]: unknown key 'acton'" in result.message


def test_a_missing_script_makes_the_tool_unavailable(tmp_path):
    adapter = ScriptedToolAdapter("alpha", tmp_path / "nowhere.toml")
    availability = adapter.available(ToolProfile(name="alpha"))
    assert not availability.available
    assert availability.reason == f"script {tmp_path / 'nowhere.toml'} not found"
    (tmp_path / "nowhere.toml").write_text('[[attempt]]\naction = "succeed"\n')
    assert adapter.available(ToolProfile(name="alpha")).available


def test_the_variable_names_tools_scripts_and_capabilities(tmp_path):
    parsed = parse_tools_variable("alpha=/s/alpha.toml, beta=/s/beta.toml:prompt+rust,")
    assert parsed == [
        ("alpha", Path("/s/alpha.toml"), frozenset({"prompt", "edit", "python", "review"})),
        ("beta", Path("/s/beta.toml"), frozenset({"prompt", "rust"})),
    ]
    assert parse_tools_variable("") == []
    for bad in ("alpha", "=/s/a.toml", "alpha="):
        with pytest.raises(ValueError, match="ORCHESTRA_SCRIPTED_TOOLS: entry"):
            parse_tools_variable(bad)


def test_orchestra_lists_scripted_tools_only_when_asked_and_survives_a_bad_value(tmp_path):
    script = write_tool_script(tmp_path / "alpha.toml", [{"action": "succeed"}])
    tools = json.loads(run_orchestra("tools", "--json", cwd=tmp_path).stdout)
    assert [row["name"] for row in tools if row["plugin"] == "scripted"] == []
    env = scripted_tools_env(alpha=script, beta=(tmp_path / "beta.toml", {"prompt", "rust"}))
    tools = json.loads(run_orchestra("tools", "--json", cwd=tmp_path, env=env).stdout)
    scripted = {row["name"]: row for row in tools if row["plugin"] == "scripted"}
    assert scripted["alpha"]["available"] and scripted["alpha"]["version"] == "1.0"
    assert scripted["beta"]["capabilities"] == ["prompt", "rust"]
    assert not scripted["beta"]["available"]  # its script was never written

    bad_value = {**scripted_tools_env(), "ORCHESTRA_SCRIPTED_TOOLS": "alpha"}
    bad = run_orchestra("tools", cwd=tmp_path, env=bad_value)
    assert bad.returncode == 0 and "shell" in bad.stdout
    assert (
        "warning: plugin 'scripted' (orchestra-testing 0.1.0) is broken: "
        "orchestra_register_tools raised "
        "ValueError: ORCHESTRA_SCRIPTED_TOOLS: entry 'alpha' is not NAME=SCRIPT or "
        "NAME=SCRIPT:CAP+CAP"
    ) in bad.stderr


def test_a_real_run_succeeds_with_one_scripted_tool_and_does_not_retry_auth(tmp_path):
    project = make_git_repo(tmp_path / "project")
    alpha = write_tool_script(
        tmp_path / "alpha.toml",
        [{"action": "succeed", "edit": {"path": "hello.py", "content": "print('hello')\n"}}],
    )
    beta = write_tool_script(
        tmp_path / "beta.toml", [{"action": "fail", "error_class": "auth", "message": "bad key"}]
    )
    (project / "ws.toml").write_text(
        'id = "scripted"\n'
        '[[tasks]]\nid = "hello"\ntool = "alpha"\nprompt = "Write hello.py"\n'
        '[[tasks]]\nid = "locked"\ntool = "beta"\nprompt = "Use the API"\nmax_attempts = 3\n'
    )
    result = run_orchestra(
        "run", "ws.toml", "--json", cwd=project, env=scripted_tools_env(alpha=alpha, beta=beta)
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "failed" and summary["failed"] == ["locked"]
    # the edit is on the run's branch; the user's working tree is untouched
    assert not (project / "hello.py").exists()
    landed = subprocess.run(
        ["git", "show", f"orchestra/{summary['run']}:hello.py"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert landed.stdout == "print('hello')\n"
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        attempts = db.execute(
            "SELECT task_id, number, tool, outcome, error_class, message FROM attempts"
            " ORDER BY task_id, number"
        ).fetchall()
    assert attempts == [
        ("hello", 1, "alpha", "succeeded", None, None),
        ("locked", 1, "beta", "failed", "auth", "bad key"),
    ]
    [call] = tool_calls(alpha)
    assert (call["task"], call["attempt"], call["prompt"]) == ("hello", 1, "Write hello.py")
    assert call["run"] == summary["run"]
    assert len(tool_calls(beta)) == 1
