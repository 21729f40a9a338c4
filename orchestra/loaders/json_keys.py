"""The top-level keys of a JSON file, read only as far as a question about them needs.

A format's sniff sees a file's first 4 KiB, but a JSON object may hold its telling keys
anywhere: after a long description, or a list of bundles whose first is large. This
reads the keys of the top-level object (or of each object of a top-level list) as a
stream of tokens, chunk by chunk, and stops as soon as the caller has its answer, so a
file is read whole only when the answer is in its last bytes or nowhere.

It is a scanner, not a parser: strings are skipped whole and ``/* … */`` and ``//``
comments are left out, and what is not JSON (a template's bare ``{['a.py']}``, a file cut
short) only ends the scan, with the keys seen so far.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from orchestra.patterns import LazyPattern

#: how much of a file the scan reads at first; then as much again as it holds, so that a
#: long string read again from its start costs no more than twice its length
CHUNK = 64 * 1024
#: the next byte that matters outside a string, where keys are read
_SPECIAL = LazyPattern(rb'["{}\[\],:/]')
#: what a value nested below the keys holds up to its next bracket or comment: text and
#: whole strings, skipped in one step
#: (loops unrolled, so that a string the buffer ends in fails in linear time)
_NESTED = LazyPattern(rb'[^"{}\[\]/]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^"{}\[\]/]*)*', re.DOTALL)
#: the rest of a string, from just after its opening quote
_STRING_REST = LazyPattern(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
#: what follows a key up to the first byte of its value's first item, when a list
_LIST_START = LazyPattern(rb"\s*:\s*\[\s*(.)", re.DOTALL)


def top_level_keys(
    path: Path, head: bytes, wanted: Callable[[str, bytes], bool], *, whole: bool
) -> bool:
    """Return whether ``wanted(key, first)`` is true for some key of the top-level object
    of ``path`` (or of an object in its top-level list), reading no further than needed.

    ``first`` is the first byte of the key's value's first item when the value is a
    list (``b'"'`` for a list of strings, ``b'{'`` for a list of objects), else ``b""``.
    ``head`` is the file's first bytes; when ``whole`` is false there are more, and the
    scan reads them from ``path`` (an unreadable file ends the scan)."""
    try:
        with contextlib.ExitStack() as stack:
            if whole:
                scan = _Scan(io.BytesIO(head))
            else:  # read afresh from the start: the head may have lost a byte order mark
                stream = stack.enter_context(path.open("rb"))
                if stream.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
                    stream.seek(0)
                scan = _Scan(stream)
            return scan.run(wanted)
    except OSError:
        return False


class _Scan:
    """A cursor over a file: the bytes read and not yet scanned, and whether more may come."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buffer = b""
        self.position = 0
        self.ended = False

    def more(self) -> bool:
        """Read on (as much again as is held, at least ``CHUNK``); False at the end."""
        if self.ended:
            return False
        kept = self.buffer[self.position :]
        chunk = self.stream.read(max(CHUNK, len(kept)))
        if not chunk:
            self.ended = True
            return False
        self.buffer = kept + chunk
        self.position = 0
        return True

    def run(self, wanted: Callable[[str, bytes], bool]) -> bool:
        # each open container, and whether the next string in an object is a key
        containers: list[bytes] = []
        expect_key = False
        nested, special = _NESTED(), _SPECIAL()
        while True:
            depth = len(containers)
            keys_here = depth == 1 or (depth == 2 and containers[0] == b"[")
            if depth > 1 and not (keys_here and containers[-1] == b"{"):
                skipped = nested.match(self.buffer, self.position)
                self.position = skipped.end() if skipped is not None else self.position
                at_end = self.position == len(self.buffer)
                if (at_end or self.buffer[self.position] == ord('"')) and not self.ended:
                    if not self.more():
                        return False
                    continue
            found = special.search(self.buffer, self.position)
            if found is None:
                self.position = len(self.buffer)
                if not self.more():
                    return False
                continue
            mark = found.group()
            self.position = found.end()
            if mark == b'"':
                text = self._string()
                if text is None:
                    return False
                if expect_key and containers[-1] == b"{" and keys_here:
                    if wanted(text.decode("utf-8", "replace"), self._first_item()):
                        return True
                expect_key = False
            elif mark in (b"{", b"["):
                containers.append(mark)
                expect_key = mark == b"{"
            elif mark in (b"}", b"]"):
                if not containers:
                    return False
                containers.pop()
                if not containers:
                    return False  # the top-level value ended: nothing after it counts
                expect_key = False
            elif mark == b",":
                expect_key = bool(containers) and containers[-1] == b"{"
            elif mark == b"/":
                if not self._comment():
                    return False

    def _string(self) -> bytes | None:
        """Skip the string starting here; return its text (None: the file ends in it)."""
        while True:
            rest = _STRING_REST().match(self.buffer, self.position)
            if rest is not None:
                self.position = rest.end()
                return rest.group()[:-1]
            if not self.more():
                return None

    def _first_item(self) -> bytes:
        """The first byte of the list that is the value of the key just read, else b""."""
        while len(self.buffer) - self.position < 256 and self.more():
            pass
        after = _LIST_START().match(self.buffer, self.position)
        return after.group(1) if after is not None else b""

    def _comment(self) -> bool:
        """Skip a comment starting at the ``/`` just read; False when the file ends in one."""
        while len(self.buffer) - self.position < 1 and self.more():
            pass
        kind = self.buffer[self.position : self.position + 1]
        end = b"*/" if kind == b"*" else b"\n" if kind == b"/" else None
        if end is None:
            return True  # a lone slash: not JSON, and not ours to judge
        while True:
            at = self.buffer.find(end, self.position + 1)
            if at >= 0:
                self.position = at + len(end)
                return True
            if not self.more():
                return False
