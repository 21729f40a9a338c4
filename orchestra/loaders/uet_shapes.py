"""The shapes of a UET bundle, each made into task tables (docs/formats.md has the mapping).

``_Reading`` reads one file's bundles: a bundle of ``tasks`` is one task, one of ``steps``
(or ``phases``, or ``execution_phases``) or of ``execution_steps`` a task per step, wired
together in order. What every shape maps the same way (id, files, dependencies, circuit
breaker, budget, review, the rest as metadata) is read once, in ``_common``; its tests and
commands are read by its base, ``uet_checks.CheckReading``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestra.errors import SpecError
from orchestra.loaders.jsonfile import Fields, describe, without_nulls
from orchestra.loaders.reviews import KEPT, review_of
from orchestra.loaders.uet_checks import CheckReading
from orchestra.loaders.uet_prompts import DETAILS, _context, _criteria, _details, _numbered, _prompt
from orchestra.loaders.uet_steps import STEP_LISTS, _objects, _phase_steps, _step_id

if TYPE_CHECKING:
    from orchestra.plugin.protocols import LoadContext

#: bundle fields every shape maps (the shapes add their own)
MAPPED = frozenset(
    {
        "id",
        "title",
        "description",
        "files_scope",
        "files_modify",
        "files_create",
        "file_scope",
        "acceptance_tests",
        "pre_flight_checks",
        "depends_on",
        "tool",
        "priority",
        "circuit_breaker",
        "max_cost_usd",
        "metadata",
        "review",
    }
)
#: circuit_breaker keys with a meaning here; the others are kept as metadata
BREAKER_MAPPED = frozenset({"max_attempts", "max_error_repeats", "max_cost_usd"})
#: file_scope keys and the FileScope field each becomes
FILE_SCOPE = {
    "read_only": "read",
    "modify": "write",
    "create": "create",
    "forbidden_paths": "forbidden",
}
#: tool names that system uses for tools orchestra knows by another name
TOOL_NAMES = {"claude-code": "claude", "claude_code": "claude", "gemini-cli": "gemini"}


class _Reading(CheckReading):
    """The task tables, aliases, problems and notices of one file's bundles."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.tables: list[dict[str, Any]] = []
        self.aliases: dict[str, tuple[str, ...]] = {}
        self.problems: list[SpecError] = []
        self.extra: set[str] = set()
        self.prose: dict[str, int] = {}
        self.renamed: dict[str, str] = {}
        self.pwsh: list[str] = []
        #: whether a bundle or step had a ``review`` that is not orchestra's review
        self.kept_review = False

    def tell(self, context: LoadContext) -> None:
        """Pass the file's notices on: kept fields, prose tests, renamed tools."""
        file = self.file
        if self.extra:
            context.notice(
                f"{file}: kept as task metadata, orchestra does not use them: "
                f"{', '.join(sorted(self.extra))}"
            )
        if self.kept_review:
            context.notice(f"{file}: {KEPT}")
        for label, count in self.prose.items():
            context.notice(
                f"{file}: task {label!r}: {count} acceptance test(s) read as prose, not "
                "commands: they are in the prompt as acceptance criteria"
            )
        for theirs, ours in sorted(self.renamed.items()):
            context.notice(f"{file}: tool {theirs!r} is orchestra's {ours!r}")
        if self.pwsh:
            context.notice(
                f"{file}: {len(self.pwsh)} command(s) written for PowerShell run with pwsh: "
                f"{', '.join(self.pwsh[:3])}{' …' if len(self.pwsh) > 3 else ''}"
            )

    def bundle(self, bundle: Mapping[str, Any], number: int) -> None:
        """Read one bundle, in whichever shape it comes."""
        label = bundle.get("id") if isinstance(bundle.get("id"), str) else f"#{number}"
        fields = Fields(bundle, file=self.file, task=label)
        if any(bundle.get(key) is not None for key in ("steps", "phases", "execution_phases")):
            self._steps(bundle, fields)
        elif bundle.get("execution_steps") is not None:
            self._execution_steps(bundle, fields)
        else:
            self._one_task(bundle, fields)
        order = {key: number for number, key in enumerate(bundle)}

        def place(problem: SpecError) -> int:  # problems in the order of the file's fields
            return order.get(re.split(r"[.\[]", problem.field or "")[0], len(order))

        self.problems.extend(sorted(fields.problems, key=place))

    # -- the three shapes ---------------------------------------------------------------

    def _one_task(self, bundle: Mapping[str, Any], fields: Fields) -> None:
        table = self._common(bundle, fields, {"tasks"})
        title = fields.string("title")
        if fields.values.get("tasks") is None:
            fields.problem(
                "tasks",
                "no work to do: the bundle has none of "
                + ", ".join(repr(key) for key in ("tasks", *STEP_LISTS)),
            )
        instructions = fields.strings("tasks")
        checks, criteria = self._tests(fields)
        prompt = _prompt(title, fields.string("description"), instructions or [], criteria)
        if instructions is not None and not prompt.strip():
            fields.problem("tasks", "no instructions: the list is empty and there is no title")
        table["prompt"] = prompt
        if title is not None:
            table["title"] = title
        checks = [*self._preflight(fields), *checks]
        if checks:
            table["checks"] = checks
        tool = self._tool(fields, "tool")
        if tool is not None:
            table["tool"] = tool
        if criteria and "id" in table:
            self.prose[table["id"]] = len(criteria)
        self.tables.append(table)

    def _steps(self, bundle: Mapping[str, Any], fields: Fields) -> None:
        """``steps``: one task per step, each with its own tool, instructions and tests
        (also ``phases`` of steps, and ``execution_phases`` of instructions, in order)."""
        base = self._common(
            bundle, fields, {"steps", "phases", "execution_phases", "execution", "objective"}
        )
        steps = _phase_steps(fields)
        parallel, timeout = self._execution(bundle, fields, base)
        title = fields.string("title") or fields.string("objective")
        context = _context(base.get("id"), title, fields.string("description"))
        bundle_checks, bundle_criteria = self._tests(fields)
        preflight = self._preflight(fields)
        tables = []
        for index, step in steps:
            inner = Fields(step, file=self.file, task=fields.task, prefix=f"steps[{index}].")
            table = self._step_table(base, inner, parallel)
            instructions = inner.strings("tasks")
            description = inner.string("description") or inner.string("name")
            checks, criteria = self._tests(inner)
            parts = [context, description or "", _numbered(instructions or [])]
            if criteria:
                parts.append(_criteria(criteria))
            prompt = "\n\n".join(part for part in parts if part)
            if not (instructions or description):
                inner.problem("tasks", "no instructions: the step has no tasks or description")
            table["prompt"] = prompt
            step_title = inner.string("title") or description
            if step_title:
                table["title"] = step_title.strip().splitlines()[0]
            tool = self._tool(inner, "tool") or self._tool(fields, "tool")
            if tool is not None:
                table["tool"] = tool
            if timeout is not None:
                table["timeout"] = timeout
            if checks:
                table["checks"] = checks
            if criteria and "id" in table:
                self.prose[table["id"]] = len(criteria)
            self._step_extra(
                step,
                table,
                {"id", "step", "phase", "name", "title", "description", "tool", "tasks"}
                | {"depends_on", "acceptance_tests", "review"},
                "steps",
            )
            self._review(step.get("review"), table)
            fields.problems.extend(inner.problems)
            tables.append(table)
        if bundle_criteria:
            self.prose[str(base.get("id"))] = len(bundle_criteria)
            for table in tables:
                table["prompt"] += "\n\n" + _criteria(bundle_criteria)
        self._group(base, tables, fields, preflight, bundle_checks, parallel)

    def _execution_steps(self, bundle: Mapping[str, Any], fields: Fields) -> None:
        """``execution_steps``: one task per step, running its command (or, without one,
        a prompt made of its description for the bundle's tool)."""
        base = self._common(bundle, fields, {"execution_steps", "execution", "objective"})
        steps = _objects(fields, "execution_steps")
        parallel, timeout = self._execution(bundle, fields, base)
        title = fields.string("title")
        context = _context(
            base.get("id"), title, fields.string("objective") or fields.string("description")
        )
        bundle_checks, criteria = self._tests(fields)
        preflight = self._preflight(fields)
        tables = []
        for index, step in steps:
            inner = Fields(
                step, file=self.file, task=fields.task, prefix=f"execution_steps[{index}]."
            )
            table = self._step_table(base, inner, parallel)
            description = inner.string("description") or inner.string("action")
            command = inner.string("command")
            if command is not None and command.strip():
                table.update(self._command(inner, "command", command))
            elif description:
                parts = [context, description, _details(step)]
                if criteria:
                    parts.append(_criteria(criteria))
                table["prompt"] = "\n\n".join(part for part in parts if part)
                tool = self._tool(fields, "tool")
                if tool is not None:
                    table["tool"] = tool
            else:
                inner.problem("command", "the step has neither a command nor a description")
            if description and "title" not in table:
                table["title"] = description.strip().splitlines()[0]
            if timeout is not None:
                table["timeout"] = timeout
            self._step_extra(
                step,
                table,
                {"id", "step", "description", "action", "command", "depends_on", "review"}
                | set(DETAILS),
                "execution_steps",
            )
            self._review(step.get("review"), table)
            fields.problems.extend(inner.problems)
            tables.append(table)
        if criteria:
            self.prose[str(base.get("id"))] = len(criteria)
        self._group(base, tables, fields, preflight, bundle_checks, parallel)

    # -- what the shapes share ----------------------------------------------------------

    def _common(self, bundle: Mapping[str, Any], fields: Fields, own: set[str]) -> dict[str, Any]:
        """Return the task table of what every shape maps the same way: id, files,
        dependencies, priority, circuit breaker, budget, and the rest as metadata."""
        table: dict[str, Any] = {}
        bundle_id = fields.string("id", required=True)
        if bundle_id is not None:
            table["id"] = bundle_id
        files = self._files(fields)
        if files:
            table["files"] = files
        depends_on = fields.strings("depends_on")
        later = fields.mapping("dependencies")  # {"depends_on": [...], "blocks": [...]}
        if later is not None:
            inner = Fields(later, file=self.file, task=fields.task, prefix="dependencies.")
            depends_on = [*(depends_on or ()), *(inner.strings("depends_on") or ())]
            fields.problems.extend(inner.problems)
        if depends_on:
            table["depends_on"] = depends_on
        priority = fields.priority("priority")
        if priority:
            table["priority"] = priority
        metadata = _breaker(fields, table)
        profile = fields.mapping("execution_profile")
        if profile is not None:
            inner = Fields(profile, file=self.file, task=fields.task, prefix="execution_profile.")
            retries = inner.whole("retry_attempts")
            if retries is not None and retries >= 0:
                table["max_attempts"] = retries + 1
            fields.problems.extend(inner.problems)
            rest = {k: v for k, v in profile.items() if k != "retry_attempts" and v is not None}
            if rest:
                metadata["execution_profile"] = without_nulls(rest)
                self.extra.update(f"execution_profile.{key}" for key in rest)
        cost = fields.number("max_cost_usd")
        if cost is not None:
            table["budget"] = {"cost": cost}
        mapped = MAPPED | own | {"execution_profile", "acceptance_criteria"}
        for key, value in bundle.items():
            if key not in mapped and value is not None and not _is_comment(key):
                metadata[key] = without_nulls(value)
                self.extra.add(key)
        self._review(bundle.get("review"), table, metadata)
        for key, value in (fields.mapping("metadata") or {}).items():
            if _is_comment(key):
                continue
            if key in metadata:
                fields.problem(f"metadata.{key}", f"{key!r} is also a field of the bundle")
            elif value is not None:
                metadata[key] = without_nulls(value)
        if "circuit_breaker" in metadata:
            self.extra.update(f"circuit_breaker.{key}" for key in metadata["circuit_breaker"])
        if metadata:
            table["metadata"] = metadata
        return table

    def _files(self, fields: Fields) -> dict[str, list[str]]:
        """The file scope: ``files_scope``/``files_modify``/``files_create``, or the later
        ``file_scope`` object (``read_only``, ``modify``, ``create``, ``forbidden_paths``)."""
        scope: dict[str, list[str]] = {"read": [], "write": [], "create": [], "forbidden": []}
        scope["write"] += fields.strings("files_scope") or []
        scope["write"] += fields.strings("files_modify") or []
        scope["create"] += fields.strings("files_create") or []
        later = fields.mapping("file_scope")
        if later is not None:
            inner = Fields(later, file=self.file, task=fields.task, prefix="file_scope.")
            for key, ours in FILE_SCOPE.items():
                scope[ours] += inner.strings(key) or []
            for key in later:
                if key not in FILE_SCOPE:
                    inner.problem(key, f"unknown key (known: {', '.join(FILE_SCOPE)})")
            fields.problems.extend(inner.problems)
        return {key: list(dict.fromkeys(paths)) for key, paths in scope.items() if paths}

    def _execution(
        self, bundle: Mapping[str, Any], fields: Fields, base: dict[str, Any]
    ) -> tuple[bool, float | None]:
        """Read ``execution``: whether the steps run in parallel, and the timeout of each;
        the rest (``max_workers`` …) is kept as metadata."""
        execution = fields.mapping("execution")
        if execution is None:
            return False, None
        inner = Fields(execution, file=self.file, task=fields.task, prefix="execution.")
        parallel = execution.get("parallel", False)
        if not isinstance(parallel, bool):
            inner.problem("parallel", f"expected true or false, got {describe(parallel)}")
            parallel = False
        timeout = inner.number("timeout_per_step")
        if timeout is not None and not 0 < timeout < float("inf"):
            inner.problem("timeout_per_step", "expected a number of seconds above 0")
            timeout = None
        fields.problems.extend(inner.problems)
        rest = {
            key: without_nulls(value)
            for key, value in execution.items()
            if key not in ("parallel", "timeout_per_step")
            and value is not None
            and not _is_comment(key)
        }
        if rest:
            base.setdefault("metadata", {})["execution"] = rest
            self.extra.update(f"execution.{key}" for key in rest)
        return parallel, timeout

    def _step_table(self, base: dict[str, Any], inner: Fields, parallel: bool) -> dict[str, Any]:
        """A step's task table: the bundle's scope, retries and metadata, its own id
        (``<bundle>.<step>``) and dependencies (sibling steps by their step id)."""
        table = {key: value for key, value in base.items() if key not in ("id", "depends_on")}
        if "metadata" in base:
            table["metadata"] = dict(base["metadata"])
        step_id = _step_id(inner)
        if step_id is not None and "id" in base:
            table["id"] = f"{base['id']}.{step_id}"
            table["_step"] = step_id
        table["_needs"] = inner.strings("depends_on") or []
        return table

    def _step_extra(
        self, step: Mapping[str, Any], table: dict[str, Any], mapped: set[str], where: str
    ) -> None:
        """Keep a step's unmapped fields in its task's metadata."""
        for key, value in step.items():
            if key not in mapped and value is not None and not _is_comment(key):
                table.setdefault("metadata", {})[key] = without_nulls(value)
                self.extra.add(f"{where}[].{key}")

    def _group(
        self,
        base: dict[str, Any],
        tables: list[dict[str, Any]],
        fields: Fields,
        preflight: list[Any],
        checks: list[Any],
        parallel: bool,
    ) -> None:
        """Wire a bundle's steps together: dependencies in order (or as the steps say),
        the bundle's own dependencies on its first steps, its pre-flight checks before
        them and its acceptance tests after its last (in a task of their own when
        several are last), and its id as their alias."""
        if not tables:
            fields.problem(
                next(key for key in STEP_LISTS if key in fields.values),
                "no steps: the list is empty",
            )
            return
        bundle_id = base.get("id")
        # a step's id within the bundle -> its task id (a step without one has neither)
        step_ids: dict[str, str] = {
            table["_step"]: table["id"] for table in tables if "_step" in table
        }
        needed: set[str] = set()
        previous: str | None = None
        for table in tables:
            needs = []
            for name in table.pop("_needs"):
                needs.append(step_ids.get(name, name))
                if name in step_ids:
                    needed.add(step_ids[name])
            if not parallel and previous is not None and previous not in needs:
                needs.insert(0, previous)
                needed.add(previous)
            inside = [need for need in needs if need in step_ids.values()]
            if not inside:
                needs = [*base.get("depends_on", ()), *needs]
                if preflight:
                    table["checks"] = [*preflight, *table.get("checks", [])]
            if needs:
                table["depends_on"] = list(dict.fromkeys(needs))
            previous = table.get("id")
            table.pop("_step", None)
        last = [table for table in tables if table.get("id") not in needed]
        if checks and len(last) > 1 and isinstance(bundle_id, str):
            # each last step alone holds only its own change: the bundle's tests run
            # once, on all of them together
            last = [_acceptance(bundle_id, base, tables, last, checks)]
            tables.append(last[0])
        elif checks:
            for table in last:
                table["checks"] = [*table.get("checks", []), *checks]
        self.tables.extend(tables)
        if isinstance(bundle_id, str):
            self.aliases[bundle_id] = tuple(
                table["id"] for table in last if isinstance(table.get("id"), str)
            )

    def _review(
        self, value: Any, table: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> None:
        """Map a bundle's or step's ``review`` onto its task's review when it has that
        shape (``reviews.review_of``; its tools by orchestra's names), else keep it in
        ``metadata`` (the table's own, when not given), named in a notice."""
        if value is None:
            return
        if isinstance(value, Mapping):
            value = {key: item for key, item in value.items() if not _is_comment(key)}
        review = review_of(value, rename=self._renamed)
        if review is not None:
            table["review"] = review
            return
        kept = metadata if metadata is not None else table.setdefault("metadata", {})
        kept["review"] = without_nulls(value)
        self.kept_review = True

    def _renamed(self, tool: str) -> str:
        """orchestra's name of a tool that system names otherwise (``claude-code``)."""
        if tool in TOOL_NAMES:
            self.renamed[tool] = TOOL_NAMES[tool]
        return TOOL_NAMES.get(tool, tool)

    def _tool(self, fields: Fields, key: str) -> str | None:
        tool = fields.string(key)
        return self._renamed(tool) if tool is not None else None


def _acceptance(
    bundle_id: str,
    base: Mapping[str, Any],
    tables: list[dict[str, Any]],
    last: list[dict[str, Any]],
    checks: list[Any],
) -> dict[str, Any]:
    """The task that runs a bundle's acceptance tests once its last steps (several, in
    parallel) are all done: ``<bundle>.acceptance``, or with ``-2``, ``-3`` … when a
    step already has that id. It changes nothing; its checks judge the steps' work."""
    taken = {table.get("id") for table in tables}
    task_id, number = f"{bundle_id}.acceptance", 1
    while task_id in taken:
        number += 1
        task_id = f"{bundle_id}.acceptance-{number}"
    needs = [table["id"] for table in last if isinstance(table.get("id"), str)]
    table: dict[str, Any] = {
        "id": task_id,
        "title": f"Acceptance tests of {bundle_id}",
        "command": ["true"],
        "checks": checks,
        "depends_on": needs,
        "max_attempts": 1,  # running nothing again changes nothing
    }
    if "metadata" in base:
        table["metadata"] = dict(base["metadata"])
    return table


def _is_comment(key: str) -> bool:
    """Whether a key is a comment by that system's convention (``_comment…``), left out
    like the ``/* … */`` comments around the JSON."""
    return key.startswith("_comment")


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
        if key not in BREAKER_MAPPED and value is not None and not _is_comment(key)
    }
    return {"circuit_breaker": rest} if rest else {}
