"""Recorded runs, for plugins and library users: find and open the project's run database,
gather the facts of one run, ask a run to stop.

These are the functions the ``runs``, ``show``, ``report`` and ``cancel`` commands are
made of, so that a plugin (the web UI of orchestra-ui, a dashboard, a bot) reads and acts
exactly as the command line does, through ``import orchestra`` alone.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestra.plugin.host import PluginHost
    from orchestra.report.facts import RunFacts
    from orchestra.store import Store


def run_database_path(db: str | os.PathLike[str] | None = None, start: Path | None = None) -> Path:
    """Return the run database the commands would use: ``db`` if given (relative to the
    working directory), else the ``db`` setting (``ORCHESTRA_DB``, ``orchestra.toml``) of
    the project found from ``start`` (the working directory by default)."""
    from orchestra.config import find_project, resolve_settings

    given = None if db is None else os.path.abspath(db)
    return Path(resolve_settings(find_project(start), flags={"db": given}).db)


def open_run_database(path: str | os.PathLike[str]) -> Store:
    """Open the run database at ``path`` as ``orchestra runs`` does: a missing file is an
    ``OrchestraError`` (it is never made just to be read), and runs whose process died
    are marked interrupted on the way in. Close it with ``close()`` or a ``with`` block."""
    from orchestra.store import Store

    return Store.open_existing(path)


def gather_run(store: Store, run_id: str, *, logs: bool = True) -> RunFacts:
    """Return what ``orchestra report`` shows of run ``run_id``: the run, its graph (from
    the workstream file while it exists), its tasks and their attempts with their diffs
    and their reviews (``AttemptFacts.reviews``: the second tool's verdict, comments and
    usage, and what it changed, discarded; a review under way is ``running``).

    ``logs=False`` leaves out the tail of each task's log (``TaskFacts.log_tail`` is
    empty), which costs a file read per task. The workstream is read with the plugins
    of the project around the working directory (its loaders, its block list). Raises
    ``UnknownRun``."""
    from orchestra.report.facts import gather

    return gather(store, run_id, _host(), logs=logs)


@functools.cache
def _host() -> PluginHost:
    from orchestra.config import find_project
    from orchestra.plugin.host import PluginHost

    return PluginHost.for_project(find_project())


def request_cancel(store: Store, run_id: str) -> str:
    """Cancel ``run_id`` as ``orchestra cancel`` does: SIGTERM to the process driving it
    (which records the run canceled), or, for a run whose process died, cancel it here.
    Return what was done, in words; raise ``OrchestraError`` when there is nothing to
    cancel or the run is driven from another machine."""
    from orchestra.engine.runs import request_cancel as cancel

    return cancel(store, run_id)


def tail_lines(path: str | os.PathLike[str] | None, lines: int) -> tuple[str, ...]:
    """Return the last ``lines`` lines of a log file (none for a missing file), read from
    its end, so a huge log costs no more than a small one."""
    from orchestra.logtail import tail_lines as tail

    return tail(path, lines)
