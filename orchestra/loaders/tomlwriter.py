"""A Workstream written as orchestra's TOML, which loads back to an equal Workstream.

Only the values that differ from the models' defaults are written, in the order
docs/workstreams.md lists them; prompts and other multi-line text become multi-line
strings, so a converted file reads like one written by hand. A review is written as
a workstream file writes it: ``review = true`` or ``false`` when it says only that, an
inline table, or a ``[tasks.review]`` table of its own when its prompt is several lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from orchestra.durations import format_duration, parse_duration
from orchestra.errors import SpecError
from orchestra.models import Defaults, Review, Task, Workstream

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
#: characters a TOML basic string must escape (besides the quote and the backslash)
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
ESCAPES.update({'"': '\\"', "\\": "\\\\"})


def to_toml(workstream: Workstream, *, comment: str | None = None) -> str:
    """Return ``workstream`` as the text of a TOML workstream file.

    Raises SpecError for a value TOML cannot hold (a null or a too large number in
    metadata), naming the task and the field.
    """
    lines = [f"# {line}" for line in (comment or "").splitlines()]
    lines.append(f"id = {_string(workstream.id)}")
    for name in ("title", "description"):
        value = getattr(workstream, name)
        if value is not None:
            lines.append(f"{name} = {_text(value)}")
    defaults = _changed(workstream.defaults, Defaults())
    if defaults:
        lines += ["", "[defaults]"]
        review = None
        for name, value in defaults:
            if name == "review" and _review_table(value):
                review = value
            else:
                lines.append(f"{_key(name)} = {_value(value, None, name)}")
        if review is not None:
            lines += _review_lines("[defaults.review]", review, None)
    for task in workstream.tasks:
        lines += ["", "[[tasks]]"]
        metadata = review = None
        for name, value in _changed(task, Task(id=task.id), always=("id",)):
            if name == "metadata":
                metadata = value
            elif name == "review" and _review_table(value):
                review = value
            elif name == "prompt" or (name == "command" and isinstance(value, str)):
                lines.append(f"{name} = {_text(value)}")
            else:
                lines.append(f"{name} = {_value(value, task.id, name)}")
        if review is not None:
            lines += _review_lines("[tasks.review]", review, task.id)
        if metadata:
            lines.append("[tasks.metadata]")
            lines += [
                f"{_key(key)} = {_value(item, task.id, f'metadata.{key}')}"
                for key, item in metadata.items()
            ]
    return "\n".join(lines) + "\n"


def _review_table(review: Review) -> bool:
    """Whether a review is written as a table of its own: its prompt is several lines,
    which an inline table would hold only as one escaped line."""
    return review.prompt is not None and "\n" in review.prompt


def _review_lines(header: str, review: Review, task: str | None) -> list[str]:
    """Return the lines of a review written as a table of its own, under ``header``."""
    lines = [header]
    for name, value in _changed(review, Review()):
        written = _text(value) if name == "prompt" else _value(value, task, f"review.{name}")
        lines.append(f"{name} = {written}")
    return lines


def _changed(values: Any, blank: Any, always: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Return (field, value) for the fields of an attrs object that differ from ``blank``."""
    return [
        (field.name, getattr(values, field.name))
        for field in attrs.fields(type(values))
        if not field.metadata.get("internal")
        and (field.name in always or getattr(values, field.name) != getattr(blank, field.name))
    ]


def _key(name: str) -> str:
    return name if BARE_KEY.fullmatch(name) else _string(name)


def _string(text: str) -> str:
    """Return ``text`` as a one-line TOML basic string."""
    escaped = "".join(ESCAPES.get(char, char) for char in text)
    return '"' + CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", escaped) + '"'


def _text(text: str) -> str:
    """Return ``text`` as a multi-line literal string when it reads better as one."""
    if "\n" not in text or "'''" in text or text.endswith("'") or "\r" in text:
        return _string(text)
    if CONTROL.search(text.replace("\n", "")):
        return _string(text)
    return "'''\n" + text + "'''"


def _value(value: Any, task: str | None, field: str) -> str:
    """Return a TOML value for a model field or a metadata value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise SpecError("integer too large for TOML", task=task, field=field)
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{value} cannot be written", task=task, field=field)
        if _is_duration(field):
            written = format_duration(value)
            if parse_duration(written) == value:
                return _string(written)
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple, frozenset)):
        return "[" + ", ".join(_value(item, task, field) for item in value) + "]"
    if isinstance(value, Mapping):
        return _inline_table(value.items(), task, field)
    if isinstance(value, Review) and value in (Review(), Review(enabled=False)):
        return "true" if value.enabled else "false"  # as ``review = true`` reads
    if attrs.has(type(value)):
        blank = _blank(value)
        return _inline_table(_changed(value, blank, _required(value)), task, field)
    if value is None:
        raise SpecError("null cannot be written in TOML", task=task, field=field)
    raise SpecError(f"{type(value).__name__} cannot be written in TOML", task=task, field=field)


def _inline_table(items: Any, task: str | None, field: str) -> str:
    inner = ", ".join(f"{_key(k)} = {_value(v, task, f'{field}.{k}')}" for k, v in items)
    return "{ " + inner + " }" if inner else "{}"


def _is_duration(field: str) -> bool:
    if field.startswith("metadata"):
        return False
    last = field.rsplit(".", 1)[-1].split("[", 1)[0]
    return last in ("timeout", "idle_timeout", "initial", "max", "failover_wait")


def _blank(value: Any) -> Any:
    """Return the model of ``value``'s class with only its required fields set."""
    required = {name: getattr(value, name) for name in _required(value)}
    return type(value)(**required)


def _required(value: Any) -> tuple[str, ...]:
    return tuple(
        field.name for field in attrs.fields(type(value)) if field.default is attrs.NOTHING
    )
