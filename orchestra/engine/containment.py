"""Finding every process an attempt started, wherever it went, so that none outlives it.

A process group is not enough: a child can leave it (``setsid``, ``setpgrp``), and a
daemon forks twice so that its parent is gone. Two ways to keep hold of them, chosen once
per process (docs/architecture.md, "Running a process"):

- **cgroup**: where a cgroup v1 ``pids`` hierarchy is writable (root, most CI machines),
  processes are forked inside a cgroup (v1 places threads, and a child is born in its
  thread's cgroup, so no child runs a moment outside it). During a run, each thread that
  starts attempts' processes enters ``<orchestra's cgroup>/orchestra-<run>/thread-<id>``
  at its first fork and stays there until the run ends (``RunPolicy``); outside a run,
  the forking thread enters a cgroup of the call's own for the fork only. Every
  descendant stays in it whatever it does to its session, group or environment, and the
  directory outlives a killed orchestrator, so ``cancel`` and ``resume`` find what is
  left by the run's id.
- **subreaper** (elsewhere on Linux): while a run goes on, orchestra is the child
  subreaper of its process (``prctl(PR_SET_CHILD_SUBREAPER)``; with cgroups too, so
  that it reaps its orphans at once), so an orphan of an attempt becomes orchestra's
  child instead of init's. An orphan belongs to an attempt
  when its environment carries the attempt's ``ORCHESTRA_RUN_ID``, ``ORCHESTRA_TASK_ID``
  and ``ORCHESTRA_ATTEMPT``, or its session or group is the attempt leader's; its
  descendants come with it. An orphan that cleared its environment and left the
  leader's session belongs to no attempt: the run's end stops it. Orphans that exit
  are reaped here: only children that orchestra did not fork itself, so no
  ``subprocess.Popen`` ever loses its child's exit status.

``ORCHESTRA_CGROUPS=0`` chooses the subreaper where a cgroup would work.

This module is the policy; reading ``/proc`` is ``proctable.py``'s, and making, entering
and removing cgroups is ``cgroups.py``'s.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping

from orchestra.engine.cgroups import (
    Hierarchy,
    cgroup_count,
    cgroup_processes,
    enter_cgroup,
    hierarchy,
    move_thread,
    prune_cgroups,
    remove_cgroup,
    safe_name,
    warm_up,
)
from orchestra.engine.proctable import (
    all_pids,
    descendants,
    environment_has,
    group_members,
    is_running,
    marker_items,
    process_stat,
    signal_each,
)

#: how long the end of a run waits for what it stops, after SIGTERM, before SIGKILL
RUN_END_GRACE = 5.0
_PR_SET_CHILD_SUBREAPER = 36
_numbers = itertools.count(1)

# Process-wide by nature: the subreaper flag, the cgroup a thread is in, and the children
# being forked belong to the process, not to one run. Guarded by _lock.
_lock = threading.Lock()
_spawning = 0  # forks under way: a zombie child may be one whose Popen has not returned
_leaders: set[int] = set()  # children orchestra forked itself: never reaped here
_subreaper_runs = 0
_runs: dict[str, RunPolicy] = {}
_thread = threading.local()  # .placed: (policy, cgroup) of its run cgroup; .cgroup_name


class RunPolicy:
    """What a run asks of its processes: the log limit, and which way they are held.

    With cgroups, each thread that runs attempts' processes enters a cgroup of its own
    for the run, ``orchestra-<run>/thread-<id>``, at its first fork and stays there (see
    ``Scope``): moving a thread takes a lock that every fork of the process waits for, so
    once per thread rather than twice per process. A thread runs one process at a time,
    so its cgroup holds that process's descendants (and what is left of the git commands
    the thread ran, which leave nothing: orchestra turns git's background work off).
    """

    def __init__(self, run_id: str, log_limit: int | None, cgroups: bool) -> None:
        self.run_id = run_id
        self.log_limit = log_limit
        self.cgroups = cgroups
        #: native ids of the threads moved into the run's cgroups, moved back at its end
        self.threads: set[int] = set()


def run_policy(run_id: str | None) -> RunPolicy | None:
    """The policy of a run this process drives, None for any other."""
    return _runs.get(run_id) if run_id else None


# -- the processes of one call of run_process -----------------------------------------------


class Scope:
    """The processes of one ``run_process`` call: its leader's group, and those that left it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.run_id = env.get("ORCHESTRA_RUN_ID")
        self._env = env
        self.leader: int | None = None
        self.cgroup: str | None = None
        #: the call's cgroup was seen holding nothing of it, not even a zombie: it left
        #: no orphan for ``close`` to reap
        self._left_nothing = False
        self._policy = run_policy(self.run_id)
        tree = hierarchy() if self._policy is None or self._policy.cgroups else None
        if tree is not None:
            self._run_directory = tree.run_directory(self.run_id)
            self._home = tree.home
            if self._policy is not None:  # the run's thread cgroup, entered for good
                name = _thread_cgroup_name()
            else:  # a cgroup for this call alone, the thread in it only for the fork
                task, attempt = env.get("ORCHESTRA_TASK_ID"), env.get("ORCHESTRA_ATTEMPT")
                name = f"{safe_name(task)}.{attempt}" if task and attempt else "call"
                name = f"{name}.{next(_numbers)}"
            self.cgroup = os.path.join(self._run_directory, name)

    @functools.cached_property
    def markers(self) -> tuple[bytes, ...]:
        """The attempt's ``NAME=value`` markers in its environment: how an orphan is known
        as the call's where no cgroup holds it (made only then)."""
        return marker_items(self._env)

    def spawning(self) -> _Spawning:
        """Around the fork of the leader (and ``started``): the child is born in its
        cgroup (the thread's for the run, or the call's own: the thread is in it only
        for the fork), and a reaper leaves the process's children alone meanwhile."""
        return _Spawning(self)

    def _enter(self) -> bool:
        """Put the calling thread in the call's cgroup, unless it is there already; return
        whether it moved."""
        if self.cgroup is None or self._in_thread_cgroup():
            return False
        try:
            enter_cgroup(self.cgroup)
        except OSError:
            self.cgroup = None  # made impossible meanwhile: the subreaper's way
            return False
        if self._policy is not None:
            _thread.placed = (self._policy, self.cgroup)
            with _lock:
                self._policy.threads.add(threading.get_native_id())
        return True

    def _leave(self, entered: bool) -> None:
        """After the fork: a thread that entered the call's own cgroup goes back home."""
        if entered and self._policy is None:
            try:
                move_thread(self._home)
            except OSError:  # the thread stays there: its later children are caught too
                pass

    def _in_thread_cgroup(self) -> bool:
        """Whether the calling thread is in this run's cgroup for it already (a thread
        local, not the thread's id: a new thread may have an old one's id)."""
        return self._policy is not None and getattr(_thread, "placed", None) == (
            self._policy,
            self.cgroup,
        )

    def started(self, pid: int) -> None:
        """Note the leader's pid (in ``spawning``), so that no reaper takes its status."""
        self.leader = pid
        with _lock:
            _leaders.add(pid)

    def strays(self) -> set[int]:
        """The running processes of this call outside the leader's process group."""
        pgid = self.leader
        if pgid is None:
            return set()
        if self.cgroup is not None:
            own = 1 if self._in_thread_cgroup() else 0
            count = cgroup_count(self.cgroup)
            self._left_nothing = count is not None and count <= own
            found = set() if self._left_nothing else cgroup_processes(self.cgroup, own, count)
        else:
            roots = set(group_members(pgid))
            roots.update(self._orphans_of_mine(pgid))
            found = descendants(roots) if roots else set()
        strays = set()
        for pid in found:
            stat = process_stat(pid)
            if stat is not None and stat[0] not in ("Z", "X") and stat[2] != pgid:
                strays.add(pid)
        return strays

    def _orphans_of_mine(self, pgid: int) -> list[int]:
        """orchestra's orphan children that came from this call (by marker, session or group)."""
        mine = []
        for child, found in _orphan_children():
            if found[0] in ("Z", "X"):
                continue
            if pgid in (found[2], found[3]) or (
                self.markers and environment_has(child, self.markers)
            ):
                mine.append(child)
        return mine

    def close(self) -> None:
        """After the leader was reaped: forget it, remove an empty cgroup, reap orphans."""
        if self.leader is not None:
            with _lock:
                _leaders.discard(self.leader)
        if self.cgroup is not None and self._policy is None:  # nobody removes it later
            remove_cgroup(self.cgroup)
            with contextlib.suppress(OSError):
                os.rmdir(self._run_directory)
        # an orphan of the call counts in its cgroup until reaped: none there, none to
        # reap (after almost every attempt: no read of /proc then)
        if _subreaper_runs and not self._left_nothing:
            reap_orphans()


def _thread_cgroup_name() -> str:
    """``thread-<id>``: the name of the calling thread's cgroup in a run, kept in the
    thread's locals (asked at every attempt; the id is a system call each time)."""
    name = getattr(_thread, "cgroup_name", None)
    if name is None:
        name = _thread.cgroup_name = f"thread-{threading.get_native_id()}"
    return name


class _Spawning:
    """``Scope.spawning``'s context: a class, not a generator, as it wraps every fork of
    a run (a generator's context costs about 3 µs more each time)."""

    __slots__ = ("_entered", "_scope")

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._entered = False

    def __enter__(self) -> None:
        global _spawning
        with _lock:
            _spawning += 1
        try:
            self._entered = self._scope._enter()
        except BaseException:
            with _lock:
                _spawning -= 1
            raise

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        global _spawning
        try:
            self._scope._leave(self._entered)
        finally:
            with _lock:
                _spawning -= 1


def _orphan_children() -> list[tuple[int, tuple[str, int, int, int]]]:
    """orchestra's children it did not fork itself (orphans it was given as subreaper):
    children of its main thread not in its own session, which is where every child it
    forks without a session of its own stays, and not a leader it forked."""
    if not _subreaper_runs:
        return []
    children = [child for child in _main_thread_children() if child not in _leaders]
    if not children:  # the usual answer, asked after every attempt
        return []
    own_session = os.getsid(0)
    found = []
    for child in children:
        stat = process_stat(child)
        if stat is not None and stat[3] != own_session:
            found.append((child, stat))
    return found


def _main_thread_children() -> list[int]:
    """The children of orchestra's main thread, where the kernel puts the orphans: those
    of other threads (the command sink's commands) are theirs to wait for."""
    pid = os.getpid()
    # read after every attempt: os.open and os.read, not open(), whose file object costs
    # five system calls more (fstat, ioctl, two lseeks, a second read)
    try:
        descriptor = os.open(f"/proc/{pid}/task/{pid}/children", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        chunks = [os.read(descriptor, 65536)]
        while chunks[-1]:
            chunks.append(os.read(descriptor, 65536))
    except OSError:
        return []
    finally:
        os.close(descriptor)
    return list(map(int, b"".join(chunks).split()))


def reap_orphans() -> None:
    """Collect the exit status of orchestra's orphan children that have ended."""
    if _spawning:  # a zombie may be a leader whose Popen has not returned yet: later
        return
    for child, found in _orphan_children():
        if found[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, os.WNOHANG)


# -- a run ----------------------------------------------------------------------------------


def set_subreaper(on: bool) -> bool:
    """Make this process the child subreaper of its descendants (or stop); False where
    the system cannot (not Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def prepare_run() -> None:
    """Called as a run is set up, before it records anything: where its attempts will be
    held in cgroups, have the kernel get ready to move its workers into theirs
    (``cgroups.warm_up``: the first attempt of a run of one quick task took 10 ms less
    to start, measured)."""
    tree = hierarchy()
    if tree is not None:
        warm_up(tree)


@contextlib.contextmanager
def supervise_run(
    run_id: str, *, log_limit: int | None = None, hurry: threading.Event | None = None
) -> Iterator[RunPolicy]:
    """Hold the run's processes from its start to its end, then stop whatever is left."""
    global _subreaper_runs
    tree = hierarchy()
    if tree is not None:
        prune_cgroups(tree)
    policy = RunPolicy(run_id, log_limit, cgroups=tree is not None)
    # with cgroups too: a process whose parent was killed (the shell under bwrap) is then
    # orchestra's to reap at once, rather than a zombie until init gets to it
    subreaper = set_subreaper(True)
    with _lock:
        _runs[run_id] = policy
        _subreaper_runs += subreaper
    try:
        yield policy
    finally:
        try:
            if tree is not None:
                _send_threads_home(policy, tree)
            stop_run_processes(run_id, hurry)
        finally:
            with _lock:
                _runs.pop(run_id, None)
                _subreaper_runs -= subreaper
                last = subreaper and not _subreaper_runs
            if last:
                set_subreaper(False)


def _send_threads_home(policy: RunPolicy, tree: Hierarchy) -> None:
    """Move the threads still in the run's cgroups back to orchestra's own (those of the
    local executor have ended; a caller's own thread goes on, and so do its children)."""
    for thread_id in policy.threads:
        if not os.path.exists(f"/proc/self/task/{thread_id}"):
            continue  # ended (its id may be another process's thread by now)
        fd = None
        try:
            fd = os.open(os.path.join(tree.home, "tasks"), os.O_WRONLY)
            os.write(fd, str(thread_id).encode())
        except OSError:  # ended
            pass
        finally:
            if fd is not None:
                os.close(fd)


def run_processes(run_id: str) -> set[int]:
    """The running processes of this machine that belong to the attempts of ``run_id``:
    in its cgroups, carrying its markers, orphans of this process, and their descendants."""
    found: set[int] = set()
    tree = hierarchy(writable=False)
    if tree is not None:
        for directory in tree.run_directories(run_id):
            found |= cgroup_processes(directory)
    wanted = (f"ORCHESTRA_RUN_ID={run_id}".encode(),)
    for pid in all_pids():
        if pid != os.getpid() and environment_has(pid, wanted):
            found.add(pid)
    found.update(child for child, stat in _orphan_children() if stat[0] not in ("Z", "X"))
    return {pid for pid in descendants(found) if pid != os.getpid() and is_running(pid)}


def stop_run_processes(run_id: str, hurry: threading.Event | None = None) -> set[int]:
    """Stop what is left of a run's attempts (SIGTERM, SIGKILL after a grace period or
    at once when ``hurry`` is set), remove its cgroups, reap; return the pids stopped."""
    hurried = hurry is not None and hurry.is_set()
    stopped = _stop_all(lambda: _attempt_processes(run_id), 0.0 if hurried else RUN_END_GRACE)
    remove_run_cgroups(run_id)
    if _subreaper_runs:
        reap_orphans()
    return stopped


def remove_run_cgroups(run_id: str) -> None:
    """Remove a run's cgroups, with SIGKILL for anything still in them."""
    tree = hierarchy(writable=False)
    if tree is None:
        return
    for directory in tree.run_directories(run_id):
        _stop_all(lambda directory=directory: cgroup_processes(directory), 0.0)
        remove_cgroup(directory)


def _attempt_processes(run_id: str) -> set[int]:
    """``run_processes`` without the command sink's (it has the run's id, no attempt)."""
    attempt_marker = b"ORCHESTRA_ATTEMPT="
    found = set()
    for pid in run_processes(run_id):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:
            continue
        if f"ORCHESTRA_RUN_ID={run_id}".encode() not in variables or any(
            variable.startswith(attempt_marker) for variable in variables
        ):
            found.add(pid)
    return found


def _stop_all(find, grace: float) -> set[int]:
    """SIGTERM what ``find()`` returns, again for what appears, SIGKILL after ``grace``."""
    stopped: set[int] = set()
    deadline = time.monotonic() + grace
    signum = signal.SIGTERM if grace > 0 else signal.SIGKILL
    kill_until = None
    while True:
        left = find()
        if not left:
            return stopped
        # SIGTERM once each, SIGKILL as often as needed (a process may fork meanwhile)
        signal_each(left - stopped if signum == signal.SIGTERM else left, signum)
        stopped |= left
        now = time.monotonic()
        if signum == signal.SIGTERM and now >= deadline:
            signum = signal.SIGKILL
            continue
        if signum == signal.SIGKILL:
            kill_until = kill_until or now + 5.0
            if now >= kill_until:  # uninterruptible: nothing more to do
                return stopped
        time.sleep(0.05)
