"""Run and step lifecycles: the states, the legal transitions, and nothing else.

The store (``store.py`` beside this module) checks every change of state against these
tables inside the transaction that writes it, so a run or a step can only ever move along
an edge listed here. Anything else is a bug in orchestra and raises ``IllegalTransition``.
The engine reads the states from here; the store needs nothing of the engine.

Ended states are final but for one door: ``resume`` continues a canceled run, and with it
reopens its canceled steps (and those skipped because of them). And one move skips the
table: ``resume`` records succeeded a step that has not ended whose change it finds landed
on the run's result (``FOUND_LANDED``), when the database lost the record of its attempt.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class RunState(str, enum.Enum):
    """Where a whole run is."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: stopped on request (Ctrl-C, ``orchestra cancel``); ``resume`` may continue it
    CANCELED = "canceled"
    #: the process driving the run died, or stopped on a fault (a full disk); found by
    #: the next command when its lock is free, left by resuming or canceling
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


class StepState(str, enum.Enum):
    """Where one task of a run is."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    QUARANTINED = "quarantined"
    SKIPPED = "skipped"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


_R = RunState
_S = StepState

#: state -> the states a run may move to from it
RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    # pending -> interrupted: its process died before the first step started
    _R.PENDING: frozenset({_R.RUNNING, _R.CANCELED, _R.INTERRUPTED}),
    _R.RUNNING: frozenset({_R.SUCCEEDED, _R.FAILED, _R.CANCELED, _R.INTERRUPTED}),
    _R.INTERRUPTED: frozenset({_R.RUNNING, _R.CANCELED}),
    _R.SUCCEEDED: frozenset(),
    _R.FAILED: frozenset(),
    # canceled -> running: resume continues a canceled run (a person stopped it; nothing
    # in it went wrong for good). Nothing else leaves canceled.
    _R.CANCELED: frozenset({_R.RUNNING}),
}

#: state -> the states a step may move to from it
STEP_TRANSITIONS: Mapping[StepState, frozenset[StepState]] = {
    # skipped straight from pending: a dependency failed, so the step never became ready
    _S.PENDING: frozenset({_S.READY, _S.SKIPPED, _S.CANCELED}),
    # ready -> failed: no installed, available tool can run the task, so no attempt starts
    # ready -> skipped: the run's budget ran out before it could start
    _S.READY: frozenset({_S.RUNNING, _S.FAILED, _S.SKIPPED, _S.CANCELED}),
    # running -> retrying is also how a resumed run gives up an interrupted attempt
    _S.RUNNING: frozenset(
        {_S.SUCCEEDED, _S.FAILED, _S.RETRYING, _S.QUARANTINED, _S.SKIPPED, _S.CANCELED}
    ),
    # retrying -> failed: routed again, no tool can take it; -> skipped: budget ran out
    _S.RETRYING: frozenset({_S.RUNNING, _S.FAILED, _S.SKIPPED, _S.CANCELED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.QUARANTINED: frozenset(),
    # skipped -> pending, canceled -> pending: resuming a canceled run waits again for
    # its canceled steps and for those skipped because of one of them
    _S.SKIPPED: frozenset({_S.PENDING}),
    _S.CANCELED: frozenset({_S.PENDING}),
}

#: the only moves out of an ended state: resume's, as it continues a canceled run
REOPENING_RUN = frozenset({(_R.CANCELED, _R.RUNNING)})
REOPENING_STEP = frozenset({(_S.CANCELED, _S.PENDING), (_S.SKIPPED, _S.PENDING)})

#: the states from which resume records a step succeeded because its change is found
#: landed on the run's result (``Store.record_found_landed``), its attempt's record lost:
#: SQLite in WAL with ``synchronous = NORMAL`` may lose its last transactions in a power
#: cut, while git keeps the landing. Not edges of the table: nothing else takes them.
FOUND_LANDED = frozenset({_S.PENDING, _S.READY, _S.RETRYING})

#: states in which a run has ended: nothing moves it on but resume continuing a canceled one
TERMINAL_RUN_STATES = frozenset(
    state
    for state, nexts in RUN_TRANSITIONS.items()
    if all((state, new) in REOPENING_RUN for new in nexts)
)
#: states in which a step has ended: nothing moves it on but resume reopening it
TERMINAL_STEP_STATES = frozenset(
    state
    for state, nexts in STEP_TRANSITIONS.items()
    if all((state, new) in REOPENING_STEP for new in nexts)
)


class IllegalTransition(Exception):
    """A change of state that the tables above do not allow: a bug in orchestra.

    Deliberately not an ``OrchestraError``: no input of the user's can cause it, so it
    is allowed to show its traceback.
    """

    def __init__(self, entity: str, current: str, new: str) -> None:
        self.entity = entity
        self.current = str(current)
        self.new = str(new)
        super().__init__(f"{entity} cannot go from {self.current} to {self.new}")


def check_run_transition(entity: str, current: str, new: str) -> RunState:
    """Return ``new`` as a RunState if a run may go there from ``current``, else raise."""
    return _check(RunState, RUN_TRANSITIONS, entity, current, new)


def check_step_transition(entity: str, current: str, new: str) -> StepState:
    """Return ``new`` as a StepState if a step may go there from ``current``, else raise."""
    return _check(StepState, STEP_TRANSITIONS, entity, current, new)


#: each kind's states by value (a state is a str equal to its value, so found by itself
#: too): a dict lookup, where calling the Enum costs ten times as much
_BY_VALUE = {kind: {state.value: state for state in kind} for kind in (RunState, StepState)}


def _check(kind, table, entity, current, new):
    members = _BY_VALUE[kind]
    try:
        current_state, new_state = members[current], members[new]
    except (KeyError, TypeError):
        raise IllegalTransition(entity, current, new) from None
    if new_state not in table[current_state]:
        raise IllegalTransition(entity, current, new)
    return new_state
