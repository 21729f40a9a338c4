"""Property tests of the workstream loader: thousands of generated, mutated and mangled files.

Every document goes through the real path: it is written as TOML text to a file and read
back with ``orchestra.spec.load_workstream``. The properties:

- the loader returns a ``Workstream`` or raises ``SpecError`` / ``WorkstreamInvalid``, and
  every line such an error prints is one line that starts with the file's path;
- nothing invalid is accepted: an independent checker in this file (it shares no code with
  orchestra's validation) agrees with the loader on every document, and what the loader
  returns holds what the document says (ids in order, dependencies, seconds of durations …);
- each targeted mistake is rejected with a line naming the task and the field.

The TOML writer below covers the subset the strategies generate (tomli-w is not a dependency).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
import math
import re
import shlex
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli
from hypothesis import currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st

from orchestra.errors import SpecError, WorkstreamInvalid
from orchestra.models import Workstream
from orchestra.spec import load_workstream

pytestmark = pytest.mark.slow  # hundreds of generated documents per property

# -- writing TOML ----------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def toml_string(text: str) -> str:
    """Return ``text`` as a TOML basic string, every control character escaped."""
    escaped = []
    for char in text:
        if char in _ESCAPES:
            escaped.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04X}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def toml_key(key: str) -> str:
    """Return ``key`` bare where TOML allows it, quoted otherwise."""
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: Any) -> str:
    """Return ``value`` as an inline TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{toml_key(key)} = {toml_value(item)}" for key, item in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_document(document: dict[str, Any], *, sections: bool = True) -> str:
    """Return ``document`` as TOML text: top-level tables as [sections] and arrays of
    tables as [[sections]] when ``sections``, everything else inline."""
    lines, tables, arrays = [], [], []
    for key, value in document.items():
        if sections and isinstance(value, dict):
            tables.append((key, value))
        elif sections and value and isinstance(value, list):
            if all(isinstance(item, dict) for item in value):
                arrays.append((key, value))
            else:
                lines.append(f"{toml_key(key)} = {toml_value(value)}")
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, table in tables:
        lines.extend(["", f"[{toml_key(key)}]"])
        lines.extend(f"{toml_key(name)} = {toml_value(item)}" for name, item in table.items())
    for key, items in arrays:
        for table in items:
            lines.extend(["", f"[[{toml_key(key)}]]"])
            lines.extend(f"{toml_key(name)} = {toml_value(item)}" for name, item in table.items())
    return "\n".join(lines) + "\n"


def same(left: Any, right: Any) -> bool:
    """Return whether two parsed TOML values are equal, NaN equal to NaN."""
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isnan(left) and math.isnan(right))
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return left == right


# -- an independent statement of what a valid workstream is --------------------------

WORKSTREAM_KEYS = frozenset({"id", "title", "description", "defaults", "tasks"})
COMMON_KEYS = frozenset(
    {"tool", "tools", "routing", "capabilities", "checks", "max_attempts", "timeout"}
    | {"idle_timeout", "backoff", "env"}
)
TASK_KEYS = COMMON_KEYS | {"id", "title", "prompt", "command", "shell", "depends_on", "files"}
TASK_KEYS |= {"priority", "metadata"}
FILE_KEYS = frozenset({"read", "write", "create", "forbidden"})
BACKOFF_KEYS = frozenset({"initial", "factor", "max", "jitter"})
CHECK_KEYS = frozenset({"command", "shell", "name", "timeout"})
SHELL_PUNCTUATION = frozenset("();<>|&")

ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
ENV_SHAPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DURATION_SHAPE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+")
DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
INT64 = range(-(2**63), 2**63)


def seconds_of(value: Any) -> float | None:
    """Return the finite number of seconds a duration value means, or None if it is none."""
    if type(value) is int:
        seconds = float(value) if value in INT64 else math.inf
    elif type(value) is float:
        seconds = value
    elif type(value) is str:
        compact = value.strip().replace(" ", "")
        if not DURATION_SHAPE.fullmatch(compact):
            return None
        seconds = 0.0
        for number, unit in DURATION_PART.findall(compact):
            seconds += float(number) * UNIT_SECONDS[unit]
    else:
        return None
    return seconds if math.isfinite(seconds) else None


def path_problem(pattern: str) -> str | None:
    """Return why a files pattern is not a path inside the repository, or None."""
    if not pattern.strip():
        return "empty"
    if pattern.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", pattern):
        return "absolute"
    if ".." in re.split(r"[/\\]", pattern):
        return "leaves the repository"
    return None


def check_string_words(text: str) -> tuple[str, ...] | None:
    """Return the argument list a check string stands for, or None if it is not one:
    it cannot be split, is empty, or has shell operators (``a && b``, ``a>b``, ``(a)``)."""
    try:
        words = tuple(shlex.split(text))
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return None
    if not words or any(SHELL_PUNCTUATION.issuperset(token) for token in tokens):
        return None
    return words


def is_strings(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def is_names(value: Any) -> bool:
    return is_strings(value) and all(NAME_SHAPE.fullmatch(item) for item in value)


def argv_problem(value: Any) -> str | None:
    if not is_strings(value):
        return "not a list of strings"
    if not value or not value[0].strip():
        return "empty"
    return None


def check_problem(check: Any) -> str | None:
    """Return what is wrong with one entry of ``checks``, or None."""
    if type(check) is str:
        return None if check_string_words(check) else "not a plain command"
    if type(check) is not dict:
        return "neither a string nor a table"
    if not CHECK_KEYS.issuperset(check):
        return f"unknown keys {sorted(set(check) - CHECK_KEYS)}"
    shell = check.get("shell", False)
    if type(shell) is not bool:
        return "shell not a boolean"
    if "name" in check and type(check["name"]) is not str:
        return "name not a string"
    if "timeout" in check and not (seconds_of(check["timeout"]) or 0) > 0:
        return "timeout not above zero"
    command = check.get("command")
    if type(command) is str:
        if shell:
            return None if command.strip() else "empty shell command"
        return None if check_string_words(command) else "not a plain command"
    if shell:
        return "shell = true with an argument list"
    return argv_problem(command)


def common_problems(table: dict, where: str) -> list[str]:
    """Return what is wrong with the fields a task shares with [defaults]."""
    found = []
    for name in ("tool", "routing"):
        if name in table and not (type(table[name]) is str and NAME_SHAPE.fullmatch(table[name])):
            found.append(f"{where}.{name}: not a name")
    if "tools" in table and not (is_names(table["tools"]) and table["tools"]):
        found.append(f"{where}.tools: not a non-empty list of names")
    if "tool" in table and "tools" in table:
        found.append(f"{where}: both tool and tools")
    if "capabilities" in table and not is_names(table["capabilities"]):
        found.append(f"{where}.capabilities: not a list of names")
    if "checks" in table:
        checks = table["checks"]
        if type(checks) is not list:
            found.append(f"{where}.checks: not an array")
        else:
            found.extend(
                f"{where}.checks[{index}]: {check_problem(check)}"
                for index, check in enumerate(checks)
                if check_problem(check)
            )
    if "max_attempts" in table:
        attempts = table["max_attempts"]
        if not (type(attempts) is int and attempts >= 1):
            found.append(f"{where}.max_attempts: not an integer >= 1")
    for name in ("timeout", "idle_timeout"):
        if name in table and not (seconds_of(table[name]) or 0) > 0:
            found.append(f"{where}.{name}: not a duration above zero")
    if "backoff" in table:
        found.extend(backoff_problems(table["backoff"], f"{where}.backoff"))
    if "env" in table:
        env = table["env"]
        if type(env) is not dict:
            found.append(f"{where}.env: not a table")
        else:
            for name, value in env.items():
                if not ENV_SHAPE.fullmatch(name) or type(value) is not str:
                    found.append(f"{where}.env: bad variable {name!r}")
    return found


def backoff_problems(backoff: Any, where: str) -> list[str]:
    if type(backoff) is not dict:
        return [f"{where}: not a table"]
    found = [f"{where}.{key}: unknown key" for key in backoff if key not in BACKOFF_KEYS]
    initial = seconds_of(backoff.get("initial", 2.0))
    maximum = seconds_of(backoff.get("max", 60.0))
    factor = backoff.get("factor", 2.0)
    if initial is None or initial < 0:
        found.append(f"{where}.initial: not a duration >= 0")
    if maximum is None or (initial is not None and maximum < initial):
        found.append(f"{where}.max: not a duration >= initial")
    if type(factor) not in (int, float) or not (math.isfinite(factor) and factor >= 1):
        found.append(f"{where}.factor: not a number >= 1")
    if type(backoff.get("jitter", True)) is not bool:
        found.append(f"{where}.jitter: not a boolean")
    return found


def task_problems(task: Any, where: str) -> list[str]:
    """Return what is wrong with one [[tasks]] table, apart from the graph."""
    if type(task) is not dict:
        return [f"{where}: not a table"]
    found = [f"{where}.{key}: unknown key" for key in task if key not in TASK_KEYS]
    if not (type(task.get("id")) is str and ID_SHAPE.fullmatch(task["id"])):
        found.append(f"{where}.id: missing or not an id")
    elif ".." in task["id"] or task["id"].endswith(".") or len(task["id"]) > 200:
        found.append(f"{where}.id: cannot name its attempts' git branch")
    found.extend(common_problems(task, where))
    if "title" in task and type(task["title"]) is not str:
        found.append(f"{where}.title: not a string")
    shell = task.get("shell", False)
    if type(shell) is not bool:
        found.append(f"{where}.shell: not a boolean")
    if ("prompt" in task) == ("command" in task):
        found.append(f"{where}: needs exactly one of prompt and command")
    if "prompt" in task:
        prompt = task["prompt"]
        if not (type(prompt) is str and prompt.strip()):
            found.append(f"{where}.prompt: not a non-blank string")
        if shell is True:
            found.append(f"{where}.shell: a prompt task with shell = true")
    if "command" in task:
        command = task["command"]
        if shell is True:
            if not (type(command) is str and command.strip()):
                found.append(f"{where}.command: not a non-blank string with shell = true")
        elif argv_problem(command):
            found.append(f"{where}.command: {argv_problem(command)}")
    if "depends_on" in task and not is_strings(task["depends_on"]):
        found.append(f"{where}.depends_on: not a list of strings")
    if "files" in task:
        files = task["files"]
        if type(files) is not dict:
            found.append(f"{where}.files: not a table")
        else:
            for scope, patterns in files.items():
                if scope not in FILE_KEYS or not is_strings(patterns):
                    found.append(f"{where}.files.{scope}: unknown or not a list of strings")
                    continue
                for pattern in patterns:
                    if path_problem(pattern):
                        found.append(f"{where}.files.{scope}: {pattern!r} {path_problem(pattern)}")
    if "priority" in task and type(task["priority"]) is not int:
        found.append(f"{where}.priority: not an integer")
    if "metadata" in task and type(task["metadata"]) is not dict:
        found.append(f"{where}.metadata: not a table")
    return found


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """Return a cycle of ``edges`` as [a, b, …, a], or None (a plain recursive DFS)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "active"
        path.append(node)
        for dependency in edges.get(node, []):
            if state.get(dependency) == "active":
                return [*path[path.index(dependency) :], dependency]
            if dependency not in state:
                cycle = visit(dependency)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in edges:
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def numbers_out_of_range(value: Any) -> list[int | float]:
    """Return the numbers in a TOML value that orchestra cannot hold: integers beyond 64
    bits (TOML 1.0 forbids them; tomli reads them anyway), NaN and infinities."""
    if type(value) is int:
        return [] if value in INT64 else [value]
    if type(value) is float:
        return [] if math.isfinite(value) else [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [wrong for item in value for wrong in numbers_out_of_range(item)]
    return []


def problems_of(document: dict[str, Any]) -> list[str]:
    """Return every reason ``document`` is not a valid workstream (empty when it is)."""
    found = [f"{key}: unknown key" for key in document if key not in WORKSTREAM_KEYS]
    if numbers_out_of_range(document):
        found.append(f"numbers out of range: {numbers_out_of_range(document)}")
    if not (type(document.get("id")) is str and ID_SHAPE.fullmatch(document["id"])):
        found.append("id: missing or not an id")
    for name in ("title", "description"):
        if name in document and type(document[name]) is not str:
            found.append(f"{name}: not a string")
    if "defaults" in document:
        defaults = document["defaults"]
        if type(defaults) is not dict:
            found.append("defaults: not a table")
        else:
            found.extend(
                f"defaults.{key}: unknown key" for key in defaults if key not in COMMON_KEYS
            )
            found.extend(common_problems(defaults, "defaults"))
    tasks = document.get("tasks")
    if type(tasks) is not list or not tasks:
        found.append("tasks: missing, not an array or empty")
        return found
    for index, task in enumerate(tasks):
        found.extend(task_problems(task, f"tasks[{index}]"))
    tables = [task for task in tasks if type(task) is dict and type(task.get("id")) is str]
    ids = [task["id"] for task in tables]
    if len(set(ids)) != len(ids):
        found.append("tasks: duplicate ids")
    edges: dict[str, list[str]] = {}
    for task in tables:
        needs = task.get("depends_on", [])
        needs = needs if is_strings(needs) else []
        for dependency in needs:
            if dependency not in ids or dependency == task["id"]:
                found.append(f"task {task['id']!r}: depends on {dependency!r}")
        edges.setdefault(task["id"], []).extend(d for d in needs if d in ids)
    cycle = find_cycle(edges)
    if cycle:
        found.append(f"cycle {cycle}")
    return found


# -- what the loader returned against what the document says ------------------------


def expected_check(check: str | dict) -> tuple:
    if isinstance(check, str):
        return (check_string_words(check), False, None, None)
    command, shell = check["command"], check.get("shell", False)
    if isinstance(command, str) and not shell:
        command = check_string_words(command)
    elif isinstance(command, list):
        command = tuple(command)
    timeout = seconds_of(check["timeout"]) if "timeout" in check else None
    return (command, shell, check.get("name"), timeout)


def assert_close(actual: float | None, expected: float | None, what: str) -> None:
    if expected is None:
        assert actual is None, what
    else:
        assert actual is not None and math.isclose(actual, expected, rel_tol=1e-12), (
            f"{what}: loaded {actual!r} seconds, the document says {expected!r}"
        )


def assert_common_matches(loaded: Any, table: dict, where: str) -> None:
    """Assert that the fields a task shares with [defaults] hold what ``table`` says."""
    assert loaded.tool == table.get("tool"), where
    tools = table.get("tools")
    assert loaded.tools == (tuple(tools) if tools is not None else None), where
    assert loaded.routing == table.get("routing"), where
    capabilities = table.get("capabilities")
    assert loaded.capabilities == (tuple(capabilities) if capabilities is not None else None)
    assert loaded.max_attempts == table.get("max_attempts"), where
    for name in ("timeout", "idle_timeout"):
        expected = seconds_of(table[name]) if name in table else None
        assert_close(getattr(loaded, name), expected, f"{where}.{name}")
    assert dict(loaded.env) == table.get("env", {}), where
    if "checks" in table:
        actual = [(c.command, c.shell, c.name, c.timeout) for c in loaded.checks]
        expected = [expected_check(check) for check in table["checks"]]
        assert len(actual) == len(expected), where
        for got, wanted in zip(actual, expected, strict=True):
            assert got[:3] == wanted[:3], f"{where}.checks: {got} != {wanted}"
            assert_close(got[3], wanted[3], f"{where}.checks timeout")
    else:
        assert loaded.checks is None, where
    if "backoff" in table:
        backoff = table["backoff"]
        assert_close(loaded.backoff.initial, seconds_of(backoff.get("initial", 2.0)), where)
        assert_close(loaded.backoff.max, seconds_of(backoff.get("max", 60.0)), where)
        assert loaded.backoff.factor == backoff.get("factor", 2.0), where
        assert loaded.backoff.jitter == backoff.get("jitter", True), where
    else:
        assert loaded.backoff is None, where


def assert_model_matches(workstream: Workstream, document: dict[str, Any]) -> None:
    """Assert that the loaded workstream holds exactly what the valid ``document`` says."""
    assert workstream.id == document["id"]
    assert workstream.title == document.get("title")
    assert workstream.description == document.get("description")
    assert_common_matches(workstream.defaults, document.get("defaults", {}), "defaults")
    tasks = document["tasks"]
    assert [task.id for task in workstream.tasks] == [table["id"] for table in tasks]
    for task, table in zip(workstream.tasks, tasks, strict=True):
        where = f"task {task.id!r}"
        assert task.depends_on == tuple(table.get("depends_on", [])), where
        assert task.title == table.get("title"), where
        assert task.prompt == table.get("prompt"), where
        command = table.get("command")
        assert task.command == (tuple(command) if isinstance(command, list) else command), where
        assert task.shell == table.get("shell", False), where
        assert task.priority == table.get("priority", 0), where
        assert dict(task.metadata) == table.get("metadata", {}), where
        files = table.get("files", {})
        for scope in FILE_KEYS:
            assert getattr(task.files, scope) == tuple(files.get(scope, [])), where
        assert_common_matches(task, table, where)


# -- loading through a real file -----------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workstreams")


def load(path: Path, content: str | bytes) -> Workstream | SpecError | WorkstreamInvalid:
    """Write ``content`` to ``path`` and load it; return the workstream or the error.

    Asserts property (a): the only exceptions are orchestra's own, and every line an error
    prints is a single line starting with the file's path. Anything else propagates.
    """
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    try:
        workstream = load_workstream(path)
    except (SpecError, WorkstreamInvalid) as error:
        lines = error.lines()
        if currently_in_test_context():
            note("error lines:\n" + "\n".join(map(repr, lines)))
        assert lines, "an error without a line to print"
        for line in lines:
            assert line.splitlines() == [line], f"error line is not one line: {line!r}"
            assert line.startswith(f"{path}: "), f"error line does not name the file: {line!r}"
        return error
    assert isinstance(workstream, Workstream)
    return workstream


def assert_loader_agrees(loaded: Any, document: dict[str, Any]) -> None:
    """Assert property (b): the loader accepts exactly the documents the checker finds
    valid, and what it returns matches the document."""
    problems = problems_of(document)
    if isinstance(loaded, Workstream):
        assert not problems, f"accepted an invalid document: {problems}"
        assert_model_matches(loaded, document)
    else:
        assert problems, f"rejected a valid document: {loaded.lines()}"


# -- strategies: values ---------------------------------------------------------------

ID_FIRST = string.ascii_letters + string.digits
ID_REST = ID_FIRST + "._-"

# valid task ids also name git branches (orchestra-tasks/<run>/<id>.<n>): no "..", no "."
# at the end
ids = st.builds(str.__add__, st.sampled_from(ID_FIRST), st.text(ID_REST, max_size=8)).filter(
    lambda value: ".." not in value and not value.endswith(".")
)
names = st.one_of(
    st.sampled_from(["aider", "codex", "shell", "claude-code", "gpt:4o", "auto", "fixed"]),
    st.builds(str.__add__, st.sampled_from(ID_FIRST), st.text(ID_REST + ":", max_size=8)),
)
env_names = st.builds(
    str.__add__,
    st.sampled_from(string.ascii_letters + "_"),
    st.text(string.ascii_letters + string.digits + "_", max_size=8),
)
# Text that exercises the TOML writer and reader: quotes, backslashes, control characters,
# TOML syntax, astral planes; mostly from this list, where one draw picks a whole string.
TRICKY_TEXTS = ["", " ", "plain", 'say "hi"', "back\\slash", "C:\\x", "line\nbreak", "tab\tbed"]
TRICKY_TEXTS += ["\r\n", "nul\x00", "del\x7f", "esc\x1b[0m", "\u2028", "é", "日本語", "🙂", "'''"]
TRICKY_TEXTS += ['"""', "# not a comment", "[tasks]", "key = 1", "\\u0041", "${HOME}", "\ufeff"]
texts = st.one_of(st.sampled_from(TRICKY_TEXTS), st.text(max_size=12))
prompts = st.builds(str.__add__, st.sampled_from(["Write ", "Fix", "Add\n", "«"]), texts)
path_parts = st.sampled_from(["src", "tests", "a.py", "*.md", "**", "pkg", "x y", "ü", ".", "_"])
relative_paths = st.lists(path_parts, min_size=1, max_size=4).map("/".join)
programs = st.sampled_from(["ruff", "make", "python", "pytest", "git", "./run.sh", "ü"])
argvs = st.builds(lambda program, args: [program, *args], programs, st.lists(texts, max_size=3))
shell_strings = st.one_of(
    st.sampled_from(["make test && echo ok", "ruff check . | tee log", "echo $HOME > out", "x"]),
    st.builds(str.__add__, st.sampled_from(["echo ", "true;"]), texts),
)
check_words = st.sampled_from(
    ["pytest", "-q", "tests/test_x.py", "ruff", "check", ".", "--fix", "'a b'", '"c d"', "é"]
)
check_strings = st.lists(check_words, min_size=1, max_size=4).map(" ".join)


@st.composite
def durations(draw: st.DrawFn, *, zero: bool = False) -> int | float | str:
    """Draw a duration in one of the forms people write: 90, 1.5, "90s", "1h30m", "250ms"."""
    form = draw(st.sampled_from(["int", "float", "text", "text", "text"]))
    if form == "int":
        return draw(st.integers(0 if zero else 1, 10**7))
    if form == "float":
        return draw(st.floats(0.0 if zero else 0.001, 1e7))
    numbers = st.one_of(
        st.integers(0, 999).map(str),
        st.builds(
            "{}.{}".format, st.integers(0, 99), st.text("0123456789", min_size=1, max_size=3)
        ),
    )
    units = st.sampled_from(list(UNIT_SECONDS))
    parts = draw(st.lists(st.tuples(numbers, units), min_size=1, max_size=4))
    if not zero and not seconds_of("".join(n + u for n, u in parts)):
        parts[0] = ("1", parts[0][1])
    separator = draw(st.sampled_from(["", "", " "]))
    return separator.join(number + unit for number, unit in parts)


positive_durations = durations()
durations_or_zero = durations(zero=True)


@st.composite
def backoffs(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a valid backoff table: 0 <= initial <= max, factor >= 1, any keys left out."""
    initial = draw(durations_or_zero)
    maximum = draw(durations_or_zero)
    if seconds_of(maximum) < seconds_of(initial):
        initial, maximum = maximum, initial
    table = {
        "initial": initial,
        "factor": draw(st.one_of(st.integers(1, 10), st.floats(1.0, 10.0))),
        "max": maximum,
        "jitter": draw(st.booleans()),
    }
    kept = {key: value for key, value in table.items() if draw(st.booleans())}
    if seconds_of(kept.get("max", 60.0)) < seconds_of(kept.get("initial", 2.0)):
        kept["initial"], kept["max"] = initial, maximum
    return kept


@st.composite
def check_entries(draw: st.DrawFn) -> str | dict[str, Any]:
    """Draw one valid entry of ``checks``: a string or a table."""
    form = draw(st.sampled_from(["string", "argv", "words", "shell"]))
    if form == "string":
        return draw(check_strings)
    if form == "argv":
        check = {"command": draw(argvs)}
    elif form == "words":
        check = {"command": draw(check_strings), "shell": False}
    else:
        check = {"command": draw(shell_strings), "shell": True}
    if draw(st.booleans()):
        check["name"] = draw(texts)
    if draw(st.booleans()):
        check["timeout"] = draw(positive_durations)
    return check


COMMON_FIELDS = {
    "routing": names,
    "capabilities": st.lists(names, max_size=3),
    "checks": st.lists(check_entries(), max_size=3),
    "max_attempts": st.integers(1, 2**63 - 1),
    "timeout": positive_durations,
    "idle_timeout": positive_durations,
    "backoff": backoffs(),
    "env": st.dictionaries(env_names, texts, max_size=3),
}
TOOL_CHOICES = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"tool": names}),
    st.fixed_dictionaries({"tools": st.lists(names, min_size=1, max_size=3)}),
)


@st.composite
def common_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Draw the fields a task shares with [defaults]: a few of them in each table, so that
    tables stay quick to draw while many documents cover every field."""
    chosen = draw(st.lists(st.sampled_from(sorted(COMMON_FIELDS)), max_size=4, unique=True))
    fields = {name: draw(COMMON_FIELDS[name]) for name in chosen}
    fields.update(draw(TOOL_CHOICES))
    return fields


some_common_fields = common_fields()
TASK_EXTRAS = {
    "title": texts,
    "priority": st.integers(-(2**63), 2**63 - 1),
    "files": st.fixed_dictionaries(
        {}, optional={scope: st.lists(relative_paths, max_size=3) for scope in FILE_KEYS}
    ),
    "metadata": st.dictionaries(ids, st.one_of(texts, st.integers(-5, 5)), max_size=2),
}


@st.composite
def task_tables(draw: st.DrawFn, task_id: str, before: list[str]) -> dict[str, Any]:
    """Draw a valid [[tasks]] table that may depend on the ids in ``before``."""
    table: dict[str, Any] = {"id": task_id}
    needs = draw(st.lists(st.sampled_from(before), unique=True, max_size=3)) if before else []
    if needs or draw(st.booleans()):
        table["depends_on"] = needs
    kind = draw(st.sampled_from(["prompt", "prompt", "argv", "shell"]))
    if kind == "prompt":
        table["prompt"] = draw(prompts)
        if draw(st.integers(0, 9)) == 0:
            table["shell"] = False
    elif kind == "argv":
        table["command"] = draw(argvs)
        if draw(st.booleans()):
            table["shell"] = False
    else:
        table["command"] = draw(shell_strings)
        table["shell"] = True
    table.update(draw(some_common_fields))
    for name in draw(st.lists(st.sampled_from(sorted(TASK_EXTRAS)), max_size=3, unique=True)):
        table[name] = draw(TASK_EXTRAS[name])
    if draw(st.booleans()):  # key order means nothing, wherever "id" is
        table = dict(reversed(table.items()))
    return table


@st.composite
def valid_documents(draw: st.DrawFn, *, max_tasks: int = 6) -> dict[str, Any]:
    """Draw a valid workstream document; dependencies point at earlier or later tasks."""
    task_ids = draw(st.lists(ids, min_size=1, max_size=max_tasks, unique=True))
    ranked = draw(st.permutations(task_ids))  # a topological order, unrelated to file order
    tasks = [draw(task_tables(task_id, ranked[: ranked.index(task_id)])) for task_id in task_ids]
    document: dict[str, Any] = {"id": draw(ids)}
    if draw(st.booleans()):
        document["title"] = draw(texts)
    if draw(st.booleans()):
        document["description"] = draw(texts)
    if draw(st.booleans()):
        document["defaults"] = draw(some_common_fields)
    document["tasks"] = tasks
    return document


SCALARS = {
    "string": st.text(max_size=10),
    "integer": st.one_of(st.integers(-3, 3), st.integers()),
    "float": st.floats(),
    "boolean": st.booleans(),
    "datetime": st.one_of(
        st.datetimes(datetime.datetime(1000, 1, 1), datetime.datetime(9999, 12, 31)),
        st.dates(datetime.date(1000, 1, 1)),
        st.times(),
    ),
}
scalars = st.one_of(*SCALARS.values())
toml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
arrays = st.lists(scalars, max_size=3)
tables = st.dictionaries(st.text(max_size=6), scalars, max_size=3)
ALL_KINDS = {**SCALARS, "array": arrays, "table": tables}


def other_than(*kinds: str, extra: st.SearchStrategy | None = None) -> st.SearchStrategy:
    """Return values of every TOML type except ``kinds`` (plus ``extra`` wrong shapes)."""
    wrong = [strategy for kind, strategy in ALL_KINDS.items() if kind not in kinds]
    return st.one_of(*wrong, *([extra] if extra is not None else []))


not_a_string = SCALARS["integer"] | SCALARS["float"] | SCALARS["boolean"] | SCALARS["datetime"]
array_with_a_non_string = st.builds(lambda good, bad: [*good, bad], st.lists(ids), not_a_string)
WRONG = {
    "string": other_than("string"),
    "boolean": other_than("boolean"),
    "integer": other_than("integer"),
    "table": other_than("table"),
    "duration": other_than("string", "integer", "float"),
    "strings": other_than("array", extra=array_with_a_non_string),
    "command": other_than("string", "array", extra=array_with_a_non_string),
    "env": other_than("table", extra=st.dictionaries(env_names, not_a_string, min_size=1)),
    "files": other_than(
        "table",
        extra=st.builds(
            lambda scope, bad: {scope: bad}, st.sampled_from(sorted(FILE_KEYS)), scalars
        ),
    ),
    "checks": other_than(
        "array",
        extra=st.lists(
            SCALARS["integer"] | SCALARS["float"] | SCALARS["boolean"] | arrays, min_size=1
        ),
    ),
    "backoff": other_than(
        "table",
        extra=st.one_of(
            st.builds(lambda bad: {"factor": bad}, other_than("integer", "float")),
            st.builds(lambda bad: {"jitter": bad}, other_than("boolean")),
            st.builds(lambda bad: {"initial": bad}, other_than("string", "integer", "float")),
        ),
    ),
}
COMMON_KINDS = {
    "tool": "string",
    "tools": "strings",
    "routing": "string",
    "capabilities": "strings",
    "checks": "checks",
    "max_attempts": "integer",
    "timeout": "duration",
    "idle_timeout": "duration",
    "backoff": "backoff",
    "env": "env",
}
TASK_KINDS = {
    **COMMON_KINDS,
    "id": "string",
    "title": "string",
    "prompt": "string",
    "command": "command",
    "shell": "boolean",
    "depends_on": "strings",
    "files": "files",
    "priority": "integer",
    "metadata": "table",
}

# Misspellings and the key the loader should suggest for each.
TASK_NEAR_MISSES = {
    "dependson": "depends_on",
    "depends-on": "depends_on",
    "dependsOn": "depends_on",
    "promt": "prompt",
    "comand": "command",
    "timout": "timeout",
    "idle-timeout": "idle_timeout",
    "max_attempt": "max_attempts",
    "capabilites": "capabilities",
    "shel": "shell",
    "priorty": "priority",
    "file": "files",
    "check": "checks",
    "backof": "backoff",
}
WORKSTREAM_NEAR_MISSES = {
    "task": "tasks",
    "titel": "title",
    "default": "defaults",
    "descripton": "description",
}
DEFAULTS_NEAR_MISSES = {"max_attempt": "max_attempts", "timout": "timeout", "check": "checks"}
unknown_keys = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=10) | (
    st.text(min_size=1, max_size=6)
)

BAD_IDS = ["a b", " a", "-a", ".a", "_a", "a/b", "a:b", "é", "日本", "a\n", "a\t", "a,b", "a'b"]
BAD_NAMES = ["", "a b", "-x", "x/y", "x\n", "ü"]
BAD_ENV_NAMES = ["1A", "A-B", "", "A B", "PATH\n", "É"]
BAD_PATHS = ["/etc/passwd", "/", "\\\\server\\share", "C:\\repo", "c:/x", "../x", "a/../../b"]
BAD_PATHS += ["src/..", "..", "a\\..\\b", "", "   "]
GARBAGE_DURATIONS = ["", " ", "10", "m", "1x", "-1s", "+1s", "1e3s", "1.s", ".5s", "1h-30m"]
GARBAGE_DURATIONS += ["ten minutes", "1,5s", "1_000s", "0x10s", "PT1H", "1hr", "1sec", "s1"]
# Accepted by a lenient parser, but not durations: non-ASCII digits, or more seconds than
# a float holds; NaN and infinity as numbers.
ODD_DURATIONS = ["٣s", "１０m", "9" * 400 + "s", math.nan, math.inf, -math.inf]


# -- strategies: targeted mutations --------------------------------------------------


@dataclasses.dataclass
class Expected:
    """A line the loader must print for one mistake: about ``task`` (its id as the loader
    quotes it; None for the workstream itself), about ``field`` (or a field under it when
    ``nested``), containing each of ``words``; ``verify`` checks the line further."""

    mistake: str
    task: str | None
    field: str | None
    words: tuple[str, ...] = ()
    nested: bool = False
    verify: Callable[[str, dict], bool] | None = None

    def matches(self, line: str, document: dict) -> bool:
        if self.task is not None and f": task {self.task!r}: " not in line:
            return False
        if self.field is not None:
            if self.nested:
                shape = rf": field '{re.escape(self.field)}(?:[.\[][^']*)?': "
                if not re.search(shape, line):
                    return False
            elif f": field {self.field!r}: " not in line:
                return False
        if not all(word in line for word in self.words):
            return False
        return self.verify is None or self.verify(line, document)


Mutation = Callable[[st.DrawFn, dict], Expected]


def _pick_task(draw: st.DrawFn, document: dict) -> tuple[int, dict]:
    index = draw(st.integers(0, len(document["tasks"]) - 1))
    return index, document["tasks"][index]


def _make_command_task(task: dict) -> None:
    task.pop("prompt", None)
    task.pop("shell", None)


def drop_task_id(draw, document):
    index, task = _pick_task(draw, document)
    del task["id"]
    return Expected("task without id", f"#{index + 1}", "id", ("missing",))


def drop_body(draw, document):
    _, task = _pick_task(draw, document)
    for key in ("prompt", "command", "shell"):
        task.pop(key, None)
    return Expected("neither prompt nor command", task["id"], None, ("'prompt'", "'command'"))


def unknown_task_key(draw, document):
    _, task = _pick_task(draw, document)
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(TASK_NEAR_MISSES)))
        words = (f"unknown key {key!r} (did you mean {TASK_NEAR_MISSES[key]!r}?)",)
    else:
        key = draw(unknown_keys.filter(lambda key: key not in TASK_KEYS))
        words = (f"unknown key {key!r}",)
    task[key] = draw(toml_values)
    return Expected("unknown task key", task["id"], key, words)


def wrong_task_type(draw, document):
    index, task = _pick_task(draw, document)
    field = draw(st.sampled_from(sorted(TASK_KINDS)))
    label = f"#{index + 1}" if field == "id" else task["id"]
    task[field] = draw(WRONG[TASK_KINDS[field]])
    return Expected(f"wrong type for {field}", label, field, nested=True)


def duplicate_id(draw, document):
    tasks = document["tasks"]
    if len(tasks) < 2:
        tasks.append({"id": tasks[0]["id"] + "-x", "prompt": "p"})
    indexes = st.integers(0, len(tasks) - 1)
    first, second = draw(st.lists(indexes, min_size=2, max_size=2, unique=True))
    tasks[second]["id"] = tasks[first]["id"]
    return Expected("duplicate id", tasks[first]["id"], "id", ("duplicate",))


def invalid_task_id(draw, document):
    _, task = _pick_task(draw, document)
    task["id"] = draw(st.sampled_from(BAD_IDS))
    return Expected("invalid id", task["id"], "id", ("invalid id",))


def unknown_dependency(draw, document):
    _, task = _pick_task(draw, document)
    known = {table["id"] for table in document["tasks"]}
    ghost = draw(ids.filter(lambda ghost: ghost not in known))
    task["depends_on"] = [*task.get("depends_on", []), ghost]
    return Expected("unknown dependency", task["id"], "depends_on", ("unknown", repr(ghost)))


def self_dependency(draw, document):
    _, task = _pick_task(draw, document)
    task["depends_on"] = [*task.get("depends_on", []), task["id"]]
    return Expected("self dependency", task["id"], "depends_on", ("itself",))


def _names_a_real_cycle(line: str, document: dict) -> bool:
    """Return whether the cycle a line names is one: each task depends on the next."""
    chain = line.split("dependency cycle: ", 1)[1].split(" -> ")
    needs = {task["id"]: task.get("depends_on", []) for task in document["tasks"]}
    return (
        len(chain) >= 3
        and chain[0] == chain[-1]
        and f": task {chain[0]!r}: " in line
        and all(after in needs.get(before, []) for before, after in itertools.pairwise(chain))
    )


def cycle(draw, document):
    tasks = document["tasks"]
    if len(tasks) < 2:
        tasks.append({"id": tasks[0]["id"] + "-x", "prompt": "p"})
    members = draw(st.lists(st.sampled_from(tasks), min_size=2, unique_by=id, max_size=5))
    for task, after in zip(members, [*members[1:], members[0]], strict=True):
        task["depends_on"] = [*task.get("depends_on", []), after["id"]]
    return Expected(
        "cycle",
        None,
        "depends_on",
        ("dependency cycle: ", " -> "),
        verify=_names_a_real_cycle,
    )


def bad_path(draw, document):
    _, task = _pick_task(draw, document)
    scope = draw(st.sampled_from(sorted(FILE_KEYS)))
    pattern = draw(st.sampled_from(BAD_PATHS))
    files = task.setdefault("files", {})
    files[scope] = [*files.get(scope, []), pattern]
    return Expected("path outside", task["id"], f"files.{scope}", (repr(pattern),))


def empty_prompt(draw, document):
    _, task = _pick_task(draw, document)
    task.pop("command", None)
    task.pop("shell", None)
    task["prompt"] = draw(st.sampled_from(["", " ", "\n\t "]))
    return Expected("empty prompt", task["id"], "prompt", ("empty",))


def prompt_and_command(draw, document):
    _, task = _pick_task(draw, document)
    if "prompt" in task:
        task["command"] = draw(argvs)
    else:
        task["prompt"] = draw(prompts)
    return Expected("prompt and command", task["id"], "command", ("both",))


def shell_string_without_shell(draw, document):
    _, task = _pick_task(draw, document)
    _make_command_task(task)
    task["command"] = draw(shell_strings)
    if draw(st.booleans()):
        task["shell"] = False
    return Expected("shell string without shell", task["id"], "command", ("shell = true",))


def argv_with_shell(draw, document):
    _, task = _pick_task(draw, document)
    _make_command_task(task)
    task["command"] = draw(argvs)
    task["shell"] = True
    return Expected("argument list with shell", task["id"], "command", ("one string",))


def empty_command(draw, document):
    _, task = _pick_task(draw, document)
    _make_command_task(task)
    if draw(st.booleans()):
        task["command"] = []
    else:
        task["command"], task["shell"] = draw(st.sampled_from(["", "  ", "\n"])), True
    return Expected("empty command", task["id"], "command", ("empty",))


def empty_program(draw, document):
    _, task = _pick_task(draw, document)
    _make_command_task(task)
    task["command"] = [draw(st.sampled_from(["", " "])), *draw(st.lists(texts, max_size=2))]
    return Expected("empty program name", task["id"], "command")


def _pick_common(draw, document) -> tuple[dict, str | None, str]:
    """Return a task or [defaults] table, its task label, and the field prefix."""
    if draw(st.integers(0, 3)) == 0:
        return document.setdefault("defaults", {}), None, "defaults."
    _, task = _pick_task(draw, document)
    return task, task["id"], ""


def too_few_attempts(draw, document):
    table, label, prefix = _pick_common(draw, document)
    table["max_attempts"] = draw(st.integers(-(2**63), 0))
    return Expected("max_attempts below 1", label, f"{prefix}max_attempts", ("at least 1",))


def non_positive_timeout(draw, document):
    table, label, prefix = _pick_common(draw, document)
    field = draw(st.sampled_from(["timeout", "idle_timeout"]))
    table[field] = draw(
        st.one_of(
            st.integers(-(2**63), 0),
            st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
            st.sampled_from(["0s", "0ms", "0h0m", "0.0s"]),
        )
    )
    return Expected("timeout not above zero", label, prefix + field, ("zero",))


def garbage_duration(draw, document):
    table, label, prefix = _pick_common(draw, document)
    field = draw(st.sampled_from(["timeout", "idle_timeout"]))
    table[field] = draw(st.sampled_from(GARBAGE_DURATIONS))
    return Expected("garbage duration", label, prefix + field, ("is not a duration",))


def odd_duration(draw, document):
    table, label, prefix = _pick_common(draw, document)
    field = draw(st.sampled_from(["timeout", "idle_timeout"]))
    table[field] = draw(st.sampled_from(ODD_DURATIONS))
    return Expected("NaN, infinite or non-ASCII duration", label, prefix + field)


def bad_backoff(draw, document):
    table, label, prefix = _pick_common(draw, document)
    backoff = table.setdefault("backoff", {})
    form = draw(st.sampled_from(["factor", "initial", "max", "unknown", "nan"]))
    if form == "factor":
        backoff["factor"] = draw(st.one_of(st.integers(-5, 0), st.floats(-5.0, 0.999)))
        return Expected("factor below 1", label, f"{prefix}backoff.factor", ("at least 1",))
    if form == "initial":
        backoff["initial"] = draw(st.one_of(st.integers(-(2**63), -1), st.floats(-1e9, -0.001)))
        backoff.pop("max", None)
        return Expected("negative initial", label, f"{prefix}backoff.initial", ("negative",))
    if form == "max":
        backoff["initial"], backoff["max"] = "10m", draw(st.sampled_from(["1m", 599, "9m59s"]))
        return Expected("max below initial", label, f"{prefix}backoff.max", ("shorter",))
    if form == "unknown":
        backoff["jiter"] = True
        words = ("unknown key 'jiter' (did you mean 'jitter'?)",)
        return Expected("unknown backoff key", label, f"{prefix}backoff.jiter", words)
    backoff[draw(st.sampled_from(["factor", "initial", "max"]))] = math.nan
    return Expected("NaN in backoff", label, f"{prefix}backoff", nested=True)


def bad_tools(draw, document):
    table, label, prefix = _pick_common(draw, document)
    form = draw(st.sampled_from(["empty", "both"]))
    if form == "empty":
        table.pop("tool", None)
        table["tools"] = []
        return Expected("no tools", label, f"{prefix}tools", ("empty list",))
    table["tool"], table["tools"] = "codex", ["aider"]
    return Expected("tool and tools", label, f"{prefix}tools", ("either 'tool'",))


def bad_name(draw, document):
    table, label, prefix = _pick_common(draw, document)
    field = draw(st.sampled_from(["tool", "routing", "tools", "capabilities"]))
    name = draw(st.sampled_from(BAD_NAMES))
    if field in ("tool", "routing"):
        table[field] = name
    else:
        table[field] = [*draw(st.lists(names, max_size=2)), name]
    if field in ("tool", "tools"):
        table.pop("tools" if field == "tool" else "tool", None)
    return Expected(f"invalid name in {field}", label, prefix + field, ("invalid name",))


def bad_env(draw, document):
    table, label, prefix = _pick_common(draw, document)
    env = table.setdefault("env", {})
    env[draw(st.sampled_from(BAD_ENV_NAMES))] = draw(texts)
    return Expected("invalid env name", label, f"{prefix}env", ("environment variable",))


def bad_check(draw, document):
    table, label, prefix = _pick_common(draw, document)
    checks = table.setdefault("checks", [])
    field = f"{prefix}checks[{len(checks)}]"
    form = draw(
        st.sampled_from(
            [
                *["shell syntax", "quote", "blank", "no command", "argv+shell", "timeout"],
                *["unknown", "empty argv", "empty shell"],
            ]
        )
    )
    if form == "shell syntax":
        text = draw(st.sampled_from(["pytest -q | tee log", "make && make test", "a ; b", "x > y"]))
        checks.append(draw(st.sampled_from([text, {"command": text}])))
        return Expected("check with shell syntax", label, field, ("shell syntax",))
    if form == "quote":
        checks.append("pytest 'tests")
        return Expected("check with an open quote", label, field, ("cannot split",))
    if form == "blank":
        checks.append(draw(st.sampled_from(["", "  ", "\t"])))
        return Expected("blank check", label, field, ("empty",))
    if form == "no command":
        checks.append({"name": "lint"})
        return Expected("check without command", label, f"{field}.command", ("missing",))
    if form == "argv+shell":
        checks.append({"command": ["make", "test"], "shell": True})
        return Expected("check argv with shell", label, field, ("one string",))
    if form == "timeout":
        checks.append({"command": ["make"], "timeout": draw(st.sampled_from([0, -1, "0s"]))})
        return Expected("check timeout zero", label, f"{prefix}checks", ("zero",), nested=True)
    if form == "unknown":
        checks.append({"command": ["make"], "shel": True})
        words = ("unknown key 'shel' (did you mean 'shell'?)",)
        return Expected("unknown check key", label, f"{field}.shel", words)
    if form == "empty argv":
        checks.append({"command": draw(st.sampled_from([[], [""]]))})
    else:
        checks.append({"command": draw(st.sampled_from(["", " "])), "shell": True})
    return Expected(f"check with {form}", label, f"{prefix}checks", nested=True)


def drop_workstream_key(draw, document):
    key = draw(st.sampled_from(["id", "tasks"]))
    del document[key]
    if key == "tasks":
        return Expected("no tasks key", None, None, ("no tasks",))
    return Expected("no id", None, "id", ("missing",))


def no_tasks(draw, document):
    document["tasks"] = []
    return Expected("no tasks", None, None, ("no tasks",))


def invalid_workstream_id(draw, document):
    document["id"] = draw(st.sampled_from(BAD_IDS))
    return Expected("invalid workstream id", None, "id", ("invalid id",))


def unknown_workstream_key(draw, document):
    form = draw(st.sampled_from(["near", "random", "defaults", "source"]))
    if form == "near":
        key = draw(st.sampled_from(sorted(WORKSTREAM_NEAR_MISSES)))
        field, meant = key, WORKSTREAM_NEAR_MISSES[key]
        words: tuple[str, ...] = (f"unknown key {key!r} (did you mean {meant!r}?)",)
        document[key] = draw(toml_values)
    elif form == "defaults":
        key = draw(st.sampled_from([*sorted(DEFAULTS_NEAR_MISSES), "prompt", "depends_on"]))
        field = f"defaults.{key}"
        meant = DEFAULTS_NEAR_MISSES.get(key)
        words = (f"unknown key {key!r}" + (f" (did you mean {meant!r}?)" if meant else ""),)
        document.setdefault("defaults", {})[key] = draw(toml_values)
    else:
        # "source" is an attribute of the loaded Workstream, not a key of the file.
        known = WORKSTREAM_KEYS
        key = "source" if form == "source" else draw(unknown_keys.filter(lambda k: k not in known))
        field, words = key, (f"unknown key {key!r}",)
        document[key] = draw(toml_values)
    return Expected("unknown workstream key", None, field, words)


def wrong_workstream_type(draw, document):
    form = draw(st.sampled_from(["id", "title", "description", "defaults", "tasks", "common"]))
    if form == "common":
        field = draw(st.sampled_from(sorted(COMMON_KINDS)))
        document.setdefault("defaults", {})[field] = draw(WRONG[COMMON_KINDS[field]])
        return Expected(f"wrong type for defaults.{field}", None, f"defaults.{field}", nested=True)
    kind = {"defaults": "table", "tasks": "tasks"}.get(form, "string")
    if kind == "tasks":
        wrong = other_than("array", extra=st.lists(scalars | arrays, min_size=1, max_size=2))
        document["tasks"] = draw(wrong)
        return Expected("wrong type for tasks", None, None, ("expected",))
    document[form] = draw(WRONG[kind])
    return Expected(f"wrong type for {form}", None, form, nested=True)


# Hypothesis draws the first entry far more often than the others (it is the "simplest"
# choice), so the mutation with the most variety comes first.
TASK_MUTATIONS: list[Mutation] = [
    wrong_task_type,
    drop_task_id,
    drop_body,
    unknown_task_key,
    duplicate_id,
    invalid_task_id,
    unknown_dependency,
    self_dependency,
    cycle,
    bad_path,
    empty_prompt,
    prompt_and_command,
    shell_string_without_shell,
    argv_with_shell,
    empty_command,
    empty_program,
    too_few_attempts,
    non_positive_timeout,
    garbage_duration,
    odd_duration,
    bad_backoff,
    bad_tools,
    bad_name,
    bad_env,
    bad_check,
]
WORKSTREAM_MUTATIONS: list[Mutation] = [
    drop_workstream_key,
    no_tasks,
    invalid_workstream_id,
    unknown_workstream_key,
    wrong_workstream_type,
]
MUTATIONS = TASK_MUTATIONS + WORKSTREAM_MUTATIONS


# -- strategies: blind mutations -------------------------------------------------------


def containers(value: Any) -> list[dict | list]:
    """Return every table and array in a document, the document first."""
    found: list[dict | list] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (dict, list)):
            found.append(item)
            pending.extend(item.values() if isinstance(item, dict) else item)
    return found


interesting_values = st.one_of(
    toml_values,
    ids,
    positive_durations,
    st.sampled_from([*GARBAGE_DURATIONS, *ODD_DURATIONS, *BAD_PATHS, *BAD_IDS, 0, -1, [], {}]),
    st.sampled_from([2**63, -(2**63) - 1, 10**30]),  # integers TOML does not allow
    argvs,
    check_entries(),
)
interesting_keys = st.one_of(
    st.sampled_from(sorted(TASK_KEYS | WORKSTREAM_KEYS | FILE_KEYS | BACKOFF_KEYS | CHECK_KEYS)),
    st.sampled_from(sorted({**TASK_NEAR_MISSES, **WORKSTREAM_NEAR_MISSES})),
    unknown_keys,
)


def blind_mutation(draw: st.DrawFn, document: dict) -> str:
    """Change one random place of the document without regard to what it means."""

    def fresh_value() -> Any:
        # a copy: a later mutation may append to a list that sampled_from shares
        return copy.deepcopy(draw(interesting_values))

    places = containers(document)
    place = places[draw(st.integers(0, len(places) - 1))]
    action = draw(st.sampled_from(["delete", "replace", "insert"]))
    if isinstance(place, dict):
        if action == "delete" and place:
            key = draw(st.sampled_from(list(place)))
            del place[key]
            return f"delete {key!r}"
        if action == "replace" and place:
            key = draw(st.sampled_from(list(place)))
        else:
            key = draw(interesting_keys)
        place[key] = fresh_value()
        return f"set {key!r}"
    if action == "delete" and place:
        del place[draw(st.integers(0, len(place) - 1))]
        return "delete an item"
    if action == "replace" and place:
        place[draw(st.integers(0, len(place) - 1))] = fresh_value()
        return "replace an item"
    place.append(fresh_value())
    return "append an item"


def well_shaped(document: dict[str, Any]) -> bool:
    """Return whether the targeted mutations can still find their way in ``document``:
    it has an id, tasks with string ids, and tables and arrays where they belong."""
    tasks = document.get("tasks")
    if "id" not in document or type(tasks) is not list or not tasks:
        return False
    if not all(type(task) is dict and type(task.get("id")) is str for task in tasks):
        return False
    tables = [*tasks, document.get("defaults", {})]
    shapes = {"depends_on": list, "files": dict, "checks": list, "env": dict, "backoff": dict}
    for table in tables:
        if type(table) is not dict:
            return False
        for key, shape in shapes.items():
            if key in table and type(table[key]) is not shape:
                return False
        if not all(type(patterns) is list for patterns in table.get("files", {}).values()):
            return False
    return True


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a valid document changed by up to four mutations: targeted ones while the
    document keeps its shape, then blind ones."""
    document = draw(valid_documents())
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()) and well_shaped(document):
            expected = draw(st.sampled_from(MUTATIONS))(draw, document)
            note(f"mutation: {expected.mistake}")
        else:
            note(f"mutation: {blind_mutation(draw, document)}")
    return document


# -- strategies: mangled text ---------------------------------------------------------

# Literals that stress the TOML parser itself: integers past Python's default 4300-digit
# str->int limit or past 64 bits, deep nesting, floats that overflow.
PATHOLOGICAL_LITERALS = [
    "1" + "0" * 4300,
    "9" * 25,
    "-" + "9" * 25,
    "0x" + "f" * 20,
    "[" * 500 + "]" * 500,
    "{a = " * 500 + "1" + "}" * 500,
    "1e999",
    "-1e999",
    "nan",
    "inf",
]
SYNTAX_CHARACTERS = [*"[]{}=\"',.#\\\n\r\t ", "\x00", "\x7f", "\u2028", "\ufeff", '"""']
raw_insertions = st.one_of(
    st.sampled_from(SYNTAX_CHARACTERS).map(str.encode),
    st.text(max_size=3).map(str.encode),
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82"]),
)


@st.composite
def mangled_files(draw: st.DrawFn) -> bytes:
    """Draw the bytes of a valid workstream file damaged by one to three edits."""
    document = draw(valid_documents(max_tasks=4))
    content = toml_document(document, sections=draw(st.booleans())).encode("utf-8")
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["truncate", "insert", "delete", "line", "literal"]))
        note(f"edit: {edit}")
        at = draw(st.integers(0, len(content)))
        if edit == "truncate":
            content = content[:at]
        elif edit == "insert":
            content = content[:at] + draw(raw_insertions) + content[at:]
        elif edit == "delete":
            content = content[:at] + content[at + draw(st.integers(1, 20)) :]
        elif edit == "line":
            lines = content.split(b"\n")
            line = draw(st.sampled_from(lines))
            lines.insert(draw(st.integers(0, len(lines))), line)
            content = b"\n".join(lines)
        else:
            key = draw(st.sampled_from(["priority", "max_attempts", "timeout", "metadata", "zz"]))
            literal = draw(st.sampled_from(PATHOLOGICAL_LITERALS))
            literal = f"{{x = {literal}}}" if key == "metadata" else literal
            content = content.rstrip(b"\n") + f"\n{key} = {literal}\n".encode()
    return content


# -- the properties ------------------------------------------------------------------


def write_and_load(workdir: Path, document: dict[str, Any], sections: bool):
    text = toml_document(document, sections=sections)
    note(f"file:\n{text}")
    assert same(tomli.loads(text), document), "the test's TOML writer lost something"
    return load(workdir / "workstream.toml", text)


@settings(max_examples=300, deadline=None)
@given(document=valid_documents(), sections=st.booleans())
def test_valid_documents_load_as_written(workdir: Path, document: dict, sections: bool) -> None:
    loaded = write_and_load(workdir, document, sections)
    assert isinstance(loaded, Workstream), f"rejected a valid document: {loaded.lines()}"
    assert_model_matches(loaded, document)


@settings(max_examples=1000, deadline=None)
@given(document=mutated_documents(), sections=st.booleans())
def test_mutated_documents_are_accepted_only_when_valid(
    workdir: Path, document: dict, sections: bool
) -> None:
    loaded = write_and_load(workdir, document, sections)
    event("accepted" if isinstance(loaded, Workstream) else "rejected")
    assert_loader_agrees(loaded, document)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda mutation: mutation.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data(), sections=st.booleans())
def test_each_mistake_is_reported_with_its_task_and_field(
    workdir: Path, mutation: Mutation, data: st.DataObject, sections: bool
) -> None:
    document = data.draw(valid_documents(max_tasks=5))
    expected = mutation(data.draw, document)
    note(f"mutation: {expected.mistake}, expecting {expected}")
    event(expected.mistake)
    assert problems_of(document), "the mutation left the document valid"
    loaded = write_and_load(workdir, document, sections)
    assert not isinstance(loaded, Workstream), f"accepted a document with {expected.mistake}"
    lines = loaded.lines()
    assert any(expected.matches(line, document) for line in lines), (
        f"no line reports {expected.mistake} (task {expected.task!r}, field "
        f"{expected.field!r}, words {expected.words}):\n" + "\n".join(lines)
    )


@settings(max_examples=600, deadline=None)
@given(content=mangled_files())
def test_mangled_files_never_traceback(workdir: Path, content: bytes) -> None:
    note(f"file: {content!r}")
    loaded = load(workdir / "workstream.toml", content)
    event(type(loaded).__name__)
    if isinstance(loaded, (Workstream, WorkstreamInvalid)):
        assert_loader_agrees(loaded, tomli.loads(content.decode("utf-8")))
    else:  # not UTF-8, not TOML, or past what the parser takes (a 5,000-digit integer)
        with pytest.raises((ValueError, RecursionError)):
            tomli.loads(content.decode("utf-8"))


# -- documents the properties found mishandled, kept as fixed examples ----------------
# Each is the smallest form of a failure the tests above found in the loader (a traceback,
# an error line that was two lines, or an invalid file accepted), so that it stays fixed
# whatever Hypothesis happens to draw.

_TASK = 'id = "w"\n\n[[tasks]]\nid = "a"\n'
REGRESSIONS = {
    "NaN timeout": _TASK + 'prompt = "p"\ntimeout = nan\n',
    "infinite timeout": _TASK + 'prompt = "p"\ntimeout = inf\n',
    "duration past a float": _TASK + f'prompt = "p"\ntimeout = "{"9" * 400}s"\n',
    "non-ASCII digits in a duration": _TASK + 'prompt = "p"\ntimeout = "٣s"\n',
    "NaN backoff": _TASK + 'prompt = "p"\nbackoff = { factor = nan, initial = nan }\n',
    "NaN default": 'id = "w"\n[defaults]\nidle_timeout = nan\n[[tasks]]\nid = "a"\nprompt = "p"\n',
    "NaN check timeout": _TASK + 'prompt = "p"\nchecks = [{ command = "x", timeout = nan }]\n',
    "task id ending in a newline": 'id = "w"\n[[tasks]]\nid = "a\\n"\nprompt = "p"\n',
    "workstream id ending in a newline": 'id = "w\\n"\n[[tasks]]\nid = "a"\nprompt = "p"\n',
    "tool name ending in a newline": _TASK + 'prompt = "p"\ntool = "codex\\n"\n',
    "env name ending in a newline": _TASK + 'prompt = "p"\nenv = { "PATH\\n" = "x" }\n',
    "cycle through an invalid id": (
        'id = "w"\n[[tasks]]\nid = "x\\ny"\nprompt = "p"\ndepends_on = ["b"]\n'
        '[[tasks]]\nid = "b"\nprompt = "p"\ndepends_on = ["x\\ny"]\n'
    ),
    "empty check argument list": _TASK + 'prompt = "p"\nchecks = [{ command = [] }]\n',
    "blank shell check": _TASK + 'prompt = "p"\nchecks = [{ command = " ", shell = true }]\n',
    "empty program name": _TASK + 'command = [""]\n',
    "top-level source key": 'id = "w"\nsource = "x"\n[[tasks]]\nid = "a"\nprompt = "p"\n',
    "integer past 64 bits": _TASK + 'prompt = "p"\npriority = 99999999999999999999\n',
    "integer past 4300 digits": _TASK + f'prompt = "p"\npriority = 1{"0" * 4300}\n',
    "nesting past 400 levels": _TASK
    + f'prompt = "p"\nmetadata = {{ x = {"[" * 500}{"]" * 500} }}\n',
}


@pytest.mark.parametrize("text", REGRESSIONS.values(), ids=REGRESSIONS.keys())
def test_regressions(workdir: Path, text: str) -> None:
    loaded = load(workdir / "regression.toml", text)
    if isinstance(loaded, (Workstream, WorkstreamInvalid)):
        assert_loader_agrees(loaded, tomli.loads(text))


MISLOCATED = {
    "check without command": (
        _TASK + 'prompt = "p"\nchecks = [{ name = "lint" }]\n',
        "task 'a': field 'checks[0].command': missing required key",
    ),
}


@pytest.mark.parametrize("text, line", MISLOCATED.values(), ids=MISLOCATED.keys())
def test_errors_name_the_right_field(workdir: Path, text: str, line: str) -> None:
    error = load(workdir / "regression.toml", text)
    assert isinstance(error, WorkstreamInvalid)
    assert any(line in printed for printed in error.lines()), error.lines()
