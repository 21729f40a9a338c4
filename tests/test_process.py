"""Running an attempt's process: the log, timeouts, process-group cleanup, secrets, env.

Every test runs real processes. A child that must be stopped waits in ``time.sleep(300)``,
so a test that failed to stop it would hang rather than pass.
"""

import os
import signal
import sys
import textwrap
import threading
import time

import pytest

from orchestra.builtin.shell import ShellTool
from orchestra.engine.context import LocalContext
from orchestra.engine.environment import build_environment
from orchestra.engine.process import run_process
from orchestra.models import ExecutionRequest, Task, ToolProfile
from orchestra.secrets import Redactor, secret_values

SECRET = "sk-test-1234567890"

# Forks a child that ignores SIGTERM, keeps the output pipe open and sleeps; the child
# writes "PID PGID" to argv[1]. The leader says "ready" once the file exists, then waits.
STUBBORN_CHILD = """
    import os, signal, sys, time
    pidfile = sys.argv[1]
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if sys.argv[2] == "close-output":
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
        with open(pidfile + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {os.getpgid(0)}")
        os.rename(pidfile + ".tmp", pidfile)
        time.sleep(300)
        os._exit(0)
    while not os.path.exists(pidfile):
        time.sleep(0.01)
    print("ready", flush=True)
    if sys.argv[3] == "wait":
        time.sleep(300)
"""


def python(source: str, *arguments: object) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(source), *map(str, arguments)]


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, Z …), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except FileNotFoundError:
        return None
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


def running(pid: int) -> bool:
    """Whether the process still runs. Some inits reap orphans only every second or so;
    a zombie waiting for that runs no code and holds no files, so it does not count."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return process_state(pid) not in (None, "Z", "X")


def group_members(pgid: int) -> list[int]:
    """The running processes of a process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and running(int(entry)):
            try:
                if os.getpgid(int(entry)) == pgid:
                    members.append(int(entry))
            except ProcessLookupError:
                pass
    return members


def output_lines(log_path) -> list[str]:
    """The process's output in the log, without orchestra's own lines."""
    lines = log_path.read_text().splitlines()
    return [line for line in lines if not line.startswith(("$ ", "orchestra: "))]


@pytest.fixture
def env():
    return build_environment(os.environ, {}, ())


@pytest.fixture
def log(tmp_path):
    return tmp_path / "logs" / "attempt-1.log"


# -- output, exit codes, starting --------------------------------------------------------


def test_stdout_and_stderr_land_in_the_log_in_order(tmp_path, env, log):
    before = time.time()
    result = run_process(
        python(
            """
            import sys
            for i in range(3):
                print(f"out {i}", flush=True)
                print(f"err {i}", file=sys.stderr, flush=True)
            sys.exit(3)
            """
        ),
        cwd=tmp_path,
        env=env,
        log_path=log,
    )
    after = time.time()

    lines = log.read_text().splitlines()
    assert lines[0].startswith(f"$ {sys.executable} -c ")
    assert lines[-7:-1] == ["out 0", "err 0", "out 1", "err 1", "out 2", "err 2"]
    assert lines[-1] == "orchestra: the command exited with status 3"
    assert (result.exit_code, result.signal, result.stopped, result.error) == (3, None, None, None)
    assert result.log_path == str(log)
    assert before <= result.started_at <= result.ended_at <= after
    assert result.ended_at - result.started_at == pytest.approx(result.duration, abs=0.1)


@pytest.mark.parametrize("status", [0, 1, 42])
def test_the_exit_status_is_reported(tmp_path, env, log, status):
    result = run_process(["/bin/sh", "-c", f"exit {status}"], cwd=tmp_path, env=env, log_path=log)
    assert (result.exit_code, result.signal) == (status, None)


def test_a_process_killed_by_a_signal_has_no_exit_status_but_the_signal(tmp_path, env, log):
    result = run_process(["/bin/sh", "-c", "kill -KILL $$"], cwd=tmp_path, env=env, log_path=log)
    assert (result.exit_code, result.signal, result.stopped) == (None, signal.SIGKILL, None)


def test_the_process_runs_in_the_given_directory_with_stdin_at_end_of_file(tmp_path, env, log):
    # cat would wait forever on an inherited terminal; from /dev/null it ends at once
    result = run_process(
        ["/bin/sh", "-c", "pwd; cat; echo after cat"],
        cwd=tmp_path,
        env=env,
        log_path=log,
        timeout=30,
    )
    assert (result.exit_code, result.stopped) == (0, None)
    assert output_lines(log) == [str(tmp_path), "after cat"]


def test_a_missing_program_gives_a_result_with_an_error(tmp_path, env, log):
    result = run_process(["no-such-program-orchestra"], cwd=tmp_path, env=env, log_path=log)
    assert result.exit_code is None
    assert result.error == "cannot run 'no-such-program-orchestra': No such file or directory"
    assert f"orchestra: {result.error}" in log.read_text()


def test_a_program_that_is_not_executable_gives_a_result_with_an_error(tmp_path, env, log):
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\necho hi\n")
    result = run_process([str(program)], cwd=tmp_path, env=env, log_path=log)
    assert result.exit_code is None
    assert "Permission denied" in result.error


def test_a_missing_working_directory_is_named_in_the_error(tmp_path, env, log):
    missing = tmp_path / "nowhere"
    result = run_process(["true"], cwd=missing, env=env, log_path=log)
    assert str(missing) in result.error


def test_a_child_gets_sigpipe_back_so_a_pipeline_ends_quietly(tmp_path, env, log):
    # Python ignores SIGPIPE; a child that inherited that would see `yes` write on after
    # `head` left, and complain of a broken pipe, instead of dying of SIGPIPE quietly
    result = run_process(
        ["/bin/sh", "-c", "yes | head -n 1; echo done"], cwd=tmp_path, env=env, log_path=log
    )
    assert result.exit_code == 0
    assert output_lines(log) == ["y", "done"]


def test_a_program_found_on_the_childs_path_not_orchestras(tmp_path, env, log):
    tools = tmp_path / "bin"
    tools.mkdir()
    program = tools / "only-here-orchestra"
    program.write_text("#!/bin/sh\necho found on the child PATH\n")
    program.chmod(0o755)
    child_env = {**env, "PATH": f"{tools}:{env['PATH']}"}
    result = run_process(["only-here-orchestra"], cwd=tmp_path, env=child_env, log_path=log)
    assert result.exit_code == 0
    assert output_lines(log) == ["found on the child PATH"]


# -- stopping: the whole group, SIGTERM then SIGKILL -------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["timeout", "idle", "canceled"])
@pytest.mark.parametrize("child_output", ["keep-output", "close-output"])
def test_a_stopped_attempt_leaves_no_process_behind(tmp_path, env, log, how, child_output):
    pidfile = tmp_path / "child.pid"
    cancel = threading.Event()
    limits = {
        "timeout": {"timeout": 1.5},
        "idle": {"idle_timeout": 1.0, "timeout": 60},
        "canceled": {"timeout": 60},
    }[how]

    def on_line(line):
        if how == "canceled" and line == "ready":
            cancel.set()

    result = run_process(
        python(STUBBORN_CHILD, pidfile, child_output, "wait"),
        cwd=tmp_path,
        env=env,
        log_path=log,
        grace=0.5,
        cancel=cancel,
        on_line=on_line,
        **limits,
    )

    pid, pgid = map(int, pidfile.read_text().split())
    assert not running(pid)
    assert group_members(pgid) == []
    assert result.stopped == how
    assert (result.exit_code, result.signal) == (None, signal.SIGTERM)
    # the child ignores SIGTERM, so it took the grace period and then SIGKILL
    assert 0.5 <= result.duration < 10
    text = log.read_text()
    assert "ready\n" in text
    assert text.index("sent SIGTERM") < text.index("sent SIGKILL 0.5 s later")


@pytest.mark.parametrize("child_output", ["keep-output", "close-output"])
def test_processes_left_behind_by_a_finished_command_are_stopped(tmp_path, env, log, child_output):
    pidfile = tmp_path / "child.pid"
    result = run_process(
        python(STUBBORN_CHILD, pidfile, child_output, "exit"),
        cwd=tmp_path,
        env=env,
        log_path=log,
        grace=0.5,
        timeout=60,
    )
    pid, pgid = map(int, pidfile.read_text().split())
    assert not running(pid)
    assert group_members(pgid) == []
    assert (result.exit_code, result.stopped) == (0, None)
    assert "left processes running in its group" in log.read_text()


def test_sigterm_comes_first_to_the_whole_group_and_the_grace_period_is_given(tmp_path, env, log):
    report = tmp_path / "report"
    result = run_process(
        python(
            """
            import os, signal, sys, time
            who = "leader"
            def on_term(signum, frame):
                with open(sys.argv[1], "a") as f:
                    f.write(f"{who} got TERM\\n")
                time.sleep(0.3)  # cleaning up
                with open(sys.argv[1], "a") as f:
                    f.write(f"{who} cleaned up\\n")
                os._exit(3)
            signal.signal(signal.SIGTERM, on_term)
            if os.fork() == 0:
                who = "child"
            else:
                print("ready", flush=True)
            time.sleep(300)
            """,
            report,
        ),
        cwd=tmp_path,
        env=env,
        log_path=log,
        timeout=1.5,
        grace=5,
    )
    assert sorted(report.read_text().splitlines()) == [
        "child cleaned up",
        "child got TERM",
        "leader cleaned up",
        "leader got TERM",
    ]
    assert (result.stopped, result.exit_code) == ("timeout", 3)
    assert result.duration < 1.5 + 5
    assert "SIGKILL" not in log.read_text()


def test_a_process_that_keeps_printing_is_not_idle(tmp_path, env, log):
    result = run_process(
        python(
            """
            import time
            for i in range(15):
                print(f"step {i}", flush=True)
                time.sleep(0.1)
            """
        ),
        cwd=tmp_path,
        env=env,
        log_path=log,
        idle_timeout=0.5,
    )
    assert (result.exit_code, result.stopped) == (0, None)
    assert result.duration > 1.0
    assert len(output_lines(log)) == 15


def test_an_attempt_canceled_before_its_start_starts_nothing(tmp_path, env, log):
    cancel = threading.Event()
    cancel.set()
    marker = tmp_path / "ran"
    result = run_process(["touch", str(marker)], cwd=tmp_path, env=env, log_path=log, cancel=cancel)
    assert (result.stopped, result.exit_code) == ("canceled", None)
    assert not marker.exists()


def test_a_command_that_closes_its_output_is_awaited_to_its_exit(tmp_path, env, log):
    # the end of the output is not the end of the command
    result = run_process(
        ["/bin/sh", "-c", "echo before; exec >&- 2>&-; sleep 0.5; exit 5"],
        cwd=tmp_path,
        env=env,
        log_path=log,
        timeout=30,
    )
    assert (result.exit_code, result.stopped) == (5, None)
    assert result.duration >= 0.5
    assert output_lines(log) == ["before"]


def test_output_printed_while_stopping_is_taken_to_the_log(tmp_path, env, log):
    # more than a pipe holds: the process would block on it if nobody read during the grace
    result = run_process(
        python(
            """
            import os, signal, sys, time
            def on_term(signum, frame):
                for i in range(2000):
                    print(f"cleaning {i} " + "z" * 100)
                sys.stdout.flush()
                os._exit(3)
            signal.signal(signal.SIGTERM, on_term)
            print("ready", flush=True)
            time.sleep(300)
            """
        ),
        cwd=tmp_path,
        env=env,
        log_path=log,
        timeout=1.0,
        grace=10,
    )
    assert (result.stopped, result.exit_code) == ("timeout", 3)
    assert result.duration < 10
    lines = output_lines(log)
    assert lines[0] == "ready"
    assert lines[1:] == [f"cleaning {i} " + "z" * 100 for i in range(2000)]
    assert "SIGKILL" not in log.read_text()


def test_a_process_outside_the_group_holding_the_output_does_not_hold_the_call(tmp_path, env, log):
    # a daemon in a session of its own is not orchestra's to stop, nor to wait for
    pidfile = tmp_path / "daemon.pid"
    result = run_process(
        python(
            """
            import os, sys, time
            if os.fork() == 0:
                os.setsid()
                with open(sys.argv[1] + ".tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.rename(sys.argv[1] + ".tmp", sys.argv[1])
                time.sleep(30)
                os._exit(0)
            while not os.path.exists(sys.argv[1]):
                time.sleep(0.01)
            print("leader done", flush=True)
            """,
            pidfile,
        ),
        cwd=tmp_path,
        env=env,
        log_path=log,
        timeout=60,
    )
    daemon = int(pidfile.read_text())
    try:
        assert (result.exit_code, result.stopped) == (0, None)
        assert result.duration < 10
        assert output_lines(log) == ["leader done"]
    finally:
        os.kill(daemon, signal.SIGKILL)


@pytest.fixture
def no_pidfd(monkeypatch):
    """A system without pidfds (Linux before 5.3): the leader's exit is polled for."""

    def pidfd_open(pid, flags=0):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", pidfd_open, raising=False)


def test_without_pidfds_output_and_exit_status_are_reported(tmp_path, env, log, no_pidfd):
    result = run_process(
        ["/bin/sh", "-c", "echo one; sleep 0.2; echo two >&2; exit 7"],
        cwd=tmp_path,
        env=env,
        log_path=log,
        timeout=30,
    )
    assert (result.exit_code, result.stopped) == (7, None)
    assert output_lines(log) == ["one", "two"]
    quick = run_process(["/bin/true"], cwd=tmp_path, env=env, log_path=log, timeout=30)
    assert (quick.exit_code, quick.stopped) == (0, None)
    assert quick.duration < 1


@pytest.mark.slow
@pytest.mark.parametrize("child_output", ["keep-output", "close-output"])
def test_without_pidfds_a_stopped_attempt_leaves_no_process_behind(
    tmp_path, env, log, no_pidfd, child_output
):
    pidfile = tmp_path / "child.pid"
    result = run_process(
        python(STUBBORN_CHILD, pidfile, child_output, "wait"),
        cwd=tmp_path,
        env=env,
        log_path=log,
        grace=0.5,
        timeout=1.5,
    )
    pid, pgid = map(int, pidfile.read_text().split())
    assert not running(pid)
    assert group_members(pgid) == []
    assert (result.stopped, result.exit_code, result.signal) == ("timeout", None, signal.SIGTERM)
    assert "sent SIGKILL 0.5 s later" in log.read_text()


def test_many_quick_commands_leave_no_descriptor_open(tmp_path, env, log):
    # which descriptors, not how many: a thread an earlier test left in this process may
    # close one of its own meanwhile. (The first command opens the /dev/null every child
    # shares, for good.)
    run_process(["/bin/true"], cwd=tmp_path, env=env, log_path=log)
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(50):
        run_process(["/bin/true"], cwd=tmp_path, env=env, log_path=log)
    left = {
        fd: os.readlink(f"/proc/self/fd/{fd}")
        for fd in set(os.listdir("/proc/self/fd")) - before
        if os.path.exists(f"/proc/self/fd/{fd}")
    }
    assert left == {}


# -- secrets ----------------------------------------------------------------------------


def test_a_secret_in_the_environment_never_reaches_the_log(tmp_path, log):
    env = build_environment(os.environ, {"MY_API_KEY": SECRET, "DB_PASSWORD": "x"}, ())
    lines = []
    result = run_process(
        [
            "/bin/sh",
            "-c",
            'echo "key=$MY_API_KEY"; echo "arg=$1" >&2; echo "pw=$DB_PASSWORD"',
            "sh",
            SECRET,
        ],
        cwd=tmp_path,
        env=env,
        log_path=log,
        on_line=lines.append,
    )
    text = log.read_text()
    assert result.exit_code == 0
    assert SECRET not in text
    assert text.splitlines()[0].endswith(" sh '***'")
    # values shorter than four characters are left alone: "x" would blank the whole log
    assert output_lines(log) == lines == ["key=***", "arg=***", "pw=x"]


def test_a_secret_split_across_reads_is_still_redacted(tmp_path, log):
    env = build_environment(os.environ, {"SERVICE_TOKEN": SECRET}, ())
    result = run_process(
        python(
            """
            import os, sys, time
            secret = os.environ["SERVICE_TOKEN"]
            sys.stdout.write("token=" + secret[:7])
            sys.stdout.flush()
            time.sleep(0.3)
            sys.stdout.write(secret[7:] + "\\n")
            """
        ),
        cwd=tmp_path,
        env=env,
        log_path=log,
    )
    assert result.exit_code == 0
    assert output_lines(log) == ["token=***"]


def test_a_very_long_line_is_written_whole_and_redacted(tmp_path, log):
    env = build_environment(os.environ, {"SERVICE_TOKEN": SECRET}, ())
    # 300 KB without a newline: read in many chunks, secrets straddling every boundary
    result = run_process(
        python(
            """
            import os, sys
            sys.stdout.write(("y" * 7 + os.environ["SERVICE_TOKEN"]) * 12000 + "\\n")
            """
        ),
        cwd=tmp_path,
        env=env,
        log_path=log,
    )
    assert result.exit_code == 0
    assert output_lines(log) == [("y" * 7 + "***") * 12000]


def test_a_declared_secret_name_is_redacted(tmp_path, log):
    env = build_environment(os.environ, {"TOOL_CREDENTIAL": "hunter2-credential"}, ())
    argv = ["/bin/sh", "-c", 'echo "$TOOL_CREDENTIAL"']

    run_process(argv, cwd=tmp_path, env=env, log_path=log, secret_names=["TOOL_CREDENTIAL"])
    assert output_lines(log) == ["***"]

    undeclared = tmp_path / "undeclared.log"
    run_process(argv, cwd=tmp_path, env=env, log_path=undeclared)
    assert output_lines(undeclared) == ["hunter2-credential"]


def test_a_context_redacts_handed_over_values_and_declared_names_of_every_run(tmp_path, env, log):
    ctx = LocalContext(
        cwd=tmp_path,
        env={**env, "PROFILE_CREDENTIAL": "profile-credential"},
        log_path=log,
        secrets=["value-from-a-config-file"],
        secret_names=["PROFILE_CREDENTIAL", "CHECK_CREDENTIAL"],
    )
    ctx.run(["/bin/sh", "-c", 'echo "$PROFILE_CREDENTIAL"; echo value-from-a-config-file'])
    ctx.run(
        ["/bin/sh", "-c", 'echo "$CHECK_CREDENTIAL"'], env={"CHECK_CREDENTIAL": "check-credential"}
    )
    assert output_lines(log) == ["***", "***", "***"]
    assert (
        ctx.redact("profile-credential check-credential value-from-a-config-file") == "*** *** ***"
    )


def test_redact_hides_secret_values_in_commands_longest_first():
    env = {
        "OPENAI_API_KEY": "abcd1234",
        "github_token": "abcd1234efgh",
        "CLIENT_SECRET": "client-secret-value",
        "MYSQL_PASSWORD_FILE": "/run/pw",
        "KEYBOARD": "us-intl",
        "TOKENIZER": "bpe-fast",
        "SHORT_KEY": "abc",
        "EMPTY_TOKEN": "",
    }
    values = secret_values(env, declared=["KEYBOARD"])
    assert values == [
        "abcd1234",
        "abcd1234efgh",
        "client-secret-value",
        "/run/pw",
        "us-intl",
        "abc",
    ]
    redactor = Redactor(values)
    command = "tool --key abcd1234efgh --other abcd1234 --layout us-intl --x abc --t bpe-fast"
    assert (
        redactor.redact(command) == "tool --key *** --other *** --layout *** --x abc --t bpe-fast"
    )


def test_overlapping_secrets_are_hidden_whole():
    redactor = Redactor(["XXXXAB", "ABCDEFGH"])
    assert redactor.redact("see XXXXABCDEFGH here") == "see *** here"
    assert redactor.redact_bytes(b"XXXXABCDEFGH XXXXAB ABCDEFGH") == b"*** *** ***"
    # a cut never falls inside the stretch the two cover
    assert redactor.safe_cut(b"0123456789XXXXABCDEF") == 10


def test_a_secret_is_hidden_in_the_forms_programs_print_it_in():
    pasted = "tok-3f9a8b7c\n"  # kept with the newline it was pasted with
    key_file = "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END KEY-----\n"
    password = 'pa"ss\\wörd/+1'
    redactor = Redactor([pasted, key_file, password])
    assert redactor.redact("token=tok-3f9a8b7c.") == "token=***."
    assert redactor.redact_bytes(b"MIIEvQIBADANBgkq\n") == b"***\n"  # a line at a time
    assert redactor.redact('{"password": "pa\\"ss\\\\w\\u00f6rd/+1"}') == '{"password": "***"}'
    assert redactor.redact('{"password": "pa\\"ss\\\\wörd/+1"}') == '{"password": "***"}'
    assert redactor.redact("https://h/?p=pa%22ss%5Cw%C3%B6rd%2F%2B1") == "https://h/?p=***"
    assert redactor.redact("p=pa%22ss%5Cw%C3%B6rd%2F%2B1&x=1") == "p=***&x=1"
    assert redactor.secrets == tuple(sorted([key_file, password, pasted], key=len, reverse=True))


# -- environment ------------------------------------------------------------------------


def test_build_environment_keeps_only_allowed_passed_and_extra_variables():
    source = {
        "PATH": "/usr/bin",
        "HOME": "/home/ada",
        "LC_ALL": "C.UTF-8",
        "LANG": "en_US.UTF-8",
        "AWS_SECRET_ACCESS_KEY": "leak",
        "PYTHONPATH": "/somewhere",
        "ANTHROPIC_API_KEY": "sk-ant",
    }
    environment = build_environment(
        source, {"GREETING": "hi", "PATH": "/opt/bin"}, ["ANTHROPIC_API_KEY", "NOT_SET"]
    )
    assert environment == {
        "PATH": "/opt/bin",
        "HOME": "/home/ada",
        "LC_ALL": "C.UTF-8",
        "LANG": "en_US.UTF-8",
        "ANTHROPIC_API_KEY": "sk-ant",
        "GREETING": "hi",
    }


def test_only_allowed_and_extra_variables_reach_the_process(tmp_path, log, monkeypatch):
    monkeypatch.setenv("ORCHESTRA_TEST_LEAK", "leaked")
    monkeypatch.setenv("ORCHESTRA_TEST_PASSED", "passed")
    env = build_environment(os.environ, {"TASK_VAR": "from-task"}, ["ORCHESTRA_TEST_PASSED"])
    run_process(["env"], cwd=tmp_path, env=env, log_path=log)

    seen = dict(line.split("=", 1) for line in output_lines(log))
    allowed = {"PATH", "HOME", "LANG", "TERM", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL"}
    assert {name for name in seen if not name.startswith("LC_")} <= allowed | {
        "ORCHESTRA_TEST_PASSED",
        "TASK_VAR",
    }
    assert seen["TASK_VAR"] == "from-task"
    assert seen["ORCHESTRA_TEST_PASSED"] == "passed"
    assert seen["PATH"] == os.environ["PATH"]


# -- the context and the shell tool -----------------------------------------------------


def test_a_context_appends_every_run_of_the_attempt_to_one_log(tmp_path, env, log):
    ctx = LocalContext(cwd=tmp_path, env={**env, "MY_API_KEY": SECRET}, log_path=log)
    first = ctx.run(["/bin/sh", "-c", "echo tool output"])
    second = ctx.run(["/bin/sh", "-c", 'echo "check $CHECK_VAR"'], env={"CHECK_VAR": "ok"})
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert first.log_path == second.log_path == str(log)
    assert output_lines(log) == ["tool output", "check ok"]
    assert ctx.redact(f"curl -H 'Authorization: Bearer {SECRET}'") == (
        "curl -H 'Authorization: Bearer ***'"
    )


def test_a_failing_on_line_callback_does_not_disturb_the_process(tmp_path, env, log):
    def on_line(line):
        raise RuntimeError("progress display broke")

    result = run_process(
        ["/bin/sh", "-c", "echo one; echo two"],
        cwd=tmp_path,
        env=env,
        log_path=log,
        on_line=on_line,
    )
    assert result.exit_code == 0
    assert output_lines(log) == ["one", "two"]


@pytest.mark.parametrize(
    ("task", "limits", "expected"),
    [
        (Task(id="t", command=("true",)), {}, ("succeeded", None, 0)),
        (Task(id="t", command="exit 4", shell=True), {}, ("failed", "exit_status", 4)),
        (Task(id="t", command="kill -KILL $$", shell=True), {}, ("failed", "crashed", None)),
        (
            Task(id="t", command=("no-such-program-orchestra",)),
            {},
            ("failed", "tool_missing", None),
        ),
        (Task(id="t", command=("sleep", "300")), {"timeout": 0.5}, ("timed_out", "timeout", None)),
        (
            Task(id="t", command="echo started; sleep 300", shell=True),
            {"idle_timeout": 0.5},
            ("timed_out", "idle", None),
        ),
        (
            Task(id="t", command='test "$GREETING" = hello', shell=True, env={"GREETING": "hello"}),
            {},
            ("succeeded", None, 0),
        ),
    ],
    ids=["succeeded", "exit-status", "crashed", "missing", "timeout", "idle", "task-env"],
)
def test_the_shell_tool_judges_a_task_run_through_the_context(
    tmp_path, env, log, task, limits, expected
):
    ctx = LocalContext(cwd=tmp_path, env=env, log_path=log, grace=0.5, **limits)
    request = ExecutionRequest(
        run_id="r1", task=task, attempt=1, workdir=str(tmp_path), profile=ToolProfile(name="shell")
    )
    step = ShellTool().execute(request, ctx)
    assert (step.outcome, step.error_class, step.exit_code) == expected


def test_the_shell_tool_reports_a_canceled_attempt(tmp_path, env, log):
    cancel = threading.Event()
    ctx = LocalContext(
        cwd=tmp_path, env=env, log_path=log, cancel=cancel, on_line=lambda line: cancel.set()
    )
    task = Task(id="t", command="echo started; sleep 300", shell=True)
    request = ExecutionRequest(
        run_id="r1", task=task, attempt=1, workdir=str(tmp_path), profile=ToolProfile(name="shell")
    )
    step = ShellTool().execute(request, ctx)
    assert (step.outcome, step.error_class) == ("canceled", None)


def test_a_silent_success_leaves_no_log_but_a_silent_failure_does(tmp_path, env):
    quiet_success = tmp_path / "ok.log"
    quiet_failure = tmp_path / "failed.log"

    run_process(["true"], cwd=tmp_path, env=env, log_path=quiet_success)
    run_process(["false"], cwd=tmp_path, env=env, log_path=quiet_failure)

    assert not quiet_success.exists()
    assert quiet_failure.read_text().splitlines() == [
        "$ false",
        "orchestra: the command exited with status 1",
    ]


def test_a_context_writes_the_silent_commands_before_the_first_output(tmp_path, env):
    log = tmp_path / "attempt.log"
    context = LocalContext(cwd=tmp_path, env=env, log_path=log)

    context.run(["true"])
    context.run(["echo", "checked"])
    context.run(["true"])

    assert log.read_text().splitlines() == ["$ true", "$ echo checked", "checked", "$ true"]


# -- the log's limit ----------------------------------------------------------------------


def test_output_past_the_log_limit_keeps_the_start_and_the_redacted_end(tmp_path, log):
    env = build_environment(os.environ, {"MY_TOKEN": SECRET}, ())
    source = f"for n in range(2000): print(f'{{n:04d}} {SECRET}')"

    result = run_process(python(source), cwd=tmp_path, env=env, log_path=log, log_limit=10_000)

    assert result.exit_code == 0
    text = log.read_text()
    assert SECRET not in text
    assert len(text) <= 10_000 + 300  # the "$ command" line and the note
    lines = output_lines(log)
    assert lines[0] == "0000 ***" and lines[-1] == "1999 ***"
    (note,) = [line for line in text.splitlines() if "left out" in line]
    assert note.startswith("orchestra: the log reached its limit (log_limit 10kB): ")


def test_an_attempts_log_limit_holds_across_its_processes(tmp_path, env, log):
    from orchestra.engine.containment import supervise_run

    env = {**env, "ORCHESTRA_RUN_ID": "r-limit", "ORCHESTRA_TASK_ID": "t", "ORCHESTRA_ATTEMPT": "1"}
    ten_kb = python("import sys; sys.stdout.write(('z' * 99 + chr(10)) * 100)")
    with supervise_run("r-limit", log_limit=5_000):
        context = LocalContext(cwd=tmp_path, env=env, log_path=log)
        for _ in range(3):
            context.run(ten_kb)

    text = log.read_text()
    assert text.count("orchestra: the log reached its limit (log_limit 5kB)") == 3
    # the first process fills the log; each one after it keeps its end only (500 bytes)
    output = sum(len(line) + 1 for line in output_lines(log))
    assert output == 4_500 + 3 * 500


# -- orphans of a run: reaped without taking an exit status from anyone --------------------


def test_orphans_are_reaped_and_no_exit_status_is_taken(tmp_path, env, monkeypatch):
    from orchestra.engine.containment import supervise_run

    monkeypatch.setenv("ORCHESTRA_CGROUPS", "0")  # orchestra as subreaper: orphans come here
    results = []

    def attempts(number: int) -> None:
        marked = {**env, "ORCHESTRA_RUN_ID": "r-reap", "ORCHESTRA_TASK_ID": f"t{number}"}
        for attempt in range(10):
            marked["ORCHESTRA_ATTEMPT"] = str(attempt)
            # a background child outlives its shell by a moment, then dies as an orphan
            argv = ["/bin/sh", "-c", "(sleep 0.01 &); exit 7"]
            results.append(
                run_process(argv, cwd=tmp_path, env=marked, log_path=tmp_path / f"{number}.log")
            )

    with supervise_run("r-reap"):
        workers = [threading.Thread(target=attempts, args=(n,)) for n in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    assert [result.exit_code for result in results] == [7] * 20
    assert zombie_children() == []


@pytest.mark.parametrize("cgroups", ["1", "0"])
def test_an_orphan_that_ends_before_its_attempt_is_reaped(tmp_path, env, monkeypatch, cgroups):
    # the orphan (a background child whose shell is gone) ends while the leader still
    # runs: it waits as orchestra's zombie, which the attempt's end must reap (its cgroup
    # counts it until then, though it lists no process)
    from orchestra.engine.cgroups import hierarchy
    from orchestra.engine.containment import supervise_run

    monkeypatch.setenv("ORCHESTRA_CGROUPS", cgroups)
    if cgroups == "1" and hierarchy() is None:
        pytest.skip("no writable cgroup v1 pids hierarchy here (needs root)")
    marked = {**env, "ORCHESTRA_RUN_ID": f"r-zombie-{cgroups}", "ORCHESTRA_TASK_ID": "t"}
    results = []
    left: list[list[int]] = []

    def attempts() -> None:
        for attempt in range(5):
            marked["ORCHESTRA_ATTEMPT"] = str(attempt)
            argv = ["/bin/sh", "-c", "(true &); sleep 0.1; exit 3"]
            results.append(run_process(argv, cwd=tmp_path, env=marked, log_path=tmp_path / "t.log"))
            left.append(zombie_children())  # reaped by the attempt's end, not later

    with supervise_run(marked["ORCHESTRA_RUN_ID"]):
        worker = threading.Thread(target=attempts)  # a run's attempts: not the main thread
        worker.start()
        worker.join()

    assert [result.exit_code for result in results] == [3] * 5
    assert left == [[]] * 5


def zombie_children() -> list[int]:
    """This process's children that have exited and were not reaped."""
    found = []
    for thread in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{thread}/children") as listing:
            found += [int(pid) for pid in listing.read().split() if process_state(int(pid)) == "Z"]
    return found
