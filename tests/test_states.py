"""Run and step state machines: exactly the documented transitions are legal."""

import itertools

import pytest

from orchestra.errors import OrchestraError
from orchestra.store.lifecycle import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_RUN_STATES,
    TERMINAL_STEP_STATES,
    IllegalTransition,
    RunState,
    StepState,
    check_run_transition,
    check_step_transition,
)

# The design, written out independently of the module's tables (DESIGN.md "States").
RUN_EDGES = {
    ("pending", "running"),
    ("pending", "canceled"),
    ("pending", "interrupted"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "canceled"),
    ("running", "interrupted"),
    ("interrupted", "running"),
    ("interrupted", "canceled"),
    ("canceled", "running"),  # resume continues a canceled run
}
STEP_EDGES = {
    ("pending", "ready"),
    ("pending", "skipped"),
    ("pending", "canceled"),
    ("ready", "running"),
    ("ready", "failed"),
    ("ready", "skipped"),
    ("ready", "canceled"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "retrying"),
    ("running", "quarantined"),
    ("running", "skipped"),
    ("running", "canceled"),
    ("retrying", "running"),
    ("retrying", "failed"),
    ("retrying", "skipped"),
    ("retrying", "canceled"),
    ("canceled", "pending"),  # resuming a canceled run: its canceled steps wait again
    ("skipped", "pending"),  # and so do those skipped because of one of them
}
RUN_NAMES = ["pending", "running", "succeeded", "failed", "canceled", "interrupted"]
STEP_NAMES = [
    "pending",
    "ready",
    "running",
    "succeeded",
    "failed",
    "retrying",
    "quarantined",
    "skipped",
    "canceled",
]


def test_the_states_are_string_enums_with_the_documented_names():
    assert [state.value for state in RunState] == RUN_NAMES
    assert [state.value for state in StepState] == STEP_NAMES
    assert RunState.RUNNING == "running" and str(StepState.RETRYING) == "retrying"
    assert set(RUN_TRANSITIONS) == set(RunState)
    assert set(STEP_TRANSITIONS) == set(StepState)


def test_terminal_states():
    assert TERMINAL_RUN_STATES == {"succeeded", "failed", "canceled"}
    assert TERMINAL_STEP_STATES == {"succeeded", "failed", "quarantined", "skipped", "canceled"}
    # interrupted is not terminal: resuming leaves it
    assert RunState.INTERRUPTED not in TERMINAL_RUN_STATES


@pytest.mark.parametrize("current, new", list(itertools.product(RUN_NAMES, repeat=2)))
def test_run_transitions(current, new):
    if (current, new) in RUN_EDGES:
        assert check_run_transition("run r1", current, new) is RunState(new)
    else:
        with pytest.raises(IllegalTransition) as raised:
            check_run_transition("run r1", current, new)
        assert str(raised.value) == f"run r1 cannot go from {current} to {new}"
        assert (raised.value.entity, raised.value.current, raised.value.new) == (
            "run r1",
            current,
            new,
        )


@pytest.mark.parametrize("current, new", list(itertools.product(STEP_NAMES, repeat=2)))
def test_step_transitions(current, new):
    entity = "step 'api' of run r1"
    if (current, new) in STEP_EDGES:
        assert check_step_transition(entity, current, new) is StepState(new)
    else:
        with pytest.raises(
            IllegalTransition, match=f"^{entity} cannot go from {current} to {new}$"
        ):
            check_step_transition(entity, current, new)


def test_enum_members_and_strings_are_interchangeable():
    assert check_run_transition("run r1", RunState.PENDING, "running") is RunState.RUNNING
    assert check_step_transition("s", "retrying", StepState.RUNNING) is StepState.RUNNING


def test_names_that_are_no_state_are_illegal_too():
    with pytest.raises(IllegalTransition, match="run r1 cannot go from running to done"):
        check_run_transition("run r1", "running", "done")
    with pytest.raises(IllegalTransition, match="cannot go from started to running"):
        check_step_transition("s", "started", "running")


def test_an_illegal_transition_is_a_bug_not_a_user_error():
    assert issubclass(IllegalTransition, Exception)
    assert not issubclass(IllegalTransition, OrchestraError)
