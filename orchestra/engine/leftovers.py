"""The processes a run left behind, found and stopped: what ``cancel`` and ``resume``
(``runs.py``) do about a run whose orchestrator died, and what an executor on another
machine does about a run's attempts there.

Finding them is ``containment.py``'s (the run's cgroups, its ``ORCHESTRA_RUN_ID``);
the process groups are signalled as ``process.py`` signals an attempt's.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

from orchestra.engine.containment import run_processes
from orchestra.engine.process import DEFAULT_GRACE, group_alive, signal_group


def processes_of_run(run_id: str) -> dict[int, int]:
    """Return {pid: process group} of this machine's live processes started for run
    ``run_id``: those whose environment has its ``ORCHESTRA_RUN_ID`` (the run loop puts
    it in every attempt's, and children inherit it), those in the run's cgroups (which
    hold the ones that cleared their environment), and their descendants. Processes of
    other users are not seen."""
    found: dict[int, int] = {}
    for pid in run_processes(run_id):
        try:
            found[pid] = os.getpgid(pid)
        except OSError:  # gone meanwhile
            continue
    return found


def stop_process_groups(pgids: Iterable[int], grace: float = DEFAULT_GRACE) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after ``grace``."""
    groups = set(pgids)
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = {pgid for pgid in groups if group_alive(pgid)}
        time.sleep(0.05)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)
