"""Built-in scheduling strategies: ``eager``, ``critical_path`` and ``waves``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestra import graph
from orchestra.models import Task
from orchestra.plugin.markers import hookimpl
from orchestra.plugin.protocols import SchedulingContext


class _PerGraph:
    """Remembers one value computed from a run's dependency graph (the graph never changes)."""

    def __init__(self) -> None:
        self._graph: Mapping[str, Sequence[str]] | None = None
        self._value: dict = {}

    def get(self, dependencies: Mapping[str, Sequence[str]], compute) -> dict:
        if self._graph is not dependencies:
            self._value = compute(dependencies)
            self._graph = dependencies
        return self._value


class Eager:
    """Start ready tasks as soon as a slot is free: higher priority first, then file order."""

    name = "eager"

    def key(self, task: Task, context: SchedulingContext) -> int:
        return -task.priority

    def order(self, ready: Sequence[Task], context: SchedulingContext) -> list[Task]:
        return sorted(ready, key=lambda task: self.key(task, context))


class CriticalPath:
    """Start the task with the longest chain of dependents first, so the run ends sooner."""

    name = "critical_path"

    def __init__(self) -> None:
        self._lengths = _PerGraph()

    def key(self, task: Task, context: SchedulingContext) -> tuple[float, int]:
        lengths = self._lengths.get(context.dependencies, graph.remaining_path_lengths)
        return (-lengths.get(task.id, 0.0), -task.priority)

    def order(self, ready: Sequence[Task], context: SchedulingContext) -> list[Task]:
        return sorted(ready, key=lambda task: self.key(task, context))


class Waves:
    """Run the graph in batches: a wave starts only when every task of the waves before it
    has finished, the way the system orchestra grew from ran its workstreams."""

    name = "waves"

    def __init__(self) -> None:
        self._wave_of = _PerGraph()

    def order(self, ready: Sequence[Task], context: SchedulingContext) -> list[Task]:
        wave_of = self._wave_of.get(context.dependencies, _wave_numbers)
        unfinished = [wave_of[task] for task in wave_of if task not in context.finished]
        current = min(unfinished, default=0)
        in_wave = [task for task in ready if wave_of.get(task.id, 0) == current]
        return sorted(in_wave, key=lambda task: -task.priority)


def _wave_numbers(dependencies: Mapping[str, Sequence[str]]) -> dict[str, int]:
    return {task: number for number, wave in enumerate(graph.waves(dependencies)) for task in wave}


@hookimpl
def orchestra_register_schedulers(register) -> None:
    register(Eager())
    register(CriticalPath())
    register(Waves())
