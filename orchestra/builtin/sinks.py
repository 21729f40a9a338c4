"""Built-in event sink ``console``: one plain line per state change of a run."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from orchestra.markers import hookimpl


def describe_event(event: Mapping[str, Any]) -> str | None:
    """Return the line a person reads for ``event``, or None for events not worth a line.

    Plain text, no control characters: the line is the same on a terminal and in a file.
    """
    kind = event.get("type", "")
    payload = event.get("payload") or {}
    clock = time.strftime("%H:%M:%S", time.localtime(event.get("at", time.time())))
    if kind.startswith("run."):
        detail = payload.get("reason") or payload.get("summary") or ""
        return f"{clock}  run {event.get('run')}  {kind[4:]}{'  ' + detail if detail else ''}"
    if kind.startswith("step."):
        parts = [clock, f"{event.get('task')}", kind[5:]]
        if payload.get("tool"):
            parts.append(f"with {payload['tool']}")
        if payload.get("attempt"):
            parts.append(f"(attempt {payload['attempt']})")
        if payload.get("reason"):
            parts.append(f"— {payload['reason']}")
        return "  ".join(parts)
    return None


class ConsoleSink:
    """Prints one line per run and step state change to stdout."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def emit(self, event: Mapping[str, Any]) -> None:
        line = describe_event(event)
        if line is not None:
            stream = self._stream or sys.stdout
            stream.write(line.replace("\r", " ").replace("\x1b", " ") + "\n")
            stream.flush()

    def close(self) -> None:
        (self._stream or sys.stdout).flush()


@hookimpl
def orchestra_register_sinks(register) -> None:
    register(ConsoleSink())
