"""Pass 2 of loading: checking a structured workstream for what types cannot say.

Ids, dependencies and cycles (``check_graph``, which the loaders of other formats and of
directories of files use too), paths inside the repository, values out of range; each
problem one ``SpecError`` naming the file, the task and the field.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from orchestra import graph
from orchestra.errors import SpecError, did_you_mean
from orchestra.models import (
    ERROR_CLASSES,
    FAILURE_ACTIONS,
    Budget,
    Defaults,
    Review,
    Task,
    Workstream,
)

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

NO_TASKS = "no tasks: add at least one [[tasks]] table with an id and a prompt or a command"


def check_workstream(workstream: Workstream, file: str) -> Iterator[SpecError]:
    """Yield every problem in a structured workstream: ids, graph, paths, ranges."""

    def problem(message: str, task: str | None = None, field: str | None = None) -> SpecError:
        return SpecError(message, file=file, task=task, field=field)

    if not ID_PATTERN.fullmatch(workstream.id):
        yield problem(_bad_id(workstream.id), field="id")
    yield from _check_common(workstream.defaults, None, problem, prefix="defaults.")
    if not workstream.tasks:
        yield problem(NO_TASKS)
        return
    for task in workstream.tasks:
        if not _only_a_command(task):
            yield from _check_task(task, problem)
    edges = [(task.id, task.depends_on) for task in workstream.tasks]
    yield from check_graph(edges, problem, also=workstream.aliases)


def check_graph(
    edges: list[tuple[str, tuple[str, ...]]], problem, also: Iterable[str] = ()
) -> Iterator[SpecError]:
    """Yield problems with task ids and dependencies: bad or duplicate ids, unknown
    dependencies, cycles. ``edges`` holds (task id, its dependencies) in file order;
    ``also`` are other names a dependency may use (a bundle's id for its steps), offered
    too when a name is misspelt."""
    if _ids_well_formed(edges) and graph.in_order(dict(edges)):
        # every task comes after all it depends on: none is unknown, none the task
        # itself, and there is no cycle
        return
    dependencies = yield from _id_problems(edges, problem, also)
    cycle = graph.find_cycle(dependencies)
    if cycle:
        yield problem(f"dependency cycle: {' -> '.join(cycle)}", cycle[0], "depends_on")


def _ids_well_formed(edges: list[tuple[str, tuple[str, ...]]]) -> bool:
    """Whether every id is valid and unique: then ``_id_problems`` finds no problem with
    an id. What it buys, with ``graph.in_order`` for the dependencies: checking 100,000
    tasks' ids and dependencies takes 0.1 s, the tests of ids looping in C, against
    0.18 s in ``_id_problems``, which looks at every id and dependency on its own."""
    ids = [task_id for task_id, _ in edges]
    return len(set(ids)) == len(ids) and all(map(BRANCHABLE_ID.fullmatch, ids))


def _id_problems(
    edges: list[tuple[str, tuple[str, ...]]], problem, also: Iterable[str]
) -> Generator[SpecError, None, dict[str, tuple[str, ...]]]:
    """Yield the problems with task ids and dependencies (``check_graph``'s but cycles),
    in file order, and return the graph of the valid ids, which the cycle check reads."""
    seen: set[str] = set()
    invalid: set[str] = set()
    for number, (task_id, _) in enumerate(edges, start=1):
        if not ID_PATTERN.fullmatch(task_id):
            yield problem(_bad_id(task_id), task_id or f"#{number}", "id")
            invalid.add(task_id)
        elif _unbranchable(task_id):
            label = task_id if len(task_id) <= MAX_ID_LENGTH else task_id[:20] + "…"
            yield problem(_unbranchable(task_id), label, "id")
            invalid.add(task_id)
        elif task_id in seen:
            yield problem("duplicate task id", task_id, "id")
        seen.add(task_id)
    # ids already reported as invalid stay out of the cycle check: a cycle is one line
    valid = seen - invalid if invalid else seen
    dependencies: dict[str, tuple[str, ...]] = {}
    for task_id, needs in edges:
        if task_id in needs or not valid.issuperset(needs):
            for dependency in dict.fromkeys(needs):
                if dependency == task_id:
                    yield problem("a task cannot depend on itself", task_id, "depends_on")
                elif dependency not in seen:
                    hint = did_you_mean(dependency, (seen | set(also)) - {task_id})
                    yield problem(f"unknown task {dependency!r}{hint}", task_id, "depends_on")
            needs = tuple(d for d in needs if d in valid and d != task_id)
        if task_id not in invalid:
            dependencies[task_id] = needs
    return dependencies


def _graph_problems_of_raw(document: Mapping[str, Any], file: str) -> list[SpecError]:
    """Check ids and dependencies of a document that did not structure, where they are
    well-typed, so that graph problems are reported together with type errors."""
    tasks = document.get("tasks")
    if not isinstance(tasks, list):
        return []
    edges = []
    for table in tasks:
        if not isinstance(table, dict) or not isinstance(table.get("id"), str):
            continue
        needs = table.get("depends_on", [])
        if not isinstance(needs, list) or not all(isinstance(item, str) for item in needs):
            needs = []
        edges.append((table["id"], tuple(needs)))

    def problem(message: str, task: str | None = None, field: str | None = None) -> SpecError:
        return SpecError(message, file=file, task=task, field=field)

    return list(check_graph(edges, problem))


#: the longest task id: an attempt's branch (orchestra-tasks/<run>/<id>.<attempt>) and its
#: worktree directory are named after it, and a file name has at most 255 bytes
MAX_ID_LENGTH = 200
#: an id ``ID_PATTERN`` accepts that can name a git branch (``_unbranchable`` says
#: nothing): no "..", no "." at the end, at most MAX_ID_LENGTH characters
BRANCHABLE_ID = re.compile(rf"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_ID_LENGTH - 1}}}(?<!\.)")


def _unbranchable(task_id: str) -> str | None:
    """Why a task id that ``ID_PATTERN`` accepts cannot name an attempt's git branch
    (``orchestra-tasks/<run>/<id>.<attempt>``), or None."""
    if ".." in task_id or task_id.endswith("."):
        return (
            f"invalid id {task_id!r}: '..' (or a '.' at the end, before the attempt's number)"
            " cannot be in the git branch of its attempts"
        )
    if len(task_id) > MAX_ID_LENGTH:
        return f"invalid id: longer than {MAX_ID_LENGTH} characters"
    return None


def _bad_id(value: str) -> str:
    return (
        f"invalid id {value!r}: use letters, digits, '.', '_' and '-', "
        "starting with a letter or digit"
    )


def _only_a_command(task: Task) -> bool:
    """Whether ``task`` is an argument list and nothing else ``_check_task`` looks at,
    its program named: then it has nothing to say. What it buys: a quarter fewer
    instructions than ``_check_task`` takes to say so (valgrind: 7,000 a task, not 9,100)."""
    command = task.command
    return (
        type(command) is tuple
        and bool(command)
        and bool(command[0].strip())
        and _BESIDE_A_COMMAND(task) == _NOTHING_BESIDE
        and _COMMON_FIELDS(task) == _UNSET
    )


def _check_task(task: Task, problem) -> Iterator[SpecError]:
    prompt, command = task.prompt, task.command
    if prompt is not None:
        if command is not None:
            yield problem("has both 'prompt' and 'command'; keep one", task.id, "command")
        if not prompt.strip():
            yield problem("empty prompt", task.id, "prompt")
        if task.shell:
            message = "shell = true applies to a 'command', and this task has a prompt"
            yield problem(message, task.id, "shell")
    elif command is None:
        yield problem("needs a 'prompt' (for an AI tool) or a 'command' (to run)", task.id)
    if isinstance(command, str):
        if not task.shell:
            message = (
                "a command string needs shell = true; otherwise write an argument list such "
                'as ["make", "test"]'
            )
            yield problem(message, task.id, "command")
        if not command.strip():
            yield problem("empty command", task.id, "command")
    elif command is not None:
        if task.shell:
            yield problem("with shell = true, write the command as one string", task.id, "command")
        if not command:
            yield problem("empty command", task.id, "command")
        elif not command[0].strip():
            message = "empty program name: the first argument says what to run"
            yield problem(message, task.id, "command")
    if not task.files.is_empty():
        for field_name in ("read", "write", "create", "forbidden"):
            for pattern in getattr(task.files, field_name):
                reason = _path_problem(pattern)
                if reason:
                    yield problem(f"{pattern!r}: {reason}", task.id, f"files.{field_name}")
    yield from _check_common(task, task.id, problem, prefix="")


#: the fields ``_check_common`` reads, and their values on a task that sets none of them
_COMMON_FIELDS = operator.attrgetter(
    "tool",
    "tools",
    "routing",
    "capabilities",
    "max_attempts",
    "timeout",
    "idle_timeout",
    "backoff",
    "non_retryable",
    "on_failure",
    "failover_wait",
    "workspace",
    "max_files_changed",
    "max_lines_changed",
    "same_failure_limit",
    "budget",
    "review",
    "env",
    "checks",
)
_UNSET = _COMMON_FIELDS(Task(id="unset"))
#: what else ``_check_task`` reads of a command task, and its values when unset
_BESIDE_A_COMMAND = operator.attrgetter("prompt", "shell", "files")
_NOTHING_BESIDE = _BESIDE_A_COMMAND(Task(id="unset"))


def _check_common(
    values: Task | Defaults, task_id: str | None, problem, prefix: str
) -> Iterator[SpecError]:
    """Check the fields a task shares with [defaults]."""
    if _COMMON_FIELDS(values) == _UNSET:
        # nothing set, nothing to check: one comparison in C instead of twenty lookups
        # and tests in Python; 100,000 tasks that set none are checked in 0.05 s, not 0.13 s
        return
    if values.tool is not None and values.tools is not None:
        yield problem(
            "set either 'tool' (pin one) or 'tools' (allow several), not both",
            task_id,
            f"{prefix}tools",
        )
    for field_name in ("tool", "routing"):
        name = getattr(values, field_name)
        if name is not None and not NAME_PATTERN.fullmatch(name):
            yield problem(f"invalid name {name!r}", task_id, prefix + field_name)
    for field_name in ("tools", "capabilities"):
        for name in getattr(values, field_name) or ():
            if not NAME_PATTERN.fullmatch(name):
                yield problem(f"invalid name {name!r}", task_id, prefix + field_name)
    if values.tools is not None and not values.tools:
        yield problem(
            "empty list: allow at least one tool, or leave 'tools' out", task_id, f"{prefix}tools"
        )
    if values.max_attempts is not None and values.max_attempts < 1:
        yield problem("must be at least 1", task_id, f"{prefix}max_attempts")
    for field_name in ("timeout", "idle_timeout"):
        seconds = getattr(values, field_name)
        if seconds is not None and seconds <= 0:
            yield problem("must be longer than zero", task_id, prefix + field_name)
    if values.backoff is not None:
        backoff = values.backoff
        if backoff.initial < 0:
            yield problem("must not be negative", task_id, f"{prefix}backoff.initial")
        if backoff.factor < 1:
            yield problem("must be at least 1", task_id, f"{prefix}backoff.factor")
        if backoff.max < backoff.initial:
            yield problem("must not be shorter than 'initial'", task_id, f"{prefix}backoff.max")
    for name in values.non_retryable or ():
        if name not in ERROR_CLASSES:
            suggestion = did_you_mean(name, sorted(ERROR_CLASSES))
            yield problem(
                f"unknown error class {name!r}{suggestion}", task_id, f"{prefix}non_retryable"
            )
    for name, action in (values.on_failure or {}).items():
        if name not in ERROR_CLASSES:
            message = f"unknown error class {name!r}{did_you_mean(name, sorted(ERROR_CLASSES))}"
            yield problem(message, task_id, f"{prefix}on_failure.{name}")
        elif action not in FAILURE_ACTIONS:
            message = f"unknown action {action!r}: use one of {', '.join(FAILURE_ACTIONS)}"
            yield problem(message, task_id, f"{prefix}on_failure.{name}")
    if values.failover_wait is not None and values.failover_wait < 0:
        yield problem("must not be negative", task_id, f"{prefix}failover_wait")
    if values.workspace is not None and not NAME_PATTERN.fullmatch(values.workspace):
        yield problem(f"invalid name {values.workspace!r}", task_id, f"{prefix}workspace")
    for field_name in ("max_files_changed", "max_lines_changed"):
        limit = getattr(values, field_name)
        if limit is not None and limit < 1:
            yield problem("must be at least 1", task_id, prefix + field_name)
    if values.same_failure_limit is not None and values.same_failure_limit < 1:
        yield problem("must be at least 1", task_id, f"{prefix}same_failure_limit")
    if values.budget is not None:
        for name, message in budget_problems(values.budget):
            yield problem(message, task_id, f"{prefix}budget.{name}")
    yield from _review_problems(values.review, task_id, problem, f"{prefix}review")
    for name in values.env:
        if not ENV_NAME_PATTERN.fullmatch(name):
            yield problem(f"invalid environment variable name {name!r}", task_id, f"{prefix}env")
    for index, check in enumerate(values.checks or ()):
        where = f"{prefix}checks[{index}].command"
        if not (check.command.strip() if isinstance(check.command, str) else check.command):
            yield problem("empty command", task_id, where)
        elif isinstance(check.command, tuple) and not check.command[0].strip():
            yield problem("empty program name", task_id, where)
        if check.timeout is not None and check.timeout <= 0:
            yield problem("must be longer than zero", task_id, f"{prefix}checks[{index}].timeout")


def _review_problems(
    review: Review | None, task_id: str | None, problem, where: str
) -> Iterator[SpecError]:
    """Check a ``review`` table: names, at least one round, a timeout above zero."""
    if review is None:
        return
    for name in review.tools:
        if not NAME_PATTERN.fullmatch(name):
            yield problem(f"invalid name {name!r}", task_id, f"{where}.tools")
    if review.routing is not None and not NAME_PATTERN.fullmatch(review.routing):
        yield problem(f"invalid name {review.routing!r}", task_id, f"{where}.routing")
    if review.max_rounds < 1:
        yield problem("must be at least 1", task_id, f"{where}.max_rounds")
    if review.timeout is not None and review.timeout <= 0:
        yield problem("must be longer than zero", task_id, f"{where}.timeout")
    if review.prompt is not None and not review.prompt.strip():
        yield problem(
            "empty prompt: write the guidelines, or leave it out", task_id, f"{where}.prompt"
        )


def budget_problems(budget: Budget | None) -> list[tuple[str, str]]:
    """Return (field, message) for each impossible value of a budget: a task's, the
    defaults' or orchestra.toml's (config.py asks here, as it does for its TOML)."""
    problems = []
    if budget is not None and budget.cost is not None and not budget.cost > 0:
        problems.append(("cost", "must be more than zero"))
    if budget is not None and budget.tokens is not None and budget.tokens < 1:
        problems.append(("tokens", "must be at least 1"))
    return problems


def _path_problem(pattern: str) -> str | None:
    """Return why a file pattern is not a path inside the repository, or None."""
    if not pattern.strip():
        return "empty path"
    if pattern.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", pattern):
        return "absolute path; write it relative to the repository"
    if ".." in PurePosixPath(pattern.replace("\\", "/")).parts:
        return "'..' leaves the repository; write a path inside it"
    return None
