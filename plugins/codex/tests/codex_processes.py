"""The live processes of a codex home, for tests that check no codex outlived its attempt."""

from __future__ import annotations

import os
from pathlib import Path


def processes_with_home(home: Path) -> list[int]:
    """Return the pids of live processes whose environment has CODEX_HOME=home."""
    wanted = f"CODEX_HOME={home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if wanted in environ and state != b"Z":
            found.append(int(entry))
    return found
