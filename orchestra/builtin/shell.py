"""Built-in tool ``shell``: runs a task's command (an argument list, or a shell string)."""

from __future__ import annotations

import os
import signal

from orchestra.models import (
    Availability,
    ExecutionRequest,
    ProcessResult,
    StepResult,
    ToolProfile,
)
from orchestra.plugin.markers import hookimpl
from orchestra.plugin.protocols import ExecutionContext


def _on_path(program: str) -> str | None:
    """Where ``program`` is on PATH, as ``shutil.which`` finds a bare name: not with
    shutil, whose import (with zlib, bz2 and lzma) was 3 ms of every run's start."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


class ShellTool:
    """Runs ``command`` without a shell; with ``shell = true``, through /bin/sh -c."""

    name = "shell"
    capabilities = frozenset({"command"})
    #: a command's failures are its own, never the shell's: no circuit breaker
    circuit_breaker = False

    def available(self, profile: ToolProfile) -> Availability:
        """Return available: commands need nothing but a POSIX system (and sh for shell = true)."""
        return Availability(True, path=_on_path("sh"))

    def execute(self, request: ExecutionRequest, ctx: ExecutionContext) -> StepResult:
        """Run the command through the host and judge it by its exit status."""
        task = request.task
        command = task.command  # one string exactly when shell = true (validation checks)
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command or ())
        finished = ctx.run(argv, env=dict(task.env))
        stopped = stopped_result(finished)
        if stopped is not None:
            return stopped
        if finished.exit_code == 0:
            return StepResult("succeeded", exit_code=0)
        if finished.exit_code is None:
            return StepResult(
                "failed",
                error_class="crashed",
                message=f"command was killed by {_signal_name(finished.signal)}",
            )
        return StepResult(
            "failed",
            error_class="exit_status",
            message=f"command exited with status {finished.exit_code}",
            exit_code=finished.exit_code,
        )


def stopped_result(finished: ProcessResult) -> StepResult | None:
    """The attempt's result when orchestra stopped the process (canceled, timed out) or
    could not start it; None when it ran to its own end."""
    if finished.stopped == "canceled":
        return StepResult("canceled", exit_code=finished.exit_code)
    if finished.stopped in ("timeout", "idle"):
        return StepResult(
            "timed_out",
            error_class=finished.stopped,
            message=_STOPPED[finished.stopped],
            exit_code=finished.exit_code,
        )
    if finished.error is not None:
        return StepResult("failed", error_class="tool_missing", message=finished.error)
    return None


_STOPPED = {
    "timeout": "command ran longer than its timeout",
    "idle": "command printed nothing for its idle_timeout",
}


def _signal_name(signum: int | None) -> str:
    if signum is not None:
        try:
            return f"signal {signum} ({signal.Signals(signum).name})"
        except ValueError:  # a number no signal has here
            pass
    return f"signal {signum}"


@hookimpl
def orchestra_register_tools(register) -> None:
    register(ShellTool())
