"""Turning cattrs' exception groups into lines: one ``SpecError`` per leaf error, naming
the file, the task (by its id, or its number when it has none) and the dotted field."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from orchestra.errors import SpecError, did_you_mean
from orchestra.spec.structuring import ExpectedType


def structuring_problems(
    error: BaseException, document: Mapping[str, Any], file: str
) -> list[SpecError]:
    """Return one SpecError per leaf of the error cattrs raised for ``document``."""
    return [
        problem
        for path, leaf in _leaf_errors(error, [])
        for problem in _problems(file, document, path, leaf)
    ]


def _leaf_errors(error: BaseException, path: list) -> Iterator[tuple[list, BaseException]]:
    """Yield (path, error) for every leaf error in cattrs' nested exception groups."""
    if isinstance(error, (ClassValidationError, IterableValidationError)):
        with_notes, without = error.group_exceptions()
        for inner, note in with_notes:
            step = note.name if isinstance(note, AttributeValidationNote) else note.index
            yield from _leaf_errors(inner, [*path, step])
        for inner in without:
            yield from _leaf_errors(inner, path)
    else:
        yield path, error


def _problems(
    file: str, document: Mapping[str, Any], path: list, error: BaseException
) -> list[SpecError]:
    """Return the error lines one leaf error of cattrs stands for (one per unknown key)."""
    task, field_path = _locate(document, path)

    def where(*more: str) -> str | None:
        return ".".join([*field_path, *more]) or None

    if isinstance(error, ForbiddenExtraKeysError):
        known = [
            field.name for field in attrs.fields(error.cl) if not field.metadata.get("internal")
        ]
        return [
            SpecError(
                f"unknown key {key!r}{did_you_mean(key, known)}",
                file=file,
                task=task,
                field=where(key),
            )
            for key in sorted(error.extra_fields)
        ]
    if isinstance(error, KeyError):
        # cattrs' note already names the missing attribute, which ends the path
        missing = str(error.args[0]) if error.args else "?"
        return [SpecError("missing required key", file=file, task=task, field=where() or missing)]
    message = str(error) if isinstance(error, ExpectedType) else f"invalid value: {error}"
    return [SpecError(message, file=file, task=task, field=where())]


def _locate(document: Mapping[str, Any], path: list) -> tuple[str | None, list[str]]:
    """Return (task label, dotted field path) for a structuring path like tasks[3].files."""
    task = None
    rest = path
    if len(path) >= 2 and path[0] == "tasks" and isinstance(path[1], int):
        task = _task_label(document, path[1])
        rest = path[2:]
    field_path: list[str] = []
    for step in rest:
        if isinstance(step, int) and field_path:
            field_path[-1] = f"{field_path[-1]}[{step}]"
        else:
            field_path.append(str(step))
    return task, field_path


def _task_label(document: Mapping[str, Any], index: int) -> str:
    tasks = document.get("tasks")
    if isinstance(tasks, list) and index < len(tasks) and isinstance(tasks[index], dict):
        task_id = tasks[index].get("id")
        if isinstance(task_id, str) and task_id:
            return task_id
    return f"#{index + 1}"
