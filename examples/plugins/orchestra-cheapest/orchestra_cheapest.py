"""orchestra plugin: the routing strategy "cheapest"."""

from __future__ import annotations

from collections.abc import Sequence

import orchestra

NO_COST = float("inf")


class Cheapest:
    """Picks the candidate with the lowest `cost_per_task` in its [tools.NAME] table."""

    name = "cheapest"

    def choose(
        self,
        task: orchestra.Task,
        candidates: Sequence[orchestra.ToolAdapter],
        context: orchestra.RoutingContext,
    ) -> orchestra.RoutingChoice:
        def cost(adapter: orchestra.ToolAdapter) -> float:
            value = context.profile(adapter.name).options.get("cost_per_task")
            return NO_COST if value is None else float(value)

        chosen = min(candidates, key=cost)  # on a tie, the first candidate
        if cost(chosen) == NO_COST:
            return orchestra.RoutingChoice(chosen.name, "cheapest: no tool has a cost")
        reason = f"cheapest: {chosen.name} at {cost(chosen):g} per task"
        return orchestra.RoutingChoice(chosen.name, reason)


@orchestra.hookimpl
def orchestra_register_routers(register) -> None:
    register(Cheapest())
