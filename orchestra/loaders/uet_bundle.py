"""The workstream format "uet-bundle": JSON bundles, one object or a list of them.

A bundle comes in one of three shapes (docs/formats.md has the whole mapping):

- ``tasks``: the bundle is one task; its instructions, led by ``title`` and
  ``description``, make the prompt;
- ``steps``: each step (its own tool, instructions and tests) is a task, run in order
  unless ``execution.parallel`` says otherwise;
- ``execution_steps``: each step is a task running its ``command`` (or, without one, a
  prompt from its description), ``pre_flight_checks`` run before the first and
  ``acceptance_tests`` after the last (when several steps are last, in one task
  ``<bundle>.acceptance`` that waits for them all, so they judge the steps' work
  together).

A bundle of several steps is one name for its steps: a ``depends_on`` naming it waits for
all of them (``Workstream.aliases``). ``files_*`` (or ``file_scope``) make the file scope;
acceptance tests that read as commands become checks, and the ones that read as prose
join the prompt as acceptance criteria. Fields with no meaning here are kept as task
metadata and named once in a notice. ``/* … */`` and ``//`` comments are allowed, and a
half-filled template is named as one.

This module is the loader plugin: it recognises a bundle file, reads it, and makes one
workstream of its bundles. How each shape becomes task tables is ``uet_shapes``; its
tests and commands ``uet_checks``; where its steps are ``uet_steps``; the text of its
prompts ``uet_prompts``.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra.errors import SpecError, WorkstreamInvalid
from orchestra.loaders import HEAD_SIZE
from orchestra.loaders.json_keys import top_level_keys
from orchestra.loaders.jsonfile import (
    as_id,
    describe,
    placeholders,
    read_json,
    read_text,
    skip_comments,
)
from orchestra.plugin.markers import hookimpl
from orchestra.spec import check_graph, structure_workstream

if TYPE_CHECKING:
    from orchestra.models import Workstream
    from orchestra.plugin.protocols import LoadContext

#: top-level keys only a bundle has: one of them makes a JSON object a bundle
BUNDLE_KEYS = frozenset(
    {
        "files_scope",
        "files_create",
        "files_modify",
        "file_scope",
        "acceptance_tests",
        "openspec_change",
        "ccpm_issue",
        "circuit_breaker",
        "execution_steps",
        "pre_flight_checks",
        "execution_phases",
        "workstream_type",
    }
)
#: the keys of a bundle's work, which make an object with an ``id`` a bundle
WORK_KEYS = frozenset({"tasks", "steps", "phases", "execution_phases", "execution_steps"})
#: a work key whose list, by its first item, is a bundle's and not another format's
#: (task-master's ``tasks`` are objects; a bundle's are strings)
WORK_LISTS = {"tasks": b'"', "steps": b"{"}


class UetBundleLoader:
    """Loads UET workstream bundles: a JSON object with an ``id`` and its work (``tasks``,
    ``steps`` or ``execution_steps``), or a list of them."""

    name = "uet-bundle"
    patterns = ("*.json",)

    def sniff(self, path: Path, head: bytes) -> bool:
        """Whether the file is a JSON object (or list of objects) with a bundle's keys at
        its top level, wherever they are in it: read past ``head`` only when the keys
        it holds do not tell (a long description before the work)."""
        start = skip_comments(head)
        if start[:1] not in (b"{", b"["):
            return False
        if _bundle_keys(path, head, whole=len(head) < HEAD_SIZE - len(codecs.BOM_UTF8)):
            return True
        # a half-filled template may hold none of a bundle's keys in a shape JSON knows:
        # it is still a bundle, to be named as an unfilled template
        text = start.decode("utf-8", "replace")
        return '"id"' in text and bool(placeholders(text))

    def load(self, path: Path, context: LoadContext) -> Workstream:
        file = str(path)
        text = read_text(path)
        unfilled = placeholders(text)
        if unfilled:
            shown = ", ".join(f"{mark} at line {line}" for line, mark in unfilled[:3])
            more = f" and {len(unfilled) - 3} more" if len(unfilled) > 3 else ""
            message = f"an unfilled template: placeholders where values belong: {shown}{more}"
            raise SpecError(message, file=file)
        document = read_json(path, text)
        if isinstance(document, dict):
            bundles, single = [document], True
        elif isinstance(document, list):
            bundles, single = document, False
        else:
            message = f"expected a bundle object or a list of bundles, got {describe(document)}"
            raise SpecError(message, file=file)
        if not bundles:
            raise SpecError("no bundles: the list is empty", file=file)
        # here, not at the top: every command loads this plugin, few read a bundle (the
        # shapes and their checks, steps and prompts were 1.1 ms of each command's start)
        from orchestra.loaders.uet_shapes import _Reading

        reading = _Reading(file)
        for number, bundle in enumerate(bundles, start=1):
            if not isinstance(bundle, dict):
                message = f"expected a bundle object, got {describe(bundle)}"
                reading.problems.append(SpecError(message, file=file, task=f"#{number}"))
                continue
            reading.bundle(bundle, number)
        if reading.problems:
            problems = reading.problems
            if not getattr(context, "in_set", False):  # a set's graph is checked whole
                edges = [
                    (table["id"], _resolved(table.get("depends_on", ()), reading.aliases))
                    for table in reading.tables
                    if isinstance(table.get("id"), str)
                ]
                problems.extend(check_graph(edges, _problem_in(file), also=reading.aliases))
            raise WorkstreamInvalid(file, problems)
        reading.tell(context)
        only = bundles[0] if single else {}
        workstream_id = only.get("id") if isinstance(only.get("id"), str) else None
        document = {"id": workstream_id or as_id(path.stem), "tasks": reading.tables}
        if single and isinstance(only.get("title"), str):
            document["title"] = only["title"]
        in_set = getattr(context, "in_set", False)
        workstream = structure_workstream(document, file=file, graph=not in_set)
        if reading.aliases:
            import attrs

            workstream = attrs.evolve(workstream, aliases=reading.aliases)
        return workstream


def _bundle_keys(path: Path, head: bytes, *, whole: bool) -> bool:
    """Whether a top-level object of the file has a bundle's keys: one only a bundle
    has, a work list only a bundle's could be, or an ``id`` with work."""
    seen: set[str] = set()

    def telling(key: str, first: bytes) -> bool:
        seen.add(key)
        if key in BUNDLE_KEYS or WORK_LISTS.get(key, b"-") == first:
            return True
        return "id" in seen and bool(seen & WORK_KEYS)

    return top_level_keys(path, head, telling, whole=whole)


def _resolved(needs: Any, aliases: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    if not isinstance(needs, list):
        return ()
    out: list[str] = []
    for need in needs:
        out.extend(aliases.get(need, (need,)))
    return tuple(out)


def _problem_in(file: str):
    def problem(message: str, task: str | None = None, field: str | None = None) -> SpecError:
        return SpecError(message, file=file, task=task, field=field)

    return problem


@hookimpl
def orchestra_register_loaders(register) -> None:
    register(UetBundleLoader())
