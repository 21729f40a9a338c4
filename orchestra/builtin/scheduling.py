"""Built-in scheduling strategies: ``eager`` and ``critical_path``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestra import graph
from orchestra.markers import hookimpl
from orchestra.models import Task


class Eager:
    """Start ready tasks as soon as a slot is free: higher priority first, then file order."""

    name = "eager"

    def order(self, ready: Sequence[Task], dependencies: Mapping[str, Sequence[str]]) -> list[Task]:
        return sorted(ready, key=lambda task: -task.priority)


class CriticalPath:
    """Start the task with the longest chain of dependents first, so the run ends sooner."""

    name = "critical_path"

    def __init__(self) -> None:
        self._lengths: dict[str, float] = {}
        self._graph_id: int | None = None

    def order(self, ready: Sequence[Task], dependencies: Mapping[str, Sequence[str]]) -> list[Task]:
        if self._graph_id != id(dependencies):
            self._lengths = graph.remaining_path_lengths(dependencies)
            self._graph_id = id(dependencies)
        return sorted(ready, key=lambda task: (-self._lengths.get(task.id, 0.0), -task.priority))


@hookimpl
def orchestra_register_schedulers(register) -> None:
    register(Eager())
    register(CriticalPath())
