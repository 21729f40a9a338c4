"""Where a UET bundle's steps are: its ``steps``, ``execution_phases``, the steps of its
``phases`` or its ``execution_steps``; and the id each step takes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestra.loaders.jsonfile import Fields, describe

#: the lists a bundle's steps come in
STEP_LISTS = ("steps", "phases", "execution_phases", "execution_steps")


def _step_id(inner: Fields) -> str | None:
    """A step's id: its ``id``, else ``step-N`` or ``phase-N`` from its number."""
    if inner.values.get("id") is not None:
        return inner.string("id")
    for key in ("step", "phase"):
        number = inner.values.get(key)
        if isinstance(number, int) and not isinstance(number, bool):
            return f"{key}-{number}"
    inner.problem("id", "missing required key")
    return None


def _phase_steps(fields: Fields) -> list[tuple[int, Mapping[str, Any]]]:
    """The steps of a bundle: its ``steps``; or each ``execution_phases`` item as a step;
    or the steps of each of its ``phases`` in order, ids ``<phase>.<step>`` (a numbered
    step's ``<phase>.step-N``), a ``depends_on`` naming a step of its own phase first."""
    if fields.values.get("steps") is not None:
        return _objects(fields, "steps")
    if fields.values.get("execution_phases") is not None:
        return _objects(fields, "execution_phases")
    steps: list[tuple[int, Mapping[str, Any]]] = []
    phases = []
    for number, phase in _objects(fields, "phases"):
        phase_id = phase.get("id") if isinstance(phase.get("id"), str) else None
        inner = phase.get("steps")
        if phase_id is None or not isinstance(inner, list):
            fields.problem("phases", "expected phases with an 'id' and a list of 'steps'")
            continue
        phases.append((number, phase_id, [step for step in inner if isinstance(step, dict)]))
    # each phase's steps by the id they are given within it
    within = {
        phase_id: {own: f"{phase_id}.{own}" for own in map(_own_id, inner) if own}
        for _, phase_id, inner in phases
    }
    for number, phase_id, inner in phases:
        for index, step in enumerate(inner):
            step = dict(step)
            own = _own_id(step)
            if own is not None:
                step["id"] = f"{phase_id}.{own}"
            needs = step.get("depends_on")
            if isinstance(needs, list):
                where = f"phases[{number}].steps[{index}].depends_on"
                step["depends_on"] = [
                    _phase_need(need, phase_id, within, fields, where) for need in needs
                ]
            steps.append((len(steps), step))
    return steps


def _own_id(step: Mapping[str, Any]) -> str | None:
    """A step's id within its phase, as ``_step_id`` gives it (None: it has none)."""
    if isinstance(step.get("id"), str):
        return step["id"]
    if step.get("id") is None:
        for key in ("step", "phase"):
            number = step.get(key)
            if isinstance(number, int) and not isinstance(number, bool):
                return f"{key}-{number}"
    return None


def _phase_need(
    need: Any, phase_id: str, within: Mapping[str, Mapping[str, str]], fields: Fields, where: str
) -> Any:
    """The step a ``depends_on`` of a step in ``phase_id`` names: a step of its own phase,
    else the one step of another phase with that id, else what it says (another bundle,
    or ``<phase>.<step>``). A name steps of several other phases have is a problem."""
    if not isinstance(need, str):
        return need
    if need in within[phase_id]:
        return within[phase_id][need]
    found = [steps[need] for steps in within.values() if need in steps]
    if len(found) > 1:
        fields.problem(
            where,
            f"{need!r} is a step of several phases ({', '.join(found)}) and of none in "
            f"phase {phase_id!r}: name the one meant as '<phase>.<step>'",
        )
    return found[0] if found else need


def _objects(fields: Fields, key: str) -> list[tuple[int, Mapping[str, Any]]]:
    """Return (index, object) for each object of the list at ``key``; a problem each for
    a value that is not a list, or an item that is not an object."""
    values = fields.values.get(key)
    if not isinstance(values, list):
        fields.problem(key, f"expected a list of step objects, got {describe(values)}")
        return []
    found: list[tuple[int, Mapping[str, Any]]] = []
    for index, item in enumerate(values):
        if isinstance(item, dict):
            found.append((index, item))
        else:
            fields.problem(f"{key}[{index}]", f"expected a step object, got {describe(item)}")
    return found
