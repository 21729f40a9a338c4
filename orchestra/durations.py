"""Durations as people write them in workstream files: "90s", "10m", "1h30m", "250ms"."""

from __future__ import annotations

import math

from orchestra.patterns import LazyPattern

_PART = LazyPattern(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")  # ASCII digits only
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Return the number of seconds ``text`` ("90s", "10m", "1h30m") stands for.

    Raises ValueError with a message a person can act on.
    """
    compact = text.strip().replace(" ", "")
    position = 0
    total = 0.0
    for match in _PART().finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not compact or position != len(compact) or not math.isfinite(total):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit, such as '90s', '10m', '1h30m'"
        )
    return total


def format_duration(seconds: float) -> str:
    """Return ``seconds`` written the way parse_duration reads it ("1h30m", "90s")."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"


def clock(seconds: float | None) -> str:
    """``1:02:03``, ``2:03`` or ``5s``: as the live view and the end-of-run report show it."""
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    if minutes:
        return f"{minutes}:{secs:02d}"
    return f"{secs}s"
