"""What the JSON formats share: reading a file, and reading typed fields of its objects
with one error per problem, naming the file, the task and the field as the file spells it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestra.errors import SpecError
from orchestra.spec import read_file

PRIORITY_WORDS = {"low": -1, "medium": 0, "high": 1, "critical": 2}
NOT_ID = re.compile(r"[^A-Za-z0-9._-]+")


def read_json(path: Path) -> Any:
    """Return the JSON document at ``path``; unreadable or malformed files raise SpecError."""
    raw = read_file(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(f"not UTF-8 text (byte {error.start})", file=str(path)) from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        where = f"(at line {error.lineno}, column {error.colno})"
        raise SpecError(f"invalid JSON: {error.msg} {where}", file=str(path)) from None
    except ValueError as error:  # NaN, Infinity, or an integer literal too long for Python
        raise SpecError(f"invalid JSON: {error}", file=str(path)) from None
    except RecursionError:
        raise SpecError("invalid JSON: nested too deeply", file=str(path)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def describe(value: Any) -> str:
    """Return a short description of a JSON value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) < 40 else "a string"
    return "a list" if isinstance(value, list) else "an object"


def as_id(text: str) -> str:
    """Return ``text`` made into a valid workstream id (file stems may hold spaces)."""
    return NOT_ID.sub("-", text).strip("-._") or "workstream"


class Fields:
    """Reads the fields of one JSON object, collecting a SpecError per wrong one."""

    def __init__(
        self, values: Mapping[str, Any], *, file: str, task: str | None, prefix: str = ""
    ) -> None:
        self.values = values
        self.file = file
        self.task = task
        self.prefix = prefix
        self.problems: list[SpecError] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(
            SpecError(message, file=self.file, task=self.task, field=self.prefix + key)
        )

    def _get(self, key: str, check, wanted: str, required: bool) -> Any:
        value = self.values.get(key)
        if value is None:
            if required:
                self.problem(key, "missing required key")
            return None
        if not check(value):
            self.problem(key, f"expected {wanted}, got {describe(value)}")
            return None
        return value

    def string(self, key: str, *, required: bool = False) -> str | None:
        return self._get(key, lambda value: isinstance(value, str), "a string", required)

    def strings(self, key: str, *, required: bool = False) -> list[str] | None:
        def check(value: Any) -> bool:
            return isinstance(value, list) and all(isinstance(item, str) for item in value)

        return self._get(key, check, "a list of strings", required)

    def number(self, key: str) -> float | None:
        def check(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        return self._get(key, check, "a number", False)

    def whole(self, key: str) -> int | None:
        def check(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        return self._get(key, check, "a whole number", False)

    def mapping(self, key: str) -> dict[str, Any] | None:
        return self._get(key, lambda value: isinstance(value, dict), "an object", False)

    def priority(self, key: str) -> int | None:
        """Return a priority given as a whole number or a word (low, medium, high, critical)."""
        value = self.values.get(key)
        if isinstance(value, str) and value.lower() in PRIORITY_WORDS:
            return PRIORITY_WORDS[value.lower()]
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        words = ", ".join(PRIORITY_WORDS)
        self.problem(key, f"expected a whole number or one of {words}, got {describe(value)}")
        return None


def without_nulls(value: Any) -> Any:
    """Return ``value`` with the nulls inside objects dropped (TOML has no null)."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value
