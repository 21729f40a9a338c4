import orchestra

import orchestra_cheapest


class Fake:
    capabilities = frozenset({"prompt"})

    def __init__(self, name):
        self.name = name


def test_cheapest_is_registered(plugin_host, register_plugin):
    # orchestra.testing's fixtures: a plugin host, and plugins registered for one test
    register_plugin(orchestra_cheapest, name="cheapest")
    assert plugin_host.routers().registration("cheapest").plugin == "cheapest"


def test_cheapest_prefers_the_lower_cost():
    profiles = {
        "a": orchestra.ToolProfile(name="a", options={"cost_per_task": 2}),
        "b": orchestra.ToolProfile(name="b", options={"cost_per_task": 1}),
    }
    context = orchestra.RoutingContext(profiles=profiles)
    task = orchestra.Task(id="t", prompt="p")
    choice = orchestra_cheapest.Cheapest().choose(task, [Fake("a"), Fake("b")], context)
    assert choice == orchestra.RoutingChoice("b", "cheapest: b at 1 per task")


def test_a_tool_without_a_cost_loses_and_a_tie_goes_to_the_first():
    profiles = {
        "a": orchestra.ToolProfile(name="a"),
        "b": orchestra.ToolProfile(name="b", options={"cost_per_task": 0.5}),
        "c": orchestra.ToolProfile(name="c", options={"cost_per_task": 0.5}),
    }
    context = orchestra.RoutingContext(profiles=profiles)
    task = orchestra.Task(id="t", prompt="p")
    candidates = [Fake("a"), Fake("b"), Fake("c")]
    choice = orchestra_cheapest.Cheapest().choose(task, candidates, context)
    assert choice == orchestra.RoutingChoice("b", "cheapest: b at 0.5 per task")
    choice = orchestra_cheapest.Cheapest().choose(task, [Fake("a")], orchestra.RoutingContext())
    assert choice == orchestra.RoutingChoice("a", "cheapest: no tool has a cost")
