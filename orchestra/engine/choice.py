"""Which tool a task's attempt gets, and why: the one door ``run`` and ``plan`` both use.

A ``ToolChoice`` holds what routing reads besides the task (``engine/router.py`` does the
filtering and asks the strategy): the tools' availability, asked once; the capability
filter's answers; the track record of earlier attempts, read from the run database once
per capabilities key; the circuit breakers' gate; and the strategies' memory (round
robin's position). ``run`` keeps one for the run and tells it how each attempt ended;
``plan`` makes one that reads the same database and writes nothing, so that a plan shows
the tool a run would pick now, for the reason it would give.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from orchestra.engine.failover import OTHER, AttemptEnd, passed_over
from orchestra.engine.router import (
    PASSED_OVER_KINDS,
    PassedOver,
    PassOver,
    RoutingDecision,
    allowed_tools,
    candidate_tools,
    capability_key,
    filter_tools,
    rejection_kind,
    required_capabilities,
    route,
    routing_shape,
    tool_capabilities,
)
from orchestra.models import Availability, Defaults, RetryPolicy, Review, Task, ToolProfile
from orchestra.plugin.protocols import Memory, RoutingStrategy, ToolAdapter, ToolStats
from orchestra.plugin.registry import Registry

#: how many recent durations of a tool the track record averages
RECENT_DURATIONS = 20
#: what routing a reviewer reads of [defaults]: nothing (the review names its own tools)
REVIEW_DEFAULTS = Defaults()
#: what a reviewer must be able to do
REVIEW_CAPABILITIES = ("review",)
#: where the run database keeps the strategies' memory: ``routing.<key>``
MEMORY_PREFIX = "routing."


class ToolChoice:
    """Routes tasks as a run does, with the caches that hold while it goes on.

    ``track_record(key)`` reads {tool: (attempts, successes, recent durations)} of the
    finished attempts of tasks asking for the capabilities ``key`` (the store's); None
    means there is no record. ``breakers`` has ``blocked(tool)`` (``resilience.Breakers``).
    ``in_use`` is the run's count of running attempts per tool, read as it changes.
    ``settled`` says that availability and breakers stay as they are while this choice
    is used (a plan: no attempt starts or ends), so a decision no strategy was asked for
    is the same for every task that allows the same tools and needs the same capabilities.
    """

    def __init__(
        self,
        *,
        tools: Registry[ToolAdapter],
        routers: Registry[RoutingStrategy],
        defaults: Defaults,
        routing: str,
        profile: Callable[[str], ToolProfile],
        memory: Memory,
        track_record: Callable[[str], dict[str, tuple]] | None = None,
        breakers: Any = None,
        in_use: Mapping[str, int] | None = None,
        settled: bool = False,
    ) -> None:
        self.tools = tools
        self.routers = routers
        self.defaults = defaults
        self.routing = routing
        self.profile = profile
        self.memory = memory
        self.breakers = breakers
        self._track_record = track_record
        self._in_use: Mapping[str, int] = {} if in_use is None else in_use
        #: when a tool kept out by its breaker may be tried again (a run wakes then)
        self.wake_at: float | None = None
        self._availability: dict[str, Availability] = {}
        #: the capability filter's answers (profiles and availability hold for the run)
        self._filtered: dict = {}
        self._settled: dict | None = {} if settled else None
        #: a run's decisions that no breaker can change (see ``_steady``), by what
        #: decides them: routing a thousand commands asks the router once
        self._steady: dict = {}
        #: each task's last decision: a retry keeps its tool unless it must not
        self._decisions: dict[str, RoutingDecision] = {}
        #: track records read so far: capabilities key -> tool -> (attempts, successes,
        #: recent durations)
        self._records: dict[str, dict[str, tuple]] = {}
        self._capability_keys: dict[tuple[Any, ...], str] = {}
        #: the next tool of a fallback order, by what decides it (``fallback_order``)
        self._fallbacks: dict[tuple, str | None] = {}

    def decide(
        self, task: Task, avoid: tuple[str | PassOver, ...] = (), retry: bool = False
    ) -> RoutingDecision:
        """Return the tool for the task's next attempt: the same as before, unless its
        breaker keeps it out now or ``avoid`` names it (a retry the policy table sends to
        another tool: ``router.PassOver``). A ``retry`` that keeps its tool says so."""
        cached = self._decisions.get(task.id)
        if cached is not None and cached.tool is not None:
            avoided = {entry if isinstance(entry, str) else entry.tool for entry in avoid}
            if cached.tool not in avoided and self.blocked(cached.tool) is None:
                return _kept(cached) if retry else cached
        decision = route(
            task,
            defaults=self.defaults,
            strategy_name=task.routing or self.routing,
            tools=self.tools,
            routers=self.routers,
            profile=self.profile,
            availability=self.available,
            history=self.history,
            blocked=self.blocked if self.breakers is not None else None,
            avoid=avoid,
            memory=self.memory,
            filtered=self._filtered,
            settled=self._steady if self._settled is None else self._settled,
            keeps=self._steady_decision if self._settled is None else None,
        )
        if any(entry.kind == "breaker" for entry in decision.passed_over):
            decision = attrs.evolve(decision, passed_over=self._with_until(decision.passed_over))
        self._decisions[task.id] = decision
        return decision

    def decide_retry(
        self, task: Task, policy: RetryPolicy, ends: Sequence[AttemptEnd]
    ) -> RoutingDecision:
        """Return the tool for a retry of ``task`` after its attempts ``ends``: the
        tools the policy table sends it away from passed over (``failover.passed_over``),
        strictly where the table says ``other``."""
        passing = tuple(
            PassOver(move.passed_tool or "", move.why or "", strict=move.action == OTHER)
            for move in passed_over(policy, ends)
        )
        return self.decide(task, passing, retry=True)

    def reviewer(
        self,
        task: Task,
        review: Review,
        author: str | None,
        avoid: tuple[PassOver, ...] = (),
    ) -> RoutingDecision:
        """Return the tool to review a change ``author`` made for ``task``: one of the
        review's ``tools`` (any tool, when it names none) that can review (capability
        ``review``), chosen by the review's routing (else the task's, else the run's),
        never the author unless the review allows ``self_review``; ``avoid`` passes over
        reviewers whose last review of the task failed. Breakers keep reviewers out as
        they keep authors out. Nothing is remembered for the task's own routing."""
        stand_in = Task(
            id=task.id,
            title=task.title,
            prompt=task.prompt or "review",
            tools=review.tools or None,
            capabilities=REVIEW_CAPABILITIES,
            routing=review.routing or task.routing,
        )
        passing = list(avoid)
        if author is not None and not review.self_review:
            passing.append(PassOver(author, "made the change", strict=True))
        decision = route(
            stand_in,
            defaults=REVIEW_DEFAULTS,
            strategy_name=stand_in.routing or self.routing,
            tools=self.tools,
            routers=self.routers,
            profile=self.profile,
            availability=self.available,
            history=self.history,
            blocked=self.blocked if self.breakers is not None else None,
            avoid=tuple(passing),
            memory=self.memory,
            filtered=self._filtered,
        )
        if any(entry.kind == "breaker" for entry in decision.passed_over):
            decision = attrs.evolve(decision, passed_over=self._with_until(decision.passed_over))
        # the router speaks of running a task: say what this decision is about
        reason = decision.reason.replace("tool that can run it", "tool that may review it")
        if decision.tool is None:  # only the reviewers that could have, and why not
            kept_out = [
                f"{name}: {why}"
                for name, why in decision.rejected.items()
                if rejection_kind(why) in PASSED_OVER_KINDS
            ]
            reason = (
                "no tool may review it ("
                + ("; ".join(kept_out) or "no tool that can review is installed and allowed")
                + ")"
            )
        return attrs.evolve(decision, reason=reason)

    def _steady_decision(self, decision: RoutingDecision) -> bool:
        """Whether a decision made in a run holds for the rest of it: its candidates have
        no circuit breaker (the shell's commands) and no tool was left out for its
        breaker, so only what holds for the run (availability, profiles, the task's
        fields) made it. Measured: a 10,000-command run spends a tenth of its loop's time
        routing without this."""
        if any(rejection_kind(why) == "breaker" for why in decision.rejected.values()):
            return False
        return not any(
            getattr(self.tools.get(name), "circuit_breaker", True) for name in decision.candidates
        )

    def no_other_tool(
        self, task: Task, policy: RetryPolicy, ends: Sequence[AttemptEnd]
    ) -> str | None:
        """Return why no tool but the last attempt's may take ``task`` (each other tool
        with the capabilities it needs, and why not; "" when there is none), or None when
        another one may, now or once its breaker lets it in; a tool that must not be
        tried again (its key was refused) is no other tool."""
        last = ends[-1].tool
        refused = {
            move.passed_tool: move.why or ""
            for move in passed_over(policy, ends)
            if move.action == OTHER and move.passed_tool not in (None, last)
        }
        others, why_not = self.alternatives(task, {last, *refused})
        why_not.update(refused)
        if others:
            return None
        if not why_not:  # no other tool could ever run it (a command): nothing to add
            return ""
        listed = [
            f"{name}: {why}"
            for name, why in why_not.items()
            if rejection_kind(why) != "not_allowed"
        ]
        if not listed:
            return "the task allows no other tool"
        return f"no other tool may run it: {'; '.join(listed)}"

    def alternatives(
        self, task: Task, excluded: Collection[str]
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """Return the tools not ``excluded`` that may run ``task`` (allowed, enabled,
        capable and available, whatever their breakers say), and why each other tool
        that has the capabilities may not: what a failover can turn to."""
        allowed = allowed_tools(task, self.defaults)
        needed = required_capabilities(task, self.defaults)
        others: list[str] = []
        why_not: dict[str, str] = {}
        for registration, why in filter_tools(
            allowed, needed, self.tools, self.profile, self.available, self._filtered
        ):
            name = registration.name
            if name in excluded:
                continue
            if why is None:
                others.append(name)
            elif set(needed) <= tool_capabilities(registration.item, self.profile(name)):
                why_not[name] = why  # it could do the work, but may not
        return tuple(others), why_not

    def fallback_order(self, task: Task, decision: RoutingDecision) -> tuple[str, ...]:
        """Return the tools routing would turn to, in order, were the chosen tool and
        then each one after it to fail with a fault of the tool (``auth``): each passed
        over in turn, the breakers left aside (``plan`` marks the open ones)."""
        if decision.tool is None:
            return ()
        order = [decision.tool]
        while True:
            passed = tuple(PassOver(name, "plan", strict=True) for name in order)
            key = (
                allowed_tools(task, self.defaults),
                required_capabilities(task, self.defaults),
                task.routing or self.routing,
                tuple(order),
            )
            if key not in self._fallbacks:
                self._fallbacks[key] = route(
                    task,
                    defaults=self.defaults,
                    strategy_name=task.routing or self.routing,
                    tools=self.tools,
                    routers=self.routers,
                    profile=self.profile,
                    availability=self.available,
                    history=self.history,
                    avoid=passed,
                    memory=Memory(),  # what a strategy remembers here is not the plan's
                    filtered=self._filtered,
                ).tool
            following = self._fallbacks[key]
            if following is None:
                return tuple(order[1:])
            order.append(following)

    def breaker_reason(self, tool: str) -> str | None:
        """Return why the tool's breaker keeps it out now (``breaker open until …``),
        or None, without waking anything."""
        found = self.breakers.blocked(tool) if self.breakers is not None else None
        return found[0] if found is not None else None

    def _with_until(self, passed: tuple[PassedOver, ...]) -> tuple[PassedOver, ...]:
        """``passed`` with when each open breaker lets its tool in again."""
        found = []
        for entry in passed:
            blocked = self.breakers.blocked(entry.tool) if entry.kind == "breaker" else None
            if blocked is not None and blocked[1] is not None:
                entry = attrs.evolve(entry, until=blocked[1])
            found.append(entry)
        return tuple(found)

    def start_over(self, memory: Memory) -> None:
        """Route every task afresh from now on, with ``memory`` (a plan routing the tasks
        again, in another order); what was learnt of the tools is kept."""
        self.memory = memory
        self._decisions.clear()

    def candidates(self, task: Task) -> list[ToolAdapter]:
        """Return the adapters that pass the capability filter for ``task`` (no breaker,
        no strategy: nothing is decided or remembered)."""
        return candidate_tools(
            task,
            defaults=self.defaults,
            tools=self.tools,
            profile=self.profile,
            availability=self.available,
            filtered=self._filtered,
        )

    def available(self, tool: str) -> Availability:
        """Return whether ``tool`` can run here (asked of its adapter once)."""
        if tool not in self._availability:
            adapter = self.tools.get(tool)
            self._availability[tool] = adapter.available(self.profile(tool))
        return self._availability[tool]

    def blocked(self, tool: str) -> str | None:
        """Return why the tool's breaker keeps it out now, or None; notes in ``wake_at``
        when to look again."""
        found = self.breakers.blocked(tool) if self.breakers is not None else None
        if found is None:
            return None
        reason, until = found
        if until is not None and (self.wake_at is None or until < self.wake_at):
            self.wake_at = until
        return reason

    def history(self, needed: tuple[str, ...], names: tuple[str, ...]) -> dict[str, ToolStats]:
        """Return the candidates' track record on tasks asking for the same capabilities:
        read once per key, then kept up to date by ``remember``."""
        record = self._record(",".join(sorted(set(needed))))
        history = {}
        for name in names:
            attempts, successes, durations = record.get(name, (0, 0, ()))
            mean = sum(durations) / len(durations) if durations else None
            history[name] = ToolStats(attempts, successes, mean, self._in_use.get(name, 0))
        return history

    def remember(self, task: Task, tool: str, succeeded: bool, seconds: float) -> None:
        """Add a finished attempt (not a canceled one) to the track record routing reads,
        when that record has been read."""
        if not self._records:
            return
        key = self.capabilities(task)
        if key not in self._records:
            return
        attempts, successes, durations = self._records[key].get(tool, (0, 0, ()))
        self._records[key][tool] = (
            attempts + 1,
            successes + succeeded,
            (*durations, seconds)[-RECENT_DURATIONS:],
        )

    def capabilities(self, task: Task) -> str:
        """The key of the task's track record (``capability_key``), made once per routing
        shape: each attempt's row and each end look it up."""
        shape = routing_shape(task)
        key = self._capability_keys.get(shape)
        if key is None:
            key = self._capability_keys[shape] = capability_key(task, self.defaults)
        return key

    def _record(self, key: str) -> dict[str, tuple]:
        if key not in self._records:
            found = self._track_record(key) if self._track_record is not None else {}
            self._records[key] = found
        return self._records[key]


def _kept(decision: RoutingDecision) -> RoutingDecision:
    """A decision kept for a retry, saying so: a strategy's reason ("no record yet") and
    what it passed over were said of the attempt it was made for, and may no longer hold.
    "The only tool that can run it" holds still, and is said again as it is."""
    if not decision.passed_over and len(decision.candidates) < 2:
        return decision
    assert decision.tool is not None
    reason = f"{decision.tool} again, as for the attempt before (routed then: {decision.reason})"
    return attrs.evolve(decision, reason=reason, passed_over=())


def waits_for_breaker(decision: RoutingDecision) -> bool:
    """Whether a task with no tool is only waiting: a breaker keeps a candidate out for
    now, and the run starts the task once it lets the tool in again."""
    return decision.tool is None and any(
        why.startswith("breaker") for why in decision.rejected.values()
    )


def stored_memory(
    store: Any, *, write: bool, on_change: Callable[[str], None] | None = None
) -> Memory:
    """Return the strategies' memory kept in the run database ``store`` (None: none);
    with ``write=False`` what a strategy remembers stays in this Memory (a plan), and
    ``on_change(key)`` hears of it."""

    def load(key: str) -> Any:
        return store.get_value(MEMORY_PREFIX + key)

    def save(key: str, value: Any) -> None:
        store.set_value(MEMORY_PREFIX + key, value)

    def told(key: str, value: Any) -> None:
        if on_change is not None:
            on_change(key)

    return Memory(load=load if store is not None else None, save=save if write else told)
