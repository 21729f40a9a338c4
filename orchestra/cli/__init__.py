"""The ``orchestra`` command line: a click group that built-in modules and plugins extend.

Commands live in their own modules and are imported only when used, so ``orchestra
--help`` and ``orchestra --version`` stay fast. Errors a user can cause
(``OrchestraError``) print one line each on stderr and exit with status 2 (a full disk:
75); so do the faults of the machine that reach here as an ``OSError`` (a full or
read-only disk, a file that may not be written).
"""

from __future__ import annotations

import atexit
import errno
import gc
import importlib
import os
import sys
import threading

import click

from orchestra import __version__
from orchestra.cli.commands import BUILTIN_COMMANDS
from orchestra.cli.session import CliSession, pause_collector, resume_collector


class OrchestraGroup(click.Group):
    """A group whose built-in commands load on use and whose plugins add the rest."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        # Only the built-ins: listing plugin commands would mean importing every plugin,
        # and `orchestra --help` must stay fast. `orchestra plugins` shows plugin commands.
        return sorted({*BUILTIN_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = BUILTIN_COMMANDS.get(cmd_name)
        if target is not None:
            module_name, attribute = target.split(":")
            return getattr(importlib.import_module(module_name), attribute)
        command = self.commands.get(cmd_name)
        if command is None:
            command = ctx.ensure_object(CliSession).plugin_commands.get(cmd_name)
        # a plugin's command may run for long without taking the session, whose decorator
        # turns the collector back on for the built-in ones: it starts with it on
        resume_collector()
        return command

    def invoke(self, ctx: click.Context):
        from orchestra.errors import OrchestraError

        try:
            return super().invoke(ctx)
        except OrchestraError as error:
            for line in error.lines():
                click.echo(f"error: {line}", err=True)
            ctx.exit(getattr(error, "exit_status", 2))
        except OSError as error:
            fault = machine_fault(error)
            if fault is None:
                raise
            click.echo(f"error: {fault}", err=True)
            ctx.exit(getattr(fault, "exit_status", 2))


#: errno values of a machine's fault, not of orchestra's code: a full or read-only disk,
#: a file the user may not write, a failing device
FAULT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


def machine_fault(error: OSError) -> Exception | None:
    """Return the one-line error for an OSError that no layer below turned into one
    (a file the disk refused), or None for one that is a bug and keeps its traceback."""
    if error.errno not in FAULT_ERRNOS:
        return None
    from orchestra.errors import DiskFull, OrchestraError

    reason = error.strerror or str(error)
    where = error.filename if isinstance(error.filename, str) else None
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(reason, file=where)
    return OrchestraError(reason, file=where)


@click.group(
    cls=OrchestraGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Plugins can add commands of their own: 'orchestra plugins' lists them.",
)
@click.version_option(
    __version__, "-V", "--version", prog_name="orchestra", message="%(prog)s %(version)s"
)
def cli() -> None:
    """Run workstreams of coding tasks through AI coding tools and commands.

    A workstream is a TOML file of tasks with dependencies. orchestra validates it,
    plans which tool carries out each task, and runs it, recording every step in
    SQLite. Configuration comes from orchestra.toml or [tool.orchestra] in
    pyproject.toml, found by walking up from the working directory. Plugins add tools,
    strategies and commands.
    """


def console() -> None:
    """The ``orchestra`` console script: ``main``, then the process ends at once, without
    the interpreter's teardown.

    As it exits, the interpreter frees every module and object one by one: about 4 ms of
    every command (measured on `orchestra run` of one task), for a process that ends
    anyway. What that exit does that matters is done first: the atexit functions run and
    standard output and error are flushed. While a thread that is no daemon still runs,
    or when the status is no number or the output cannot be flushed (a closed pipe), the
    process leaves the ordinary way. ``main`` alone (``python -m orchestra``, a test, a
    program that embeds orchestra) returns as ever."""
    try:
        main()
    except SystemExit as end:
        _end_now(end.code)
        raise


def _end_now(code: object) -> None:
    """End the process with ``code``'s status now, or return to let the interpreter end it."""
    if code is not None and not isinstance(code, int):
        return  # a message: the interpreter prints it
    others = [thread for thread in threading.enumerate() if thread is not threading.main_thread()]
    if any(not thread.daemon for thread in others):
        return  # the interpreter waits for it
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # the interpreter says so, as it does
    atexit._run_exitfuncs()  # the stores still open are closed too; then cleared
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        os._exit(120)  # the interpreter's status when its output cannot be flushed
    os._exit(code or 0)


def main() -> None:
    """The command line, as the ``orchestra`` console script runs it (``console``)."""
    pause_collector()  # until the command's own work: see pause_collector
    try:
        sys.exit(cli.main(prog_name="orchestra"))
    finally:
        resume_collector()  # as it was found, for a caller that goes on (a test)
        # Kept for its speed: the process ends here, and the collection the interpreter
        # makes as it exits would walk every object for nothing: frozen, they are skipped
        # (18 ms of every `orchestra run`, benchmarks/overhead.py's start-up). Only the
        # console script does this; a process that runs orchestra as a library is left
        # as it was (tests/test_global_state.py).
        gc.freeze()
