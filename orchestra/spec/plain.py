"""Workstream documents of plain tables, structured without cattrs.

Most workstreams are plain: a task table holds strings, booleans, integers and arrays
of strings under the keys a command or a prompt needs. Such a document becomes its
``Workstream`` here, as cattrs would make it, and cattrs is not imported: its import
and the structuring functions it compiles were about 18 ms of every ``orchestra run``
(benchmarks/startup.py). Anything else (a nested table, a value of another type, an
unknown key) is left to cattrs (``structuring.py``) untouched, so every problem is
reported with its path as before; tests/test_large_plan_paths.py holds each result to
cattrs'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestra.models import Task, Workstream

#: the keys of a task table that ``plain_task`` structures without cattrs, each with the
#: one type of value it takes there (``list``: an array of strings, made a tuple; COMMAND:
#: a string, or an array of strings made a tuple)
COMMAND = "command"
PLAIN_TASK_KEYS: dict[str, Any] = {
    "id": str,
    "title": str,
    "prompt": str,
    "command": COMMAND,
    "shell": bool,
    "tool": str,
    "tools": list,
    "routing": str,
    "capabilities": list,
    "depends_on": list,
    "priority": int,
    "max_attempts": int,
    "workspace": str,
}


def plain_task(table: dict[str, Any]) -> Task | None:
    """Return the Task of a table that holds only ``PLAIN_TASK_KEYS``, each value of its
    one plain type, as cattrs would structure it; None for any other table, which cattrs
    then structures, reporting every problem with its path.

    What it buys: 100,000 command tasks structure in 0.37 s instead of 0.52 s (cattrs'
    generated function tries each of Task's 30 fields and calls a hook per value); most
    of what is left is Task's own __init__. Every table it does not take, it leaves to
    cattrs untouched, so no message changes."""
    if "id" not in table:
        return None
    arguments: dict[str, Any] = {}
    for key, value in table.items():
        kind = PLAIN_TASK_KEYS.get(key)
        if kind is None:
            return None
        if type(value) is list and (kind is list or kind is COMMAND):
            for item in value:
                if type(item) is not str:
                    return None
            value = tuple(value)
        elif type(value) is not (str if kind is COMMAND else kind):
            return None  # bool is its own type here: true is no integer, 1 no boolean
        elif kind is int and not -(2**63) <= int(value) < 2**63:
            return None
        arguments[key] = value
    return Task(**arguments)


#: the top-level keys of a plain workstream document, each a string
PLAIN_WORKSTREAM_KEYS = frozenset({"id", "title", "description"})


def plain_workstream(document: Mapping[str, Any]) -> Workstream | None:
    """Return the Workstream of a document of plain strings and plain task tables (at
    least one), as cattrs would structure it; None for any other document."""
    if type(document) is not dict or type(document.get("id")) is not str:
        return None
    tables = document.get("tasks")
    if type(tables) is not list or not tables:
        return None
    fields: dict[str, Any] = {}
    for key, value in document.items():
        if key == "tasks":
            continue
        if key not in PLAIN_WORKSTREAM_KEYS or type(value) is not str:
            return None
        fields[key] = value
    tasks = []
    for table in tables:
        task = plain_task(table) if type(table) is dict else None
        if task is None:
            return None
        tasks.append(task)
    return Workstream(tasks=tuple(tasks), **fields)
