"""Which tool carries out a task: the capability filter, then the routing strategy.

The candidates for a task are the registered tools that the task allows (``tool``,
``tools``, ``[defaults]``), that are enabled in configuration, that have every capability
the task needs, and that are available on this machine. The routing strategy picks one
of them. A task with no candidate gets a reason for every tool that was filtered out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from orchestra import classes
from orchestra.errors import PluginError
from orchestra.models import Availability, Defaults, Task, ToolProfile
from orchestra.plugin.protocols import (
    Memory,
    RoutingContext,
    RoutingStrategy,
    ToolAdapter,
    ToolStats,
)
from orchestra.plugin.registry import Registration, Registry

#: why a tool was left out, by the start of its reason (``_filter``, the breakers' gate,
#: ``PassOver``): the kind a decision's ``passed_over`` says
REJECTION_KINDS = (
    ("not allowed", "not_allowed"),
    ("disabled", "disabled"),
    ("lacks capability", "lacks_capability"),
    ("not available", "unavailable"),
    ("no installed plugin", "not_installed"),
    ("breaker", "breaker"),
    ("failed", "failed"),
    ("made the change", "author"),
)
#: the kinds that say a tool could have run the task but was passed over: the others
#: (not allowed, lacking a capability) are facts of the task itself
PASSED_OVER_KINDS = frozenset(
    {"disabled", "unavailable", "not_installed", "breaker", "failed", "author"}
)
#: the kinds that come of the run so far: the tools' breakers, the task's attempts, and
#: (routing a reviewer) the tool that made the change
RUN_KINDS = frozenset({"breaker", "failed", "author"})


def rejection_kind(why: str) -> str:
    """Return the kind of a reason for leaving a tool out (``REJECTION_KINDS``)."""
    for start, kind in REJECTION_KINDS:
        if why.startswith(start):
            return kind
    return "other"


@classes.frozen
class PassedOver:
    """A tool the task allows that routing passed over, and why."""

    tool: str
    #: one of ``PASSED_OVER_KINDS``
    kind: str
    why: str
    #: when an open breaker lets the tool in again (UNIX time), for ``kind == "breaker"``
    until: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields of an event's ``passed_over`` list."""
        shown: dict[str, Any] = {"tool": self.tool, "kind": self.kind, "why": self.why}
        if self.until is not None:
            shown["until"] = self.until
        return shown


@classes.frozen
class PassOver:
    """A tool a retry passes over, and why (its attempt failed the task); with
    ``strict``, never taken, even when no other tool is left."""

    tool: str
    why: str = "failed the last attempt (retry_with_other_tool)"
    strict: bool = False


@classes.frozen
class RoutingDecision:
    """The tool chosen for a task (None when none can run it), the strategy and why;
    ``passed_over``, the tools the task allows that could have run it and were left out
    (an open breaker, the last attempt's failure, not available here, disabled)."""

    tool: str | None
    strategy: str | None
    reason: str
    candidates: tuple[str, ...] = ()
    rejected: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    passed_over: tuple[PassedOver, ...] = ()


def required_capabilities(task: Task, defaults: Defaults) -> tuple[str, ...]:
    """Return what a tool must be able to do for ``task``: its kind plus its capabilities."""
    listed = task.capabilities if task.capabilities is not None else defaults.capabilities
    return (task.kind, *(listed or ()))


def routing_shape(task: Task) -> tuple[Any, ...]:
    """All of a task that ``allowed_tools`` and ``required_capabilities`` read: within a
    run, tasks of one shape have the same candidates, so answers drawn from those (which
    tools may take it, its track record's key) are kept per shape, not worked out again
    for each of ten thousand commands."""
    return (task.tool, task.tools, task.command is None, task.capabilities)


def allowed_tools(task: Task, defaults: Defaults) -> tuple[str, ...] | None:
    """Return the tools the task allows (pinned, listed, or from [defaults]); None = any."""
    if task.tool is not None:
        return (task.tool,)
    if task.tools is not None:
        return task.tools
    if defaults.tool is not None:
        return (defaults.tool,)
    return defaults.tools


def tool_capabilities(adapter: ToolAdapter, profile: ToolProfile) -> frozenset[str]:
    """Return a tool's capabilities: the profile's list when configured, else the adapter's."""
    if profile.capabilities is not None:
        return frozenset(profile.capabilities)
    return frozenset(adapter.capabilities)


def route(
    task: Task,
    *,
    defaults: Defaults,
    strategy_name: str,
    tools: Registry[ToolAdapter],
    routers: Registry[RoutingStrategy],
    profile: Callable[[str], ToolProfile],
    availability: Callable[[str], Availability],
    history: Callable[[tuple[str, ...], tuple[str, ...]], Mapping[str, ToolStats]] | None = None,
    blocked: Callable[[str], str | None] | None = None,
    avoid: tuple[str | PassOver, ...] = (),
    memory: Memory | None = None,
    filtered: dict[Any, Any] | None = None,
    settled: dict[Any, RoutingDecision] | None = None,
    keeps: Callable[[RoutingDecision], bool] | None = None,
) -> RoutingDecision:
    """Return the routing decision for ``task``; ``availability`` should cache its answers.

    ``history(capabilities, names)`` gives the candidates' track record (asked only when
    a strategy has to choose among several); ``blocked(name)`` says why a tool is out for
    now (an open breaker); ``avoid`` names tools to pass over when another candidate is
    left (a retry that should try another tool), each a name or a ``PassOver`` saying
    why and whether it may be taken when none is; ``memory`` is where a strategy keeps
    what it must remember across runs (round_robin's position). ``filtered``, a dict the
    caller keeps while profiles and availability stay the same (a run), remembers the
    capability filter's answer for each set of allowed tools and needed capabilities.
    ``settled``, a dict the caller keeps while ``blocked`` answers the same too (a plan),
    remembers the decisions that asked no strategy (no candidate, or one and no pinned
    tool): those depend on the allowed tools and needed capabilities alone. ``keeps``,
    when given, says which of those may be remembered (a run: only those no breaker can
    change).
    """
    allowed = allowed_tools(task, defaults)
    needed = required_capabilities(task, defaults)
    passing = tuple(entry if isinstance(entry, PassOver) else PassOver(entry) for entry in avoid)
    if settled is not None:
        key = (allowed, needed, task.tool is not None, strategy_name, passing)
        if key in settled:
            return settled[key]
    decision, asked = _decide(
        task,
        allowed,
        needed,
        strategy_name=strategy_name,
        tools=tools,
        routers=routers,
        profile=profile,
        availability=availability,
        history=history,
        blocked=blocked,
        passing=passing,
        memory=memory,
        filtered=filtered,
    )
    if settled is not None and not asked and (keeps is None or keeps(decision)):
        settled[key] = decision
    return decision


def _decide(
    task: Task,
    allowed: tuple[str, ...] | None,
    needed: tuple[str, ...],
    *,
    strategy_name: str,
    tools: Registry[ToolAdapter],
    routers: Registry[RoutingStrategy],
    profile: Callable[[str], ToolProfile],
    availability: Callable[[str], Availability],
    history: Callable[[tuple[str, ...], tuple[str, ...]], Mapping[str, ToolStats]] | None,
    blocked: Callable[[str], str | None] | None,
    passing: tuple[PassOver, ...],
    memory: Memory | None,
    filtered: dict[Any, Any] | None,
) -> tuple[RoutingDecision, bool]:
    """Return ``route``'s decision (made afresh) and whether the strategy was asked."""
    rejected: dict[str, str] = {}
    candidates: list[ToolAdapter] = []
    for registration, why_not in filter_tools(
        allowed, needed, tools, profile, availability, filtered
    ):
        if why_not is None and blocked is not None:
            why_not = blocked(registration.name)
        if why_not is None:
            candidates.append(registration.item)
        else:
            rejected[registration.name] = why_not
    for name in allowed or ():
        if name not in tools:
            rejected[name] = "no installed plugin provides it"
    if allowed is not None:  # candidates in the order the task lists its tools
        candidates.sort(key=lambda adapter: allowed.index(adapter.name))
    passed_by_name = {entry.tool: entry for entry in passing}
    others = [adapter for adapter in candidates if adapter.name not in passed_by_name]
    for adapter in candidates:
        entry = passed_by_name.get(adapter.name)
        if entry is not None and (others or entry.strict):
            rejected[adapter.name] = entry.why
    candidates = others or [
        adapter
        for adapter in candidates
        if adapter.name not in passed_by_name or not passed_by_name[adapter.name].strict
    ]
    for entry in passing:  # kept out by its breaker as well as by its failure
        if rejection_kind(rejected.get(entry.tool, "")) == "breaker":
            if entry.strict:  # never to be taken: not waited for
                rejected[entry.tool] = f"{entry.why}; {rejected[entry.tool]}"
            else:  # taken when its breaker closes, if nothing else is left
                rejected[entry.tool] = f"{rejected[entry.tool]}, and it {entry.why}"
    passed = _passed_over(rejected, allowed)
    if not candidates:
        reasons = (
            "; ".join(f"{name}: {why}" for name, why in rejected.items()) or "no tools installed"
        )
        reason = f"no tool can run this task ({reasons})"
        return RoutingDecision(None, None, reason, (), rejected, passed), False
    if task.tool is not None:
        strategy_name = "fixed"
    strategy: RoutingStrategy = routers.get(strategy_name)
    names = tuple(adapter.name for adapter in candidates)
    if len(candidates) == 1 and task.tool is None:
        reason = f"{names[0]} is the only tool that can run it"
        if passed:  # only of what is left: say what was passed over, and why
            reason = f"{names[0]} is the only tool left (passed over {_listed(passed)})"
        decision = RoutingDecision(names[0], strategy_name, reason, names, rejected, passed)
        return decision, False
    context = RoutingContext(
        history(needed, names) if history is not None else {},
        {name: profile(name) for name in names},
        memory if memory is not None else Memory(),
    )
    choice = strategy.choose(task, candidates, context)
    if choice.tool not in names:
        raise PluginError(
            f"routing strategy {strategy_name!r} chose {choice.tool!r}, "
            f"which is not a candidate ({', '.join(names)})"
        )
    reason = choice.reason
    if passed:
        reason = f"{reason} (passed over {_listed(passed)})"
    return RoutingDecision(choice.tool, strategy_name, reason, names, rejected, passed), True


def _passed_over(
    rejected: Mapping[str, str], allowed: tuple[str, ...] | None
) -> tuple[PassedOver, ...]:
    """Return the tools in ``rejected`` that could have run the task, in the order the
    task allows them. A task that names no tools passes over only the tools it found
    wanting (an open breaker, a failed attempt), not every tool not set up here."""
    kinds = PASSED_OVER_KINDS if allowed is not None else RUN_KINDS
    passed = [
        PassedOver(name, kind, why)
        for name, why in rejected.items()
        if (kind := rejection_kind(why)) in kinds
    ]
    if allowed is not None and len(passed) > 1:
        passed.sort(key=lambda entry: allowed.index(entry.tool) if entry.tool in allowed else 0)
    return tuple(passed)


def _listed(passed: tuple[PassedOver, ...]) -> str:
    """``aider: failed the last attempt with auth; gemini: not available (…)``."""
    return "; ".join(f"{entry.tool}: {entry.why}" for entry in passed)


def candidate_tools(
    task: Task,
    *,
    defaults: Defaults,
    tools: Registry[ToolAdapter],
    profile: Callable[[str], ToolProfile],
    availability: Callable[[str], Availability],
    filtered: dict[Any, Any] | None = None,
) -> list[ToolAdapter]:
    """Return the adapters that pass the capability filter for ``task`` (no breakers, no
    strategy: nothing is decided or remembered); ``filtered`` as for ``route``."""
    allowed = allowed_tools(task, defaults)
    needed = required_capabilities(task, defaults)
    answers = filter_tools(allowed, needed, tools, profile, availability, filtered)
    return [registration.item for registration, why_not in answers if why_not is None]


def filter_tools(
    allowed: tuple[str, ...] | None,
    needed: tuple[str, ...],
    tools: Registry[ToolAdapter],
    profile: Callable[[str], ToolProfile],
    availability: Callable[[str], Availability],
    cache: dict[Any, Any] | None,
) -> tuple[tuple[Registration[ToolAdapter], str | None], ...]:
    """Return (registration, why it cannot take the task or None) for every tool, in the
    registry's order; from ``cache`` when it has the answer."""
    key = (allowed, needed)
    if cache is not None and key in cache:
        return cache[key]
    answer = tuple(
        (
            registration,
            _filter(
                registration.name,
                registration.item,
                allowed,
                needed,
                profile(registration.name),
                availability,
            ),
        )
        for registration in tools
    )
    if cache is not None:
        cache[key] = answer
    return answer


def capability_key(task: Task, defaults: Defaults) -> str:
    """Return the key a task's track record is kept under: its sorted capabilities."""
    return ",".join(sorted(set(required_capabilities(task, defaults))))


def _filter(
    name: str,
    adapter: ToolAdapter,
    allowed: tuple[str, ...] | None,
    needed: tuple[str, ...],
    profile: ToolProfile,
    availability: Callable[[str], Availability],
) -> str | None:
    """Return why the tool cannot take the task, or None when it is a candidate."""
    if allowed is not None and name not in allowed:
        return "not allowed by the task's tool/tools"
    if not profile.enabled:
        return "disabled in configuration"
    missing = [word for word in needed if word not in tool_capabilities(adapter, profile)]
    if missing:
        return f"lacks capability {', '.join(missing)}"
    found = availability(name)
    if not found.available:
        return f"not available ({found.reason})"
    return None
