"""The event sink ``jsonl``: a run's events appended to a file, one JSON object a line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestra.builtin.sinks.options import SinkOptions
from orchestra.models import SinkContext


class JsonlSink:
    """Appends each event to a file as one JSON object per line, flushed at once."""

    name = "jsonl"

    def __init__(self) -> None:
        self._file: Any = None
        self._seq = 0
        self.path: Path | None = None

    def open(self, context: SinkContext) -> None:
        """Open (and create) the file, counting the lines a resumed run left in it."""
        self.close()
        options = SinkOptions(self.name, context.options, ("path",))
        default = str(Path(context.state_dir) / "runs" / "{run}" / "events.jsonl")
        path = Path(options.text("path", "a file name", default).replace("{run}", context.run_id))
        self.path = path if path.is_absolute() else Path(context.project_root) / path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+b", buffering=0)  # held until close()
        self._seq = 0
        self._file.seek(0)
        last = b"\n"
        for block in iter(lambda: self._file.read(1 << 16), b""):
            self._seq += block.count(b"\n")
            last = block[-1:]
        if last != b"\n":  # a line cut short by a crash: end it, so the next one is whole
            self._write(b"\n")
            self._seq += 1

    def emit(self, event: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        self._seq += 1
        line = json.dumps({"seq": self._seq, **event}, default=str, ensure_ascii=False)
        self._write(line.encode() + b"\n")

    def _write(self, data: bytes) -> None:
        # one write of the whole line to an O_APPEND file: `tail -f` never sees half of it
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
