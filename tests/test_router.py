"""Routing: the capability filter with its reasons, and the built-in strategies."""

import pytest

from orchestra.builtin import routing, scheduling, shell
from orchestra.config import Project, resolve_settings
from orchestra.engine.router import route
from orchestra.errors import PluginError
from orchestra.models import Availability, Defaults, Task, ToolProfile, Workstream
from orchestra.planning import make_plan, start_order
from orchestra.plugin.host import PluginHost
from orchestra.plugin.markers import hookimpl
from orchestra.plugin.protocols import Memory, RoutingChoice, SchedulingContext, ToolStats
from orchestra.testing import ScriptedTool, ToolsPlugin


@pytest.fixture
def tools():
    """A host with only the built-ins and three scripted tools, whatever else is installed."""
    host = PluginHost()
    for module in (shell, routing, scheduling):
        host.register(module, name=module.__name__.rsplit(".", 1)[-1])
    host.register(
        ToolsPlugin(
            ScriptedTool(name="alpha", capabilities=frozenset({"prompt", "edit", "python"})),
            ScriptedTool(
                name="beta", capabilities=frozenset({"prompt", "edit", "python", "shell"})
            ),
            ScriptedTool(
                name="gone", availability=Availability(False, reason="gone not found on PATH")
            ),
        ),
        name="ai-tools",
    )
    return host


def decide(host, task, defaults=None, strategy="auto", profiles=None, history=None, **more):
    profiles = profiles or {}
    defaults = defaults or Defaults()
    return route(
        task,
        defaults=defaults,
        strategy_name=strategy,
        tools=host.tools(),
        routers=host.routers(),
        profile=lambda name: profiles.get(name, ToolProfile(name=name)),
        availability=lambda name: host.tools().get(name).available(ToolProfile(name=name)),
        history=None if history is None else (lambda needed, names: history),
        **more,
    )


def test_filter_says_why_each_tool_was_left_out(tools):
    decision = decide(tools, Task(id="t", prompt="x", capabilities=("shell",)))
    assert decision.tool == "beta" and decision.candidates == ("beta",)
    assert decision.rejected == {
        "shell": "lacks capability prompt, shell",
        "alpha": "lacks capability shell",
        "gone": "lacks capability shell",
    }


def test_no_candidate_names_every_filter(tools):
    decision = decide(
        tools,
        Task(id="t", prompt="x", tools=("alpha", "gone", "nosuch")),
        profiles={"alpha": ToolProfile(name="alpha", enabled=False)},
    )
    assert decision.tool is None
    assert decision.reason == (
        "no tool can run this task (shell: not allowed by the task's tool/tools; "
        "alpha: disabled in configuration; beta: not allowed by the task's tool/tools; "
        "gone: not available (gone not found on PATH); nosuch: no installed plugin provides it)"
    )


def test_command_tasks_go_to_shell_and_prompt_tasks_to_ai_tools(tools):
    assert decide(tools, Task(id="c", command=("true",))).tool == "shell"
    assert decide(tools, Task(id="p", prompt="x")).tool in {"alpha", "beta"}


def test_a_pinned_tool_is_fixed_routing(tools):
    decision = decide(tools, Task(id="t", prompt="x", tool="beta"), strategy="auto")
    assert (decision.tool, decision.strategy, decision.reason) == (
        "beta",
        "fixed",
        "fixed: task pins beta",
    )


def test_profile_capabilities_replace_the_adapters(tools):
    profiles = {"alpha": ToolProfile(name="alpha", capabilities=("prompt", "rust"))}
    decision = decide(tools, Task(id="t", prompt="x", capabilities=("rust",)), profiles=profiles)
    assert decision.tool == "alpha"


def test_defaults_allow_tools_and_capabilities(tools):
    defaults = Defaults(tools=("beta",), capabilities=("python",))
    assert decide(tools, Task(id="t", prompt="x"), defaults=defaults).tool == "beta"


def test_fixed_takes_the_first_allowed_in_the_tasks_order(tools):
    decision = decide(tools, Task(id="t", prompt="x", tools=("beta", "alpha")), strategy="fixed")
    assert decision.tool == "beta" and decision.reason == "fixed: first allowed candidate beta"


def test_auto_tries_untried_tools_then_prefers_the_better_record(tools):
    task = Task(id="t", prompt="x", tools=("alpha", "beta"))
    history = {"alpha": ToolStats(attempts=7, successes=4)}
    assert decide(tools, task, history=history).reason == "auto: beta has no record yet"
    history["beta"] = ToolStats(attempts=10, successes=9)
    decision = decide(tools, task, history=history)
    assert decision.tool == "beta" and decision.reason == "auto: beta 9/10, alpha 4/7"


def test_round_robin_rotates_and_remembers_where_it_stands(tools):
    task = Task(id="t", prompt="x", tools=("alpha", "beta"))
    saved = {}
    memory = lambda: Memory(load=saved.get, save=saved.__setitem__)  # noqa: E731

    turns = [decide(tools, task, strategy="round_robin", memory=memory()) for _ in range(3)]

    assert [decision.tool for decision in turns] == ["alpha", "beta", "alpha"]
    assert turns[1].reason == "round_robin: beta's turn after alpha"
    assert saved == {"round_robin:alpha,beta": "alpha"}


def test_an_open_breaker_and_a_tool_to_avoid_leave_the_candidates(tools):
    task = Task(id="t", prompt="x", tools=("alpha", "beta"))
    blocked = {"alpha": "breaker open until 12:00:00 (3 × provider_error in a row)"}

    decision = decide(tools, task, strategy="fixed", blocked=blocked.get)
    assert decision.tool == "beta"
    assert decision.rejected["alpha"].startswith("breaker open until")

    decision = decide(tools, task, strategy="fixed", avoid=("alpha",))
    assert decision.tool == "beta"
    assert decision.rejected["alpha"] == "failed the last attempt (retry_with_other_tool)"
    # with nothing else left, the tool to avoid is taken after all
    alone = Task(id="t", prompt="x", tools=("alpha",))
    assert decide(tools, alone, strategy="fixed", avoid=("alpha",)).tool == "alpha"


def test_auto_weighs_duration_after_the_success_rate(tools):
    task = Task(id="t", prompt="x", tools=("alpha", "beta"))
    history = {
        "alpha": ToolStats(attempts=10, successes=9, mean_duration=50.0),
        "beta": ToolStats(attempts=10, successes=9, mean_duration=20.0),
    }
    assert decide(tools, task, history=history).tool == "beta"


def test_schedulers_order_ready_tasks(tools):
    ready = [
        Task(id="a", prompt="x"),
        Task(id="b", prompt="x", priority=2),
        Task(id="c", prompt="x"),
    ]
    dependencies = {"a": (), "b": (), "c": (), "d": ("c",), "e": ("d",)}
    context = SchedulingContext(dependencies)
    eager = tools.schedulers().get("eager")
    assert [t.id for t in eager.order(ready, context)] == ["b", "a", "c"]
    critical = tools.schedulers().get("critical_path")
    assert [t.id for t in critical.order(ready, context)] == ["c", "b", "a"]


def test_waves_hold_a_task_back_until_the_wave_before_it_has_finished(tools):
    dependencies = {"a": (), "b": (), "c": ("a",), "d": ()}
    waves = tools.schedulers().get("waves")
    c, d = Task(id="c", prompt="x"), Task(id="d", prompt="x")
    # c is ready (a finished) but b, of the first wave, is still going: c waits
    assert waves.order([c], SchedulingContext(dependencies, frozenset({"a"}))) == []
    assert waves.order([c, d], SchedulingContext(dependencies, frozenset({"a"}))) == [d]
    finished = frozenset({"a", "b", "d"})
    assert waves.order([c], SchedulingContext(dependencies, finished)) == [c]


def test_candidates_follow_the_order_defaults_list_them_in(tools):
    defaults = Defaults(tools=("beta", "alpha"))
    decision = decide(tools, Task(id="t", prompt="x"), defaults=defaults, strategy="fixed")
    assert decision.tool == "beta" and decision.candidates == ("beta", "alpha")


def test_strategies_see_the_candidates_profiles(tools):
    seen = {}

    class Peek:
        name = "peek"

        def choose(self, task, candidates, context):
            seen.update({a.name: context.profile(a.name).options for a in candidates})
            return RoutingChoice(candidates[-1].name, "peek")

    tools.register(RoutersPlugin(Peek()), name="peek-plugin")
    profiles = {"alpha": ToolProfile(name="alpha", options={"cost_per_task": 3})}
    decision = decide(
        tools, Task(id="t", prompt="x", tools=("alpha", "beta")), strategy="peek", profiles=profiles
    )
    assert decision.tool == "beta"
    assert seen == {"alpha": {"cost_per_task": 3}, "beta": {}}


def test_a_strategy_choosing_outside_the_candidates_is_its_error(tools):
    class Rogue:
        name = "rogue"

        def choose(self, task, candidates, context):
            return RoutingChoice("gone", "rogue")

    tools.register(RoutersPlugin(Rogue()), name="rogue-plugin")
    with pytest.raises(
        PluginError,
        match=r"routing strategy 'rogue' chose 'gone', which is not a candidate \(alpha, beta\)",
    ):
        decide(tools, Task(id="t", prompt="x", tools=("alpha", "beta")), strategy="rogue")


def test_a_plan_asks_the_strategy_for_each_task_and_shares_the_rest(tools, tmp_path):
    asked = []

    class ById:
        name = "by_id"

        def choose(self, task, candidates, context):
            asked.append(task.id)
            chosen = candidates[len(task.id) % len(candidates)].name
            return RoutingChoice(chosen, f"by_id: {task.id} -> {chosen}")

    tools.register(RoutersPlugin(ById()), name="by-id-plugin")
    pair = ("alpha", "beta")
    workstream = Workstream(
        id="w",
        tasks=(
            *(Task(id=id, prompt="p", tools=pair) for id in ("a", "bb", "ccc")),
            Task(id="x", command=("true",)),
            Task(id="y", command=("true",)),
        ),
        defaults=Defaults(routing="by_id"),
    )
    project = Project(root=tmp_path)
    settings = resolve_settings(project, defaults=workstream.defaults, environ={})

    plan = make_plan(workstream, tools, project, settings)

    assert sorted(asked) == ["a", "bb", "ccc"]
    chosen = {task: plan.decision_of[task].reason for task in ("a", "bb", "ccc")}
    assert chosen == {
        "a": "by_id: a -> beta",
        "bb": "by_id: bb -> alpha",
        "ccc": "by_id: ccc -> beta",
    }
    # no strategy was asked for the command tasks: they share one decision
    assert plan.decision_of["x"] is plan.decision_of["y"]
    assert plan.decision_of["x"].reason == "shell is the only tool that can run it"


def test_a_plan_orders_the_tasks_as_the_run_starts_them(tools):
    # b waits for a but comes before c once a has ended, by its priority (eager);
    # waves holds b back until the whole first wave has ended
    tasks = (
        Task(id="a", prompt="p"),
        Task(id="b", prompt="p", depends_on=("a",), priority=5),
        Task(id="c", prompt="p"),
        Task(id="d", prompt="p", depends_on=("c",)),
    )
    dependencies = {task.id: task.depends_on for task in tasks}
    waves = [["a", "c"], ["b", "d"]]

    def order(scheduler, slots):
        found = start_order(tasks, dependencies, waves, tools.schedulers().get(scheduler), slots)
        return [task.id for task in found]

    assert order("eager", 1) == ["a", "b", "c", "d"]
    assert order("eager", 2) == ["a", "c", "b", "d"]
    assert order("waves", 1) == ["a", "c", "b", "d"]


class RoutersPlugin:
    def __init__(self, *strategies):
        self.strategies = strategies

    @hookimpl
    def orchestra_register_routers(self, register):
        for strategy in self.strategies:
            register(strategy)
