"""``LocalContext``: what a tool adapter gets to run an attempt's processes on this machine.

An adapter asks, the context does: each ``run`` goes through ``process.py`` (timeouts,
the process group, cancel), into the attempt's one log (``attempt_log.py``), inside the
attempt's sandbox when it has one (``sandbox.py``), with the secrets of every environment
it used redacted (``secrets.py``). The Ray plugin makes one on its node the same way.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra.engine.attempt_log import DEFAULT_LOG_LIMIT, AttemptLog, command_note
from orchestra.engine.containment import run_policy
from orchestra.engine.process import DEFAULT_GRACE, run_logged, start_error
from orchestra.models import ProcessResult
from orchestra.secrets import (
    MIN_SECRET_LENGTH,
    Redactor,
    literal_secrets,
    redactor_for,
    secret_values,
)

if TYPE_CHECKING:
    from orchestra.engine.sandbox import Sandbox


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
        emit: Callable[[str, Mapping[str, Any]], None] | None = None,
        scratch_root: str | os.PathLike[str] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
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
        self._redactor = redactor_for(
            frozenset([*secrets, *secret_values(self.env, self.secret_names)])
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        timeout: float | None = None,
        cwd: str | os.PathLike[str] | None = None,
        sandboxed: bool = True,
    ) -> ProcessResult:
        """Run ``argv`` in the attempt's directory with ``env`` on top of the base env;
        ``on_line`` (else the context's) gets each line of output, redacted. ``timeout``
        (a check's own) replaces the attempt's for this command. ``sandboxed=False`` runs
        it outside the attempt's sandbox: for a tool that brings a sandbox of its own,
        which cannot start inside orchestra's (codex's)."""
        environment = self.env
        if env:  # new variables may hold secrets of their own
            environment = {**self.env, **env}
        self._learn_secrets(argv, environment if env else None)
        where = os.fspath(self.cwd if cwd is None else cwd)
        shown = None
        if self.sandbox is not None and sandboxed:
            from orchestra.engine.sandbox import missing_program

            shown = [os.fspath(argument) for argument in argv]
            # found out here, not inside, where bwrap would only exit 1
            refused = missing_program(shown, where, environment)
            if refused is not None:
                return self._not_started(shown, refused)
            argv, environment, variables = self.sandbox.command(
                shown, where, environment, (self._scratch, self._state_dir)
            )
            passed: tuple[int, ...] = (variables,)
        else:
            passed = ()
        try:
            return run_logged(
                argv,
                cwd=where,
                env=environment,
                log=self._log,
                redactor=self._redactor,
                timeout=self.timeout if timeout is None else timeout,
                idle_timeout=self.idle_timeout,
                grace=self.grace,
                cancel=self.cancel,
                on_line=_both(on_line, self.on_line),
                hurry=self.hurry,
                shown=shown,
                pass_fds=passed,
            )
        finally:
            for descriptor in passed:
                os.close(descriptor)

    def _learn_secrets(self, argv: Sequence[str], environment: Mapping[str, str] | None) -> None:
        """Redact from now on the secrets written in ``argv`` and those of ``environment``
        (a run's own, None: the context's, whose secrets are known)."""
        added = literal_secrets([os.fspath(argument) for argument in argv])
        if environment is not None:
            added += secret_values(environment, self.secret_names)
        known = self._redactor.secrets
        new = set(added).difference(known)
        if any(len(value) >= MIN_SECRET_LENGTH for value in new):  # else nothing to redo
            self._redactor = Redactor([*known, *new])

    def _not_started(self, argv: Sequence[str], error: OSError) -> ProcessResult:
        """The result of a program that cannot start, as ``run_logged`` gives it, with
        nothing started: no moment in which it could appear and run outside the sandbox."""
        now = time.time()
        self._log.note(functools.partial(command_note, argv, self._redactor))
        message = self._redactor.redact(start_error(argv[0], error))
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
    """Return ``value`` with every string in it (in mappings, lists, tuples) redacted."""
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(redactor, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(redactor, item) for item in value]
    return value
