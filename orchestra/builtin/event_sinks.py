"""Built-in event sinks ``jsonl``, ``webhook`` and ``command``: a run's events written to a
file, posted to a URL, or handed to a program (desktop notifications, chat messages).

``emit`` runs on the run loop's thread, so none of them waits there: ``jsonl`` appends
one line, and the other two put the event in a bounded queue that a thread of their own
works through. What goes wrong on that thread becomes a ``sink.warning`` event of the
run, never an exception. See docs/sinks.md.
"""

from __future__ import annotations

import fnmatch
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestra import __version__
from orchestra.errors import ConfigError, did_you_mean
from orchestra.models import SinkContext
from orchestra.plugin.markers import hookimpl

#: the command sink's events when ``kinds`` is not set: the end of the run
RUN_ENDS = ("run.succeeded", "run.failed", "run.canceled")
#: HTTP statuses worth trying again: the server may answer the next time
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: the first wait before a webhook retries, doubled each time, and its ceiling
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 8.0
#: how many times its ``timeout`` ``close()`` waits for a sink's queue to drain
_DRAIN_TIMEOUTS = 3
#: then the command sink's command still running gets SIGTERM, and SIGKILL this much later
STOP_GRACE = 1.0
_VARIABLE = re.compile(r"\$(?:(\w+)|\{(\w+)\}|(\$))")


# -- options ------------------------------------------------------------------------------


class SinkOptions:
    """Reads one sink's ``[sink.NAME]`` table: each reader returns the option's value or
    raises ``ConfigError`` naming the sink and the option, in one line."""

    def __init__(self, sink: str, table: Mapping[str, Any], known: tuple[str, ...]) -> None:
        self.sink = sink
        self.table = dict(table)
        for key in self.table:
            if key not in known:
                raise self.error(
                    key, f"unknown option{did_you_mean(key, known)} (known: {', '.join(known)})"
                )

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(problem, field=f"sink.{self.sink}.{key}")

    def _typed(self, key: str, kind: type | tuple[type, ...], noun: str, default: Any) -> Any:
        value = self.table.get(key, default)
        if value is _REQUIRED:
            raise self.error(key, f"required: {noun}")
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise self.error(key, f"expected {noun}, got {_describe(value)}")
        return value

    def text(self, key: str, noun: str, default: Any = None) -> str:
        value = self._typed(key, str, noun, _REQUIRED if default is None else default)
        if not value.strip():
            raise self.error(key, f"expected {noun}, got an empty string")
        return value

    def number(self, key: str, default: float) -> float:
        value = float(self._typed(key, (int, float), "a number of seconds", default))
        if value <= 0:
            raise self.error(key, f"expected a number of seconds above 0, got {value:g}")
        return value

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self._typed(key, int, f"an integer ≥ {minimum}", default)
        if value < minimum:
            raise self.error(key, f"expected an integer ≥ {minimum}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._typed(key, bool, "true or false", default)

    def strings(self, key: str, noun: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(key, f"expected an array of strings ({noun}), got {_describe(value)}")
        return tuple(value)

    def kinds(self, default: tuple[str, ...]) -> tuple[str, ...]:
        patterns = self.strings("kinds", 'event types or patterns such as "run.*"', default)
        if not patterns:
            raise self.error("kinds", "empty: no event would ever be sent")
        return patterns

    def variables(self, key: str, value: str, environ: Mapping[str, str]) -> str:
        """Return ``value`` with each ``$NAME`` or ``${NAME}`` replaced from ``environ``
        (``$$`` is a dollar), so that no token need be written in the configuration."""

        def replace(match: re.Match[str]) -> str:
            if match.group(3):
                return "$"
            name = match.group(1) or match.group(2)
            if name not in environ:
                raise self.error(key, f"names ${name}, which is not set in the environment")
            return environ[name]

        return _VARIABLE.sub(replace, value)


_REQUIRED: Any = object()


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "an array", dict: "a table"})
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def matches(kind: str, patterns: tuple[str, ...]) -> bool:
    """Return whether the event type ``kind`` matches one of the fnmatch ``patterns``."""
    return any(fnmatch.fnmatchcase(kind, pattern) for pattern in patterns)


def _about_itself(event: Mapping[str, Any], name: str) -> bool:
    """True for this sink's own warnings: sending them on would feed a failing endpoint
    one more event per failure, for ever."""
    return (
        event.get("type", "").startswith("sink.")
        and (event.get("payload") or {}).get("sink") == name
    )


# -- delivery on a thread of its own ------------------------------------------------------


class DeliveryFailed(Exception):
    """One event could not be delivered; the message says why, for the warning."""


_STOP: Any = object()


class Courier:
    """Hands events to ``deliver`` one at a time on its own thread, through a bounded
    queue, so that the run loop never waits for an endpoint or a command.

    A full queue drops the event (counted, one warning at the end). The first failure
    in a row is a warning with its cause; the ones after it are counted, and the count is
    a warning when a delivery works again or at the end.
    """

    def __init__(
        self,
        sink: str,
        deliver: Callable[[Mapping[str, Any], Courier], None],
        capacity: int,
        warn: Callable[[str], None],
    ) -> None:
        self.capacity = capacity
        #: set when close() gives up: deliveries stop retrying and the rest is dropped
        self.stopped = threading.Event()
        #: the last thing that went wrong, for the warning when close() gives up
        self.trouble: str | None = None
        self._deliver = deliver
        self._warn = warn
        self._queue: queue.Queue[Any] = queue.Queue(capacity)
        self._accepted = 0
        self._done = 0
        self._dropped = 0
        self._failures_in_a_row = 0
        self._thread = threading.Thread(target=self._work, name=f"sink-{sink}", daemon=True)
        self._thread.start()

    def offer(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` for delivery, or count it as dropped when the queue is full."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._dropped += 1
        else:
            self._accepted += 1

    def finish(self, wait: float) -> None:
        """Let the queue drain for at most ``wait`` seconds, then give up on the rest."""
        deadline = time.monotonic() + wait
        try:
            self._queue.put(_STOP, timeout=wait)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self.stopped.set()  # no more retries; a request under way ends on its own
            left = self._accepted - self._done
            why = f" (last problem: {self.trouble})" if self.trouble else ""
            self._warn(f"gave up after waiting {wait:g}s: {left} event(s) not delivered{why}")
        if self._failures_in_a_row > 1:
            self._warn(f"{self._failures_in_a_row - 1} more event(s) could not be delivered")
        if self._dropped:
            self._warn(f"dropped {self._dropped} event(s): its queue of {self.capacity} was full")

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP or self.stopped.is_set():
                return
            try:
                self._deliver(event, self)
            except DeliveryFailed as failure:
                self._failed(str(failure))
            except Exception as error:  # a bug here must not end deliveries silently
                self._failed(f"{type(error).__name__}: {error}")
            else:
                if self._failures_in_a_row > 1:
                    self._warn(
                        f"delivering again after {self._failures_in_a_row - 1} more failure(s)"
                    )
                self._failures_in_a_row = 0
            finally:
                self._done += 1

    def _failed(self, message: str) -> None:
        self.trouble = message
        if self.stopped.is_set():
            return  # given up at close(): the run has ended, nobody reads this
        self._failures_in_a_row += 1
        if self._failures_in_a_row == 1:
            self._warn(f"{message}; further failures are counted until one works")


# -- jsonl --------------------------------------------------------------------------------


class JsonlSink:
    """Appends each event to a file as one JSON object per line, flushed at once."""

    name = "jsonl"

    def __init__(self) -> None:
        self._file: Any = None
        self._seq = 0
        self.path: Path | None = None

    def open(self, context: SinkContext) -> None:
        """Open (and create) the file, counting the lines a resumed run left in it."""
        self.close()
        options = SinkOptions(self.name, context.options, ("path",))
        default = str(Path(context.state_dir) / "runs" / "{run}" / "events.jsonl")
        path = Path(options.text("path", "a file name", default).replace("{run}", context.run_id))
        self.path = path if path.is_absolute() else Path(context.project_root) / path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b", buffering=0)  # held until close()
        self._seq = 0
        self._file.seek(0)
        last = b"\n"
        for block in iter(lambda: self._file.read(1 << 16), b""):
            self._seq += block.count(b"\n")
            last = block[-1:]
        if last != b"\n":  # a line cut short by a crash: end it, so the next one is whole
            self._write(b"\n")
            self._seq += 1

    def emit(self, event: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        self._seq += 1
        line = json.dumps({"seq": self._seq, **event}, default=str, ensure_ascii=False)
        self._write(line.encode() + b"\n")

    def _write(self, data: bytes) -> None:
        # one write of the whole line to an O_APPEND file: `tail -f` never sees half of it
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _CourierSink:
    """What the webhook and command sinks share: the chosen kinds of events go, in
    order, to a courier thread; closing waits a bounded time for it to finish."""

    name = "?"
    _courier: Courier | None
    _kinds: tuple[str, ...]
    _timeout: float

    def emit(self, event: Mapping[str, Any]) -> None:
        if self._courier is not None and matches(event.get("type", ""), self._kinds):
            if not _about_itself(event, self.name):
                self._courier.offer(event)

    def close(self) -> None:
        if self._courier is not None:
            courier, self._courier = self._courier, None
            courier.finish(_DRAIN_TIMEOUTS * self._timeout)


# -- webhook ------------------------------------------------------------------------------


class WebhookSink(_CourierSink):
    """POSTs each event (or those of the chosen ``kinds``) as JSON to a URL, from a thread
    of its own, with bounded retries."""

    name = "webhook"
    OPTIONS = ("url", "kinds", "headers", "timeout", "retries", "queue_size")

    def __init__(self) -> None:
        self._courier: Courier | None = None
        self._kinds: tuple[str, ...] = ("*",)
        self._timeout = 5.0

    def open(self, context: SinkContext) -> None:
        """Read the options and start the delivery thread (a fresh one for each run)."""
        self.close()
        options = SinkOptions(self.name, context.options, self.OPTIONS)
        shown = options.text("url", "the URL to POST each event to")
        url = options.variables("url", shown, os.environ)
        if not url.startswith(("http://", "https://")):
            raise options.error("url", f"expected an http:// or https:// URL, got {shown!r}")
        headers = options.table.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(value, str) for value in headers.values()
        ):
            raise options.error("headers", f"expected a table of strings, got {headers!r}")
        sent = {"Content-Type": "application/json", "User-Agent": f"orchestra/{__version__}"}
        sent.update(
            {
                name: options.variables("headers", value, os.environ)
                for name, value in headers.items()
            }
        )
        self._kinds = options.kinds(("*",))
        self._timeout = options.number("timeout", 5.0)
        retries = options.integer("retries", 3, minimum=0)
        capacity = options.integer("queue_size", 1000, minimum=1)
        timeout = self._timeout

        def deliver(event: Mapping[str, Any], courier: Courier) -> None:
            body = json.dumps(event, default=str).encode()
            for attempt in range(retries + 1):
                pause = min(_BACKOFF_FIRST * 2 ** (attempt - 1), _BACKOFF_MAX)
                if attempt and courier.stopped.wait(pause):
                    raise DeliveryFailed("given up")
                problem, again = _post(url, body, sent, timeout)
                if problem is None:
                    return
                courier.trouble = f"POST {event.get('type')} to {shown}: {problem}"
                if not again:
                    break
            tries = f"{attempt + 1} tr{'y' if attempt == 0 else 'ies'}"
            raise DeliveryFailed(f"{courier.trouble}, {tries}")

        self._courier = Courier(self.name, deliver, capacity, context.warn or _ignore)


def _post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[str | None, bool]:
    """POST ``body``; return what went wrong (None when it worked) and whether to retry."""
    import urllib.error  # here, not at start-up: every orchestra command loads this plugin
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1 << 16)
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} {error.reason}", error.code in _RETRYABLE_STATUS
    except urllib.error.URLError as error:
        return f"{error.reason}", True
    except (TimeoutError, OSError) as error:
        return f"{error or type(error).__name__}", True
    return None, False


def _ignore(message: str) -> None:
    """Where warnings go when a sink is opened without a way to warn (outside a run)."""


# -- command ------------------------------------------------------------------------------


class CommandSink(_CourierSink):
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
            raw = options.table.get("command", _REQUIRED)
            if raw is _REQUIRED:
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

        self._courier = Courier(self.name, deliver, capacity, context.warn or _ignore)


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


@hookimpl
def orchestra_register_sinks(register: Callable[[Any], None]) -> None:
    register(JsonlSink())
    register(WebhookSink())
    register(CommandSink())
