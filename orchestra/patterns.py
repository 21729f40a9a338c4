"""Regular expressions compiled when first used, not when their module is imported.

Compiling one takes 0.05 to 0.5 ms. Every command imports the modules that hold about
twenty that it mostly never uses (the JSON loaders' and their format sniffing, a failed
attempt's fingerprint, the command sink's templates, the search for secrets written in
a command line, sizes and durations written as text): compiled at import, they were
1.7 ms of the start of every command, a 1-task ``orchestra run`` included (measured
pattern by pattern). A pattern used on every start, or in a loop that runs per task,
is compiled at import as usual.
"""

from __future__ import annotations

import re
from typing import AnyStr, Generic


class LazyPattern(Generic[AnyStr]):
    """``re.compile(pattern, flags)``, made at the first call and kept."""

    __slots__ = ("_compiled", "_flags", "_pattern")

    def __init__(self, pattern: AnyStr, flags: int = 0) -> None:
        self._pattern: AnyStr = pattern
        self._flags = flags
        self._compiled: re.Pattern[AnyStr] | None = None

    def __call__(self) -> re.Pattern[AnyStr]:
        compiled = self._compiled
        if compiled is None:  # two threads may both compile it: the same pattern either way
            compiled = self._compiled = re.compile(self._pattern, self._flags)
        return compiled
