"""The workstream format "uet-bundle": JSON bundles, one object or a list of them.

Each bundle becomes one task (docs/formats.md has the whole mapping): its ``tasks``
instructions, led by ``title`` and ``description``, make the prompt; ``files_*`` make the
file scope; ``acceptance_tests`` that read as commands become checks, and the ones that
read as prose join the prompt as acceptance criteria. Fields with no meaning here are
kept as task metadata and named once in a notice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra import shellwords
from orchestra.errors import SpecError, WorkstreamInvalid
from orchestra.loaders.jsonfile import Fields, as_id, describe, read_json, without_nulls
from orchestra.markers import hookimpl
from orchestra.spec import SHELL_OPERATORS, _shell_tokens, check_graph, structure_workstream

if TYPE_CHECKING:
    from orchestra.models import Workstream
    from orchestra.protocols import LoadContext

#: keys a bundle's first bytes hold and other JSON files rarely do
BUNDLE_KEYS = re.compile(
    rb'"(files_scope|files_create|files_modify|acceptance_tests|openspec_change|ccpm_issue'
    rb'|circuit_breaker)"\s*:|"tasks"\s*:\s*\[\s*"'
)
MAPPED = frozenset(
    {
        "id",
        "title",
        "description",
        "tasks",
        "files_scope",
        "files_modify",
        "files_create",
        "acceptance_tests",
        "depends_on",
        "tool",
        "priority",
        "circuit_breaker",
        "max_cost_usd",
        "metadata",
    }
)
#: circuit_breaker keys with a meaning here; the others are kept as metadata
BREAKER_MAPPED = frozenset({"max_attempts", "max_error_repeats", "max_cost_usd"})
PROGRAM = re.compile(r"^(\./|/)?[a-z0-9_][A-Za-z0-9_.+/-]*$")


class UetBundleLoader:
    """Loads UET workstream bundles: a JSON object with ``id`` and ``tasks``, or a list."""

    name = "uet-bundle"
    patterns = ("*.json",)

    def sniff(self, path: Path, head: bytes) -> bool:
        return head.lstrip()[:1] in (b"{", b"[") and BUNDLE_KEYS.search(head) is not None

    def load(self, path: Path, context: LoadContext) -> Workstream:
        file = str(path)
        document = read_json(path)
        if isinstance(document, dict):
            bundles, single = [document], True
        elif isinstance(document, list):
            bundles, single = document, False
        else:
            message = f"expected a bundle object or a list of bundles, got {describe(document)}"
            raise SpecError(message, file=file)
        if not bundles:
            raise SpecError("no bundles: the list is empty", file=file)
        tasks, problems, extra, prose = [], [], set(), {}
        for number, bundle in enumerate(bundles, start=1):
            if not isinstance(bundle, dict):
                message = f"expected a bundle object, got {describe(bundle)}"
                problems.append(SpecError(message, file=file, task=f"#{number}"))
                continue
            table, fields, criteria = _task_table(bundle, number, file, extra)
            tasks.append(table)
            problems.extend(fields.problems)
            if criteria:
                prose[fields.task] = criteria
        if problems:
            edges = [
                (table["id"], tuple(table.get("depends_on", ())))
                for table in tasks
                if isinstance(table.get("id"), str)
            ]
            problems.extend(check_graph(edges, _problem_in(file)))
            raise WorkstreamInvalid(file, problems)
        if extra:
            context.notice(
                f"{file}: kept as task metadata, orchestra does not use them: "
                f"{', '.join(sorted(extra))}"
            )
        for label, count in prose.items():
            context.notice(
                f"{file}: task {label!r}: {count} acceptance test(s) read as prose, not "
                "commands: they are in the prompt as acceptance criteria"
            )
        only = bundles[0] if single else {}
        workstream_id = only.get("id") if isinstance(only.get("id"), str) else None
        document = {"id": workstream_id or as_id(path.stem), "tasks": tasks}
        return structure_workstream(document, file=file)


def _problem_in(file: str):
    def problem(message: str, task: str | None = None, field: str | None = None) -> SpecError:
        return SpecError(message, file=file, task=task, field=field)

    return problem


def _task_table(
    bundle: Mapping[str, Any], number: int, file: str, extra: set[str]
) -> tuple[dict[str, Any], Fields, int]:
    """Return the orchestra task table for one bundle, its field reader (holding the
    problems found) and how many acceptance tests read as prose."""
    label = bundle.get("id") if isinstance(bundle.get("id"), str) else f"#{number}"
    fields = Fields(bundle, file=file, task=label)
    table: dict[str, Any] = {}
    bundle_id = fields.string("id", required=True)
    if bundle_id is not None:
        table["id"] = bundle_id
    title = fields.string("title")
    if title is not None:
        table["title"] = title
    instructions = fields.strings("tasks", required=True)
    checks, criteria = _checks(fields)
    prompt = _prompt(title, fields.string("description"), instructions or [], criteria)
    if instructions is not None and not prompt.strip():
        fields.problem("tasks", "no instructions: the list is empty and there is no title")
    table["prompt"] = prompt
    write = [*(fields.strings("files_scope") or ()), *(fields.strings("files_modify") or ())]
    create = fields.strings("files_create") or []
    files = {"write": list(dict.fromkeys(write)), "create": list(dict.fromkeys(create))}
    files = {key: paths for key, paths in files.items() if paths}
    if files:
        table["files"] = files
    if checks:
        table["checks"] = checks
    depends_on = fields.strings("depends_on")
    if depends_on:
        table["depends_on"] = depends_on
    tool = fields.string("tool")
    if tool is not None:
        table["tool"] = tool
    priority = fields.priority("priority")
    if priority:
        table["priority"] = priority
    metadata = _breaker(fields, table)
    cost = fields.number("max_cost_usd")
    if cost is not None:
        table["budget"] = {"cost": cost}
    for key, value in bundle.items():
        if key not in MAPPED and value is not None:
            metadata[key] = without_nulls(value)
            extra.add(key)
    own = fields.mapping("metadata") or {}
    for key, value in own.items():
        if key in metadata:
            fields.problem(f"metadata.{key}", f"{key!r} is also a field of the bundle")
        elif value is not None:
            metadata[key] = without_nulls(value)
    if "circuit_breaker" in metadata:
        extra.update(f"circuit_breaker.{key}" for key in metadata["circuit_breaker"])
    if metadata:
        table["metadata"] = metadata
    return table, fields, len(criteria)


def _prompt(
    title: str | None, description: str | None, instructions: list[str], criteria: list[str]
) -> str:
    parts = [text.strip() for text in (title, description) if text and text.strip()]
    if instructions:
        parts.append("\n".join(f"{n}. {text.strip()}" for n, text in enumerate(instructions, 1)))
    if criteria:
        parts.append("Acceptance criteria:\n" + "\n".join(f"- {text}" for text in criteria))
    return "\n\n".join(parts)


def _checks(fields: Fields) -> tuple[list[Any], list[str]]:
    """Return (checks, prose criteria) from ``acceptance_tests``."""
    checks: list[Any] = []
    criteria: list[str] = []
    for index, text in enumerate(fields.strings("acceptance_tests") or ()):
        text = text.strip()
        if not text:
            fields.problem(f"acceptance_tests[{index}]", "empty acceptance test")
        elif reads_as_prose(text):
            criteria.append(text)
        else:
            try:
                shell = bool(SHELL_OPERATORS.intersection(_shell_tokens(text)))
                shellwords.split(text)
            except ValueError as error:
                message = f"cannot split {text!r} into arguments: {error}"
                fields.problem(f"acceptance_tests[{index}]", message)
                continue
            checks.append({"command": text, "shell": True} if shell else text)
    return checks, criteria


def reads_as_prose(text: str) -> bool:
    """Return whether an acceptance test is a sentence for people rather than a command.

    A command starts with a program name (lowercase, or a path); a sentence starts with a
    capital letter, or is four or more words with only plain words after the first.
    """
    words = text.split()
    if not PROGRAM.fullmatch(words[0]):
        return True
    return len(words) >= 4 and all(word.isalpha() for word in words[1:])


def _breaker(fields: Fields, table: dict[str, Any]) -> dict[str, Any]:
    """Map ``circuit_breaker`` onto the task's retry settings; return the metadata of
    what has no meaning here."""
    breaker = fields.mapping("circuit_breaker")
    if breaker is None:
        return {}
    inner = Fields(breaker, file=fields.file, task=fields.task, prefix="circuit_breaker.")
    attempts = inner.whole("max_attempts")
    if attempts is not None:
        table["max_attempts"] = attempts
    repeats = inner.whole("max_error_repeats")
    if repeats is not None:
        table["same_failure_limit"] = repeats
    cost = inner.number("max_cost_usd")
    if cost is not None:
        table["budget"] = {"cost": cost}
    fields.problems.extend(inner.problems)
    rest = {
        key: without_nulls(value)
        for key, value in breaker.items()
        if key not in BREAKER_MAPPED and value is not None
    }
    return {"circuit_breaker": rest} if rest else {}


@hookimpl
def orchestra_register_loaders(register) -> None:
    register(UetBundleLoader())
