"""The policy table: what follows a failed attempt, by its error class — try again with
the same tool, with another tool, or stop.

A failure that says the *tool* is the problem (its key refused, its program missing, its
provider down, a long rate limit, timing out again and again) sends the next attempt to
another tool the task allows; one that says the *task* is the problem (a failed check, a
change out of scope) is tried again as before: the same tool first, told what went wrong
(the FIX loop). ``retry_policy`` (``resilience.py``) resolves the table for a task;
``next_move`` reads it after each attempt, from the task's attempts so far, so that the
verdict and the next attempt's routing (after a resume too) agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from orchestra import classes
from orchestra.models import ERROR_CLASSES, FAILURE_ACTIONS

if TYPE_CHECKING:
    from orchestra.models import Defaults, RetryPolicy, Task

#: try again with the tool that failed
SAME = "same"
#: try again with another tool the task allows; with none, with the same tool
PREFER_OTHER = "prefer_other"
#: try again only with another tool the task allows; with none, stop
OTHER = "other"
#: do not try again
STOP = "stop"
ACTIONS = FAILURE_ACTIONS

#: the built-in table; a class it does not name is ``same``
ON_FAILURE: Mapping[str, str] = {
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
#: classes that send the retry to another tool only the second time in a row the same
#: tool fails with one of them: one timeout may be the task's size, two are the tool's
SWITCH_ON_REPEAT = frozenset({"timeout", "idle"})
#: the built-in ``failover_wait``: a rate limit asking to wait longer goes to another tool
FAILOVER_WAIT = 60.0


@classes.frozen
class AttemptEnd:
    """What ``next_move`` reads of one ended attempt of a task."""

    tool: str
    error_class: str | None
    retry_after: float | None = None


@classes.frozen
class Move:
    """What follows an attempt's failure: ``action`` (one of ``ACTIONS``) and, when it is
    another tool, the one to pass over and why."""

    action: str
    passed_tool: str | None = None
    #: "failed the last attempt with auth"
    why: str | None = None

    @property
    def switches(self) -> bool:
        """Whether the next attempt should go to another tool."""
        return self.action in (OTHER, PREFER_OTHER)


#: the built-in table with a row for every class, shared by every task that changes none
BUILT_IN_TABLE: Mapping[str, str] = MappingProxyType(
    {name: ON_FAILURE.get(name, SAME) for name in ERROR_CLASSES}
)


def failure_table(task: Task, defaults: Defaults) -> Mapping[str, str]:
    """Return the policy table of ``task``, a row for every error class.

    The built-in rows; then, when the task (else [defaults]) sets ``non_retryable``, the
    classes it lists stop and every other class is retried (a built-in ``stop`` becomes
    ``same``, ``other`` becomes ``prefer_other``); then ``retry_with_other_tool = true``
    makes each ``same`` row ``prefer_other``; then [defaults]' ``on_failure`` rows, and
    the task's own on top, class by class."""
    non_retryable = task.non_retryable if task.non_retryable is not None else defaults.non_retryable
    other_tool = task.retry_with_other_tool
    if other_tool is None:
        other_tool = defaults.retry_with_other_tool
    if not (non_retryable is not None or other_tool or defaults.on_failure or task.on_failure):
        return BUILT_IN_TABLE  # nearly every task: no table of its own to build
    table = dict(BUILT_IN_TABLE)
    if non_retryable is not None:
        listed = frozenset(non_retryable)
        retried = {STOP: SAME, OTHER: PREFER_OTHER}
        for name, action in table.items():
            table[name] = STOP if name in listed else retried.get(action, action)
    if other_tool:
        for name, action in table.items():
            if action == SAME:
                table[name] = PREFER_OTHER
    table.update(defaults.on_failure or {})
    table.update(task.on_failure or {})
    return table


def next_move(policy: RetryPolicy, ends: Sequence[AttemptEnd]) -> Move:
    """Return what follows the last of a task's attempts ``ends`` (oldest first) when it
    failed: its class's row, except that a rate limit whose wait is no longer than
    ``policy.failover_wait`` waits for the same tool, and a timeout that is not the
    second in a row of the same tool stays with it."""
    last = ends[-1]
    name = last.error_class
    action = policy.on_failure.get(name, SAME) if name is not None else SAME
    if action in (OTHER, PREFER_OTHER):
        if name == "rate_limited" and (
            last.retry_after is None or last.retry_after <= policy.failover_wait
        ):
            action = SAME
        elif name in SWITCH_ON_REPEAT and not _repeated(ends):
            action = SAME
    if action not in (OTHER, PREFER_OTHER):
        return Move(action)
    return Move(action, last.tool, _why(ends, len(ends)))


def passed_over(policy: RetryPolicy, ends: Sequence[AttemptEnd]) -> list[Move]:
    """Return a move for each tool the task's next attempt passes over: each tool whose
    latest attempt of the task failed in a way its row sends to another tool, the tool of
    the last attempt first. A tool that failed the task and then another did is passed
    over still: attempt 3 does not go back to the key attempt 1 found refused."""
    moves: list[Move] = []
    seen: set[str] = set()
    for count in range(len(ends), 0, -1):
        tool = ends[count - 1].tool
        if tool in seen:
            continue
        seen.add(tool)
        move = next_move(policy, ends[:count])
        if move.switches:
            moves.append(Move(move.action, tool, _why(ends, count)))
    return moves


def _why(ends: Sequence[AttemptEnd], count: int) -> str:
    """Why the tool of attempt ``count`` is passed over: its failure's class, and for a
    repeated timeout or a long rate limit, what made it the tool's fault."""
    end = ends[count - 1]
    which = "the last attempt" if count == len(ends) else f"attempt {count}"
    why = f"failed {which} with {end.error_class}"
    if end.error_class in SWITCH_ON_REPEAT:
        return f"{why}, twice in a row"
    if end.error_class == "rate_limited" and end.retry_after is not None:
        return f"{why} (asked to wait {end.retry_after:g}s)"
    return why


def _repeated(ends: Sequence[AttemptEnd]) -> bool:
    """Whether the last two attempts were the same tool's, both timing out."""
    if len(ends) < 2:
        return False
    before, last = ends[-2], ends[-1]
    return before.tool == last.tool and before.error_class in SWITCH_ON_REPEAT
