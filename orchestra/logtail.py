"""Reading an attempt's log from its end: the last lines, never more than a bounded part
of the file, nor of a line, whatever their size (``show``, ``logs --tail``, ``report``)."""

from __future__ import annotations

import os

#: how much of a file's end is read at a time, looking for line ends
BLOCK = 64 * 1024
#: the most of a file's end read to find the lines asked for
MAX_BYTES = 4 * 1024 * 1024
#: a line longer than this many characters keeps only its end, after "…"
LINE_WIDTH = 2000


def tail_start(path: str | os.PathLike, lines: int, max_bytes: int = MAX_BYTES) -> int:
    """Return the offset where the last ``lines`` lines of a file begin, looking at no
    more than its last ``max_bytes`` bytes (the offset is then inside a line)."""
    with open(path, "rb") as log:
        end = log.seek(0, os.SEEK_END)
        position, newlines = end, 0
        if end and _byte_at(log, end - 1) == b"\n":
            position -= 1  # the file's last line end does not start a line after it
        floor = max(0, end - max_bytes)
        while position > floor:
            start = max(floor, position - BLOCK)
            log.seek(start)
            block = log.read(position - start)
            index = len(block)
            while True:
                index = block.rfind(b"\n", 0, index)
                if index < 0:
                    break
                newlines += 1
                if newlines == lines:
                    return start + index + 1
            position = start
        return floor


def _byte_at(log, offset: int) -> bytes:
    log.seek(offset)
    return log.read(1)


def tail_lines(
    path: str | os.PathLike | None,
    lines: int,
    *,
    max_bytes: int = BLOCK,
    width: int = LINE_WIDTH,
) -> tuple[str, ...]:
    """The last ``lines`` lines of a log file, read from at most its last ``max_bytes``
    bytes; a line longer than ``width`` characters keeps its end, after "…". () when
    there is no such file."""
    if not path or not os.path.isfile(path):
        return ()
    try:
        start = tail_start(path, lines, max_bytes)
        with open(path, "rb") as log:
            inside_a_line = start > 0 and _byte_at(log, start - 1) != b"\n"
            log.seek(start)
            text = log.read(max_bytes).decode(errors="replace")
    except OSError:
        return ()
    found = text.splitlines()
    if inside_a_line and found:
        found[0] = "…" + found[0]  # the part of the file read began inside this line
    return tuple(_clip(line, width) for line in found[-lines:])


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else "…" + line[-(width - 1) :]
