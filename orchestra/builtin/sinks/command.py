"""The event sink ``command``: a program run for each chosen event, the event on its stdin
(desktop notifications, chat messages); none outlives the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

from orchestra.builtin.sinks.courier import Courier, CourierSink, DeliveryFailed, ignore
from orchestra.builtin.sinks.options import REQUIRED, SinkOptions
from orchestra.models import SinkContext

#: the command sink's events when ``kinds`` is not set: the end of the run
RUN_ENDS = ("run.succeeded", "run.failed", "run.canceled")
#: then the command sink's command still running gets SIGTERM, and SIGKILL this much later
STOP_GRACE = 1.0


class CommandSink(CourierSink):
    """Runs a command for each event of the chosen ``kinds`` (by default, the end of the
    run), with the event as JSON on its stdin, one at a time, from a thread of its own.

    Closing waits for the queue a bounded time, then stops the command still running
    (and its process group): none outlives the run.
    """

    name = "command"
    OPTIONS = ("command", "shell", "kinds", "timeout", "pass_env", "queue_size")

    def __init__(self) -> None:
        self._courier: Courier | None = None
        self._kinds: tuple[str, ...] = RUN_ENDS
        self._timeout = 10.0
        self._current: CurrentCommand | None = None

    def close(self) -> None:
        super().close()
        if self._current is not None:
            current, self._current = self._current, None
            current.stop(STOP_GRACE)

    def open(self, context: SinkContext) -> None:
        """Read the options and start the thread that runs the commands."""
        self.close()
        options = SinkOptions(self.name, context.options, self.OPTIONS)
        shell = options.boolean("shell", False)
        if shell:
            command = options.text("command", "a shell command (shell = true)")
            argv = ["/bin/sh", "-c", command]
        else:
            raw = options.table.get("command", REQUIRED)
            if raw is REQUIRED:
                raise options.error("command", "required: the command to run, an argument list")
            if isinstance(raw, str):
                raise options.error(
                    "command", "a string is run by a shell: set shell = true, or give a list"
                )
            argv = list(options.strings("command", "the program and its arguments"))
            if not argv:
                raise options.error("command", "empty: give the program and its arguments")
        self._kinds = options.kinds(RUN_ENDS)
        self._timeout = options.number("timeout", 10.0)
        pass_env = options.strings("pass_env", "names of variables the command may see")
        capacity = options.integer("queue_size", 100, minimum=1)
        from orchestra.engine.environment import build_environment

        base = build_environment(os.environ, {}, pass_env)
        timeout, cwd, shown = self._timeout, context.project_root, argv[-1] if shell else argv[0]
        current = self._current = CurrentCommand()

        def deliver(event: Mapping[str, Any], courier: Courier) -> None:
            env = {
                **base,
                "ORCHESTRA_RUN_ID": str(event.get("run") or context.run_id),
                "ORCHESTRA_EVENT": str(event.get("type", "")),
                "ORCHESTRA_TASK_ID": str(event.get("task") or ""),
            }
            body = json.dumps(event, default=str).encode() + b"\n"
            problem = _run_command(argv, body, env, cwd, timeout, current)
            if problem is not None:
                raise DeliveryFailed(f"command for {event.get('type')} {problem}: {shown}")

        self._courier = Courier(self.name, deliver, capacity, context.warn or ignore)


class CurrentCommand:
    """The command sink's command under way, so that the end of the run can stop it;
    once stopped, no other command starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._stopped = False

    def start(self, argv: list[str], env: Mapping[str, str], cwd: str) -> subprocess.Popen | None:
        """Start ``argv`` in a process group of its own; None once ``stop`` was called."""
        with self._lock:
            if self._stopped:
                return None
            self._process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group, so a timeout kills what it started too
            )
            return self._process

    def done(self) -> None:
        with self._lock:
            self._process = None

    def stop(self, grace: float) -> None:
        """Stop the command under way and its group: SIGTERM, SIGKILL after ``grace``."""
        with self._lock:
            self._stopped = True
            process = self._process
        if process is None:
            return
        _kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        _kill_group(process.pid, signal.SIGKILL)  # and what is left of its group


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _run_command(
    argv: list[str],
    stdin: bytes,
    env: Mapping[str, str],
    cwd: str,
    timeout: float,
    current: CurrentCommand,
) -> str | None:
    """Run ``argv`` with ``stdin``, killing its process group after ``timeout`` seconds;
    return what went wrong, or None when it exited with status 0."""
    try:
        process = current.start(argv, env, cwd)
    except OSError as error:
        return f"could not start ({error.strerror or error})"
    if process is None:
        return "not run: the run has ended"
    try:
        try:
            _, errors = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid, signal.SIGKILL)
            try:
                process.communicate(timeout=1.0)
            except subprocess.TimeoutExpired:  # a child that left the group holds the pipe
                pass
            return f"killed after {timeout:g}s"
    finally:
        current.done()
    if process.returncode != 0:
        lines = errors.decode(errors="replace").strip().splitlines()
        said = f" ({lines[-1][:200]})" if lines else ""
        return f"exited with status {process.returncode}{said}"
    return None
