"""TOML workstream files -> ``Workstream``, with every problem reported at once.

Loading has two passes. cattrs structures the TOML document into the attrs models of
``orchestra.models`` with strict hooks (a string is never silently an int, a list never
a string) and detailed validation, so every type error and unknown key comes back with
its path. Then the structured workstream is checked for what types cannot say: ids,
dependencies, cycles, paths, values out of range. Each problem becomes one ``SpecError``
naming the file, the task and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from orchestra import graph, shellwords
from orchestra.durations import parse_duration
from orchestra.errors import SpecError, WorkstreamInvalid, did_you_mean
from orchestra.gcpause import paused_gc
from orchestra.models import (
    ERROR_CLASSES,
    Budget,
    Check,
    Command,
    Defaults,
    Task,
    ToolProfile,
    Workstream,
)
from orchestra.sizes import parse_size

if TYPE_CHECKING:
    from attrs import AttrsInstance

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHELL_OPERATORS = frozenset(
    {"&&", "||", "|", ";", ">", ">>", "<", "<<", "&", ">&", "<&", "&>", "|&", ">|", "(", ")"}
)

NO_TASKS = "no tasks: add at least one [[tasks]] table with an id and a prompt or a command"


# -- reading files -------------------------------------------------------------------


def read_file(path: Path, size: int = -1) -> bytes:
    """Return the bytes of a workstream file (its first ``size`` when given); a file
    that cannot be read raises SpecError saying why, naming it."""
    try:
        with path.open("rb") as stream:
            return stream.read(size)
    except FileNotFoundError:
        raise SpecError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a workstream file", file=str(path)) from None
    except OSError as error:
        raise SpecError(f"cannot read: {error.strerror}", file=str(path)) from None


def read_toml(path: Path) -> dict[str, Any]:
    """Return the TOML document at ``path``; unreadable or malformed files raise SpecError."""
    import tomli  # compiled tomli parses large files about twice as fast as tomllib

    raw = read_file(path)
    try:
        # "utf-8-sig": a byte order mark (Windows editors write one) is no statement
        return tomli.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise SpecError(f"not UTF-8 text (byte {error.start})", file=str(path)) from None
    except tomli.TOMLDecodeError as error:
        raise SpecError(f"invalid TOML: {error}", file=str(path)) from None
    except ValueError:  # tomli hands on Python's limit on integer literal length
        raise SpecError("invalid TOML: an integer literal is too long", file=str(path)) from None
    except RecursionError:
        raise SpecError("invalid TOML: nested too deeply", file=str(path)) from None


def load_workstream(path: str | Path) -> Workstream:
    """Return the workstream in the TOML file at ``path``.

    Raises ``WorkstreamInvalid`` listing every problem found, or ``SpecError`` when the
    file cannot be read or parsed at all.
    """
    path = Path(path)
    with paused_gc():
        return workstream_from_dict(read_toml(path), file=str(path))


def workstream_from_dict(document: Mapping[str, Any], *, file: str = "<workstream>") -> Workstream:
    """Return the workstream a parsed TOML document describes, or raise WorkstreamInvalid."""
    return checked_workstream(structure_workstream(document, file=file), file)


def structure_workstream(
    document: Mapping[str, Any], *, file: str = "<workstream>", graph: bool = True
) -> Workstream:
    """Return the workstream a TOML-shaped document describes, types checked (pass 1 only).

    Raises WorkstreamInvalid listing every type error and unknown key, together with the
    id and dependency problems of the raw document (unless ``graph`` is false: a file of
    a set, whose dependencies may be in other files). ``checked_workstream`` is pass 2.
    """
    try:
        return converter().structure(document, Workstream)
    except (ClassValidationError, IterableValidationError, ExpectedType) as error:
        problems = structuring_problems(error, document, file)
        if document.get("tasks") in (None, []):  # an empty file lacks its id too: say both
            problems.append(SpecError(NO_TASKS, file=file))
        if graph:
            problems.extend(_graph_problems_of_raw(document, file))
        raise WorkstreamInvalid(file, problems) from None


def checked_workstream(workstream: Workstream, file: str) -> Workstream:
    """Return ``workstream`` with ``source`` set to ``file``, once it passes the semantic
    checks (pass 2); raise WorkstreamInvalid listing every problem otherwise."""
    workstream = attrs.evolve(workstream, source=file)
    problems = list(check_workstream(workstream, file))
    if problems:
        raise WorkstreamInvalid(file, problems)
    return workstream


# -- structuring with cattrs ---------------------------------------------------------


class ExpectedType(Exception):
    """A TOML value of the wrong type; the message says what was expected and what came."""


def describe(value: Any) -> str:
    """Return a short description of a TOML value for error messages."""
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kinds.update({list: "an array", dict: "a table"})
    kind = kinds.get(type(value), type(value).__name__)
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)) or (isinstance(value, str) and len(value) < 40):
        return f"{kind} ({value!r})"
    return kind


def _expect(value: Any, kinds: tuple[type, ...], wanted: str) -> None:
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ExpectedType(f"expected {wanted}, got {describe(value)}")


def _structure_str(value: Any, _: Any) -> str:
    _expect(value, (str,), "a string")
    return value


Number = TypeVar("Number", int, float)


def _in_range(value: Number) -> Number:
    """Return ``value`` if TOML allows it: a 64-bit integer (tomli reads any size) or a
    finite float."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ExpectedType("integer out of range: TOML integers are 64-bit")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpectedType(f"expected a finite number, got {value}")
    return value


def _structure_int(value: Any, _: Any) -> int:
    _expect(value, (int,), "an integer")
    return _in_range(value)


def _structure_float(value: Any, _: Any) -> float:
    _expect(value, (int, float), "a number")
    return float(_in_range(value))


def _structure_bool(value: Any, _: Any) -> bool:
    _expect(value, (bool,), "true or false")
    return value


def _structure_duration(value: Any, _: Any) -> float | None:
    if value is None:
        return None
    _expect(value, (str, int, float), "a duration such as '90s', '10m' or '1h'")
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as error:
            raise ExpectedType(str(error)) from None
    return float(_in_range(value))


def _structure_size(value: Any, _: Any) -> int | None:
    if value is None:
        return None
    _expect(value, (str, int), "a size such as '10MB', '512KiB' or a number of bytes")
    try:
        return parse_size(_in_range(value) if isinstance(value, int) else value)
    except ValueError as error:
        raise ExpectedType(str(error)) from None


def _structure_command(value: Any, _: Any) -> tuple[str, ...] | str:
    if isinstance(value, str):
        return value
    _expect(value, (list,), "an argument list, or a string with shell = true")
    for item in value:
        _expect(item, (str,), "an argument list of strings")
    return tuple(value)


def _split_check(text: str) -> tuple[str, ...]:
    try:
        words = tuple(shellwords.split(text))
    except ValueError as error:
        raise ExpectedType(f"cannot split check {text!r} into arguments: {error}") from None
    operators = sorted(SHELL_OPERATORS.intersection(_shell_tokens(text)))
    if operators:
        raise ExpectedType(
            f"check {text!r} uses shell syntax ({' '.join(operators)}); "
            'write it as { command = "...", shell = true }'
        )
    if not words:
        raise ExpectedType("empty check command")
    return words


def _shell_tokens(text: str) -> list[str]:
    """Return ``text`` split as a shell would, operators apart even where glued (a>b)."""
    return shellwords.tokens(text)


def _structure_str_mapping(value: Any, _: Any) -> dict[str, str]:
    _expect(value, (dict,), "a table of strings")
    for key, item in value.items():
        _expect(item, (str,), f"a string for {key!r}")
    return dict(value)


def _structure_any_mapping(value: Any, _: Any) -> dict[str, Any]:
    _expect(value, (dict,), "a table")
    pending = list(value.values())
    while pending:  # free-form tables still hold only what TOML allows
        item = pending.pop()
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            _in_range(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return dict(value)


def _structure_tables(value: Any, _: Any) -> dict[str, dict[str, Any]]:
    """A table of tables (``[sink.NAME]``): each value a table of anything."""
    _expect(value, (dict,), "a table of tables")
    return {str(name): _structure_any_mapping(table, None) for name, table in value.items()}


def _is_homogeneous_tuple(type_: Any) -> bool:
    args = get_args(type_)
    return get_origin(type_) is tuple and len(args) == 2 and args[1] is ...


def _tuple_hook(type_: Any, conv: cattrs.Converter):
    item_type = get_args(type_)[0]
    item_hook = conv.get_structure_hook(item_type)

    def structure_tuple(value: Any, _: Any) -> tuple:
        _expect(value, (list,), "an array")
        if item_type is str and all(type(item) is str for item in value):
            return tuple(value)  # the common case, without a call per item
        items, errors = [], []
        for index, item in enumerate(value):
            try:
                items.append(item_hook(item, item_type))
            except Exception as error:
                note = IterableValidationNote(f"Structuring item @ index {index}", index, item_type)
                _add_note(error, note)
                errors.append(error)
        if errors:
            raise IterableValidationError("invalid items", errors, type_)
        return tuple(items)

    return structure_tuple


def _add_note(error: Exception, note: IterableValidationNote) -> None:
    """Attach ``note`` to ``error`` as cattrs does, in ``__notes__`` (PEP 678), which its
    exception groups read on Python 3.10 too."""
    # setattr: Python 3.10's Exception declares no __notes__, yet takes one
    setattr(error, "__notes__", [*getattr(error, "__notes__", []), note])  # noqa: B010


def _class_hook(cls: type[AttrsInstance], conv: cattrs.Converter):
    overrides = {
        field.name: override(struct_hook=_structure_duration)
        for field in attrs.fields(cls)
        if field.metadata.get("duration")
    }
    overrides.update(
        {
            field.name: override(struct_hook=_structure_size)
            for field in attrs.fields(cls)
            if field.metadata.get("size")
        }
    )
    overrides.update(
        {
            field.name: override(omit=True)
            for field in attrs.fields(cls)
            if field.metadata.get("internal")
        }
    )
    generated = make_dict_structure_fn(
        cls,
        conv,
        _cattrs_forbid_extra_keys=True,
        _cattrs_detailed_validation=True,
        # the fields' overrides: mypy cannot tell their names from cattrs' own arguments
        **overrides,  # type: ignore[arg-type]
    )
    wanted = "a [[tasks]] table" if cls is Task else "a table"

    def structure_table(value: Any, _: Any):
        _expect(value, (dict,), wanted)
        return generated(value, cls)

    return structure_table


def _check_hook(conv: cattrs.Converter):
    structure_table = _class_hook(Check, conv)

    def structure_check(value: Any, _: Any) -> Check:
        if isinstance(value, str):
            return Check(command=_split_check(value))
        _expect(value, (dict,), "a command string or a table with 'command'")
        check = structure_table(value, Check)
        if isinstance(check.command, str) and not check.shell:
            return attrs.evolve(check, command=_split_check(check.command))
        if isinstance(check.command, tuple) and check.shell:
            raise ExpectedType("a check with shell = true takes its command as one string")
        return check

    return structure_check


def _tool_profiles_hook(conv: cattrs.Converter):
    structure_known = _class_hook(ToolProfile, conv)
    known = {field.name for field in attrs.fields(ToolProfile)} - {"name", "options"}

    def structure_profiles(value: Any, _: Any) -> dict[str, ToolProfile]:
        _expect(value, (dict,), "a table of [tools.NAME] tables")
        profiles, errors = {}, []
        for name, table in value.items():
            try:
                _expect(table, (dict,), f"a [tools.{name}] table")
                settings = {key: item for key, item in table.items() if key in known}
                options = {key: item for key, item in table.items() if key not in known}
                profile = structure_known({**settings, "name": name}, ToolProfile)
                profiles[name] = attrs.evolve(profile, options=options)
            except Exception as error:
                note = IterableValidationNote(f"Structuring [tools.{name}]", name, ToolProfile)
                _add_note(error, note)
                errors.append(error)
        if errors:
            raise IterableValidationError("invalid tool profiles", errors, dict)
        return profiles

    return structure_profiles


_converter: cattrs.Converter | None = None


def converter() -> cattrs.Converter:
    """Return the converter that structures workstream documents (built once, on use)."""
    global _converter
    if _converter is None:
        conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
        conv.register_structure_hook(str, _structure_str)
        conv.register_structure_hook(int, _structure_int)
        conv.register_structure_hook(float, _structure_float)
        conv.register_structure_hook(bool, _structure_bool)
        conv.register_structure_hook(Command, _structure_command)
        conv.register_structure_hook(Command | None, _structure_command)
        conv.register_structure_hook_func(
            lambda type_: type_ == Mapping[str, str], _structure_str_mapping
        )
        conv.register_structure_hook_func(
            lambda type_: type_ == Mapping[str, Any], _structure_any_mapping
        )
        conv.register_structure_hook_factory(_is_homogeneous_tuple, _tuple_hook)
        conv.register_structure_hook_factory(attrs.has, _class_hook)
        conv.register_structure_hook(Check, _check_hook(conv))
        conv.register_structure_hook_func(
            lambda type_: type_ == Mapping[str, ToolProfile], _tool_profiles_hook(conv)
        )
        conv.register_structure_hook_func(
            lambda type_: type_ == Mapping[str, Mapping[str, Any]], _structure_tables
        )
        _converter = conv
    return _converter


# -- turning cattrs' exception groups into lines ------------------------------------


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


# -- checking what types cannot say --------------------------------------------------


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
    cycle = graph.find_cycle(dependencies)
    if cycle:
        yield problem(f"dependency cycle: {' -> '.join(cycle)}", cycle[0], "depends_on")


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


def _check_common(
    values: Task | Defaults, task_id: str | None, problem, prefix: str
) -> Iterator[SpecError]:
    """Check the fields a task shares with [defaults]."""
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
