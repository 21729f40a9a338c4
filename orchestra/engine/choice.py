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

from collections.abc import Callable, Mapping
from typing import Any

from orchestra.engine.router import RoutingDecision, candidate_tools, capability_key, route
from orchestra.models import Availability, Defaults, Task, ToolProfile
from orchestra.plugin.protocols import Memory, RoutingStrategy, ToolAdapter, ToolStats
from orchestra.plugin.registry import Registry

#: how many recent durations of a tool the track record averages
RECENT_DURATIONS = 20
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
        #: each task's last decision: a retry keeps its tool unless it must not
        self._decisions: dict[str, RoutingDecision] = {}
        #: track records read so far: capabilities key -> tool -> (attempts, successes,
        #: recent durations)
        self._records: dict[str, dict[str, tuple]] = {}

    def decide(self, task: Task, avoid: tuple[str, ...] = ()) -> RoutingDecision:
        """Return the tool for the task's next attempt: the same as before, unless its
        breaker keeps it out now or ``avoid`` names it (retry with another tool)."""
        cached = self._decisions.get(task.id)
        if cached is not None and cached.tool is not None and not avoid:
            if self.blocked(cached.tool) is None:
                return cached
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
            settled=self._settled,
        )
        self._decisions[task.id] = decision
        return decision

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
        found = self.breakers.blocked(tool)
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
        key = capability_key(task, self.defaults)
        if key not in self._records:
            return
        attempts, successes, durations = self._records[key].get(tool, (0, 0, ()))
        self._records[key][tool] = (
            attempts + 1,
            successes + succeeded,
            (*durations, seconds)[-RECENT_DURATIONS:],
        )

    def _record(self, key: str) -> dict[str, tuple]:
        if key not in self._records:
            found = self._track_record(key) if self._track_record is not None else {}
            self._records[key] = found
        return self._records[key]


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
