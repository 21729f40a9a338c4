"""Sizes as people write them in settings: "10MB", "512KiB", "2GB", or a number of bytes."""

from __future__ import annotations

import re

from orchestra.patterns import LazyPattern

_SIZE = LazyPattern(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_UNIT_BYTES = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(text: str | int) -> int:
    """Return the number of bytes ``text`` ("10MB", "512KiB", "1000") stands for.

    Raises ValueError with a message a person can act on.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = _SIZE().fullmatch(str(text).strip())
        if match is None:
            raise ValueError(
                f"{text!r} is not a size; write a number of bytes, or a number and a unit"
                " such as '10MB' or '512KiB'"
            )
        value = int(float(match.group(1)) * _UNIT_BYTES[(match.group(2) or "").lower()])
    if value < 1:
        raise ValueError("must be at least 1 byte")
    return value


def format_size(size: int) -> str:
    """Return ``size`` bytes as a person reads it: "10MB", "1.5kB", "512B"."""
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= factor:
            return f"{size / factor:.4g}{unit}"
    return f"{size}B"
