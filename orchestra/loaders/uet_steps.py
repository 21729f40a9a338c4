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
    or the steps of each of its ``phases`` in order, ids ``<phase>.<step>``."""
    if fields.values.get("steps") is not None:
        return _objects(fields, "steps")
    if fields.values.get("execution_phases") is not None:
        return _objects(fields, "execution_phases")
    steps: list[tuple[int, Mapping[str, Any]]] = []
    phases = []
    for _, phase in _objects(fields, "phases"):
        phase_id = phase.get("id") if isinstance(phase.get("id"), str) else None
        inner = phase.get("steps")
        if phase_id is None or not isinstance(inner, list):
            fields.problem("phases", "expected phases with an 'id' and a list of 'steps'")
            continue
        phases.append((phase_id, inner))
    names = {  # a step's id as steps of any phase name it
        step["id"]: f"{phase_id}.{step['id']}"
        for phase_id, inner in phases
        for step in inner
        if isinstance(step, dict) and isinstance(step.get("id"), str)
    }
    for phase_id, inner in phases:
        for step in inner:
            if not isinstance(step, dict):
                continue
            step = dict(step)
            if isinstance(step.get("id"), str):
                step["id"] = f"{phase_id}.{step['id']}"
            needs = step.get("depends_on")
            if isinstance(needs, list):
                step["depends_on"] = [names.get(need, need) for need in needs]
            steps.append((len(steps), step))
    return steps


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
