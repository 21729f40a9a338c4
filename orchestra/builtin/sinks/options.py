"""Reading a sink's ``[sink.NAME]`` options, and choosing the events it takes."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from orchestra.errors import ConfigError, did_you_mean
from orchestra.patterns import LazyPattern

_VARIABLE = LazyPattern(r"\$(?:(\w+)|\{(\w+)\}|(\$))")


class SinkOptions:
    """Reads one sink's ``[sink.NAME]`` table: each reader returns the option's value or
    raises ``ConfigError`` naming the sink and the option, in one line."""

    def __init__(self, sink: str, table: Mapping[str, Any], known: tuple[str, ...]) -> None:
        self.sink = sink
        self.table = dict(table)
        for key in self.table:
            if key not in known:
                raise self.error(
                    key, f"unknown option{did_you_mean(key, known)} (known: {', '.join(known)})"
                )

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(problem, field=f"sink.{self.sink}.{key}")

    def _typed(self, key: str, kind: type | tuple[type, ...], noun: str, default: Any) -> Any:
        value = self.table.get(key, default)
        if value is REQUIRED:
            raise self.error(key, f"required: {noun}")
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise self.error(key, f"expected {noun}, got {_describe(value)}")
        return value

    def text(self, key: str, noun: str, default: Any = None) -> str:
        value = self._typed(key, str, noun, REQUIRED if default is None else default)
        if not value.strip():
            raise self.error(key, f"expected {noun}, got an empty string")
        return value

    def number(self, key: str, default: float) -> float:
        value = float(self._typed(key, (int, float), "a number of seconds", default))
        if value <= 0:
            raise self.error(key, f"expected a number of seconds above 0, got {value:g}")
        return value

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self._typed(key, int, f"an integer ≥ {minimum}", default)
        if value < minimum:
            raise self.error(key, f"expected an integer ≥ {minimum}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._typed(key, bool, "true or false", default)

    def strings(self, key: str, noun: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(key, f"expected an array of strings ({noun}), got {_describe(value)}")
        return tuple(value)

    def kinds(self, default: tuple[str, ...]) -> tuple[str, ...]:
        patterns = self.strings("kinds", 'event types or patterns such as "run.*"', default)
        if not patterns:
            raise self.error("kinds", "empty: no event would ever be sent")
        return patterns

    def variables(self, key: str, value: str, environ: Mapping[str, str]) -> str:
        """Return ``value`` with each ``$NAME`` or ``${NAME}`` replaced from ``environ``
        (``$$`` is a dollar), so that no token need be written in the configuration."""

        def replace(match: re.Match[str]) -> str:
            if match.group(3):
                return "$"
            name = match.group(1) or match.group(2)
            if name not in environ:
                raise self.error(key, f"names ${name}, which is not set in the environment")
            return environ[name]

        return _VARIABLE().sub(replace, value)


#: the default of an option that must be given
REQUIRED: Any = object()


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "an array", dict: "a table"})
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def matches(kind: str, patterns: tuple[str, ...]) -> bool:
    """Return whether the event type ``kind`` matches one of the fnmatch ``patterns``."""
    return any(fnmatch.fnmatchcase(kind, pattern) for pattern in patterns)


def about_itself(event: Mapping[str, Any], name: str) -> bool:
    """True for this sink's own warnings: sending them on would feed a failing endpoint
    one more event per failure, for ever."""
    return (
        event.get("type", "").startswith("sink.")
        and (event.get("payload") or {}).get("sink") == name
    )
