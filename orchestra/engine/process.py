"""Running one process of an attempt, the same way for every tool: started, watched, stopped.

The child gets an argument list (never a shell unless the caller asks for one), stdin from
/dev/null, the environment it is given (``environment.py`` builds it from an allow-list),
and a session of its own, so that its whole process group can be stopped: at the
``timeout``, after ``idle_timeout`` without output, or when the caller's cancel event is
set. SIGTERM comes first, SIGKILL after a grace period, and no process of the group
outlives the call; nor does one that left the group (a daemon, a new session), which
``containment.Scope`` finds. stdout and stderr go, merged and in order, to the attempt's
log (``output.py`` copies them into ``attempt_log.py``'s file), with secret values
replaced by ``***`` (``secrets.py``).

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
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from orchestra.engine.attempt_log import DEFAULT_LOG_LIMIT, AttemptLog, command_note
from orchestra.engine.containment import Scope
from orchestra.engine.output import ProcessOutput
from orchestra.engine.proctable import signal_each
from orchestra.models import ProcessResult
from orchestra.secrets import Redactor, literal_secrets, secret_values

DEFAULT_GRACE = 5.0

#: how often the supervisor looks at the cancel event and the deadlines
_POLL = 0.05
#: how long to wait for the group to vanish after SIGKILL, which cannot be ignored
_KILL_WAIT = 5.0
#: without pidfds, the first pause between looks at the leader (doubling up to ``_POLL``)
_FIRST_PAUSE = 0.0005


def run_process(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    log_path: str | os.PathLike[str],
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
    return run_logged(
        argv,
        cwd=cwd,
        env=env,
        log=AttemptLog(log_path, limit=log_limit),
        redactor=redactor,
        timeout=timeout,
        idle_timeout=idle_timeout,
        grace=grace,
        cancel=cancel,
        on_line=on_line,
        hurry=hurry,
    )


def run_logged(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    log: AttemptLog,
    redactor: Redactor,
    timeout: float | None = None,
    idle_timeout: float | None = None,
    grace: float = DEFAULT_GRACE,
    cancel: threading.Event | None = None,
    on_line: Callable[[str], None] | None = None,
    hurry: threading.Event | None = None,
    shown: Sequence[str] | None = None,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` with its output into ``log``, redacted by ``redactor``, and return how
    it ended: ``run_process`` once the log and the secrets are known. The log's
    ``$ command`` line shows ``shown`` when given (the command a sandbox runs, not the
    sandbox's own line); ``pass_fds`` stay open in the child (the sandbox's ``--args``)."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise ValueError(f"run_process needs a non-empty argument list, not {argv!r}")
    argv = [os.fspath(argument) for argument in argv]
    started_at, start = time.time(), time.monotonic()
    try:
        shown = argv if shown is None else [os.fspath(argument) for argument in shown]
        log.note(functools.partial(command_note, shown, redactor))  # formatted if written
        if cancel is not None and cancel.is_set():
            log.write(b"orchestra: canceled before the start\n")
            return _result(log.path, started_at, start, stopped="canceled")
        read_end, write_end = os.pipe()
        scope = Scope(env)  # the processes of this call, wherever they go
        try:
            process = _spawn(argv, cwd, env, write_end, scope, pass_fds)
        except BaseException as exc:
            os.close(read_end)
            scope.close()
            if not isinstance(exc, OSError):
                raise
            error = redactor.redact(start_error(argv[0], exc))
            log.write(f"orchestra: {error}\n".encode(errors="replace"))
            return _result(log.path, started_at, start, error=error)
        finally:
            os.close(write_end)  # the child's copies are the only writers left

        watch = _Watch(process, ProcessOutput(read_end, log, redactor, on_line, start), scope)
        stopped = _watch_to_end(watch, log, start, timeout, idle_timeout, grace, cancel, hurry)
        code = process.returncode
        if code and stopped is None:  # a failure always leaves a log saying what ran
            how = f"exited with status {code}" if code > 0 else f"was killed by signal {-code}"
            log.write(f"orchestra: the command {how}\n".encode())
    finally:
        log.close()
    if code < 0:
        return _result(log.path, started_at, start, stopped=stopped, signum=-code)
    return _result(log.path, started_at, start, exit_code=code, stopped=stopped)


def _spawn(
    argv: list[str],
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    output: int,
    scope: Scope,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, its stdout and stderr into ``output``,
    as a process of ``scope``."""
    with scope.spawning():
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=_dev_null(),  # one descriptor for every child: an open less each
            stdout=output,
            stderr=output,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
        scope.started(process.pid)
    return process


def _watch_to_end(
    watch: _Watch,
    log: AttemptLog,
    start: float,
    timeout: float | None,
    idle_timeout: float | None,
    grace: float,
    cancel: threading.Event | None,
    hurry: threading.Event | None,
) -> str | None:
    """Wait for the call's end, stopping it when it must and whatever it left running;
    then take the rest of its output and write what orchestra did. Return why orchestra
    stopped it (None: it ended by itself); raise the log's write error, if one failed."""
    stopped: str | None = "canceled"  # what an exception in the wait (KeyboardInterrupt) is
    try:
        stopped = watch.supervise(start, timeout, idle_timeout, cancel)
    finally:
        try:
            if stopped is not None:
                reason: str | None = f"{_describe(stopped, timeout, idle_timeout)}: stopping it"
            else:
                reason = _left_running(watch)
            notes = [] if reason is None else [reason, *watch.end_group(grace, hurry)]
            watch.output.finish()
            log.end_output()
            watch.process.wait()
            for note in notes:
                log.write(f"orchestra: {note}\n".encode())
        finally:
            watch.close()
            watch.scope.close()
    if watch.output.failure is not None:
        raise watch.output.failure
    return stopped


def _left_running(watch: _Watch) -> str | None:
    """What the command left running once its leader exited, as the log says it; None
    when nothing is."""
    if group_alive(watch.process.pid):
        return "the command left processes running in its group: stopping them"
    if watch.scope.strays():
        return "the command left processes running outside its group: stopping them"
    return None


def _result(
    log_path: str,
    started_at: float,
    start: float,
    *,
    exit_code: int | None = None,
    stopped: str | None = None,
    signum: int | None = None,
    error: str | None = None,
) -> ProcessResult:
    """How a process that started at ``started_at`` (``start`` on the monotonic clock)
    ended, now."""
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


_dev_null_fd: int | None = None


def _dev_null() -> int:
    """A descriptor of /dev/null, opened once, that children get as their stdin."""
    global _dev_null_fd
    if _dev_null_fd is None:
        _dev_null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _dev_null_fd


def start_error(program: str, exc: OSError) -> str:
    """Return why ``program`` cannot run (not found, not executable), as the log says it."""
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

    def __init__(
        self, process: subprocess.Popen[bytes], output: ProcessOutput, scope: Scope
    ) -> None:
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
        signal_group(pgid, signal.SIGTERM)
        notes = [f"sent SIGTERM to process group {pgid}"]
        strays: set[int] = set()
        ended = self._await_group_end(grace, hurry, signal.SIGTERM, strays)
        if strays:
            listed = ", ".join(map(str, sorted(strays)))
            notes.append(f"sent SIGTERM to {len(strays)} process(es) outside it: {listed}")
        if ended:
            return notes
        signal_group(pgid, signal.SIGKILL)
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
            if not strays and not group_alive(self.process.pid):
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


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to process group ``pgid``, if it is still there."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def group_alive(pgid: int) -> bool:
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
