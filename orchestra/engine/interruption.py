"""A fault stops the run, resumably: a full disk found in an attempt's end, a database
that cannot be written, or a bug.

A full disk is no task's failure to retry: every attempt would meet it again. When an
attempt's end says so, its attempt is recorded ``interrupted`` (its step stays running)
with the rest of the wake, and the loop raises the fault. Whatever leaves the loop then
takes the same way out: the running attempts are stopped at once, the executor closed,
and the run recorded ``interrupted`` if the database still takes it; ``resume`` goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra.engine.messages import AttemptEnded
from orchestra.errors import DiskFull
from orchestra.faults import one_line, says_disk_full
from orchestra.store.lifecycle import RunState

if TYPE_CHECKING:
    from orchestra.engine.messages import Inbox, Message, Running
    from orchestra.engine.running import RunningAttempts
    from orchestra.models import StepResult
    from orchestra.plugin.protocols import RunExecutor


class Interruption:
    """The fault that stops a run, once found, and the run's way out when one does.

    ``roots`` are the directories whose full disk is orchestra's (the logs', the
    project's); ``log_path(task_id, attempt)`` names an attempt's log; ``handle`` records
    a message of the inbox as the loop does, ``set_run(state, payload, error)`` the
    run's state; ``cancel`` and ``hurry`` stop the running attempts."""

    def __init__(
        self,
        *,
        store: Any,
        run_id: str,
        roots: Sequence[Path],
        log_path: Callable[[str, int], str],
        inbox: Inbox,
        running: RunningAttempts,
        handle: Callable[[Message], None],
        set_run: Callable[[RunState, Mapping[str, Any], str], None],
        cancel: threading.Event,
        hurry: threading.Event | None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.roots = tuple(roots)
        self.log_path = log_path
        self.inbox = inbox
        self.running = running
        self.handle = handle
        self.set_run = set_run
        self.cancel = cancel
        self.hurry = hurry
        #: a fault found in an attempt's end (a full disk) that stops the run
        self.fault: DiskFull | None = None
        #: whether the database says this run is running (so it may go to interrupted)
        self.recorded_running = False

    def found_in(self, running: Running, result: StepResult) -> bool:
        """Whether the attempt failed because the disk is full (its log, its worktree, a
        git command in it); if so, record it interrupted and keep the fault, which stops
        the run once this wake is recorded. A task's own command failing on a full disk
        is the task's failure."""
        if result.error_class not in ("crashed", "setup_failed") or not result.message:
            return False
        if not says_disk_full(result.message, self.roots):
            return False
        log = self.log_path(running.task.id, running.attempt)
        fault = DiskFull(
            f"the disk is full: task {running.task.id!r} attempt {running.attempt}"
            f" (log {log}) could not write: {one_line(result.message)}",
            run_id=self.run_id,
        )
        self.fault = self.fault or fault
        self.record_attempt(running, str(fault))
        return True

    def record_attempt(self, running: Running, why: str) -> None:
        """Record an attempt that a fault cut short as ``interrupted``; its step stays
        running, and ``resume`` tries it again (as after a crash)."""
        self.store.finish_attempt(
            self.run_id,
            running.task.id,
            running.attempt,
            outcome="interrupted",
            error_class="crashed",
            message=why,
            started_at=running.started,
            ended_at=running.ended,
        )

    def stop(self, executor: RunExecutor, error: BaseException) -> None:
        """Stop the running attempts at once, close the executor (quick now: their
        processes are being killed) and record the run interrupted by ``error``."""
        if isinstance(error, DiskFull):
            error.run_id = error.run_id or self.run_id
        # the cancel flag, and hurry, so that the attempts' process groups get SIGKILL
        # without a grace period (a full disk has nothing worth waiting for); nothing is
        # recorded canceled: the run is interrupted
        self.cancel.set()
        if self.hurry is not None:
            self.hurry.set()
        try:
            executor.close()
        finally:
            self._leave_interrupted(error)

    def _leave_interrupted(self, error: BaseException) -> None:
        """Record the run ``interrupted`` by ``error``, with what its stopped attempts
        came to, if the database still takes it; resume tries them again.

        Only after a fault found in an attempt (the database then holds what the loop
        holds) are the ends that arrived meanwhile recorded: successes as such, the
        others as interrupted. After a failed commit, memory is ahead of the database,
        so only the run's state is written."""
        if not self.recorded_running:
            return  # still pending (or interrupted): the next command or resume sees it
        why = one_line(str(error) or type(error).__name__)
        # the run's error says it all; its attempts need only say why they stopped
        cut_short = "the disk is full" if isinstance(error, DiskFull) else why
        try:
            with self.store.batch():
                if error is self.fault:
                    for message in self.inbox.drain():
                        if isinstance(message, AttemptEnded) and (
                            message.result.outcome != "succeeded"
                        ):
                            self.running.end(message.running)
                            self.record_attempt(message.running, f"the run stopped: {cut_short}")
                        else:
                            self.handle(message)
                self.set_run(RunState.INTERRUPTED, {"reason": why}, why)
        except Exception:
            # The run stays running in the database with its lock free once this
            # process lets go: the next command marks it interrupted. The error being
            # raised says what happened; this one would only hide it.
            pass
