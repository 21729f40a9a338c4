"""The workstream format "task-master": claude-task-master's ``tasks.json``.

Both shapes load: the legacy one (``{"tasks": [...]}``) and tagged task lists
(``{"master": {"tasks": [...]}, "feature-x": {...}}``: the ``tag`` option, else
``master``, else the only tag). Each task's title, description and details make the
prompt, with ``testStrategy`` as guidance; each subtask becomes a task ``<parent>.<sub>``
that its parent depends on. Tasks already ``done`` are left out, and so are the
dependencies on them, unless the ``include_done`` option is set. A task's ``review``
in orchestra's shape is its review (``reviews``); task-master's own status ``review`` is
a person's, kept with the status in metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from orchestra.errors import SpecError, WorkstreamInvalid, did_you_mean
from orchestra.loaders.jsonfile import Fields, as_id, describe, read_json, without_nulls
from orchestra.loaders.reviews import KEPT, review_of
from orchestra.patterns import LazyPattern
from orchestra.plugin.markers import hookimpl
from orchestra.spec import structure_workstream

if TYPE_CHECKING:
    from orchestra.models import Workstream
    from orchestra.plugin.protocols import LoadContext

TASK_MASTER_SHAPE = LazyPattern(rb'"tasks"\s*:\s*\[\s*\{|"(testStrategy|subtasks)"\s*:')
MAPPED = frozenset(
    {
        "id",
        "title",
        "description",
        "details",
        "testStrategy",
        "dependencies",
        "priority",
        "status",
        "subtasks",
        "metadata",
        "review",
    }
)
DONE = "done"
#: the status of a task waiting for a person's review in task-master
IN_REVIEW = "review"


class TaskMasterLoader:
    """Loads claude-task-master's tasks.json, legacy or tagged."""

    name = "task-master"
    patterns = ("tasks.json", "tasks*.json")

    def sniff(self, path: Path, head: bytes) -> bool:
        return head.lstrip()[:1] == b"{" and TASK_MASTER_SHAPE().search(head) is not None

    def load(self, path: Path, context: LoadContext) -> Workstream:
        file = str(path)
        document = read_json(path)
        if not isinstance(document, dict):
            raise SpecError(f"expected an object, got {describe(document)}", file=file)
        wanted = context.options.get("tag")
        tags = _matching_tags(document, wanted, file) if _is_pattern(wanted) else None
        include_done = bool(context.options.get("include_done"))
        reader = _Reader(file, include_done)
        if tags is None:
            tag, tasks, description = _tag(document, wanted, file)
            _read_tag(reader, tag, tasks, file)
        else:  # several tags as one workstream: each task's id is "<tag>.<id>"
            tag, description = None, None
            for name in tags:
                _read_tag(reader, name, document[name]["tasks"], file, prefix=f"{name}.")
        if reader.problems:
            raise WorkstreamInvalid(file, reader.problems)
        if reader.extra:
            context.notice(
                f"{file}: kept as task metadata, orchestra does not use them: "
                f"{', '.join(sorted(reader.extra))}"
            )
        if reader.kept_review:
            context.notice(f"{file}: {KEPT}")
        if reader.in_review:
            context.notice(
                f"{file}: {len(reader.in_review)} task(s) in status 'review' (waiting for "
                "a person's review in task-master) are loaded as work to do; the status is "
                "kept as metadata"
            )
        if reader.skipped:
            context.notice(
                f"{file}: {len(reader.skipped)} task(s) already done are left out "
                "(--include-done keeps them)"
            )
        workstream = {"id": as_id(tag or path.stem), "tasks": reader.tables}
        if description:
            workstream["description"] = description
        if not reader.tables:
            raise SpecError("no tasks left to do: every task is done", file=file)
        in_set = getattr(context, "in_set", False)
        return structure_workstream(workstream, file=file, graph=not in_set)


def _read_tag(reader: _Reader, tag: str | None, tasks: Any, file: str, prefix: str = "") -> None:
    """Read one tag's tasks into ``reader``, ids and dependencies led by ``prefix``."""
    if not isinstance(tasks, list):
        field = "tasks" if tag is None else f"{tag}.tasks"
        message = f"expected a list of tasks, got {describe(tasks)}"
        raise SpecError(message, file=file, field=field)
    if not prefix:
        reader.read(tasks)
        return
    part = _Reader(file, reader.include_done)
    part.read(tasks)
    for table in part.tables:
        table["id"] = prefix + table["id"]
        if "depends_on" in table:
            table["depends_on"] = [prefix + need for need in table["depends_on"]]
    reader.tables.extend(part.tables)
    reader.problems.extend(part.problems)
    reader.extra.update(part.extra)
    reader.kept_review = reader.kept_review or part.kept_review
    reader.in_review.update(prefix + task_id for task_id in part.in_review)
    reader.skipped.update(prefix + task_id for task_id in part.skipped)


def _is_pattern(wanted: Any) -> TypeGuard[str]:
    return isinstance(wanted, str) and any(mark in wanted for mark in "*?[")


def _matching_tags(document: Mapping[str, Any], pattern: str, file: str) -> list[str]:
    """Return the tags whose names match the glob ``pattern`` (``*``: every tag)."""
    from fnmatch import fnmatchcase

    if "tasks" in document:
        raise SpecError(f"has no tags, so no tag matches {pattern!r}: leave --tag out", file=file)
    tags = [key for key, value in document.items() if isinstance(value, dict) and "tasks" in value]
    chosen = [tag for tag in tags if fnmatchcase(tag, pattern)]
    if not chosen:
        raise SpecError(f"no tag matches {pattern!r} (tags: {', '.join(tags)})", file=file)
    return chosen


def _tag(document: Mapping[str, Any], wanted: Any, file: str) -> tuple[str | None, Any, Any]:
    """Return (tag, its tasks, its description) of the tagged or legacy document."""
    if "tasks" in document:
        if wanted is not None:
            raise SpecError(f"has no tags, so no tag {wanted!r}: leave --tag out", file=file)
        meta = document.get("meta") or document.get("metadata") or {}
        return None, document["tasks"], meta.get("description") if isinstance(meta, dict) else None
    tags = [key for key, value in document.items() if isinstance(value, dict) and "tasks" in value]
    if wanted is not None:
        if wanted not in tags:
            hint = did_you_mean(str(wanted), tags)
            raise SpecError(f"no tag {wanted!r}{hint} (tags: {', '.join(tags)})", file=file)
        tag = wanted
    elif "master" in tags:
        tag = "master"
    elif len(tags) == 1:
        tag = tags[0]
    elif not tags:
        raise SpecError("no task list: expected 'tasks', or tags holding 'tasks'", file=file)
    else:
        raise SpecError(
            f"several tags ({', '.join(tags)}); choose one with --tag, or all with --tag '*'",
            file=file,
        )
    metadata = document[tag].get("metadata")
    description = metadata.get("description") if isinstance(metadata, dict) else None
    return tag, document[tag]["tasks"], description if isinstance(description, str) else None


class _Reader:
    """Turns task-master tasks into orchestra task tables, collecting problems."""

    def __init__(self, file: str, include_done: bool) -> None:
        self.file = file
        self.include_done = include_done
        self.tables: list[dict[str, Any]] = []
        self.problems: list[SpecError] = []
        self.extra: set[str] = set()
        self.skipped: set[str] = set()
        #: whether a task had a ``review`` that is not orchestra's review
        self.kept_review = False
        #: the tasks loaded whose status is ``review``
        self.in_review: set[str] = set()

    def read(self, tasks: list[Any]) -> None:
        top_ids = {_id(task.get("id")) for task in tasks if isinstance(task, dict)}
        #: each task's table, the ids it needs (None: one that names no task) and its id
        pending: list[tuple[dict[str, Any], list[str | None], str | None]] = []
        for number, task in enumerate(tasks, start=1):
            if not isinstance(task, dict):
                message = f"expected a task object, got {describe(task)}"
                self.problems.append(SpecError(message, file=self.file, task=f"#{number}"))
                continue
            parent_id = _id(task.get("id")) or f"#{number}"
            parent_done = task.get("status") == DONE and not self.include_done
            subtask_ids: list[str] = []
            subtasks = task.get("subtasks") or []
            if not isinstance(subtasks, list):
                message = f"expected a list of subtasks, got {describe(subtasks)}"
                self.problems.append(
                    SpecError(message, file=self.file, task=parent_id, field="subtasks")
                )
                subtasks = []
            siblings = {_id(sub.get("id")) for sub in subtasks if isinstance(sub, dict)}
            for index, subtask in enumerate(subtasks):
                if not isinstance(subtask, dict):
                    message = f"expected a subtask object, got {describe(subtask)}"
                    field = f"subtasks[{index}]"
                    self.problems.append(
                        SpecError(message, file=self.file, task=parent_id, field=field)
                    )
                    continue
                sub_id = f"{parent_id}.{_id(subtask.get('id')) or f'#{index + 1}'}"
                done = parent_done or (subtask.get("status") == DONE and not self.include_done)
                needs = [
                    _subtask_dependency(value, parent_id, siblings, top_ids)
                    for value in _list(subtask.get("dependencies"))
                ]
                table = self._table(subtask, sub_id, f"subtasks[{index}].")
                if done:
                    self.skipped.add(sub_id)
                else:
                    subtask_ids.append(sub_id)
                    pending.append((table, [need for need in needs if need != parent_id], sub_id))
            table = self._table(task, parent_id, "")
            needs = [_id(value) for value in _list(task.get("dependencies"))]
            if parent_done:
                self.skipped.add(parent_id)
            else:
                pending.append((table, [*needs, *subtask_ids], parent_id))
        for table, needs, _ in pending:
            kept = [need for need in dict.fromkeys(needs) if need and need not in self.skipped]
            if kept:
                table["depends_on"] = kept
            self.tables.append(table)
        self.in_review -= self.skipped  # a subtask of a done task is left out with it

    def _table(self, task: Mapping[str, Any], task_id: str, prefix: str) -> dict[str, Any]:
        fields = Fields(task, file=self.file, task=task_id, prefix=prefix)
        if task.get("id") is None:
            fields.problem("id", "missing required key")
        elif _id(task.get("id")) is None:
            fields.problem("id", f"expected a number or a string, got {describe(task['id'])}")
        title = fields.string("title")
        parts = [
            text.strip()
            for text in (title, fields.string("description"), fields.string("details"))
            if text and text.strip()
        ]
        strategy = fields.string("testStrategy")
        if strategy and strategy.strip():
            parts.append(f"Test strategy (how the result will be checked): {strategy.strip()}")
        if not parts:
            fields.problem("title", "nothing to do: no title, description or details")
        dependencies = task.get("dependencies")
        if dependencies is not None and not (
            isinstance(dependencies, list) and all(_id(value) for value in dependencies)
        ):
            message = f"expected a list of task ids, got {describe(dependencies)}"
            fields.problem("dependencies", message)
        table: dict[str, Any] = {"id": task_id, "prompt": "\n\n".join(parts)}
        if title is not None:
            table["title"] = title
        priority = fields.priority("priority")
        if priority:
            table["priority"] = priority
        metadata: dict[str, Any] = {}
        status = fields.string("status")
        if status is not None:
            metadata["status"] = status
        if status == IN_REVIEW:
            self.in_review.add(task_id)
        review = task.get("review")
        if review is not None:
            shaped = review_of(review)
            if shaped is not None:
                table["review"] = shaped
            else:
                metadata["review"] = without_nulls(review)
                self.kept_review = True
        for key, value in task.items():
            if key not in MAPPED and value is not None:
                metadata[key] = without_nulls(value)
                self.extra.add(key)
        for key, value in (fields.mapping("metadata") or {}).items():
            if key in metadata:
                fields.problem(f"metadata.{key}", f"{key!r} is also a field of the task")
            elif value is not None:
                metadata[key] = without_nulls(value)
        if metadata:
            table["metadata"] = metadata
        self.problems.extend(fields.problems)
        return table


def _id(value: Any) -> str | None:
    """Return a task-master id (a number or a string) as orchestra's string id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _subtask_dependency(value: Any, parent: str, siblings: set, top_ids: set) -> str | None:
    """Return the id a subtask's dependency names: a sibling subtask by its number, a
    task's subtask as "<task>.<sub>", or else a top-level task."""
    name = _id(value)
    if name is None or "." in name:
        return name
    if name in siblings or name not in top_ids:
        return f"{parent}.{name}"
    return name


@hookimpl
def orchestra_register_loaders(register) -> None:
    register(TaskMasterLoader())
