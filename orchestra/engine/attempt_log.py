"""An attempt's log file: made at its first output, capped at ``log_limit`` (its start and
its end kept), with the ``$ command`` line before each process and orchestra's own notes.

What goes into it is redacted before it arrives here (``process.py`` and ``context.py``
redact the output and the notes); the ``$ command`` line is redacted by ``command_note``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from typing import BinaryIO

from orchestra.secrets import Redactor, mask_arguments
from orchestra.sizes import format_size

#: how much output an attempt's log keeps (the ``log_limit`` setting's default)
DEFAULT_LOG_LIMIT = 10_000_000
#: past the limit, each process's last bytes are kept: this share of the limit, at most 1 MB
_TAIL_SHARE = 10
_TAIL_MAX = 1_000_000


class AttemptLog:
    """An attempt's log file, made only once there is something to put in it.

    A command that prints nothing leaves no file (``orchestra logs`` says so): creating
    a file per attempt is most of what a run of thousands of quick commands costs the
    file system. The ``$ command`` lines (``note``) wait for the first output, and are
    only formatted then; once the file exists they are written at once. Writes append,
    so several runs of an attempt (the tool, then its checks) read as one story.

    The processes' ``output`` is capped at ``limit`` bytes (None: no cap): past
    ``limit`` less a tail, a process's output is held back, and only its last part (a
    tenth of the limit, at most 1 MB) is written at its end (``end_output``), after a
    line saying how much was left out. The start shows what ran, the end how it ended;
    orchestra's own lines are always written.
    """

    def __init__(self, path: str | os.PathLike[str], limit: int | None = None) -> None:
        self.path = os.fspath(path)
        self.limit = limit
        self._file: BinaryIO | None = None
        self._created = False  # by this object: a file already there is appended to
        self._pending: list[bytes | Callable[[], bytes]] = []
        #: how much of a process's output is kept past the room: its last bytes
        self._tail_size = 0 if limit is None else _tail_size(limit)
        #: output bytes that may still be written as they come
        self._room = None if limit is None else limit - self._tail_size
        self._tail: bytearray | None = None  # the end of the output past the room
        self._left_out = 0
        self._mid_line = False  # the output written last ended inside a line
        self._tail_at_line = False

    def note(self, data: bytes | Callable[[], bytes]) -> None:
        """Write ``data`` (or what it returns, when it is a function) if the file exists,
        else keep it for the first real write."""
        if self._created:
            self.write(data if isinstance(data, bytes) else data())
        else:
            self._pending.append(data)

    def write(self, data: bytes) -> None:
        """Append ``data`` (after any notes kept so far), making the file if needed."""
        if self._file is None:
            self._file = _open_log(self.path)
            self._created = True
            if self._pending:
                notes = [note if isinstance(note, bytes) else note() for note in self._pending]
                self._file.write(b"".join(notes))
                self._pending.clear()
        self._file.write(data)

    def output(self, data: bytes) -> None:
        """Append a process's output, or keep its end for ``end_output`` once the log is full."""
        if self._room is None or (self._tail is None and len(data) <= self._room):
            if self._room is not None:
                self._room -= len(data)
                self._mid_line = not data.endswith(b"\n")
            self.write(data)
            return
        if self._tail is None:  # the first output past the room: write what fits
            head = data[: self._room]
            line_end = head.rfind(b"\n") + 1
            head = head[:line_end] if line_end else head
            if head:
                self.write(head)
                self._mid_line = not head.endswith(b"\n")
            self._room -= len(head)
            data = data[len(head) :]
            self._tail = bytearray()
        self._tail += data
        extra = len(self._tail) - self._tail_size
        if extra > 0:
            self._tail_at_line = self._tail[extra - 1] == 0x0A  # what is kept starts a line
            del self._tail[:extra]
            self._left_out += extra

    def end_output(self) -> None:
        """At a process's end: the line saying what was left out, then the output's end."""
        if self._tail is None:
            return
        tail, self._tail = bytes(self._tail), None
        if self._left_out and not self._tail_at_line:  # start at a line, unless that loses most
            line_start = tail.find(b"\n") + 1
            if 0 < line_start <= len(tail) // 2:
                self._left_out += line_start
                tail = tail[line_start:]
        left_out, self._left_out = self._left_out, 0
        if left_out:
            assert self.limit is not None  # output is held back only under a limit
            self.write(
                f"{chr(10) if self._mid_line else ''}orchestra: the log reached its limit"
                f" (log_limit {format_size(self.limit)}): {left_out:,} bytes of output left out"
                " here\n".encode()
            )
        if tail:
            self.write(tail if tail.endswith(b"\n") or not left_out else tail + b"\n")

    def flush(self) -> None:
        """Hand what was written to the file system (a reader sees it at once)."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the file (a later write opens it again, to append)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _tail_size(limit: int) -> int:
    """How much of a process's output past the limit is kept: its last bytes."""
    return min(limit // _TAIL_SHARE, _TAIL_MAX)


def _open_log(log_path: str) -> BinaryIO:
    """Open the log to append to, making its directory only when it is missing."""
    try:
        return open(log_path, "ab")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        return open(log_path, "ab")


def command_note(argv: Sequence[str], redactor: Redactor) -> bytes:
    """Return the log's ``$ command`` line: redacted before quoting, which could split a
    secret holding a quote or a space; secrets written in it (``--password …``) masked."""
    command = command_line(mask_arguments([redactor.redact(argument) for argument in argv]))
    return f"$ {command}\n".encode(errors="replace")


def command_line(argv: Sequence[str]) -> str:
    """Return ``argv`` as one line to paste into a shell (``$'a\\nb'`` for a newline)."""
    return " ".join(map(_quote, argv))


def _quote(argument: str) -> str:
    if not any(character in argument for character in "\n\r\t"):
        return shlex.quote(argument)
    for character, escape in _ESCAPES:
        argument = argument.replace(character, escape)
    return f"$'{argument}'"


_ESCAPES = (("\\", "\\\\"), ("'", "\\'"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
