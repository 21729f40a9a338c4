"""End to end: ``orchestra run`` routes a task to the real claude, configured in
orchestra.toml, against the fake Messages API.

Each attempt runs in a git worktree; orchestra commits a successful attempt's edit
(claude never commits) and merges it into the run's branch, which the tests read.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from claude_helpers import HELLO, WORLD, Project, claude_processes
from fake_anthropic import (
    API_KEY,
    FakeAnthropic,
    Garbage,
    Reply,
    Status,
    bash,
    edit,
    read,
    text,
    write,
)
from orchestra_claude import supervise

OLD, NEW = 'return "hello"', 'return "hello, world"'
#: a command acceptEdits does not let through
BASH_WRITE = "python3 -c \"open('hello.py', 'w').write('x')\""
WORKSTREAM = """\
id = "greet"

[[tasks]]
id = "greet"
tool = "claude"
prompt = "Make greet return hello, world"
files = { write = ["hello.py"] }
max_attempts = 1
"""


def test_claude_reads_and_edits_a_file_which_lands_on_the_run_branch(
    project: Project, fake_anthropic
) -> None:
    server: FakeAnthropic = fake_anthropic(
        Reply([text("I'll read hello.py first."), read("hello.py")]),
        Reply([edit("hello.py", OLD, NEW)]),
        Reply([text("greet now returns hello, world.")]),
    )
    project.configure(server.base_url)
    project.workstream(WORKSTREAM)

    ran = project.run()

    assert ran.completed.returncode == 0, ran.output
    assert ran.landed("hello.py") == WORLD
    assert (project.root / "hello.py").read_text() == HELLO  # the user's tree is untouched
    [attempt] = ran.attempts()
    assert (attempt["tool"], attempt["outcome"], attempt["exit_code"]) == ("claude", "succeeded", 0)
    usage = [attempt[name] for name in ("input_tokens", "cached_input_tokens", "output_tokens")]
    assert usage == [3600, 600, 150]
    assert attempt["cost_usd"] == pytest.approx(0.01512)  # what claude reported
    # the prompt reached claude on stdin, the key in its header, and the scope is named
    first = server.requests[0]
    assert first.headers["x-api-key"] == API_KEY
    assert (
        first.prompt()
        .rstrip()
        .endswith(
            "Make greet return hello, world\n\nFiles (patterns relative to your working"
            " directory):\nYou may change: hello.py."
        )
    )
    kinds = [kind for kind, _ in ran.events()]
    assert {"tool.version", "tool.call", "tool.edit", "tool.changes"} <= set(kinds)
    [edit_event] = [json.loads(payload) for kind, payload in ran.events() if kind == "tool.edit"]
    assert edit_event == {"tool": "Edit", "ok": True, "path": "hello.py"}
    log = ran.log()
    assert said(log) == [
        "claude: Read hello.py",
        "claude:   ok",
        "claude: Edit hello.py",
        "claude:   ok",
        "claude: finished (completed) after 3 turns",
    ]
    assert "Make greet return" not in log.split("\n", 1)[0]  # not on the command line


def said(log: str) -> list[str]:
    """Return the readable lines of an attempt's log."""
    return [line for line in log.splitlines() if line.startswith("claude: ")]


def workstream(**fields: str) -> str:
    """Return WORKSTREAM with the greet task's ``fields`` (TOML values) replaced or added."""
    lines = WORKSTREAM.splitlines()
    for name, value in fields.items():
        lines = [line for line in lines if not line.startswith(f"{name} =")]
        lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


def test_claude_writes_a_new_file(project: Project, fake_anthropic) -> None:
    server = fake_anthropic(
        Reply([write("NOTES.md", "# Notes\n\ngreet says hello.\n")]),
        Reply([text("Created NOTES.md.")]),
    )
    project.configure(server.base_url)
    project.workstream(workstream(files='{ create = ["NOTES.md"] }', prompt='"Write NOTES.md"'))

    ran = project.run()

    assert ran.completed.returncode == 0, ran.output
    assert ran.landed("NOTES.md") == "# Notes\n\ngreet says hello.\n"
    assert ran.landed("hello.py") == HELLO
    [attempt] = ran.attempts()
    assert attempt["outcome"] == "succeeded"
    edits = [json.loads(payload) for kind, payload in ran.events() if kind == "tool.edit"]
    assert edits == [{"tool": "Write", "ok": True, "path": "NOTES.md"}]


def test_a_text_only_answer_fails_as_invalid_output_with_the_answer(
    project: Project, fake_anthropic
) -> None:
    server = fake_anthropic(Reply([text("greet already returns a greeting; nothing to do.")]))
    project.configure(server.base_url)
    project.workstream(WORKSTREAM)

    ran = project.run()

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["outcome"], attempt["error_class"], attempt["exit_code"]) == (
        "failed",
        "invalid_output",
        0,  # claude exits 0: only the stream and the tree tell
    )
    assert attempt["message"] == (
        "claude finished without changing any file; it made no edit; its answer: greet"
        " already returns a greeting; nothing to do."
    )
    assert ran.landed("hello.py") is None  # a run that merged nothing leaves no branch


def test_when_every_edit_is_refused_or_fails_the_attempt_fails_naming_them(
    project: Project, fake_anthropic
) -> None:
    server = fake_anthropic(
        Reply([write("../outside.txt", "x")]),  # outside the working directory: refused
        Reply([bash(BASH_WRITE)]),  # a command acceptEdits does not let through
        Reply([edit("hello.py", "no such line", NEW)]),  # an edit that does not apply
        Reply([text("Done: greet returns hello, world.")]),  # claude's word is not trusted
    )
    project.configure(server.base_url)
    project.workstream(WORKSTREAM)

    ran = project.run()

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["outcome"], attempt["error_class"], attempt["exit_code"]) == (
        "failed",
        "invalid_output",
        0,
    )
    outside = project.root / ".orchestra" / "worktrees" / ran.run_id / "outside.txt"
    assert attempt["message"] == (
        f"claude finished without changing any file; refused: Write {outside}, Bash {BASH_WRITE};"
        f" failed: Write {outside}: Claude requested permissions to write to {outside}, but you"
        " haven't granted it yet.; Edit hello.py: String to replace not found in file."
        " String: no such line; its answer: Done: greet returns hello, world."
    )
    assert not outside.exists()
    assert "claude: refused Write: Path is outside allowed working directories" in ran.log()


def test_a_401_fails_as_auth_and_is_not_retried(project: Project, fake_anthropic) -> None:
    server = fake_anthropic(Status(401, "invalid x-api-key", "authentication_error"))
    project.configure(server.base_url)
    project.workstream(workstream(max_attempts="3"))

    ran = project.run()

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["outcome"], attempt["error_class"]) == ("failed", "auth")
    assert attempt["message"] == "Invalid API key · Fix external API key"
    assert len(server.requests) == 1


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_claude_waits_out_a_429_with_retry_after_and_succeeds(
    project: Project, fake_anthropic
) -> None:
    limited = Status(429, "Rate limited", "rate_limit_error", {"retry-after": "1"})
    server = fake_anthropic(limited, Reply([edit("hello.py", OLD, NEW)]), Reply([text("Done.")]))
    project.configure(server.base_url, max_retries=1)
    project.workstream(WORKSTREAM)

    ran = project.run()

    assert ran.completed.returncode == 0, ran.output
    assert ran.landed("hello.py") == WORLD
    [attempt] = ran.attempts()
    assert attempt["outcome"] == "succeeded"
    [retry] = [json.loads(payload) for kind, payload in ran.events() if kind == "tool.retry"]
    assert (retry["error_status"], retry["attempt"]) == (429, 1)
    assert retry["retry_delay_ms"] >= 1000  # the provider's retry-after, honoured
    assert "claude: the provider failed (429); retry 1 in " in ran.log()


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_a_429_claude_gives_up_on_is_rate_limited_and_orchestras_retry_succeeds(
    project: Project, fake_anthropic
) -> None:
    # past about a minute of retry-after claude gives up at once; orchestra waits instead
    limited = Status(429, "Rate limited", "rate_limit_error", {"retry-after": "120"})
    server = fake_anthropic(limited, Reply([edit("hello.py", OLD, NEW)]), Reply([text("Done.")]))
    project.configure(server.base_url, max_retries=2, rate_limit_wait=0.5)
    project.workstream(workstream(max_attempts="2", backoff='{ initial = "0.01s" }'))

    ran = project.run()

    assert ran.completed.returncode == 0, ran.output
    first, second = ran.attempts()
    assert (first["outcome"], first["error_class"]) == ("failed", "rate_limited")
    assert first["retry_after"] == 0.5
    assert first["message"].startswith("API Error: Request rejected (429)")
    assert second["outcome"] == "succeeded"
    assert ran.landed("hello.py") == WORLD


def test_a_500_fails_as_provider_error(project: Project, fake_anthropic) -> None:
    server = fake_anthropic(Status(500, "Internal server error"))
    project.configure(server.base_url)
    project.workstream(WORKSTREAM)

    ran = project.run()

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["outcome"], attempt["error_class"]) == ("failed", "provider_error")
    assert attempt["message"].startswith("API Error: 500 Internal server error.")


def test_a_malformed_stream_fails_as_provider_error(project: Project, fake_anthropic) -> None:
    # claude asks again without streaming after a broken stream: garbage both times
    server = fake_anthropic(Garbage(), Garbage())
    project.configure(server.base_url)
    project.workstream(WORKSTREAM)

    ran = project.run()

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["outcome"], attempt["error_class"]) == ("failed", "provider_error")
    assert "JSON Parse error" in attempt["message"]
    assert [request.streamed for request in server.requests] == [True, False]


@pytest.mark.slow
def test_a_stalled_stream_is_stopped_at_the_tasks_timeout_with_nothing_left_running(
    project: Project, fake_anthropic, tmp_path: Path
) -> None:
    server = fake_anthropic(Reply([text("never seen")], stall=True))
    project.configure(server.base_url)
    project.workstream(workstream(timeout='"3s"', idle_timeout='"1m"'))

    ran = project.run()

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["outcome"], attempt["error_class"]) == ("timed_out", "timeout")
    assert attempt["message"] == "claude ran past its timeout"
    assert claude_processes(str(tmp_path)) == []


def test_the_turn_limit_fails_as_turn_limit(project: Project, fake_anthropic) -> None:
    server = fake_anthropic(Reply([read("hello.py")]), Reply([read("hello.py")]))
    project.configure(server.base_url, max_turns=1)
    project.workstream(WORKSTREAM)

    ran = project.run()

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["error_class"], attempt["message"]) == (
        "turn_limit",
        "Reached maximum number of turns (1)",
    )


@pytest.mark.slow
def test_a_stalled_stream_is_stopped_at_the_idle_timeout_with_nothing_left_running(
    project: Project, fake_anthropic, tmp_path: Path
) -> None:
    server = fake_anthropic(Reply([text("never seen")], stall=True))
    project.configure(server.base_url)
    project.workstream(workstream(idle_timeout='"3s"'))

    ran = project.run()

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["outcome"], attempt["error_class"]) == ("timed_out", "idle")
    assert attempt["message"].startswith("claude printed nothing for its idle_timeout")
    assert len(server.requests) == 1
    assert claude_processes(str(tmp_path)) == []


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_an_unreachable_provider_fails_in_bounded_time(project: Project) -> None:
    # the plugin's default retries (2) and request timeout, not claude's (10, 600 s)
    project.configure("http://127.0.0.1:9", max_retries=2)
    project.workstream(WORKSTREAM)

    ran = project.run(timeout=60)  # claude's own defaults would take about 3 minutes

    assert ran.completed.returncode == 1, ran.output
    [attempt] = ran.attempts()
    assert (attempt["outcome"], attempt["error_class"]) == ("failed", "provider_error")
    assert "Connection refused" in attempt["message"]
    assert "claude: the provider failed (unknown); retry 2 in " in ran.log()


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_a_retry_after_a_failed_check_carries_its_output_and_goes_on_from_the_change(
    project: Project, fake_anthropic
) -> None:
    there = 'return "hello, there"'
    server = fake_anthropic(
        Reply([edit("hello.py", OLD, there)]),
        Reply([text("Done.")]),
        Reply([edit("hello.py", there, NEW)]),  # applies only where attempt 1's change is
        Reply([text("Fixed.")]),
    )
    project.configure(server.base_url)
    check = (
        'python3 -c \\"import sys, hello; g = hello.greet(); '
        "sys.exit(0 if g == 'hello, world' else 'greet() returned ' + repr(g))\\\""
    )
    project.workstream(
        workstream(max_attempts="2", backoff='{ initial = "0.01s" }', checks=f'["{check}"]')
    )

    ran = project.run()

    assert ran.completed.returncode == 0, ran.output
    first, second = ran.attempts()
    assert (first["error_class"], second["outcome"]) == ("check_failed", "succeeded")
    retry = server.requests[2].prompt()
    assert "An earlier attempt at this task did not succeed. What went wrong:" in retry
    assert "greet() returned 'hello, there'" in retry
    assert "last attempt's change is already in the working tree, uncommitted" in retry
    assert ran.landed("hello.py") == WORLD


#: run by the model: whether claude's process and orchestra-claude's supervisor, the
#: command's ancestors, started with the key in their environments
ANCESTORS = """\
import os
SUPERVISOR = {supervisor!r}
pid, seen = os.getppid(), []
while pid > 1:
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        command = file.read()
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            found = "KEY" if b"ANTHROPIC_API_KEY=" in file.read() else "clean"
    except OSError:
        found = "unreadable"
    program, *arguments = command.split(b"\\0")
    if program.endswith(b"/claude") or arguments[1:2] == [SUPERVISOR]:
        seen.append(found)
    with open(f"/proc/{pid}/stat") as file:
        pid = int(file.read().rsplit(")", 1)[1].split()[1])
print("ancestors:", " ".join(seen))
"""


def test_hygiene_no_key_anywhere_and_no_claude_files_in_the_repository_or_branch(
    project: Project, fake_anthropic, home: Path, tmp_path: Path
) -> None:
    scan = tmp_path / "ancestors.py"
    scan.write_text(ANCESTORS.replace("{supervisor!r}", repr(supervise.__file__.encode())))
    server = fake_anthropic(
        Reply([bash("env")]),
        Reply([bash(f"python3 {scan}")]),
        Reply([edit("hello.py", OLD, NEW)]),
        Reply([text("Done.")]),
    )
    project.configure(server.base_url, allowed_tools=["Bash(env)", "Bash(python3 *)"])
    project.workstream(WORKSTREAM)

    ran = project.run("--json")

    assert ran.completed.returncode == 0, ran.output
    # the model's command ran, and saw no key: claude read it from a pipe
    [env_output] = server.requests[1].tool_results()
    assert "HOME=" in json.dumps(env_output) and "CLAUDECODE=1" in json.dumps(env_output)
    assert "ANTHROPIC_API_KEY" not in json.dumps(env_output)
    [ancestors] = server.requests[2].tool_results()
    assert ancestors["content"] == "ancestors: clean clean"  # claude, then the supervisor
    for request in server.requests[1:]:
        assert API_KEY not in json.dumps(request.body)
    assert API_KEY not in ran.output
    for path in (project.root / ".orchestra").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert API_KEY.encode() not in path.read_bytes(), path
    # nothing of claude's in the repository, on the run branch, or in the user's home
    status = git(project.root, "status", "--porcelain", "--ignored", "--untracked-files=all")
    listed = [line for line in status.splitlines() if not line[3:].startswith(".orchestra/")]
    assert listed == ["?? orchestra.toml", "?? ws.toml"]
    branch = git(project.root, "ls-tree", "-r", "--name-only", f"orchestra/{ran.run_id}")
    assert branch.split() == [".gitignore", "hello.py"]
    in_home = [path.relative_to(home).as_posix() for path in home.rglob("*") if path.is_file()]
    assert in_home == [".cache/orchestra/versions.json"]  # orchestra's cache of versions
    # the attempt's private HOME and TMPDIR went with its scratch directory
    assert not list((project.root / ".orchestra").rglob(".claude*"))


def git(where: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=where, capture_output=True, text=True, check=True
    ).stdout


def test_bypass_permissions_lets_a_command_through_even_as_root(
    project: Project, fake_anthropic
) -> None:
    # as root claude refuses to skip its checks unless IS_SANDBOX=1, which the plugin sets
    server = fake_anthropic(Reply([bash(BASH_WRITE)]), Reply([text("Done.")]))
    project.configure(server.base_url, permission_mode="bypassPermissions")
    project.workstream(WORKSTREAM)

    ran = project.run()

    assert ran.completed.returncode == 0, ran.output
    assert ran.landed("hello.py") == "x"
    [call] = [json.loads(payload) for kind, payload in ran.events() if kind == "tool.call"]
    assert call == {"tool": "Bash", "ok": True, "command": BASH_WRITE}
