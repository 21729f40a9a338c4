"""Built-in routing strategies: ``fixed``, ``round_robin`` and ``auto``."""

from __future__ import annotations

from collections.abc import Sequence

from orchestra.markers import hookimpl
from orchestra.models import Task
from orchestra.protocols import RoutingChoice, RoutingContext, ToolAdapter


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
    """Rotates over the candidates: the one with the fewest recorded attempts goes next."""

    name = "round_robin"

    def choose(
        self, task: Task, candidates: Sequence[ToolAdapter], context: RoutingContext
    ) -> RoutingChoice:
        def attempts(adapter: ToolAdapter) -> int:
            return context.stats(adapter.name).attempts

        chosen = min(candidates, key=attempts)
        return RoutingChoice(
            chosen.name, f"round_robin: {chosen.name} has had the fewest turns ({attempts(chosen)})"
        )


class Auto:
    """Scores candidates by smoothed success rate on similar tasks; untried tools get tried."""

    name = "auto"

    def choose(
        self, task: Task, candidates: Sequence[ToolAdapter], context: RoutingContext
    ) -> RoutingChoice:
        history = context.history
        untried = [adapter for adapter in candidates if not history.get(adapter.name)]
        if untried:
            return RoutingChoice(untried[0].name, f"auto: {untried[0].name} has no record yet")

        def score(adapter: ToolAdapter) -> tuple[float, float]:
            stats = history[adapter.name]
            rate = (stats.successes + 1) / (stats.attempts + 2)  # Laplace smoothing
            return rate, -(stats.mean_duration or 0.0)

        ranked = sorted(candidates, key=score, reverse=True)
        summary = ", ".join(
            f"{a.name} {history[a.name].successes}/{history[a.name].attempts}" for a in ranked
        )
        return RoutingChoice(ranked[0].name, f"auto: {summary}")


@hookimpl
def orchestra_register_routers(register) -> None:
    register(Fixed())
    register(RoundRobin())
    register(Auto())
