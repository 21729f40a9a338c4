"""The built-in plugin ``sinks``: where a run's events go.

``console`` prints them for people (docs/watching.md); ``jsonl`` appends them to a file,
``webhook`` posts them to a URL and ``command`` hands them to a program (docs/sinks.md).

``emit`` runs on the run loop's thread, so none of them waits there: ``console`` and
``jsonl`` write one line, and the other two put the event in a bounded queue that a
thread of their own works through. What goes wrong on that thread becomes a
``sink.warning`` event of the run, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestra.builtin.sinks.command import CommandSink
from orchestra.builtin.sinks.console import ConsoleSink
from orchestra.builtin.sinks.jsonl import JsonlSink
from orchestra.builtin.sinks.webhook import WebhookSink
from orchestra.plugin.markers import hookimpl


@hookimpl
def orchestra_register_sinks(register: Callable[[Any], None]) -> None:
    register(ConsoleSink())
    register(JsonlSink())
    register(WebhookSink())
    register(CommandSink())
