"""The merged output of a process, from its pipe into the attempt's log: line by line,
redacted, and each line reported to an ``on_line`` callback.

``process.py``'s watch reads the pipe when ``poll`` says it has data; this class holds
what a read leaves of a line, and keeps draining when the log cannot be written (a full
pipe would stall the child).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestra.engine.attempt_log import AttemptLog
from orchestra.secrets import Redactor

if TYPE_CHECKING:
    import logging

_CHUNK = 64 * 1024
#: a line longer than this is written in pieces rather than held until its newline
_MAX_PENDING = 64 * 1024


class ProcessOutput:
    """Copies the merged output from the pipe to the log, line by line and redacted."""

    def __init__(
        self,
        fd: int,
        log: AttemptLog,
        redactor: Redactor,
        on_line: Callable[[str], None] | None,
        start: float,
    ) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.open = True
        self.last_output = start
        self.failure: OSError | None = None
        self._log = log
        self._redactor = redactor
        self._on_line = on_line
        self._callback_failed = False
        self._pending = b""

    def read(self) -> None:
        """Take one read's worth of output, noting the end of file."""
        try:
            chunk = os.read(self.fd, _CHUNK)
        except BlockingIOError:
            return
        if chunk:
            self._take(chunk)
        else:
            self.open = False

    def finish(self) -> None:
        """Take what is left in the pipe, even if an escaped process still holds it open."""
        while self.open:
            try:
                chunk = os.read(self.fd, _CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._take(chunk)
        self.open = False
        if self._pending:
            self._emit(self._pending)
            self._pending = b""

    def close(self) -> None:
        """Close the pipe's read end."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _take(self, chunk: bytes) -> None:
        self.last_output = time.monotonic()
        data = self._pending + chunk
        end = data.rfind(b"\n") + 1
        if end:
            self._emit(data[:end])
        self._pending = data[end:]
        if len(self._pending) > _MAX_PENDING:
            cut = self._redactor.safe_cut(self._pending)
            self._emit(self._pending[:cut])
            self._pending = self._pending[cut:]

    def _emit(self, data: bytes) -> None:
        """Write whole lines (or a piece of a very long one), redacted, and report them."""
        if not data:
            return
        redacted = self._redactor.redact_bytes(data)
        if self.failure is None:
            try:
                self._log.output(redacted)
                self._log.flush()
            except OSError as exc:  # keep draining, or a full pipe would stall the child
                self.failure = exc
        if self._on_line is not None:
            for line in redacted.removesuffix(b"\n").split(b"\n"):
                self._report(self._on_line, line.removesuffix(b"\r").decode(errors="replace"))

    def _report(self, on_line: Callable[[str], None], line: str) -> None:
        try:
            on_line(line)
        except Exception:
            if not self._callback_failed:
                self._callback_failed = True
                _logger().warning("on_line callback failed; its errors are ignored", exc_info=True)


def _logger() -> logging.Logger:
    """This module's logger; logging is imported only when something goes wrong, as
    importing it costs every command's start a few milliseconds."""
    import logging

    return logging.getLogger(__name__)
