"""TOML workstream files -> ``Workstream``, with every problem reported at once.

Loading has two passes. cattrs structures the TOML document into the attrs models of
``orchestra.models`` with strict hooks (a string is never silently an int, a list never
a string) and detailed validation, so every type error and unknown key comes back with
its path. Then the structured workstream is checked for what types cannot say: ids,
dependencies, cycles, paths, values out of range. Each problem becomes one ``SpecError``
naming the file, the task and the field.

The package holds one pass or step a module: ``reading`` (a file's bytes or TOML),
``structuring`` (pass 1: cattrs and its strict hooks), ``problems`` (cattrs' errors as
lines) and ``checks`` (pass 2). This module holds the entry points, and every name the
rest of orchestra imports from ``orchestra.spec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from orchestra import shellwords
from orchestra.errors import SpecError, WorkstreamInvalid
from orchestra.gcpause import paused_gc
from orchestra.models import Workstream
from orchestra.spec.checks import (
    ENV_NAME_PATTERN,
    ID_PATTERN,
    MAX_ID_LENGTH,
    NAME_PATTERN,
    NO_TASKS,
    _graph_problems_of_raw,
    budget_problems,
    check_graph,
    check_workstream,
)
from orchestra.spec.plain import plain_workstream
from orchestra.spec.reading import read_file, read_toml

SHELL_OPERATORS = shellwords.OPERATORS
_shell_tokens = shellwords.tokens

#: names of this package that come from modules importing cattrs: imported on first use
#: (``__getattr__``), so that a plain workstream is read without cattrs (spec/plain.py)
_FROM_CATTRS_MODULES = {
    "ExpectedType": "orchestra.spec.structuring",
    "converter": "orchestra.spec.structuring",
    "describe": "orchestra.spec.structuring",
    "structuring_problems": "orchestra.spec.problems",
}


def __getattr__(name: str) -> Any:
    module = _FROM_CATTRS_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ENV_NAME_PATTERN",
    "ID_PATTERN",
    "MAX_ID_LENGTH",
    "NAME_PATTERN",
    "NO_TASKS",
    "SHELL_OPERATORS",
    "ExpectedType",
    "_shell_tokens",
    "budget_problems",
    "check_graph",
    "check_workstream",
    "checked_workstream",
    "converter",
    "describe",
    "load_workstream",
    "read_file",
    "read_toml",
    "structure_workstream",
    "structuring_problems",
    "workstream_from_dict",
]


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
    plain = plain_workstream(document)
    if plain is not None:
        return plain
    from cattrs.errors import ClassValidationError, IterableValidationError

    from orchestra.spec.problems import structuring_problems
    from orchestra.spec.structuring import ExpectedType, converter

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
