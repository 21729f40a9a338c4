"""The run's event sinks: opened before the first event, handed every event, closed at
the end.

The run loop records each event in the store and hands it here; every sink of the
``sinks`` setting gets it as a dict (``run``, ``type``, ``task``, ``at``, ``payload``).
A sink whose ``open`` or ``emit`` raises is dropped for the rest of the run, and the
event ``sink.disabled`` records why and tells the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestra.engine.messages import EventPosted
from orchestra.models import SinkContext

if TYPE_CHECKING:
    from orchestra.engine.messages import Inbox
    from orchestra.plugin.host import PluginHost
    from orchestra.store.lifecycle import StepState

#: events written only to the database, never handed to the sinks (an attempt's end is
#: told by its step's next state)
DATABASE_ONLY = frozenset({"run.created", "run.claimed", "attempt.started", "attempt.finished"})


class SinkFanout:
    """Hands a run's events to its sinks, dropping a sink that raises."""

    def __init__(
        self,
        sinks: Sequence[Any],
        *,
        store: Any,
        run_id: str,
        host: PluginHost,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.store = store
        #: masks secrets in what a sink's error says
        self.redact = redact
        self.run_id = run_id
        self.host = host
        #: every sink the run was given (each is closed at the end) and those still told
        self._given = tuple(sinks)
        self.sinks = list(sinks)
        #: whether a sink shows each running task's last line (a live view)
        self.wants_output = any(getattr(sink, "wants_output", False) for sink in self.sinks)

    def __bool__(self) -> bool:
        """Whether any sink is still told: else the loop need not build events."""
        return bool(self.sinks)

    def open(self, context_for: Callable[[str], SinkContext]) -> None:
        """Give each sink that wants it its options and a way to warn (``context_for``
        its name), before any event."""
        for sink in list(self.sinks):
            opener = getattr(sink, "open", None)
            if opener is None:
                continue
            try:
                opener(context_for(getattr(sink, "name", "?")))
            except Exception as error:
                self._disable(sink, error)

    def emit(
        self,
        kind: str,
        task_id: str | None,
        payload: Mapping[str, Any] | None,
        at: float | None = None,
    ) -> None:
        """Hand one event to every sink (``at`` is now unless given)."""
        if not self.sinks:
            return
        event: dict[str, Any] = {"run": self.run_id, "type": kind, "task": task_id}
        event["at"] = time.time() if at is None else at
        event["payload"] = dict(payload or {})
        for sink in list(self.sinks):
            try:
                sink.emit(event)
            except Exception as error:  # a sink's bug must not stop the run
                self._disable(sink, error)

    def emit_recorded(self, after_seq: int) -> None:
        """Hand the sinks the events recorded after ``after_seq`` before the run loop began
        (what resume did), in their order and with their time; those the sinks never
        get (``DATABASE_ONLY``) stay in the database."""
        if not self.sinks:
            return
        for event in self.store.events(self.run_id, after_seq=after_seq):
            if event.type not in DATABASE_ONLY:
                self.emit(event.type, event.task_id, event.payload, at=event.at)

    def close(self) -> None:
        """Close every sink the run was given, dropped ones too. A sink that fails to
        close must not hide the run's outcome: its error is let go."""
        for sink in self._given:
            try:
                sink.close()
            except Exception:
                pass

    def _disable(self, sink: Any, error: BaseException) -> None:
        """Drop a sink that raised for the rest of the run, saying which plugin it is."""
        if sink in self.sinks:
            self.sinks.remove(sink)
        name = getattr(sink, "name", "?")
        registered = self.host.sinks()
        plugin = registered.registration(name).plugin if name in registered else None
        said = self.redact(f"{type(error).__name__}: {error}")
        payload = {"sink": name, "plugin": plugin, "error": said}
        self.store.add_event(self.run_id, "sink.disabled", payload)
        self.emit("sink.disabled", None, payload)  # the other sinks (the console) say so


def sink_context(
    name: str,
    *,
    run_id: str,
    options: Mapping[str, Mapping[str, Any]],
    project_root: str,
    state_dir: str,
    inbox: Inbox,
    steps: Mapping[str, StepState],
    parallel: int,
    last_lines: Mapping[str, str],
    redact: Callable[[str], str] = str,
) -> SinkContext:
    """What sink ``name`` is handed when it opens: its ``[sink.NAME]`` options, a way to
    warn (an event of the run, through the loop's inbox, with ``redact`` masking the
    secrets a warning may quote), where the run stands."""
    return SinkContext(
        run_id=run_id,
        options=dict(options.get(name, {})),
        project_root=project_root,
        state_dir=state_dir,
        warn=lambda message: inbox.put(
            EventPosted("sink.warning", {"sink": name, "message": redact(message)})
        ),
        steps={task_id: state.value for task_id, state in steps.items()},
        parallel=parallel,
        last_line=last_lines.get,
    )
