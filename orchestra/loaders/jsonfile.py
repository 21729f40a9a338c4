"""What the JSON formats share: reading a file, and reading typed fields of its objects
with one error per problem, naming the file, the task and the field as the file spells it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestra.errors import SpecError
from orchestra.patterns import LazyPattern
from orchestra.spec import read_file

PRIORITY_WORDS = {"low": -1, "medium": 0, "high": 1, "critical": 2}
NOT_ID = LazyPattern(r"[^A-Za-z0-9._-]+")


def read_text(path: Path) -> str:
    """Return the text of the JSON file at ``path`` with its comments blanked out;
    unreadable files, and files that are not UTF-8, raise SpecError."""
    raw = read_file(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(f"not UTF-8 text (byte {error.start})", file=str(path)) from None
    return without_comments(text)


def read_json(path: Path, text: str | None = None) -> Any:
    """Return the JSON document at ``path`` (read from ``text`` when given, the file's
    text as ``read_text`` returns it); unreadable or malformed files raise SpecError.
    ``/* … */`` and ``//`` comments are allowed anywhere outside strings."""
    if text is None:
        text = read_text(path)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        where = f"(at line {error.lineno}, column {error.colno})"
        raise SpecError(f"invalid JSON: {error.msg} {where}", file=str(path)) from None
    except ValueError as error:  # NaN, Infinity, or an integer literal too long for Python
        raise SpecError(f"invalid JSON: {error}", file=str(path)) from None
    except RecursionError:
        raise SpecError("invalid JSON: nested too deeply", file=str(path)) from None


#: a comment, or a string (skipped whole, so that "//" inside one is not a comment)
_COMMENT_OR_STRING = LazyPattern(r'"(?:[^"\\\n]|\\.)*"|/\*.*?(?:\*/|\Z)|//[^\n]*', re.DOTALL)


def without_comments(text: str) -> str:
    """Return JSON ``text`` with its ``/* … */`` and ``//`` comments blanked out: spaces
    in their place and their newlines kept, so that error positions stay true."""
    if "//" not in text and "/*" not in text:
        return text

    def blank(match: re.Match[str]) -> str:
        found = match.group()
        if found[0] == '"':
            return found
        return re.sub(r"[^\n]", " ", found)

    return _COMMENT_OR_STRING().sub(blank, text)


def skip_comments(head: bytes) -> bytes:
    """Return the first bytes of a JSON file after its leading whitespace and comments
    (what a format's sniff looks at)."""
    while True:
        head = head.lstrip()
        if head.startswith(b"/*"):
            end = head.find(b"*/")
            if end < 0:
                return b""
            head = head[end + 2 :]
        elif head.startswith(b"//"):
            end = head.find(b"\n")
            if end < 0:
                return b""
            head = head[end + 1 :]
        else:
            return head


#: a string, or a placeholder bare where a value belongs (``{['a.py']}``, ``{[]}``: not
#: JSON at all)
_STRING_OR_BARE = LazyPattern(r'"(?:[^"\\\n]|\\.)*"|(?<=[:\[,])\s*(\{[^{}"\n]*[^{}"\s][^{}"\n]*\})')
#: a whole string that is a placeholder (``"{ws-abs-001-tool-adapter}"``), or a word
#: holding ``{{NAME}}``
_PLACEHOLDER_STRING = LazyPattern(
    r'^"(\{(?!\s)[^"{}\n]+(?<!\s)\})"$'
    # {{NAME}} in a word-like value ("ws-{{ID}}"); not in a sentence, nor ${{ … }}
    r'|^"[^"{}\s]*(?<!\$)(\{\{\s*[A-Za-z_][\w.-]*\s*\}\})[^"{}\s]*"$'
)
_KEY_BEFORE = LazyPattern(r'"([^"\n]+)"\s*:\s*$')


def placeholders(text: str) -> list[tuple[int, str]]:
    """Return (line, where) for each template placeholder in JSON ``text``: the
    placeholder, after the key it stands for when there is one (``files_scope: {[]}``).
    Strings are read whole, so a ``{name}`` inside a longer string (a code snippet) is
    not one."""
    found = []
    previous = ""
    for match in _STRING_OR_BARE().finditer(text):
        if match.group(1) is not None:
            start, shown = match.start(1), match.group(1)
        else:
            inner = _PLACEHOLDER_STRING().search(match.group())
            if inner is None:
                previous = match.group()
                continue
            start = match.start()
            shown = inner.group(1) or inner.group(2)
        line_start = text.rfind("\n", 0, start) + 1
        key = _KEY_BEFORE().search(text, line_start, start)
        found.append((text.count("\n", 0, start) + 1, f"{key.group(1)}: {shown}" if key else shown))
        previous = match.group()
    del previous
    return found


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
    return NOT_ID().sub("-", text).strip("-._") or "workstream"


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
