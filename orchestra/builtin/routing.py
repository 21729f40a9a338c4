"""Built-in routing strategies: ``fixed``, ``round_robin`` and ``auto``."""

from __future__ import annotations

from collections.abc import Sequence

from orchestra.models import Task
from orchestra.plugin.markers import hookimpl
from orchestra.plugin.protocols import RoutingChoice, RoutingContext, ToolAdapter


class Fixed:
    """The pinned tool, or the first allowed candidate in the task's order."""

    name = "fixed"

    def choose(
        self, task: Task, candidates: Sequence[ToolAdapter], context: RoutingContext
    ) -> RoutingChoice:
        if task.tool is not None:
            return RoutingChoice(task.tool, f"fixed: task pins {task.tool}")
        order = list(task.tools or ())
        ranked = sorted(
            candidates, key=lambda a: order.index(a.name) if a.name in order else len(order)
        )
        return RoutingChoice(ranked[0].name, f"fixed: first allowed candidate {ranked[0].name}")


class RoundRobin:
    """Rotates over the candidates, in the order the task allows them; where it stands is
    remembered (in the run database), so the rotation continues in the next run."""

    name = "round_robin"

    def choose(
        self, task: Task, candidates: Sequence[ToolAdapter], context: RoutingContext
    ) -> RoutingChoice:
        names = [adapter.name for adapter in candidates]
        key = "round_robin:" + ",".join(sorted(names))
        last = context.memory.recall(key)
        chosen = names[(names.index(last) + 1) % len(names)] if last in names else names[0]
        context.memory.remember(key, chosen)
        after = f" after {last}" if last in names else ""
        return RoutingChoice(chosen, f"round_robin: {chosen}'s turn{after}")


class Auto:
    """Scores candidates from their track record on tasks with the same capabilities:
    smoothed success rate first, then recent duration, then current load. A tool with
    no record yet is tried first."""

    name = "auto"

    def choose(
        self, task: Task, candidates: Sequence[ToolAdapter], context: RoutingContext
    ) -> RoutingChoice:
        untried = [adapter for adapter in candidates if not context.stats(adapter.name).attempts]
        if untried:
            return RoutingChoice(untried[0].name, f"auto: {untried[0].name} has no record yet")

        def score(adapter: ToolAdapter) -> tuple[float, float, int]:
            stats = context.stats(adapter.name)
            rate = (stats.successes + 1) / (stats.attempts + 2)  # Laplace smoothing
            return -round(rate, 2), stats.mean_duration or 0.0, stats.running

        ranked = sorted(candidates, key=score)
        summary = ", ".join(
            f"{a.name} {context.stats(a.name).successes}/{context.stats(a.name).attempts}"
            for a in ranked
        )
        return RoutingChoice(ranked[0].name, f"auto: {summary}")


@hookimpl
def orchestra_register_routers(register) -> None:
    register(Fixed())
    register(RoundRobin())
    register(Auto())
