"""Running one process of an attempt, the same way for every tool.

The child gets an argument list (never a shell unless the caller asks for one), stdin from
/dev/null, an environment built from an allow-list, and a session of its own, so that its
whole process group can be stopped: at the ``timeout``, after ``idle_timeout`` without
output, or when the caller's cancel event is set. SIGTERM comes first, SIGKILL after a
grace period, and no process of the group outlives the call. stdout and stderr go, merged
and in order, to the attempt's log file, with the values of secret variables replaced by
``***``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from orchestra.models import ProcessResult

logger = logging.getLogger(__name__)

#: variables of orchestra's own environment every process gets (plus LC_*)
ALLOWED_VARIABLES = frozenset(
    {"PATH", "HOME", "LANG", "TERM", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL"}
)
#: names whose values are redacted, matched case-insensitively
SECRET_NAME_PATTERNS = ("*_KEY", "*_TOKEN", "*_SECRET", "*PASSWORD*")
#: shorter values are not redacted: "***" in place of every "1" would hide the whole log
MIN_SECRET_LENGTH = 4
REDACTED = "***"
DEFAULT_GRACE = 5.0

_CHUNK = 64 * 1024
#: a line longer than this is written in pieces rather than held until its newline
_MAX_PENDING = 64 * 1024
#: how often the supervisor looks at the cancel event and the deadlines
_POLL = 0.05
#: how long to wait for the group to vanish after SIGKILL, which cannot be ignored
_KILL_WAIT = 5.0


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


def is_secret_name(name: str) -> bool:
    """Return whether a variable's name says its value is a secret (``*_TOKEN`` …)."""
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_NAME_PATTERNS)


def secret_values(env: Mapping[str, str], declared: Iterable[str] = ()) -> list[str]:
    """Return the values of ``env``'s secret-looking variables and of those in ``declared``."""
    declared = set(declared)
    values: list[str] = []
    for name, value in env.items():
        if value and value not in values and (name in declared or is_secret_name(name)):
            values.append(value)
    return values


class Redactor:
    """Replaces secret values by ``***`` in text and in raw output, longest value first."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = {secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}
        self.secrets = tuple(sorted(kept, key=lambda secret: (-len(secret), secret)))
        encoded = sorted({os.fsencode(secret) for secret in self.secrets}, key=lambda b: -len(b))
        # an alternation tries its branches in order, so longest first wins at each position
        self._text = re.compile("|".join(map(re.escape, self.secrets))) if kept else None
        self._bytes = re.compile(b"|".join(map(re.escape, encoded))) if kept else None
        self._longest = len(encoded[0]) if encoded else 0

    def redact(self, text: str) -> str:
        """Return ``text`` with every secret value replaced by ``***``."""
        return self._text.sub(REDACTED, text) if self._text else text

    def redact_bytes(self, data: bytes) -> bytes:
        """Return ``data`` with every secret value (as bytes) replaced by ``***``."""
        return self._bytes.sub(REDACTED.encode(), data) if self._bytes else data

    def safe_cut(self, data: bytes) -> int:
        """Return how much of an unfinished line can be redacted and written now.

        What stays may be the start of a secret the next read completes; the cut never
        splits a secret found in ``data`` nor a UTF-8 character.
        """
        cut = max(len(data) - self._longest + 1, 0) if self._bytes else len(data)
        while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:
            cut -= 1
        if self._bytes:
            for match in self._bytes.finditer(data):
                if match.start() >= cut:
                    break
                if match.end() > cut:
                    return match.start()
        return cut


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
) -> ProcessResult:
    """Run ``argv`` to its end (or orchestra's stop) and return how it ended.

    ``env`` is the child's whole environment (see ``build_environment``). Redacted are
    the values in ``secrets`` and those of ``env``'s variables named like ``*_KEY`` or
    listed in ``secret_names``. The log file is appended to: a ``$ command`` line, the
    output, and a line for anything orchestra did. A program that cannot be started
    gives a result with ``error``.
    """
    if isinstance(argv, (str, bytes)) or not argv:
        raise ValueError(f"run_process needs a non-empty argument list, not {argv!r}")
    argv = [os.fspath(argument) for argument in argv]
    redactor = Redactor([*secrets, *secret_values(env, secret_names)])
    log_path = os.fspath(log_path)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
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

    with open(log_path, "ab") as log:
        # redacted before quoting, which could split a secret holding a quote or a space
        command = command_line([redactor.redact(argument) for argument in argv])
        log.write(f"$ {command}\n".encode(errors="replace"))
        if cancel is not None and cancel.is_set():
            log.write(b"orchestra: canceled before the start\n")
            return result(stopped="canceled")
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            error = redactor.redact(_start_error(argv[0], exc))
            log.write(f"orchestra: {error}\n".encode(errors="replace"))
            return result(error=error)

        reader = _OutputReader(process.stdout, log, redactor, on_line, start)
        reader.start()
        notes: list[str] = []
        stopped = "canceled"  # what an exception in the wait (KeyboardInterrupt) amounts to
        try:
            stopped = _supervise(process, reader, start, timeout, idle_timeout, cancel)
        finally:
            if stopped is not None:
                notes.append(f"{_describe(stopped, timeout, idle_timeout)}: stopping it")
                notes += _end_group(process, grace)
            elif _group_alive(process.pid):
                notes.append("the command left processes running in its group: stopping them")
                notes += _end_group(process, grace)
            reader.finish()
            process.wait()
            for note in notes:
                log.write(f"orchestra: {note}\n".encode())
        if reader.failure is not None:
            raise reader.failure
    code = process.returncode
    if code < 0:
        return result(stopped=stopped, signum=-code)
    return result(exit_code=code, stopped=stopped)


class LocalContext:
    """The ``ExecutionContext`` of an attempt that runs on this machine.

    Every ``run`` appends to the attempt's one log file and gets the same timeouts, so a
    tool and then its checks read as one story. ``secrets`` are values to redact;
    ``secret_names`` name variables, of ``env`` or of a run's ``env``, whose values are.
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
    ) -> None:
        self.cwd = cwd
        self.env = dict(env)
        self.log_path = os.fspath(log_path)
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.grace = grace
        self.cancel = cancel
        self.secret_names = tuple(secret_names)
        self.on_line = on_line
        self._redactor = Redactor([*secrets, *secret_values(self.env, self.secret_names)])

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> ProcessResult:
        """Run ``argv`` in the attempt's directory with ``env`` on top of the base env."""
        environment = {**self.env, **(env or {})}
        known = self._redactor.secrets
        self._redactor = Redactor([*known, *secret_values(environment, self.secret_names)])
        return run_process(
            argv,
            cwd=self.cwd,
            env=environment,
            log_path=self.log_path,
            timeout=self.timeout,
            idle_timeout=self.idle_timeout,
            grace=self.grace,
            cancel=self.cancel,
            secrets=self._redactor.secrets,
            on_line=self.on_line,
        )

    def redact(self, text: str) -> str:
        """Return ``text`` without the secret values of any environment this context used."""
        return self._redactor.redact(text)


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


def _supervise(
    process: subprocess.Popen,
    reader: _OutputReader,
    start: float,
    timeout: float | None,
    idle_timeout: float | None,
    cancel: threading.Event | None,
) -> str | None:
    """Wait for the leader to exit; return why orchestra must stop it first, if it must."""
    while process.poll() is None:
        now = time.monotonic()
        if cancel is not None and cancel.is_set():
            return "canceled"
        wait = _POLL
        if timeout is not None:
            if now - start >= timeout:
                return "timeout"
            wait = min(wait, start + timeout - now)
        if idle_timeout is not None:
            silent_until = reader.last_output + idle_timeout
            if now >= silent_until:
                return "idle"
            wait = min(wait, silent_until - now)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            pass
    return None


def _end_group(process: subprocess.Popen, grace: float) -> list[str]:
    """Stop the process group: SIGTERM, then SIGKILL after ``grace``; return what was done."""
    pgid = process.pid
    _signal_group(pgid, signal.SIGTERM)
    notes = [f"sent SIGTERM to process group {pgid}"]
    if _await_group_end(process, grace):
        return notes
    _signal_group(pgid, signal.SIGKILL)
    notes.append(f"sent SIGKILL {grace:g} s later")
    if not _await_group_end(process, _KILL_WAIT):
        notes.append(f"process group {pgid} still had live processes after SIGKILL")
    return notes


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _await_group_end(process: subprocess.Popen, seconds: float) -> bool:
    """Return whether the group ended within ``seconds`` (reaping the leader meanwhile)."""
    deadline = time.monotonic() + seconds
    pause = 0.002
    while True:
        process.poll()  # the leader's zombie would keep its group in existence
        if not _group_alive(process.pid):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)


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


class _OutputReader(threading.Thread):
    """Copies the merged output to the log, line by line and redacted, until told to finish."""

    def __init__(self, pipe, log, redactor: Redactor, on_line, start: float) -> None:
        super().__init__(name="orchestra-output", daemon=True)
        self.last_output = start
        self.failure: OSError | None = None
        self._pipe = pipe
        self._log = log
        self._redactor = redactor
        self._on_line = on_line
        self._callback_failed = False
        self._pending = b""
        self._wake_read, self._wake_write = os.pipe()

    def finish(self) -> None:
        """Take what is left in the pipe, then stop, even if an escaped process holds it."""
        os.write(self._wake_write, b"x")
        self.join()
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
        self._pipe.close()

    def run(self) -> None:
        fd = self._pipe.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in selector.select()}
                if self._wake_read in ready:
                    break
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                self._take(chunk)
        os.set_blocking(fd, False)
        while True:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._take(chunk)
        if self._pending:
            self._emit(self._pending)

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
                self._log.write(redacted)
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
                logger.warning("on_line callback failed; its errors are ignored", exc_info=True)
