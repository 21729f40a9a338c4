"""The policy table (engine/failover.py) and what routing says of it, in-process: every
row of the built-in table, how non_retryable, retry_with_other_tool and on_failure change
it, when a rate limit or a timeout holds the switch back, the verdicts it leads to, and
the reasons a decision gives for the tools it passes over."""

import pytest

from orchestra.builtin import routing, scheduling, shell
from orchestra.engine import failover
from orchestra.engine.choice import ToolChoice, waits_for_breaker
from orchestra.engine.failover import (
    OTHER,
    PREFER_OTHER,
    SAME,
    STOP,
    AttemptEnd,
    Move,
    failure_table,
    next_move,
    passed_over,
)
from orchestra.engine.resilience import retry_policy
from orchestra.engine.router import PassOver, route
from orchestra.engine.verdict import judge
from orchestra.models import (
    ERROR_CLASSES,
    Availability,
    Backoff,
    Defaults,
    StepResult,
    Task,
    ToolProfile,
)
from orchestra.plugin.host import PluginHost
from orchestra.plugin.protocols import Memory
from orchestra.store.lifecycle import StepState
from orchestra.testing import ScriptedTool, ToolsPlugin

TASK = Task(id="t", prompt="p", tools=("alpha", "beta"))
#: the built-in table, as docs/workstreams.md prints it
BUILT_IN = {
    "auth": OTHER,
    "tool_missing": OTHER,
    "provider_error": PREFER_OTHER,
    "rate_limited": PREFER_OTHER,
    "timeout": PREFER_OTHER,
    "idle": PREFER_OTHER,
    "scope_violation": STOP,
    "needs_input": STOP,
    "preflight_failed": STOP,
}


def policy(task=TASK, defaults=None, max_attempts=3):
    return retry_policy(task, defaults or Defaults(), max_attempts)


def test_the_built_in_table_switches_on_the_tools_faults_and_retries_the_tasks():
    table = failure_table(TASK, Defaults())
    assert set(table) == ERROR_CLASSES
    assert {name: action for name, action in table.items() if action != SAME} == BUILT_IN
    for task_fault in ("check_failed", "invalid_output", "merge_conflict", "context_overflow"):
        assert table[task_fault] == SAME
    # what the old setting said stays true: these are never retried
    assert policy().non_retryable == {"scope_violation", "needs_input", "preflight_failed"}


@pytest.mark.parametrize(("error_class", "action"), sorted(BUILT_IN.items()))
def test_each_switching_row_passes_over_the_tool_that_failed(error_class, action):
    if action == STOP:
        assert next_move(policy(), [AttemptEnd("alpha", error_class)]) == Move(STOP)
        return
    ends = [AttemptEnd("alpha", error_class, retry_after=3600.0)]
    if error_class in failover.SWITCH_ON_REPEAT:
        ends = [AttemptEnd("alpha", error_class)] * 2
    move = next_move(policy(), ends)
    assert (move.action, move.passed_tool) == (action, "alpha")
    assert move.why.startswith(f"failed the last attempt with {error_class}")


def test_a_short_rate_limit_and_a_first_timeout_stay_with_the_tool():
    short = AttemptEnd("alpha", "rate_limited", retry_after=30.0)
    unsaid = AttemptEnd("alpha", "rate_limited")
    assert next_move(policy(), [short]) == Move(SAME)
    assert next_move(policy(), [unsaid]) == Move(SAME)
    long = AttemptEnd("alpha", "rate_limited", retry_after=61.0)
    assert next_move(policy(), [long]).why == (
        "failed the last attempt with rate_limited (asked to wait 61s)"
    )
    # failover_wait moves the line
    patient = policy(Task(id="t", prompt="p", failover_wait=120.0))
    assert next_move(patient, [long]) == Move(SAME)

    assert next_move(policy(), [AttemptEnd("alpha", "timeout")]) == Move(SAME)
    # an idle stop after a timeout of the same tool is the second in a row
    twice = [AttemptEnd("alpha", "timeout"), AttemptEnd("alpha", "idle")]
    assert next_move(policy(), twice).why == "failed the last attempt with idle, twice in a row"
    # a tool that failed the task earlier is passed over still, its attempt named
    earlier = [AttemptEnd("alpha", "auth"), AttemptEnd("gamma", "provider_error")]
    assert [
        (move.passed_tool, move.action, move.why) for move in passed_over(policy(), earlier)
    ] == [
        ("gamma", PREFER_OTHER, "failed the last attempt with provider_error"),
        ("alpha", OTHER, "failed attempt 1 with auth"),
    ]
    # one timeout each of two tools is no tool's repeated fault
    each = [AttemptEnd("beta", "timeout"), AttemptEnd("alpha", "timeout")]
    assert next_move(policy(), each) == Move(SAME)


def test_non_retryable_retry_with_other_tool_and_on_failure_rewrite_rows():
    # non_retryable lists what stops; every other class is retried, by its row's tool
    listed = failure_table(Task(id="t", prompt="p", non_retryable=("check_failed",)), Defaults())
    assert listed["check_failed"] == STOP
    assert listed["scope_violation"] == SAME
    assert listed["auth"] == PREFER_OTHER
    assert listed["provider_error"] == PREFER_OTHER
    # the old setting, folded: each retry with the same tool prefers another
    legacy = failure_table(Task(id="t", prompt="p"), Defaults(retry_with_other_tool=True))
    assert legacy["check_failed"] == PREFER_OTHER and legacy["auth"] == OTHER
    assert legacy["scope_violation"] == STOP
    # on_failure: [defaults]' rows, then the task's, class by class, over everything
    defaults = Defaults(on_failure={"check_failed": OTHER, "auth": STOP}, non_retryable=())
    task = Task(id="t", prompt="p", on_failure={"auth": SAME})
    table = failure_table(task, defaults)
    assert (table["check_failed"], table["auth"]) == (OTHER, SAME)


def test_on_failure_is_checked_when_the_workstream_is_read():
    from orchestra.errors import WorkstreamInvalid
    from orchestra.spec import workstream_from_dict

    document = {
        "id": "w",
        "defaults": {"on_failure": {"auht": "other"}},
        "tasks": [{"id": "t", "prompt": "p", "on_failure": {"auth": "elsewhere"}}],
    }
    with pytest.raises(WorkstreamInvalid) as raised:
        workstream_from_dict(document, file="ws.toml")
    lines = raised.value.lines()
    assert any("defaults.on_failure.auht" in line and "'auth'" in line for line in lines), lines
    assert any(
        "task 't'" in line and "on_failure.auth" in line and "unknown action 'elsewhere'" in line
        for line in lines
    ), lines
    good = {"id": "w", "tasks": [{"id": "t", "prompt": "p", "on_failure": {"auth": "stop"}}]}
    assert workstream_from_dict(good).tasks[0].on_failure == {"auth": "stop"}


def verdict(result, move, alone=None, attempt=1, max_attempts=3):
    return judge(
        attempt=attempt,
        tool="alpha",
        result=result,
        policy=retry_policy(
            Task(id="t", prompt="p", backoff=Backoff(initial=5.0, jitter=False)),
            Defaults(),
            max_attempts,
        ),
        failures=[None] * attempt,
        changes=[None] * attempt,
        over_budget=None,
        stopping=None,
        move=move,
        alone=alone,
    )


def test_verdicts_follow_the_move():
    denied = StepResult("failed", error_class="auth", message="key refused")
    switch = Move(OTHER, "alpha", "failed the last attempt with auth")
    going = verdict(denied, switch)
    assert going.state is StepState.RETRYING
    assert going.payload["passing_over"] == "alpha"
    # no other tool may run it: auth stops at once, saying why
    stopped = verdict(denied, switch, alone="the task allows no other tool")
    assert stopped.state is StepState.FAILED
    assert stopped.reason == "key refused (the task allows no other tool)"
    # prefer_other with nobody else: the same tool again, waiting what it was told to
    limited = StepResult("failed", error_class="rate_limited", retry_after=90.0)
    alone = verdict(limited, Move(PREFER_OTHER, "alpha", "…"), alone="beta: disabled")
    assert alone.state is StepState.RETRYING and alone.delay == 90.0
    assert "passing_over" not in alone.payload
    # another tool need not wait out the rate limit: the backoff
    assert verdict(limited, Move(PREFER_OTHER, "alpha", "…")).delay == 5.0
    # the budget of attempts is the task's, all tools together
    last = verdict(denied, switch, attempt=3)
    assert (last.state, last.reason) == (StepState.FAILED, "key refused")
    assert verdict(denied, Move(STOP)).state is StepState.FAILED


@pytest.fixture
def host():
    host = PluginHost()
    for module in (shell, routing, scheduling):
        host.register(module, name=module.__name__.rsplit(".", 1)[-1])
    host.register(
        ToolsPlugin(
            ScriptedTool(name="alpha"),
            ScriptedTool(name="beta"),
            ScriptedTool(name="gamma"),
            ScriptedTool(name="gone", availability=Availability(False, reason="gone not found")),
        ),
        name="ai-tools",
    )
    return host


def decide(host, task, strategy="fixed", **more):
    return route(
        task,
        defaults=Defaults(),
        strategy_name=strategy,
        tools=host.tools(),
        routers=host.routers(),
        profile=lambda name: ToolProfile(name=name),
        availability=lambda name: host.tools().get(name).available(ToolProfile(name=name)),
        **more,
    )


def test_the_reason_names_each_tool_passed_over_and_why(host):
    failed = (PassOver("alpha", "failed the last attempt with auth", strict=True),)

    decision = decide(host, TASK, avoid=failed)

    assert decision.tool == "beta"
    assert decision.reason == (
        "beta is the only tool left (passed over alpha: failed the last attempt with auth)"
    )
    assert [entry.as_dict() for entry in decision.passed_over] == [
        {"tool": "alpha", "kind": "failed", "why": "failed the last attempt with auth"}
    ]
    # a strategy's choice among several keeps its reason, and says what it passed over
    three = Task(id="t", prompt="p", tools=("alpha", "gone", "beta", "gamma"))
    decision = decide(host, three, avoid=failed)
    assert decision.reason == (
        "fixed: first allowed candidate beta (passed over alpha: failed the last attempt"
        " with auth; gone: not available (gone not found))"
    )
    assert [entry.kind for entry in decision.passed_over] == ["failed", "unavailable"]
    # "the only tool that can run it" only when it is so of the task
    assert decide(host, Task(id="t", prompt="p", tools=("beta",))).reason == (
        "beta is the only tool that can run it"
    )
    blocked = {"alpha": "breaker open until 17:05:00 (3 × provider_error in a row)"}
    decision = decide(host, TASK, blocked=blocked.get)
    assert decision.reason == (
        "beta is the only tool left (passed over alpha: breaker open until 17:05:00"
        " (3 × provider_error in a row))"
    )


def test_a_tool_that_must_not_be_tried_again_is_not_waited_for(host):
    blocked = {"alpha": "breaker open until 17:05:00 (1 × auth in a row)", "beta": None}
    alone = Task(id="t", prompt="p", tools=("alpha",))
    strict = (PassOver("alpha", "failed the last attempt with auth", strict=True),)

    decision = decide(host, alone, blocked=blocked.get, avoid=strict)

    assert decision.tool is None and not waits_for_breaker(decision)
    assert decision.rejected["alpha"].startswith("failed the last attempt with auth; breaker")
    # a tool that may be tried again (prefer_other) is waited for, its failure said too
    lenient = (PassOver("alpha", "failed the last attempt with provider_error"),)
    decision = decide(host, alone, blocked=blocked.get, avoid=lenient)
    assert decision.tool is None and waits_for_breaker(decision)
    assert decision.rejected["alpha"].endswith("and it failed the last attempt with provider_error")
    # with no breaker, a lenient pass-over takes the only tool; a strict one takes none
    assert decide(host, alone, avoid=lenient).tool == "alpha"
    assert decide(host, alone, avoid=strict).tool is None


def test_the_fallback_order_is_the_order_failover_would_try(host):
    choice = ToolChoice(
        tools=host.tools(),
        routers=host.routers(),
        defaults=Defaults(),
        routing="fixed",
        profile=lambda name: ToolProfile(name=name),
        memory=Memory(),
    )
    task = Task(id="t", prompt="p", tools=("gamma", "gone", "alpha", "beta"))

    decision = choice.decide(task)

    assert decision.tool == "gamma"
    assert choice.fallback_order(task, decision) == ("alpha", "beta")
    assert choice.alternatives(task, {"gamma"}) == (
        ("alpha", "beta"),
        {"gone": "not available (gone not found)"},
    )
    alone = Task(id="u", prompt="p", tools=("alpha",))
    assert choice.fallback_order(alone, choice.decide(alone)) == ()
    assert choice.alternatives(alone, {"alpha"})[0] == ()


def test_a_retry_keeps_its_tool_unless_that_tool_is_passed_over(host):
    choice = ToolChoice(
        tools=host.tools(),
        routers=host.routers(),
        defaults=Defaults(),
        routing="round_robin",
        profile=lambda name: ToolProfile(name=name),
        memory=Memory(),
    )
    task = Task(id="t", prompt="p", tools=("alpha", "beta", "gamma"))
    first = choice.decide(task)
    earlier = (PassOver("gamma", "failed attempt 1 with auth", strict=True),)

    # attempt 2 failed a check with the same tool: it is not asked again, whatever else
    # an earlier attempt passed over
    kept = choice.decide(task, earlier, retry=True)

    assert kept.tool == first.tool
    assert kept.reason == f"alpha again, as for the attempt before (routed then: {first.reason})"
    assert first.tool == "alpha"
    passing = (PassOver("alpha", "failed the last attempt with auth", strict=True), *earlier)
    moved = choice.decide(task, passing, retry=True)
    assert moved.tool == "beta"
    assert moved.reason == (
        "beta is the only tool left (passed over alpha: failed the last attempt with auth;"
        " gamma: failed attempt 1 with auth)"
    )
    # the retry after beta's failed check keeps beta, and does not repeat why it got it
    again = choice.decide(task, passing, retry=True)
    assert again.tool == "beta" and again.passed_over == ()
    assert again.reason == f"beta again, as for the attempt before (routed then: {moved.reason})"
