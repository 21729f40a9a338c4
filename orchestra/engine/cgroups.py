"""The cgroup v1 ``pids`` hierarchy: finding it, making, entering, listing and removing
orchestra's cgroups in it.

cgroup v1 places threads, and a child is born in its thread's cgroup: so a thread that
enters a cgroup before it forks has the child, and every descendant, held there whatever
they do to their session, group or environment. Which cgroup a thread enters, and when,
is ``containment.py``'s policy (docs/architecture.md, "Running a process").
"""

from __future__ import annotations

import contextlib
import os
import re
import threading

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class Hierarchy:
    """The cgroup v1 ``pids`` hierarchy: where it is mounted and orchestra's place in it."""

    def __init__(self, mount: str, own: str) -> None:
        self.mount = mount
        #: orchestra's own cgroup: its threads go back there after a fork
        self.home = os.path.join(mount, own.lstrip("/"))
        self._run_directories: dict[str | None, str] = {}

    def run_directory(self, run_id: str | None) -> str:
        if run_id in self._run_directories:  # asked at every attempt of the run
            return self._run_directories[run_id]
        name = f"orchestra-{safe_name(run_id)}" if run_id else f"orchestra-pid{os.getpid()}"
        directory = os.path.join(self.home, name)
        if run_id:
            self._run_directories[run_id] = directory
        return directory

    def run_directories(self, run_id: str) -> list[str]:
        """Every cgroup of a run in the hierarchy, whichever orchestra made it."""
        wanted = f"orchestra-{safe_name(run_id)}"
        found = []
        for directory, subdirectories, _ in os.walk(self.mount):
            if os.path.basename(directory) == wanted:
                found.append(directory)
                subdirectories.clear()
        return found


def _pids_hierarchy_of(mountinfo: str, cgroups: str) -> Hierarchy | None:
    """The pids hierarchy named by /proc/self/mountinfo and /proc/self/cgroup, if any."""
    mounted: tuple[str, str] | None = None  # the hierarchy's root and where it is mounted
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, described = before.split(), after.split()
        if len(fields) >= 5 and len(described) >= 3 and described[0] == "cgroup":
            if "pids" in described[2].split(","):
                mounted = fields[3], fields[4]
                break
    if mounted is None:
        return None
    root, mount = mounted
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            if root != "/" and (path == root or path.startswith(root + "/")):
                path = path[len(root) :] or "/"  # a mount of part of the hierarchy
            return Hierarchy(mount, path)
    return None


_hierarchy: list[Hierarchy | None] = []  # found once: [] until then


def hierarchy(*, writable: bool = True) -> Hierarchy | None:
    """The pids hierarchy, when orchestra may make cgroups in it (``writable``), or at
    least read it; None where there is none or ``ORCHESTRA_CGROUPS=0``."""
    if os.environ.get("ORCHESTRA_CGROUPS", "").strip() in ("0", "no", "off", "false"):
        return None
    if not _hierarchy:
        try:
            with open("/proc/self/mountinfo") as mounts, open("/proc/self/cgroup") as own:
                found = _pids_hierarchy_of(mounts.read(), own.read())
        except OSError:
            found = None
        usable = found is not None and _can_make_cgroups(found)
        _hierarchy[:] = [found if usable else None, found]
    return _hierarchy[0] if writable else _hierarchy[1]


def _can_make_cgroups(found: Hierarchy) -> bool:
    probe = os.path.join(found.home, f"orchestra-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    with contextlib.suppress(OSError):  # gone already if another orchestra pruned it
        os.rmdir(probe)
    return True


def move_thread(directory: str) -> None:
    """Put the calling thread (only it) into the cgroup ``directory``."""
    fd = os.open(os.path.join(directory, "tasks"), os.O_WRONLY)
    try:
        os.write(fd, str(threading.get_native_id()).encode())
    finally:
        os.close(fd)


def warm_up(tree: Hierarchy) -> None:
    """Have the kernel ready, a few milliseconds from now, to move threads into cgroups.

    A move takes a lock that every fork of the machine takes too; the first move in a
    while switches that lock to the mode that lets a writer in, which waits for an RCU
    grace period (4 to 14 ms measured here), and the switch lasts some 20 ms after the
    last move. A run's first attempt would wait for it at its worker's first fork. A
    helper thread that writes its own id to the tasks of the cgroup it is in (a move to
    where it is) starts the switch while the run is being set up instead."""

    def move_in_place() -> None:
        with contextlib.suppress(OSError):
            move_thread(tree.home)  # the helper was born where orchestra's threads are

    threading.Thread(target=move_in_place, name="orchestra-cgroup-warm-up", daemon=True).start()


def enter_cgroup(directory: str) -> None:
    """Make the cgroup ``directory`` and move the calling thread into it (once more if
    another orchestra removed the empty run directory in between)."""
    for again in (True, False):
        try:
            os.makedirs(directory, exist_ok=True)
            move_thread(directory)
            return
        except FileNotFoundError:
            if not again:
                raise


def prune_cgroups(tree: Hierarchy) -> None:
    """Remove the empty cgroups of runs under orchestra's own (a run killed and never
    resumed or canceled leaves its directory; one that holds a process stays)."""
    try:
        entries = [entry.path for entry in os.scandir(tree.home) if entry.is_dir()]
    except OSError:
        return
    for path in entries:
        if os.path.basename(path).startswith("orchestra-"):
            remove_cgroup(path)


def cgroup_count(directory: str) -> int | None:
    """How many tasks a cgroup and the cgroups below it hold (``pids.current``): its
    processes, threads of ours in it, and zombies not reaped yet; None if unreadable."""
    try:
        # read once per attempt: os.open and os.read, not open(), whose file object
        # costs as much again as the read (measured: 5 µs against 11 µs)
        descriptor = os.open(os.path.join(directory, "pids.current"), os.O_RDONLY)
        try:
            return int(os.read(descriptor, 64))
        finally:
            os.close(descriptor)
    except (OSError, ValueError):
        return None


def cgroup_processes(directory: str, own_threads: int = 0, count: int | None = None) -> set[int]:
    """The running processes in a cgroup and the cgroups below it (zombies are not
    listed), but orchestra's own, which has ``own_threads`` threads in there. ``count``
    is its ``cgroup_count`` when the caller has read it."""
    found: set[int] = set()
    if count is None:
        count = cgroup_count(directory)
    if count is not None and count <= own_threads:  # counts the cgroups below too
        return found
    for root, _, _ in os.walk(directory):
        try:
            with open(os.path.join(root, "cgroup.procs"), "rb") as procs:
                found.update(map(int, procs.read().split()))
        except OSError:
            continue
    found.discard(os.getpid())  # a thread of ours in there, forking
    return found


def remove_cgroup(directory: str) -> bool:
    """Remove a cgroup and the ones below it; False when one still holds a process."""
    try:
        os.rmdir(directory)  # almost always: an empty cgroup with none below it
        return True
    except FileNotFoundError:
        return True
    except OSError:
        pass
    removed = True
    for root, _, _ in os.walk(directory, topdown=False):
        try:
            os.rmdir(root)
        except FileNotFoundError:
            pass
        except OSError:
            removed = False
    return removed


def safe_name(name: str) -> str:
    """``name`` as part of a cgroup's directory name: letters, digits, ``._-``, at most
    100 characters (a run's or task's id may hold anything)."""
    return _UNSAFE.sub("_", name)[:100] or "_"
