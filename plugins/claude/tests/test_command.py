"""The [tools.claude] options, and the command line, environment and prompt they give."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from orchestra_claude import supervise
from orchestra_claude.command import build, limits
from orchestra_claude.prompt import build_prompt
from orchestra_claude.settings import ClaudeSettings, SettingsError

import orchestra


def request(
    prompt: str = "Make greet return hello, world",
    *,
    timeout: float | None = 600,
    model: str | None = "claude-fake",
    args: tuple[str, ...] = (),
    feedback: str | None = None,
    files: orchestra.FileScope | None = None,
    **options: object,
) -> orchestra.ExecutionRequest:
    task = orchestra.Task(id="t", prompt=prompt, files=files or orchestra.FileScope())
    profile = orchestra.ToolProfile("claude", model=model, args=args, options=options)
    return orchestra.ExecutionRequest(
        run_id="r",
        task=task,
        attempt=2 if feedback else 1,
        workdir="/repo",
        profile=profile,
        timeout=timeout,
        feedback=feedback,
        continues=bool(feedback),
        start="continued" if feedback else None,
    )


def test_the_command_line_keeps_the_prompt_off_it_and_names_each_fixed_flag(
    tmp_path: Path,
) -> None:
    invocation = build(request(), ClaudeSettings(), "/bin/claude", tmp_path)

    python, isolated, script, prompt_file, separator, *claude = invocation.argv
    assert (python, isolated, script, separator) == (sys.executable, "-I", supervise.__file__, "--")
    assert claude == [
        "/bin/claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--no-session-persistence",
        "--model",
        "claude-fake",
    ]
    assert Path(prompt_file).read_text() == "Make greet return hello, world\n"
    assert all("Make greet" not in argument for argument in invocation.argv)


def test_the_environment_is_private_quiet_and_bounded(tmp_path: Path) -> None:
    settings = ClaudeSettings(base_url="http://127.0.0.1:1234")

    env = build(request(), settings, "/bin/claude", tmp_path).env

    assert env["HOME"] == str(tmp_path / "home") and (tmp_path / "home").is_dir()
    assert env["ORCHESTRA_CLAUDE_TMPDIR"] == str(tmp_path / "tmp") and (tmp_path / "tmp").is_dir()
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1234"
    for name in ("DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING"):
        assert env[name] == "1"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["CLAUDE_CODE_SUBPROCESS_ENV_SCRUB"] == "0"
    assert (env["CLAUDE_CODE_MAX_RETRIES"], env["API_TIMEOUT_MS"]) == ("2", "120000")
    assert env["CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS"] == "60000"
    assert "ANTHROPIC_API_KEY" not in env and "IS_SANDBOX" not in env


def test_no_wait_of_claudes_is_longer_than_the_attempts_timeout() -> None:
    assert limits(ClaudeSettings(), 30) == {
        "CLAUDE_CODE_MAX_RETRIES": "2",
        "API_TIMEOUT_MS": "30000",
        "CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS": "30000",
    }
    # claude's stream watchdog has a floor of 10 s
    assert limits(ClaudeSettings(), 4)["CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS"] == "10000"
    assert limits(ClaudeSettings(request_timeout=5), None)["API_TIMEOUT_MS"] == "5000"


def test_profile_options_reach_the_command_line(tmp_path: Path) -> None:
    settings = ClaudeSettings.from_options(
        {
            "allowed_tools": ["Bash(pytest *)", "Bash(git diff *)"],
            "disallowed_tools": ["WebFetch"],
            "max_turns": 12,
            "bare": True,
        }
    )

    argv = build(request(args=("--effort", "low")), settings, "/bin/claude", tmp_path).argv

    claude = argv[argv.index("--") + 1 :]
    assert claude[:7] == [
        "/bin/claude",
        "-p",
        "--allowedTools",
        "Bash(pytest *)",
        "Bash(git diff *)",
        "--disallowedTools",
        "WebFetch",
    ]
    assert claude[-7:] == [
        "--bare",
        "--max-turns",
        "12",
        "--model",
        "claude-fake",
        "--effort",
        "low",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="IS_SANDBOX is set for root only")
def test_bypass_permissions_as_root_sets_is_sandbox(tmp_path: Path) -> None:
    settings = ClaudeSettings(permission_mode="bypassPermissions")

    invocation = build(request(), settings, "/bin/claude", tmp_path)

    assert invocation.env["IS_SANDBOX"] == "1"
    assert "bypassPermissions" in invocation.argv


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"permission_mode": "default"}, "[tools.claude] permission_mode must be one of"),
        ({"max_retries": "2"}, "[tools.claude] max_retries must be an integer, not '2'"),
        ({"max_retries": -1}, "[tools.claude] max_retries must not be negative, not -1"),
        ({"allowed_tools": "Bash"}, "[tools.claude] allowed_tools must be a list of strings"),
        ({"allowed_tools": ["Bash", 3]}, "[tools.claude] allowed_tools must be a list of strings"),
        ({"bare": "yes"}, "[tools.claude] bare must be true or false, not 'yes'"),
        ({"max_turns": 0}, "[tools.claude] max_turns must be at least 1"),
        ({"stream_idle_timeout": 5}, "[tools.claude] stream_idle_timeout must be at least 10"),
        ({"request_timeout": 0}, "[tools.claude] request_timeout must be longer than zero"),
        ({"binary": ""}, "[tools.claude] binary must not be empty"),
    ],
)
def test_a_bad_option_is_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        ClaudeSettings.from_options(options)
    assert str(raised.value).startswith(message)


def test_numbers_are_taken_for_floats_and_unknown_options_are_left_alone() -> None:
    settings = ClaudeSettings.from_options({"request_timeout": 30, "cost_per_task": 1})

    assert settings.request_timeout == 30.0 and isinstance(settings.request_timeout, float)


def test_a_retrys_prompt_carries_the_masked_feedback_and_what_the_tree_holds() -> None:
    scope = orchestra.FileScope(write=("src/*.py",), create=("NOTES.md",), forbidden=(".env",))
    retry = request(files=scope, feedback="FAILED test_greet: token sk-secret-1 rejected")

    prompt = build_prompt(retry, redact=lambda text: text.replace("sk-secret-1", "***"))

    assert prompt.startswith(
        "Make greet return hello, world\n\nFiles (patterns relative to your working"
        " directory):\nYou may change: src/*.py.\nYou may create: NOTES.md.\n"
        "Do not read or change: .env.\n\nAn earlier attempt at this task did not succeed."
        " What went wrong:\n\nFAILED test_greet: token *** rejected\n\n"
    )
    assert orchestra.start_note(retry) in prompt
    assert "sk-secret-1" not in prompt


def test_the_supervisor_hands_the_key_over_in_a_pipe_and_gives_claude_its_directories(
    tmp_path: Path,
) -> None:
    (tmp_path / "prompt.md").write_text("the prompt\n")
    program = tmp_path / "fake-claude"
    program.write_text(
        "#!/bin/sh\n"
        'echo "stdin: $(cat)"\n'
        'echo "variable: ${ANTHROPIC_API_KEY:-none}"\n'
        'echo "key: $(cat <&$CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR)"\n'
        'echo "$TMPDIR"\n'
        'echo "$XDG_RUNTIME_DIR"\n'
        "exit 3\n"
    )
    program.chmod(0o755)
    deep = tmp_path / ("d" * 100)  # too long a TMPDIR for a socket path
    deep.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "ANTHROPIC_API_KEY": "sk-ant-in-a-pipe",
        "TMPDIR": str(deep),
        "ORCHESTRA_CLAUDE_TMPDIR": str(tmp_path / "claude-tmp"),
    }
    supervisor = [sys.executable, "-I", supervise.__file__, str(tmp_path / "prompt.md")]

    completed = subprocess.run(
        [*supervisor, "--", str(program)], env=env, capture_output=True, text=True, check=False
    )

    said, temporary, runtime = completed.stdout.rsplit("\n", 3)[:3]
    assert said == "stdin: the prompt\nvariable: none\nkey: sk-ant-in-a-pipe"
    assert completed.returncode == 3
    assert temporary == str(tmp_path / "claude-tmp")
    # claude's socket directory is short enough, and removed afterwards
    assert len(os.path.join(runtime, supervise.SOCKET)) <= supervise.MAX_SOCKET_PATH
    assert runtime.startswith("/tmp/claude-") and not os.path.exists(runtime)


def test_the_supervisor_reports_a_program_it_cannot_start(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("p")
    missing = str(tmp_path / "no-claude")

    completed = subprocess.run(
        [sys.executable, "-I", supervise.__file__, str(tmp_path / "prompt.md"), "--", missing],
        capture_output=True,
        text=True,
        check=False,
    )

    assert completed.returncode == 127
    assert completed.stderr.startswith(f"cannot run {missing}: No such file or directory")


def test_the_supervisor_describes_tool_calls_refusals_retries_and_the_end() -> None:
    cwd = "/repo"
    call = {
        "type": "assistant",
        "message": {
            "content": [{"type": "tool_use", "name": "Edit", "input": {"file_path": "/repo/a.py"}}]
        },
    }
    failed = {
        "type": "user",
        "message": {
            "content": [{"type": "tool_result", "is_error": True, "content": "no\n  such"}]
        },
    }
    retry = {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 1,
        "retry_delay_ms": 2500,
        "error_status": 529,
    }
    denied = {
        "type": "system",
        "subtype": "permission_denied",
        "tool_name": "Bash",
        "decision_reason": "asks",
    }
    result = {"type": "result", "is_error": True, "terminal_reason": "api_error", "num_turns": 1}

    lines = [
        line
        for event in (call, failed, retry, denied, result)
        for line in supervise.describe(event, cwd)
    ]

    assert lines == [
        "claude: Edit a.py",
        "claude:   error: no such",
        "claude: the provider failed (529); retry 1 in 2.5s",
        "claude: refused Bash: asks",
        "claude: failed (api_error) after 1 turns",
    ]
    assert supervise.describe("not an event", cwd) == []
