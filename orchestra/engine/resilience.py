"""What happens after a failure: the retry policy, each tool's circuit breaker, the loop
breaker that stops a task failing the same way again and again, and budgets.

The run loop asks; nothing here starts or records an attempt by itself, except that a
breaker saves its state in the store so that it holds across runs and processes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestra import classes
from orchestra.engine.failover import BUILT_IN_TABLE, FAILOVER_WAIT, STOP, failure_table
from orchestra.models import (
    Backoff,
    Budget,
    Defaults,
    RetryPolicy,
    StepResult,
    Task,
    ToolProfile,
)
from orchestra.patterns import LazyPattern

#: error classes that are the tool's (or its provider's) fault, not the task's: they count
#: towards the tool's breaker. A failed check or a bad edit is the task's business.
TOOL_FAULTS = frozenset(
    {"provider_error", "rate_limited", "auth", "crashed", "timeout", "idle", "turn_failed"}
)
#: consecutive tool faults that open a breaker, unless the profile sets breaker_failures
BREAKER_FAILURES = 3
#: seconds an open breaker keeps its tool out, unless the profile sets breaker_cooldown
BREAKER_COOLDOWN = 60.0
#: the bound on what a failed check feeds back to the next attempt
FEEDBACK_LINES = 40
FEEDBACK_CHARS = 4000


# -- the retry policy ----------------------------------------------------------------------


def retry_policy(task: Task, defaults: Defaults, max_attempts: int) -> RetryPolicy:
    """Return the policy of ``task``: its own values, else [defaults], else the built-ins
    (``max_attempts`` is the resolved setting)."""

    def pick(name: str, fallback: Any) -> Any:
        own = getattr(task, name)
        if own is not None:
            return own
        shared = getattr(defaults, name)
        return shared if shared is not None else fallback

    table = failure_table(task, defaults)
    return RetryPolicy(
        max_attempts=task.max_attempts if task.max_attempts is not None else max_attempts,
        backoff=task.backoff or defaults.backoff or Backoff(),
        non_retryable=_stops(table),
        retry_with_other_tool=bool(pick("retry_with_other_tool", False)),
        same_failure_limit=pick("same_failure_limit", 2),
        on_failure=table,
        failover_wait=pick("failover_wait", FAILOVER_WAIT),
    )


#: the classes the built-in policy table stops at (``RetryPolicy.non_retryable``)
BUILT_IN_STOPS = frozenset(name for name, action in BUILT_IN_TABLE.items() if action == STOP)


def _stops(table: Mapping[str, str]) -> frozenset[str]:
    if table is BUILT_IN_TABLE:
        return BUILT_IN_STOPS
    return frozenset(name for name, action in table.items() if action == STOP)


def backoff_delay(backoff: Backoff, attempt: int, retry_after: float | None = None) -> float:
    """Return the wait before attempt ``attempt + 1``: ``initial * factor**(attempt - 1)``,
    capped at ``max``, with jitter between half and all of it; a tool's ``retry_after``
    wins over the backoff."""
    if retry_after is not None:
        return max(retry_after, 0.0)
    delay = min(backoff.initial * backoff.factor ** (attempt - 1), backoff.max)
    if backoff.jitter:
        import random  # here: a run whose tasks never wait need not import it at start

        delay *= random.uniform(0.5, 1.0)
    return delay


# -- the loop breaker ----------------------------------------------------------------------

_VOLATILE = LazyPattern(
    r"0x[0-9a-f]+|\b[0-9a-f]{7,40}\b|\d+(\.\d+)?|/tmp/\S+|/var/\S+|\s+", re.IGNORECASE
)


def fingerprint(result: StepResult) -> str | None:
    """Return a short digest of a failure with its volatile parts (numbers, hashes,
    temporary paths, spacing) taken out, so the same failure twice digests the same."""
    if result.outcome == "succeeded":
        return None
    text = "\n".join(
        part or "" for part in (result.error_class, result.message, result.feedback)
    ).lower()
    normal = _VOLATILE().sub(lambda match: " " if match.group().isspace() else "#", text)
    from orchestra.digests import sha256

    return sha256(normal.encode()).hexdigest()[:16]


def repeats(fingerprints: list[str | None], limit: int) -> bool:
    """Return whether the last ``limit`` attempts failed the same way."""
    if limit < 1 or len(fingerprints) < limit:
        return False
    last = fingerprints[-limit:]
    return last[0] is not None and all(value == last[0] for value in last)


def change_digest(diff: str | None) -> str | None:
    """Return a digest of an attempt's change (its diff without the index lines, which
    name blobs), or None when it changed nothing."""
    if not diff:
        return None
    kept = "\n".join(line for line in diff.splitlines() if not line.startswith("index "))
    from orchestra.digests import sha256

    return sha256(kept.encode()).hexdigest()[:16]


def oscillates(changes: list[str | None]) -> bool:
    """Return whether the last attempt's change equals the one two attempts before (the
    tool going back and forth between two edits)."""
    return len(changes) >= 3 and changes[-1] is not None and changes[-1] == changes[-3]


def check_feedback(label: str, why: str, lines: list[str]) -> str:
    """Return what a failed check feeds back to the next attempt: the check, how it
    failed and the tail of its output, bounded in lines and characters."""
    tail = "\n".join(lines[-FEEDBACK_LINES:])
    if len(tail) > FEEDBACK_CHARS:
        tail = "…" + tail[-FEEDBACK_CHARS:]
    head = f"The check `{label}` {why} after your last attempt."
    if not tail.strip():
        return head + " It printed nothing."
    return f"{head} The end of its output:\n{tail}"


def refusal_feedback(why: str) -> str:
    """Return what an attempt whose change was refused (out of scope, or reaching beyond
    its workspace) feeds back to the next one."""
    return f"Your last attempt's change was refused, and not kept: {why}."


def conflict_feedback(files: str) -> str:
    """Return what an attempt whose change conflicted with work merged meanwhile feeds
    back to the next one."""
    return (
        f"Your last attempt's change conflicted, in {files}, with work merged meanwhile,"
        " and was not kept."
    )


#: the failures after which a retry goes on from the attempt's change rather than
#: starting over: the change was made and only a check or a reviewer found it wanting
#: (or its review could not be made). After a refused change, a conflict or anything
#: else, the retry starts clean.
CONTINUED_AFTER = frozenset({"check_failed", "review_rejected", "review_failed"})


def continues_after(error_class: str | None) -> bool:
    """Whether a retry after a failure of ``error_class`` goes on from its change."""
    return error_class in CONTINUED_AFTER


#: what a retry's prompt says of the directory its tool starts in, by
#: ``ExecutionRequest.start``
START_NOTES = {
    "continued": (
        "Your last attempt's change is already in the working tree, uncommitted (`git diff`"
        " shows it), on top of the work merged so far: go on from it and fix what failed;"
        " do not make it again."
    ),
    "unapplied": (
        "Your last attempt's change no longer applies to the work merged since, so this"
        " attempt starts clean from that work: the working tree does not have your last"
        " change. Make the change again, and fix what failed."
    ),
    "clean": (
        "This attempt starts clean from the work merged so far: the working tree does not"
        " have your last attempt's change. Make the change again, avoiding what went wrong."
    ),
    "as_left": (
        "The working directory is as your last attempt left it: nothing is undone between"
        " attempts here."
    ),
}


def start_note(request: Any) -> str | None:
    """Return what a retry's prompt says about the working tree the tool starts in (from
    ``request.start``); None on a first attempt, or when the workspace did not say.

    Every tool says this same sentence, so that none tells a model its earlier edits are
    there when they are not."""
    if request.attempt < 2 or request.start is None:
        return None
    return START_NOTES.get(request.start)


# -- circuit breakers ----------------------------------------------------------------------


@classes.define
class Breaker:
    """One tool's breaker: closed (normal), open (kept out until ``until``) or half_open
    (one trial attempt decides)."""

    tool: str
    state: str = "closed"
    failures: int = 0
    opened_at: float | None = None
    until: float | None = None
    last_error_class: str | None = None
    trial_running: bool = False


class Breakers:
    """The breakers of every tool, loaded from the store and saved back on each change.

    ``on_event(kind, payload)`` hears of every change (``breaker.opened`` …), for the
    run's events. A tool whose adapter says ``circuit_breaker = False`` (the shell tool,
    whose failures are its commands') never gets one.
    """

    def __init__(
        self,
        store: Any,
        profile: Callable[[str], ToolProfile],
        on_event: Callable[[str, Mapping[str, Any]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._profile = profile
        self._on_event = on_event
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}
        for record in store.breakers():
            self._breakers[record.tool] = Breaker(
                record.tool,
                record.state,
                record.failures,
                record.opened_at,
                record.open_until,
                record.last_error_class,
            )

    def blocked(self, tool: str) -> tuple[str, float | None] | None:
        """Return why the tool is kept out of routing now and until when (None for a
        half-open breaker whose trial runs), or None when it may be used."""
        breaker = self._breakers.get(tool)
        if breaker is None or breaker.state == "closed":
            return None
        now = self._clock()
        if breaker.state == "open" and breaker.until is not None and now >= breaker.until:
            return None  # cool-down over: the next attempt is the half-open trial
        if breaker.state == "half_open" and not breaker.trial_running:
            return None
        if breaker.state == "half_open":
            return f"breaker half-open: a trial attempt of {tool} is running", None
        until = time.strftime("%H:%M:%S", time.localtime(breaker.until or now))
        cause = breaker.last_error_class or "failures"
        return (
            f"breaker open until {until} ({breaker.failures} × {cause} in a row)",
            breaker.until,
        )

    def on_start(self, tool: str) -> None:
        """Note an attempt of ``tool`` starting: past an open breaker's cool-down it is
        the half-open trial."""
        breaker = self._breakers.get(tool)
        if breaker is None or breaker.state == "closed":
            return
        if breaker.state == "open":
            breaker.state = "half_open"
            self._save(breaker, "breaker.half_open", {"tool": tool})
        breaker.trial_running = True

    def on_end(self, tool: str, result: StepResult, uses_breaker: bool = True) -> None:
        """Count the attempt's end: a tool fault towards opening, anything else (the tool
        did its part) closes the breaker."""
        if result.outcome == "canceled" or not uses_breaker:
            return
        breaker = self._breakers.setdefault(tool, Breaker(tool))
        breaker.trial_running = False
        now = self._clock()
        if result.error_class not in TOOL_FAULTS:
            if breaker.state != "closed" or breaker.failures:
                was = breaker.state
                breaker.state, breaker.failures = "closed", 0
                breaker.opened_at = breaker.until = None
                if was != "closed":
                    self._save(breaker, "breaker.closed", {"tool": tool})
                else:
                    self._save(breaker)
            return
        breaker.failures += 1
        breaker.last_error_class = result.error_class
        profile = self._profile(tool)
        threshold = _number(profile.options.get("breaker_failures"), BREAKER_FAILURES)
        cooldown = _number(profile.options.get("breaker_cooldown"), BREAKER_COOLDOWN)
        # a rate limit that says when to come back opens the breaker until then
        wait = result.retry_after if result.error_class == "rate_limited" else None
        if breaker.state == "half_open" or breaker.failures >= threshold or wait is not None:
            breaker.state = "open"
            breaker.opened_at = now
            breaker.until = now + (wait if wait is not None else cooldown)
            payload = {
                "tool": tool,
                "failures": breaker.failures,
                "error_class": result.error_class,
                "until": breaker.until,
            }
            self._save(breaker, "breaker.opened", payload)
        else:
            self._save(breaker)

    def reset(self, tool: str) -> str:
        """Close ``tool``'s breaker at once, forgetting its failures (``orchestra tools
        reset``), and return the state it was in; a closed one is left as it is."""
        breaker = self._breakers.get(tool)
        if breaker is None or breaker.state == "closed":
            return "closed"
        self._breakers[tool] = closed = Breaker(tool)
        self._save(closed, "breaker.closed", {"tool": tool, "reset": True})
        return breaker.state

    def _save(self, breaker: Breaker, event: str | None = None, payload=None) -> None:
        self._store.set_breaker(
            breaker.tool,
            breaker.state,
            failures=breaker.failures,
            opened_at=breaker.opened_at,
            last_error_class=breaker.last_error_class,
            open_until=breaker.until,
        )
        if event is not None:
            self._on_event(event, payload or {})


def _number(value: Any, default: float) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


# -- budgets -------------------------------------------------------------------------------


class BudgetMeter:
    """What a run and its tasks have used (tokens = input + output, cost) against their
    budgets."""

    def __init__(self, run_budget: Budget, used: Mapping[str, tuple[int, float]]) -> None:
        self.run_budget = run_budget
        self.by_task: dict[str, list[float]] = {
            task: [tokens, cost] for task, (tokens, cost) in used.items()
        }
        self.tokens = sum(tokens for tokens, _ in used.values())
        self.cost = sum(cost for _, cost in used.values())

    def add(self, task_id: str, result: StepResult) -> None:
        usage = result.usage
        tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0)
        cost = usage.cost_usd or 0.0
        spent = self.by_task.setdefault(task_id, [0, 0.0])
        spent[0] += tokens
        spent[1] += cost
        self.tokens += tokens
        self.cost += cost

    def run_exhausted(self) -> str | None:
        """Return why the run may start nothing more, or None while it is within budget."""
        return _over(self.run_budget, self.tokens, self.cost, "run")

    def task_exhausted(self, task: Task) -> str | None:
        """Return why ``task`` may not be tried again, or None."""
        if task.budget is None:
            return None
        tokens, cost = self.by_task.get(task.id, (0, 0.0))
        return _over(task.budget, tokens, cost, "task")


def _over(budget: Budget, tokens: float, cost: float, whose: str) -> str | None:
    if budget.cost is not None and cost >= budget.cost:
        return f"budget_exhausted: the {whose} cost {cost:.2f} of its {budget.cost:.2f}"
    if budget.tokens is not None and tokens >= budget.tokens:
        return f"budget_exhausted: the {whose} used {int(tokens)} tokens of its {budget.tokens}"
    return None
