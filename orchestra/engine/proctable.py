"""Reading and signalling the process table: a process's state, its children and
descendants, a group's members, the markers in its environment.

Everything here reads ``/proc`` at the moment it is called and holds nothing: a process
may be gone by the next line, so each reader answers "none" rather than raise. The
policy of which processes belong to an attempt is ``containment.py``'s; the cgroups
that hold them are ``cgroups.py``'s.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping

#: the variables the run loop gives every attempt, which mark its processes
MARKERS = ("ORCHESTRA_RUN_ID", "ORCHESTRA_TASK_ID", "ORCHESTRA_ATTEMPT")


def process_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent, process group, session) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3])


def is_running(pid: int) -> bool:
    """Whether the process runs: a zombie runs nothing and holds no files."""
    found = process_stat(pid)
    return found is not None and found[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (orphans come to the main thread)."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children", "rb") as listing:
                found += map(int, listing.read().split())
        except OSError:
            continue
    return found


def descendants(roots: Iterable[int]) -> set[int]:
    """``roots`` and every process below them."""
    found = set(roots)
    todo = list(found)
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def group_members(pgid: int) -> list[int]:
    """The running processes of a process group (a scan of /proc, so only when it exists)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for entry in all_pids():
        found = process_stat(entry)
        if found is not None and found[2] == pgid and found[0] not in ("Z", "X"):
            members.append(entry)
    return members


def all_pids() -> list[int]:
    """The pids of every process ``/proc`` lists now (those visible to orchestra)."""
    try:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []


def environment_has(pid: int, wanted: Iterable[bytes]) -> bool:
    """Whether every ``NAME=value`` of ``wanted`` is in the process's environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            variables = set(environ.read().split(b"\0"))
    except OSError:  # gone meanwhile, or not ours to read
        return False
    return all(item in variables for item in wanted)


def marker_items(env: Mapping[str, str], names: Iterable[str] = MARKERS) -> tuple[bytes, ...]:
    """The ``NAME=value`` entries of ``env`` that mark an attempt's processes ((): none)."""
    items = tuple(f"{name}={env[name]}".encode() for name in names if env.get(name))
    return items if len(items) == len(tuple(names)) else ()


def signal_each(pids: Iterable[int], signum: int) -> None:
    """Send ``signum`` to each of ``pids``; one gone meanwhile, or not ours, is skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
