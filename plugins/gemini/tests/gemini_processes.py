"""The live processes started for a fake Gemini API, for tests that check no gemini outlived
its attempt."""

from __future__ import annotations

from pathlib import Path


def processes_for(base_url: str) -> list[int]:
    """Return the pids of live processes with GOOGLE_GEMINI_BASE_URL=base_url in their
    environment (each fake server has a port of its own)."""
    wanted = f"GOOGLE_GEMINI_BASE_URL={base_url}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if wanted in environ and state != b"Z":
            found.append(int(entry.name))
    return found
