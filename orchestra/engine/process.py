"""Running one process of an attempt, the same way for every tool.

The child gets an argument list (never a shell unless the caller asks for one), stdin from
/dev/null, an environment built from an allow-list, and a session of its own, so that its
whole process group can be stopped: at the ``timeout``, after ``idle_timeout`` without
output, or when the caller's cancel event is set. SIGTERM comes first, SIGKILL after a
grace period, and no process of the group outlives the call; nor does one that left the
group (a daemon, a new session), which ``containment.Scope`` finds. stdout and stderr go,
merged and in order, to the attempt's log file (at most ``log_limit`` of it: its start and
its end), with secret values replaced by ``***`` (secrets.py); the file is made at the
first output (or failure), so a silent success leaves none.

One thread does all of it: it waits with ``poll`` on the output pipe, for no longer than
the nearest deadline, and reaps the leader when the pipe ends (every process that held it
has exited or closed it), so a quick command costs little more than its fork and exec.
Only a leader that outlives its output is then watched through a pidfd (readable once it
exits; a short polling of ``waitpid`` where pidfds are missing); one whose output outlives
it (a background child holding the pipe) is seen at the next look at the leader, every
``_POLL`` seconds. An ``on_line`` callback runs in that thread and should return quickly:
the deadlines are looked at between reads.
"""

from __future__ import annotations

import functools
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra.engine.containment import Scope, run_policy, run_processes, signal_each
from orchestra.engine.secrets import (
    MIN_SECRET_LENGTH,
    Redactor,
    literal_secrets,
    mask_arguments,
    secret_values,
)

# the secret names and the Redactor live in secrets.py; they are imported from here too
from orchestra.engine.secrets import REDACTED as REDACTED
from orchestra.engine.secrets import SECRET_NAME_PATTERNS as SECRET_NAME_PATTERNS
from orchestra.engine.secrets import is_secret_name as is_secret_name
from orchestra.models import ProcessResult
from orchestra.sizes import format_size

if TYPE_CHECKING:
    from orchestra.engine.sandbox import Sandbox

#: variables of orchestra's own environment every process gets (plus LC_*)
ALLOWED_VARIABLES = frozenset(
    {"PATH", "HOME", "LANG", "TERM", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL"}
)
DEFAULT_GRACE = 5.0
#: how much output an attempt's log keeps (the ``log_limit`` setting's default)
DEFAULT_LOG_LIMIT = 10_000_000
#: past the limit, each process's last bytes are kept: this share of the limit, at most 1 MB
_TAIL_SHARE = 10
_TAIL_MAX = 1_000_000

_CHUNK = 64 * 1024
#: a line longer than this is written in pieces rather than held until its newline
_MAX_PENDING = 64 * 1024
#: how often the supervisor looks at the cancel event and the deadlines
_POLL = 0.05
#: how long to wait for the group to vanish after SIGKILL, which cannot be ignored
_KILL_WAIT = 5.0
#: without pidfds, the first pause between looks at the leader (doubling up to ``_POLL``)
_FIRST_PAUSE = 0.0005


def build_environment(
    source: Mapping[str, str], extra: Mapping[str, str], pass_env: Iterable[str]
) -> dict[str, str]:
    """Return the allow-listed variables of ``source`` and those named in ``pass_env``,
    with ``extra`` (a profile's or task's ``env``) on top."""
    passed = set(pass_env)
    environment = {
        name: value
        for name, value in source.items()
        if name in ALLOWED_VARIABLES or name.startswith("LC_") or name in passed
    }
    environment.update(extra)
    return environment


def run_process(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike,
    env: Mapping[str, str],
    log_path: str | os.PathLike,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    grace: float = DEFAULT_GRACE,
    cancel: threading.Event | None = None,
    secrets: Iterable[str] = (),
    secret_names: Iterable[str] = (),
    on_line: Callable[[str], None] | None = None,
    hurry: threading.Event | None = None,
    log_limit: int | None = DEFAULT_LOG_LIMIT,
) -> ProcessResult:
    """Run ``argv`` to its end (or orchestra's stop) and return how it ended.

    ``hurry``, once set (a second Ctrl-C), cuts the grace period short: SIGKILL at once.

    ``env`` is the child's whole environment (see ``build_environment``). Redacted are
    the values in ``secrets``, those of ``env``'s variables named like ``*_KEY`` or
    listed in ``secret_names``, and secrets written in ``argv`` (``--api-key VALUE``).
    The log file is appended to: a ``$ command`` line, the output (at most
    ``log_limit`` bytes of it, None: all), and a line for anything orchestra did. A
    program that cannot be started gives a result with ``error``.
    """
    redactor = Redactor(
        [*secrets, *secret_values(env, secret_names), *literal_secrets(list(map(str, argv)))]
    )
    log = AttemptLog(log_path, limit=log_limit)
    return _run(argv, cwd, env, log, timeout, idle_timeout, grace, cancel, redactor, on_line, hurry)


def _run(
    argv: Sequence[str],
    cwd: str | os.PathLike,
    env: Mapping[str, str],
    log: AttemptLog,
    timeout: float | None,
    idle_timeout: float | None,
    grace: float,
    cancel: threading.Event | None,
    redactor: Redactor,
    on_line: Callable[[str], None] | None,
    hurry: threading.Event | None = None,
    shown: Sequence[str] | None = None,
) -> ProcessResult:
    """``run_process`` once the secrets are known; the log's ``$ command`` line shows
    ``shown`` when given (the command a sandbox runs, not the sandbox's own line)."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise ValueError(f"run_process needs a non-empty argument list, not {argv!r}")
    argv = [os.fspath(argument) for argument in argv]
    log_path = log.path
    started_at, start = time.time(), time.monotonic()

    def result(exit_code=None, stopped=None, signum=None, error=None) -> ProcessResult:
        return ProcessResult(
            exit_code,
            time.monotonic() - start,
            log_path,
            stopped=stopped,
            signal=signum,
            error=error,
            started_at=started_at,
            ended_at=time.time(),
        )

    try:
        shown = argv if shown is None else [os.fspath(argument) for argument in shown]
        log.note(functools.partial(_command_note, shown, redactor))  # formatted if written
        if cancel is not None and cancel.is_set():
            log.write(b"orchestra: canceled before the start\n")
            return result(stopped="canceled")
        read_end, write_end = os.pipe()
        scope = Scope(env)  # the processes of this call, wherever they go
        try:
            with scope.spawning():
                process = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=_dev_null(),  # one descriptor for every child: an open less each
                    stdout=write_end,
                    stderr=write_end,
                    start_new_session=True,
                )
                scope.started(process.pid)
        except BaseException as exc:
            os.close(read_end)
            scope.close()
            if not isinstance(exc, OSError):
                raise
            error = redactor.redact(_start_error(argv[0], exc))
            log.write(f"orchestra: {error}\n".encode(errors="replace"))
            return result(error=error)
        finally:
            os.close(write_end)  # the child's copies are the only writers left

        watch = _Watch(process, _Output(read_end, log, redactor, on_line, start), scope)
        notes: list[str] = []
        stopped = "canceled"  # what an exception in the wait (KeyboardInterrupt) amounts to
        try:
            stopped = watch.supervise(start, timeout, idle_timeout, cancel)
        finally:
            try:
                if stopped is not None:
                    notes.append(f"{_describe(stopped, timeout, idle_timeout)}: stopping it")
                    notes += watch.end_group(grace, hurry)
                elif _group_alive(process.pid):
                    notes.append("the command left processes running in its group: stopping them")
                    notes += watch.end_group(grace, hurry)
                elif scope.strays():
                    notes.append(
                        "the command left processes running outside its group: stopping them"
                    )
                    notes += watch.end_group(grace, hurry)
                watch.output.finish()
                log.end_output()
                process.wait()
                for note in notes:
                    log.write(f"orchestra: {note}\n".encode())
            finally:
                watch.close()
                scope.close()
        if watch.output.failure is not None:
            raise watch.output.failure
        code = process.returncode
        if code and stopped is None:  # a failure always leaves a log saying what ran
            how = f"exited with status {code}" if code > 0 else f"was killed by signal {-code}"
            log.write(f"orchestra: the command {how}\n".encode())
    finally:
        log.close()
    if code < 0:
        return result(stopped=stopped, signum=-code)
    return result(exit_code=code, stopped=stopped)


def _command_note(argv: Sequence[str], redactor: Redactor) -> bytes:
    """The log's ``$ command`` line: redacted before quoting, which could split a secret
    holding a quote or a space; secrets written in it (``--password …``) are masked."""
    command = command_line(mask_arguments([redactor.redact(argument) for argument in argv]))
    return f"$ {command}\n".encode(errors="replace")


_dev_null_fd: int | None = None


def _dev_null() -> int:
    """A descriptor of /dev/null, opened once, that children get as their stdin."""
    global _dev_null_fd
    if _dev_null_fd is None:
        _dev_null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _dev_null_fd


class AttemptLog:
    """An attempt's log file, made only once there is something to put in it.

    A command that prints nothing leaves no file (``orchestra logs`` says so): creating
    a file per attempt is most of what a run of thousands of quick commands costs the
    file system. The ``$ command`` lines (``note``) wait for the first output, and are
    only formatted then; once the file exists they are written at once. Writes append,
    so several runs of an attempt (the tool, then its checks) read as one story.

    The processes' ``output`` is capped at ``limit`` bytes (None: no cap): past
    ``limit`` less a tail, a process's output is held back, and only its last part (a
    tenth of the limit, at most 1 MB) is written at its end (``end_output``), after a
    line saying how much was left out. The start shows what ran, the end how it ended;
    orchestra's own lines are always written.
    """

    def __init__(self, path: str | os.PathLike, limit: int | None = None) -> None:
        self.path = os.fspath(path)
        self.limit = limit
        self._file = None
        self._created = False  # by this object: a file already there is appended to
        self._pending: list[bytes | Callable[[], bytes]] = []
        #: output bytes that may still be written as they come
        self._room = None if limit is None else limit - _tail_size(limit)
        self._tail: bytearray | None = None  # the end of the output past the room
        self._left_out = 0
        self._mid_line = False  # the output written last ended inside a line
        self._tail_at_line = False

    def note(self, data: bytes | Callable[[], bytes]) -> None:
        """Write ``data`` (or what it returns, when it is a function) if the file exists,
        else keep it for the first real write."""
        if self._created:
            self.write(data if isinstance(data, bytes) else data())
        else:
            self._pending.append(data)

    def write(self, data: bytes) -> None:
        """Append ``data`` (after any notes kept so far), making the file if needed."""
        if self._file is None:
            self._file = _open_log(self.path)
            self._created = True
            if self._pending:
                notes = [note if isinstance(note, bytes) else note() for note in self._pending]
                self._file.write(b"".join(notes))
                self._pending.clear()
        self._file.write(data)

    def output(self, data: bytes) -> None:
        """Append a process's output, or keep its end for ``end_output`` once the log is full."""
        if self._room is None or (self._tail is None and len(data) <= self._room):
            if self._room is not None:
                self._room -= len(data)
                self._mid_line = not data.endswith(b"\n")
            self.write(data)
            return
        if self._tail is None:  # the first output past the room: write what fits
            head = data[: self._room]
            line_end = head.rfind(b"\n") + 1
            head = head[:line_end] if line_end else head
            if head:
                self.write(head)
                self._mid_line = not head.endswith(b"\n")
            self._room -= len(head)
            data = data[len(head) :]
            self._tail = bytearray()
        self._tail += data
        extra = len(self._tail) - _tail_size(self.limit)
        if extra > 0:
            self._tail_at_line = self._tail[extra - 1] == 0x0A  # what is kept starts a line
            del self._tail[:extra]
            self._left_out += extra

    def end_output(self) -> None:
        """At a process's end: the line saying what was left out, then the output's end."""
        if self._tail is None:
            return
        tail, self._tail = bytes(self._tail), None
        if self._left_out and not self._tail_at_line:  # start at a line, unless that loses most
            line_start = tail.find(b"\n") + 1
            if 0 < line_start <= len(tail) // 2:
                self._left_out += line_start
                tail = tail[line_start:]
        left_out, self._left_out = self._left_out, 0
        if left_out:
            self.write(
                f"{chr(10) if self._mid_line else ''}orchestra: the log reached its limit"
                f" (log_limit {format_size(self.limit)}): {left_out:,} bytes of output left out"
                " here\n".encode()
            )
        if tail:
            self.write(tail if tail.endswith(b"\n") or not left_out else tail + b"\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the file (a later write opens it again, to append)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _tail_size(limit: int) -> int:
    """How much of a process's output past the limit is kept: its last bytes."""
    return min(limit // _TAIL_SHARE, _TAIL_MAX)


def _open_log(log_path: str):
    """Open the log to append to, making its directory only when it is missing."""
    try:
        return open(log_path, "ab")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        return open(log_path, "ab")


class LocalContext:
    """The ``ExecutionContext`` of an attempt that runs on this machine.

    Every ``run`` appends to the attempt's one log file and gets the same timeouts, so a
    tool and then its checks read as one story. ``secrets`` are values to redact;
    ``secret_names`` name variables, of ``env`` or of a run's ``env``, whose values are.

    ``emit`` receives an adapter's progress events (kind, payload), redacted.
    ``scratch_dir`` is made on first use (under ``scratch_root`` when given, else the
    system's temporary directory) and removed by ``cleanup``; ``state_dir`` is the tool's
    directory kept across attempts and runs, made on first use.
    """

    def __init__(
        self,
        *,
        cwd: str | os.PathLike,
        env: Mapping[str, str],
        log_path: str | os.PathLike,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        grace: float = DEFAULT_GRACE,
        cancel: threading.Event | None = None,
        secrets: Iterable[str] = (),
        secret_names: Iterable[str] = (),
        on_line: Callable[[str], None] | None = None,
        hurry: threading.Event | None = None,
        emit: Callable[[str, Mapping[str, Any]], None] | None = None,
        scratch_root: str | os.PathLike | None = None,
        state_dir: str | os.PathLike | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.cwd = os.fspath(cwd)
        #: the attempt's sandbox (engine/sandbox.py), or None: processes run unconfined
        self.sandbox = sandbox
        self.hurry = hurry
        self.env = dict(env)
        self.log_path = os.fspath(log_path)
        policy = run_policy(self.env.get("ORCHESTRA_RUN_ID"))
        limit = policy.log_limit if policy is not None else None
        self._log = AttemptLog(self.log_path, limit=limit or DEFAULT_LOG_LIMIT)
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.grace = grace
        self.cancel = cancel
        self.secret_names = tuple(secret_names)
        self.on_line = on_line
        self._emit = emit
        self._scratch_root = scratch_root
        self._scratch: Path | None = None
        self._state_dir = state_dir
        self._redactor = _redactor_for(
            frozenset([*secrets, *secret_values(self.env, self.secret_names)])
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        timeout: float | None = None,
        cwd: str | os.PathLike | None = None,
        sandboxed: bool = True,
    ) -> ProcessResult:
        """Run ``argv`` in the attempt's directory with ``env`` on top of the base env;
        ``on_line`` (else the context's) gets each line of output, redacted. ``timeout``
        (a check's own) replaces the attempt's for this command. ``sandboxed=False`` runs
        it outside the attempt's sandbox: for a tool that brings a sandbox of its own,
        which cannot start inside orchestra's (codex's)."""
        environment = self.env
        added = literal_secrets([os.fspath(argument) for argument in argv])
        if env:  # new variables may hold secrets of their own
            environment = {**self.env, **env}
            added += secret_values(environment, self.secret_names)
        known = self._redactor.secrets
        added = set(added).difference(known)
        if any(len(value) >= MIN_SECRET_LENGTH for value in added):  # else nothing to redo
            self._redactor = Redactor([*known, *added])
        where = os.fspath(self.cwd if cwd is None else cwd)
        shown = None
        if self.sandbox is not None and sandboxed:
            from orchestra.engine.sandbox import missing_program

            shown = [os.fspath(argument) for argument in argv]
            # found out here, not inside, where bwrap would only exit 1
            refused = missing_program(shown, where, environment)
            if refused is not None:
                return self._not_started(shown, refused)
            argv, environment = self.sandbox.command(
                shown, where, environment, (self._scratch, self._state_dir)
            )
        return _run(
            argv,
            where,
            environment,
            self._log,
            self.timeout if timeout is None else timeout,
            self.idle_timeout,
            self.grace,
            self.cancel,
            self._redactor,
            _both(on_line, self.on_line),
            self.hurry,
            shown,
        )

    def _not_started(self, argv: Sequence[str], error: OSError) -> ProcessResult:
        """The result of a program that cannot start, as ``_run`` gives it, with nothing
        started: no moment in which it could appear and run outside the sandbox."""
        now = time.time()
        self._log.note(functools.partial(_command_note, argv, self._redactor))
        message = self._redactor.redact(_start_error(argv[0], error))
        self._log.write(f"orchestra: {message}\n".encode(errors="replace"))
        self._log.close()
        return ProcessResult(
            None, 0.0, self.log_path, error=message, started_at=now, ended_at=time.time()
        )

    def redact(self, text: str) -> str:
        """Return ``text`` without the secret values of any environment this context used."""
        return self._redactor.redact(text)

    def note(self, message: str) -> None:
        """Write ``orchestra: message`` in the attempt's log now, after the ``$ command``
        lines still waiting: the log is made if it was not (a check that passed silently
        must leave a trace)."""
        self._log.write(f"orchestra: {self.redact(message)}\n".encode(errors="replace"))
        self._log.close()

    def emit(self, kind: str, payload: Mapping[str, Any] | None = None) -> None:
        """Report a tool's progress (recorded as the event ``tool.<kind>`` of the attempt);
        every string in ``payload`` is redacted first."""
        if self._emit is not None:
            self._emit(kind, _redact_value(self._redactor, dict(payload or {})))

    @property
    def scratch_dir(self) -> Path:
        """A private, empty directory for this attempt, removed after it."""
        if self._scratch is None:
            root = None if self._scratch_root is None else os.fspath(self._scratch_root)
            if root is not None:
                os.makedirs(root, exist_ok=True)
            import tempfile  # here, not at start: most attempts (commands) need none

            self._scratch = Path(tempfile.mkdtemp(prefix="attempt-", dir=root))
        return self._scratch

    @property
    def state_dir(self) -> Path:
        """The tool's own directory, kept across attempts and runs."""
        if self._state_dir is None:
            raise RuntimeError("this execution context has no state directory")
        directory = Path(self._state_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return directory

    def cleanup(self) -> None:
        """Remove the scratch directory, if the attempt made one, and the sandbox's."""
        if self.sandbox is not None:
            self.sandbox.close()
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


@functools.lru_cache(maxsize=64)
def _redactor_for(secrets: frozenset[str]) -> Redactor:
    """One Redactor per set of secrets: the attempts of a run mostly share theirs."""
    return Redactor(secrets)


def _both(
    first: Callable[[str], None] | None, second: Callable[[str], None] | None
) -> Callable[[str], None] | None:
    """One line callback that calls both (the adapter's and the host's), or the one there is."""
    if first is None or second is None:
        return first or second

    def each(line: str) -> None:
        first(line)
        second(line)

    return each


def _redact_value(redactor: Redactor, value: Any) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(redactor, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(redactor, item) for item in value]
    return value


def command_line(argv: Sequence[str]) -> str:
    """Return ``argv`` as one line to paste into a shell (``$'a\\nb'`` for a newline)."""
    return " ".join(map(_quote, argv))


def _quote(argument: str) -> str:
    if not any(character in argument for character in "\n\r\t"):
        return shlex.quote(argument)
    for character, escape in _ESCAPES:
        argument = argument.replace(character, escape)
    return f"$'{argument}'"


_ESCAPES = (("\\", "\\\\"), ("'", "\\'"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def _start_error(program: str, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is not None and os.fspath(exc.filename) != program:
        return f"cannot run {program!r}: {reason}: {os.fspath(exc.filename)!r}"
    return f"cannot run {program!r}: {reason}"


def _describe(stopped: str, timeout: float | None, idle_timeout: float | None) -> str:
    if stopped == "timeout":
        return f"the command reached its timeout of {timeout:g} s"
    if stopped == "idle":
        return f"the command printed nothing for {idle_timeout:g} s"
    return "the attempt was canceled"


def _end_of(*limits: float | None) -> float | None:
    """Return the smallest of the limits that are set, None when none is."""
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


class _Watch:
    """Waits on one process: its output pipe and its leader's exit, in the calling thread.

    The pipe ends when every process holding it has exited (or closed it): for almost
    every command, when the leader exits, so one ``poll`` on the pipe covers both. A
    leader that outlives its output is then watched through a pidfd of it (readable once
    it exits), opened only for that; without pidfds (Linux before 5.3, other systems) it
    is polled with growing pauses. A leader that exits while a background child still
    holds the pipe is seen at the next look, every ``_POLL`` seconds.
    """

    def __init__(self, process: subprocess.Popen, output: _Output, scope: Scope) -> None:
        self.process = process
        self.output = output
        self.scope = scope
        self.leader_done = False
        self._poller = select.poll()
        self._poller.register(output.fd, select.POLLIN)
        self._pause = _FIRST_PAUSE
        self._pidfd: int | None = None
        self._pidfd_tried = False

    def close(self) -> None:
        """Release the pidfd and the pipe (which an escaped process may still hold)."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self.output.close()

    def supervise(
        self,
        start: float,
        timeout: float | None,
        idle_timeout: float | None,
        cancel: threading.Event | None,
    ) -> str | None:
        """Wait for the leader to exit; return why orchestra must stop it first, if it must."""
        while not self.leader_done:
            now = time.monotonic()
            if cancel is not None and cancel.is_set():
                return "canceled"
            if self.output.failure is not None:
                # the log cannot be written (a full disk): stop now, not at the timeout;
                # the run raises the write's error once the group has ended
                return "canceled"
            wait = _POLL if cancel is not None else None
            if timeout is not None:
                if now - start >= timeout:
                    return "timeout"
                wait = _end_of(wait, start + timeout - now)
            if idle_timeout is not None:
                silent_until = self.output.last_output + idle_timeout
                if now >= silent_until:
                    return "idle"
                wait = _end_of(wait, silent_until - now)
            self.wait(wait)
        return None

    def wait(self, seconds: float | None) -> None:
        """Wait up to ``seconds`` (None: no limit) for output or the leader's exit; take
        the output that came, reap the leader if it exited."""
        if self.leader_done:
            pass  # only a background child's output is left to wait for
        elif self.output.open:
            seconds = _end_of(seconds, _POLL)  # the leader is looked at every _POLL
        elif self._watch_leader() is None:
            seconds = _end_of(seconds, self._pause)
            self._pause = min(self._pause * 2, _POLL)
        events = self._poller.poll(None if seconds is None else max(seconds, 0.0) * 1000)
        for fd, _ in events:
            if fd == self.output.fd:
                self.output.read()
                if not self.output.open:
                    self._poller.unregister(fd)
        # output that leaves the pipe open says nothing of the leader: no waitpid for it
        if not self.leader_done and not (events and self.output.open):
            self.reap()

    def _watch_leader(self) -> int | None:
        """The pidfd of the leader, opened (and polled) from the first call on; None
        where pidfds are missing."""
        if not self._pidfd_tried:
            self._pidfd_tried = True
            try:
                self._pidfd = os.pidfd_open(self.process.pid)
            except (AttributeError, OSError):
                self._pidfd = None
            else:
                self._poller.register(self._pidfd, select.POLLIN)
        return self._pidfd

    def reap(self) -> bool:
        """Reap the leader if it exited (its zombie would keep the group in existence)."""
        if not self.leader_done and self.process.poll() is not None:
            self.leader_done = True
            if self._pidfd is not None:
                self._poller.unregister(self._pidfd)
        return self.leader_done

    def end_group(self, grace: float, hurry: threading.Event | None = None) -> list[str]:
        """Stop the group and the call's processes outside it: SIGTERM, then SIGKILL after
        ``grace`` (or as soon as ``hurry`` is set); return what was done."""
        pgid = self.process.pid
        _signal_group(pgid, signal.SIGTERM)
        notes = [f"sent SIGTERM to process group {pgid}"]
        strays: set[int] = set()
        ended = self._await_group_end(grace, hurry, signal.SIGTERM, strays)
        if strays:
            listed = ", ".join(map(str, sorted(strays)))
            notes.append(f"sent SIGTERM to {len(strays)} process(es) outside it: {listed}")
        if ended:
            return notes
        _signal_group(pgid, signal.SIGKILL)
        if hurry is not None and hurry.is_set():
            notes.append("sent SIGKILL at once (asked to stop now)")
        else:
            notes.append(f"sent SIGKILL {grace:g} s later")
        if not self._await_group_end(_KILL_WAIT, None, signal.SIGKILL, set()):
            notes.append(f"process group {pgid} still had live processes after SIGKILL")
        return notes

    def _await_group_end(
        self,
        seconds: float,
        hurry: threading.Event | None,
        signum: int,
        signalled: set[int],
    ) -> bool:
        """Return whether the group and the processes outside it ended within ``seconds``
        (False as soon as ``hurry`` is set), taking the output meanwhile. Each process
        found outside the group gets ``signum`` (and is added to ``signalled``): they
        appear as their parents in the group die."""
        deadline = time.monotonic() + seconds
        pause = 0.002
        while True:
            self.reap()
            strays = self.scope.strays()
            fresh = strays if signum == signal.SIGKILL else strays - signalled
            signal_each(fresh, signum)
            signalled |= fresh
            if not strays and not _group_alive(self.process.pid):
                return True
            now = time.monotonic()
            if now >= deadline or (hurry is not None and hurry.is_set()):
                return False
            # the group is looked at after the pause, or at once when the leader exits
            until = min(now + pause, deadline)
            pause = min(pause * 2, 0.05)
            leader_done = self.leader_done
            while now < until and self.leader_done == leader_done:
                self.wait(until - now)
                now = time.monotonic()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Return whether a process of the group still runs.

    Killed orphans stay zombies until init reaps them, which some inits do only every
    second or two; a zombie runs nothing and holds no files, so it does not count.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def processes_of_run(run_id: str) -> dict[int, int]:
    """Return {pid: process group} of this machine's live processes started for run
    ``run_id``: those whose environment has its ``ORCHESTRA_RUN_ID`` (the run loop puts
    it in every attempt's, and children inherit it), those in the run's cgroups (which
    hold the ones that cleared their environment), and their descendants. Processes of
    other users are not seen."""
    found: dict[int, int] = {}
    for pid in run_processes(run_id):
        try:
            found[pid] = os.getpgid(pid)
        except OSError:  # gone meanwhile
            continue
    return found


def stop_process_groups(pgids: Iterable[int], grace: float = DEFAULT_GRACE) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after ``grace``."""
    groups = set(pgids)
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = {pgid for pgid in groups if _group_alive(pgid)}
        time.sleep(0.05)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)


class _Output:
    """Copies the merged output from the pipe to the log, line by line and redacted."""

    def __init__(self, fd: int, log, redactor: Redactor, on_line, start: float) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.open = True
        self.last_output = start
        self.failure: OSError | None = None
        self._log = log
        self._redactor = redactor
        self._on_line = on_line
        self._callback_failed = False
        self._pending = b""

    def read(self) -> None:
        """Take one read's worth of output, noting the end of file."""
        try:
            chunk = os.read(self.fd, _CHUNK)
        except BlockingIOError:
            return
        if chunk:
            self._take(chunk)
        else:
            self.open = False

    def finish(self) -> None:
        """Take what is left in the pipe, even if an escaped process still holds it open."""
        while self.open:
            try:
                chunk = os.read(self.fd, _CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._take(chunk)
        self.open = False
        if self._pending:
            self._emit(self._pending)
            self._pending = b""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _take(self, chunk: bytes) -> None:
        self.last_output = time.monotonic()
        data = self._pending + chunk
        end = data.rfind(b"\n") + 1
        if end:
            self._emit(data[:end])
        self._pending = data[end:]
        if len(self._pending) > _MAX_PENDING:
            cut = self._redactor.safe_cut(self._pending)
            self._emit(self._pending[:cut])
            self._pending = self._pending[cut:]

    def _emit(self, data: bytes) -> None:
        """Write whole lines (or a piece of a very long one), redacted, and report them."""
        if not data:
            return
        redacted = self._redactor.redact_bytes(data)
        if self.failure is None:
            try:
                self._log.output(redacted)
                self._log.flush()
            except OSError as exc:  # keep draining, or a full pipe would stall the child
                self.failure = exc
        if self._on_line is not None:
            for line in redacted.removesuffix(b"\n").split(b"\n"):
                self._report(line.removesuffix(b"\r").decode(errors="replace"))

    def _report(self, line: str) -> None:
        try:
            self._on_line(line)
        except Exception:
            if not self._callback_failed:
                self._callback_failed = True
                _logger().warning("on_line callback failed; its errors are ignored", exc_info=True)


def _logger():
    """This module's logger; logging is imported only when something goes wrong, as
    importing it costs every command's start a few milliseconds."""
    import logging

    return logging.getLogger(__name__)
