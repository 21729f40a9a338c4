"""The page's two actions, done as the command line does them.

Cancel is ``orchestra.request_cancel``, the code of ``orchestra cancel``. Resume starts
the real ``orchestra resume RUN --db DB --plain`` in a session of its own (so it outlives
the server and a Ctrl-C of it), from the directory ``orchestra ui`` was started in, its
output in ``<db dir>/runs/<run>/ui-resume-<n>.log``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import orchestra
from orchestra_ui.views import mark_if_orphaned

#: run states a run can be resumed from
RESUMABLE_STATES = frozenset({"interrupted", "canceled"})
#: seconds a resume request waits for the new process to take the run (or to fail)
RESUME_START_TIMEOUT = 10.0


class ActionRefused(Exception):
    """An action that cannot be done now (the run's state forbids it): HTTP 409."""


def cancel_run(store: orchestra.Store, run_id: str) -> str:
    """Cancel the run as ``orchestra cancel`` does; return what was done, in words.
    Raises UnknownRun, or ActionRefused when there is nothing to cancel."""
    store.run(run_id)  # UnknownRun first: a 404, not a refusal
    try:
        return orchestra.request_cancel(store, run_id)
    except orchestra.UnknownRun:
        raise
    except orchestra.OrchestraError as error:
        raise ActionRefused(str(error)) from None


class Resumer:
    """Starts ``orchestra resume`` processes and keeps track of those still starting."""

    def __init__(self, database: Path, workdir: Path) -> None:
        self.database = database
        self.workdir = workdir
        self._mutex = threading.Lock()
        self._started: dict[str, subprocess.Popen[bytes]] = {}

    def resume(self, store: orchestra.Store, run_id: str) -> tuple[str, int]:
        """Start resuming the run; return (what was done, in words, the process id).

        Waits until the new process holds the run (or ends), so that a resume the command
        refuses (a changed workstream file …) is refused here too, with its reason.
        Raises UnknownRun, or ActionRefused when the run is not interrupted or canceled."""
        record = store.run(run_id)
        if mark_if_orphaned(store, [record]):
            record = store.run(run_id)
        with self._mutex:
            if record.state.value not in RESUMABLE_STATES:
                raise ActionRefused(
                    f"run {run_id} is {record.state.value}: only an interrupted or canceled"
                    " run can be resumed"
                )
            starting = self._started.get(run_id)
            if starting is not None and starting.poll() is None:
                raise ActionRefused(f"run {run_id} is being resumed already (pid {starting.pid})")
            process, log = self._start(record.id)
            self._started[run_id] = process
        threading.Thread(
            target=process.wait, name=f"orchestra-ui-reap-{process.pid}", daemon=True
        ).start()  # reaped when it ends, not left a zombie
        status = _wait_until_driving(store, run_id, process)
        if status not in (None, 0, 1, 130):  # 2: the command refused; else it broke
            raise ActionRefused(_failure(log, status))
        return f"resuming run {run_id} (pid {process.pid})", process.pid

    def _start(self, run_id: str) -> tuple[subprocess.Popen[bytes], Path]:
        runs = self.database.parent / "runs"
        directory = runs / run_id
        if directory.resolve().parent != runs.resolve():
            raise ActionRefused(f"run {run_id!r} cannot have a directory of its own")
        directory.mkdir(parents=True, exist_ok=True)
        number = 1
        while True:
            log = directory / f"ui-resume-{number}.log"
            try:
                output = open(log, "xb")  # handed to the process, then closed
                break
            except FileExistsError:
                number += 1
        with output:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchestra",
                    "resume",
                    run_id,
                    "--db",
                    str(self.database),
                    "--plain",
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        return process, log


def _wait_until_driving(
    store: orchestra.Store, run_id: str, process: subprocess.Popen[bytes]
) -> int | None:
    """Wait until ``process`` holds the run's lock or ends; return its exit status if
    it ended, None if it drives the run (or is still starting at the timeout)."""
    deadline = time.monotonic() + RESUME_START_TIMEOUT
    while time.monotonic() < deadline:
        status = process.poll()
        if status is not None:
            return status
        if store.is_locked(run_id):
            return None
        time.sleep(0.05)
    return None


def _failure(log: Path, status: int) -> str:
    """The reason a resume process gave for ending at once: its error lines, or its
    last line, or its exit status."""
    lines = orchestra.tail_lines(log, 20)
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if errors:
        return "; ".join(errors)
    return lines[-1] if lines else f"orchestra resume exited with status {status}"
