"""Pass 1 of loading: cattrs structures a TOML document into the models, strictly.

Every hook refuses what TOML would not mean (a string is never silently an int, a list
never a string, a number stays within TOML's range) and raises ``ExpectedType`` saying
what was expected and what came; cattrs gathers them, with their paths, into exception
groups that ``orchestra.spec.problems`` turns into lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, override

from orchestra import shellwords
from orchestra.durations import parse_duration
from orchestra.models import Check, Command, Review, Task, ToolProfile
from orchestra.sizes import parse_size
from orchestra.spec.plain import plain_task

if TYPE_CHECKING:
    from attrs import AttrsInstance

SHELL_OPERATORS = shellwords.OPERATORS


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


def _task_hook(_: Any, conv: cattrs.Converter):
    structure_table = _class_hook(Task, conv)

    def structure_task(value: Any, _: Any) -> Task:
        if type(value) is dict:
            task = plain_task(value)
            if task is not None:
                return task
        return structure_table(value, Task)

    return structure_task


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


def _review_hook(conv: cattrs.Converter):
    structure_table = _class_hook(Review, conv)

    def structure_review(value: Any, _: Any) -> Review | None:
        if value is None:
            return None
        if isinstance(value, bool):  # true: the defaults' shape; false: no review here
            return Review(enabled=value)
        _expect(value, (dict,), "a table such as { max_rounds = 2 }, or true or false")
        return structure_table(value, Review)

    return structure_review


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
        # made on first use, as _class_hook's are: once every hook it calls is registered
        conv.register_structure_hook_factory(lambda type_: type_ is Task, _task_hook)
        conv.register_structure_hook(Check, _check_hook(conv))
        conv.register_structure_hook(Review | None, _review_hook(conv))
        conv.register_structure_hook_func(
            lambda type_: type_ == Mapping[str, ToolProfile], _tool_profiles_hook(conv)
        )
        conv.register_structure_hook_func(
            lambda type_: type_ == Mapping[str, Mapping[str, Any]], _structure_tables
        )
        _converter = conv
    return _converter
