"""One orchestrator per run: an exclusive ``flock`` on a lock file per run.

The kernel drops an ``flock`` when the last descriptor of its open file goes away, so a
process that dies, however it dies, releases its runs. The descriptor is not inheritable
(PEP 446): a tool process still running after orchestra was killed does not keep the
run locked. A run found ``running`` whose lock is free was therefore left by a dead
process (see ``Store.mark_interrupted_if_orphaned``).

Lock files live in a ``locks`` directory next to the database and are never deleted:
deleting a file that another process may be about to lock would let two processes hold
"the" lock on two different files. ``flock`` is reliable on local filesystems; keep the
database off network filesystems.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from orchestra import classes
from orchestra.store.errors import RunLocked

#: how long a claim retries when the lock is held, in seconds: long enough to outlast
#: an ``is_locked`` probe (which holds the lock for microseconds), short enough not to
#: be noticed when another orchestrator really holds it
CLAIM_PATIENCE = 0.05


def lock_path(directory: str | os.PathLike, run_id: str) -> Path:
    """Return the lock file of ``run_id`` in ``directory``."""
    return Path(directory) / f"{run_id}.lock"


@classes.define
class RunLock:
    """A held lock on one run; ``release()`` (or the process's death) lets it go."""

    run_id: str
    path: Path
    fd: int | None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        """Let the lock go; does nothing when it was released already."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # closing the only descriptor drops the flock


def acquire(directory: str | os.PathLike, run_id: str) -> RunLock:
    """Return the lock of ``run_id``, held; raise RunLocked if another process holds it.

    After locking, the file is rewritten with ``pid host`` so that a process refused the
    lock can say who holds it.
    """
    path = lock_path(directory, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + CLAIM_PATIENCE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
            if time.monotonic() >= deadline:
                holder = _holder(fd)
                os.close(fd)
                raise RunLocked(f"run {run_id} is being driven by {holder}") from None
            time.sleep(0.005)
    this_process = f"{os.getpid()} {os.uname().nodename}\n".encode()
    os.pwrite(fd, this_process, 0)  # written before truncating: a reader never sees it empty
    os.ftruncate(fd, len(this_process))
    return RunLock(run_id=run_id, path=path, fd=fd)


def is_locked(directory: str | os.PathLike, run_id: str) -> bool:
    """Return whether some process (this one included) holds the lock of ``run_id``.

    The probe takes a shared lock for an instant; two probes do not disturb each other,
    and ``acquire`` waits out a probe (CLAIM_PATIENCE).
    """
    try:
        fd = os.open(lock_path(directory, run_id), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False


def _holder(fd: int) -> str:
    """Return "pid N on host H" as written by the holder, or a vaguer description."""
    try:
        pid, host = os.pread(fd, 512, 0).decode().split()
    except (OSError, UnicodeDecodeError, ValueError):
        return "another orchestra process"
    return f"pid {pid} on host {host}"
