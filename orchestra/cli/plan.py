"""``orchestra plan PATH…``: show what a run would do — waves, tools and why."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii
from typing import Any

import click

from orchestra.cli.convert import echo_notice, loader_options
from orchestra.cli.session import CliSession, pass_session_collector_paused

FORMATS = ("text", "json", "dot", "mermaid")


@click.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for scripts, dot (Graphviz) or mermaid for diagrams.",
)
@click.option(
    "--routing",
    metavar="STRATEGY",
    help="Routing strategy for tasks that pin no tool "
    "(overrides ORCHESTRA_ROUTING, [defaults] and the configuration).",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    metavar="N",
    help="How many tasks may run at once (overrides ORCHESTRA_MAX_PARALLEL and the configuration).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    help="The run database whose track record, breakers and round-robin position "
    "routing reads (it is never written).",
)
@loader_options(format_flag=False)
# The cyclic collector stays off for the whole command (orchestra.cli.main turns it back
# on and freezes what is left as the process ends): the command builds a large workstream
# and plan, none of it cyclic garbage, and ends. Turned on after loading 100,000 tasks,
# the collector walked them all again as the command went on: 1.5 % of validate's
# instructions (valgrind), about 0.03 s.
@pass_session_collector_paused
def plan(
    session: CliSession,
    paths: tuple[str, ...],
    output_format: str,
    routing: str | None,
    max_parallel: int | None,
    db: str | None,
    file_format: str | None,
    reading: dict[str, Any],
) -> None:
    """Show the plan of the workstream in PATH without running it.

    PATH is a workstream file, or a directory of them read as one workstream (several
    files are read as one too).

    Lists the tasks wave by wave (a wave starts when the waves before it are done), and
    for each task the tool a run started now would pick and the reason, or why no tool
    can run it: routing reads the run database as a run would (earlier attempts, open
    breakers, round robin's turn) and changes nothing in it.
    """
    from orchestra.cli.runs import db_path
    from orchestra.gcpause import paused_gc
    from orchestra.planning import configuration_warnings, load_checked, make_plan

    flags = {"routing": routing, "max_parallel": max_parallel, "db": db_path(db)}
    try:
        workstream, settings = load_checked(
            paths,
            session.project,
            session.host,
            flags,
            file_format=file_format,
            options=reading,
            on_notice=echo_notice,
        )
    finally:
        session.warn()  # a broken plugin may be why a name is unknown
    render = {
        "text": render_text,
        "json": _json_pieces,
        "dot": render_dot,
        "mermaid": render_mermaid,
    }
    store = _history(settings)
    try:
        # kept for its speed: planning and rendering 100,000 tasks (plan_scale.py's
        # workstream) make no cycles, and the collector would take ~0.2 s of their ~0.95 s
        # (where it is on: when orchestra runs as a library, or under a test's CliRunner)
        with paused_gc():
            the_plan = make_plan(workstream, session.host, session.project, settings, store)
            output = render[output_format](the_plan)
    finally:
        if store is not None:
            store.close()
    if isinstance(output, str):
        click.echo(output)
    else:
        # JSON, written in pieces as they are made rather than made one string first (44
        # MB for 100,000 tasks), and without click.echo's search for terminal escapes to
        # strip where output is no terminal: JSON escapes every control character. For
        # 100,000 tasks: 0.05 s less, and a peak of 182 MB instead of 317 MB.
        stdout = sys.stdout  # ASCII: encode_basestring_ascii escapes the rest
        with paused_gc():
            stdout.writelines(output)
        stdout.write("\n")
        stdout.flush()
    for line in configuration_warnings(workstream, session.host, session.project, settings):
        click.echo(f"warning: {line}", err=True)


def _history(settings):
    """The run database, read-only, or None when there is none or it cannot be read
    (said on stderr: the plan then routes as if no run had been recorded)."""
    from orchestra.errors import OrchestraError
    from orchestra.planning import open_history

    try:
        return open_history(settings)
    except OrchestraError as error:
        click.echo(f"warning: {error}: planned as if no run had been recorded", err=True)
        return None


def render_text(the_plan) -> str:
    """Return the plan as people read it."""
    from orchestra.cli.validate import count
    from orchestra.durations import format_duration

    workstream = the_plan.workstream
    settings = the_plan.settings
    title = f" — {workstream.title}" if workstream.title else ""
    lines = [
        f"workstream {workstream.id}{title}",
        f"  {count(len(workstream.tasks), 'task')}, "
        f"{count(the_plan.edges, 'dependency', 'dependencies')}, "
        f"{count(len(the_plan.waves), 'wave')}; "
        f"critical path {count(len(the_plan.critical_path), 'task')}",
    ]
    for name in ("routing", "max_parallel", "max_attempts", "timeout"):
        value = settings.values[name].value
        shown = format_duration(value) if name == "timeout" else value
        lines.append(f"  {name} = {shown}  ({settings.source(name)})")
    lines.append(f"  sandbox: {_sandboxing(settings).describe()}")
    width = max(len(task.id) for task in workstream.tasks)
    tool_width = max(len(decision.tool or "-") for decision in the_plan.decision_of.values())
    tasks = {task.id: task for task in workstream.tasks}
    # "tool  reason" of each decision, made once for all the tasks that share it (the
    # plan holds every decision, so no other object takes its id): a third of the time
    # of writing 100,000 tasks
    routed_text: dict[int, str] = {}
    for number, wave in enumerate(the_plan.waves, start=1):
        lines.append("")
        lines.append(f"wave {number}")
        for task_id in wave:
            task = tasks[task_id]
            decision = the_plan.decision_of[task_id]
            after = f"  after {', '.join(task.depends_on)}" if task.depends_on else ""
            routed = routed_text.get(id(decision))
            if routed is None:
                tool = decision.tool or "-"
                routed = f"{tool:<{tool_width}}  {_shown_reason(decision)}"
                routed_text[id(decision)] = routed
            lines.append(f"  {task_id:<{width}}  {routed}{after}")
            fallback = the_plan.fallbacks.get(task_id)
            if fallback:  # where failover would turn, in order, under the tool chosen
                lines.append(f"  {'':<{width}}  {_shown_fallback(fallback)}")
            reviewer = the_plan.reviewers.get(task_id)
            if reviewer is not None:  # who reads the change before it lands
                lines.append(f"  {'':<{width}}  {_shown_reviewer(reviewer)}")
    unroutable = the_plan.unroutable()
    if unroutable:
        lines.append("")
        lines.append(f"{len(unroutable)} task(s) have no tool that can run them on this machine.")
    waiting = the_plan.waiting()
    if waiting:
        lines.append("")
        lines.append(
            f"{len(waiting)} task(s) wait for a tool's breaker to close (`orchestra tools` "
            "shows it, `orchestra tools reset NAME` closes it)."
        )
    if the_plan.cannot_run:
        lines.append("")
        stuck = len(the_plan.cannot_run)
        lines.append(f"{stuck} task(s) cannot run on this machine as they are:")
        lines.extend(f"  {task_id}: {why}" for task_id, why in the_plan.cannot_run.items())
    return "\n".join(lines)


def _shown_reason(decision) -> str:
    """The decision's reason (which names the tools passed over, a breaker's among them),
    or, for a task only a breaker keeps from its tools, that it waits for it."""
    from orchestra.engine.choice import waits_for_breaker

    if not waits_for_breaker(decision):
        return decision.reason
    kept = [
        f"{name}: {why}" for name, why in decision.rejected.items() if why.startswith("breaker")
    ]
    return f"waits for a breaker ({'; '.join(kept)})"


def _shown_fallback(fallback) -> str:
    """``fallback: codex, gemini (breaker open until …)``: where failover would turn after
    the tool chosen fails (its key refused, its provider down), in order."""
    shown = ", ".join(tool if kept is None else f"{tool} ({kept})" for tool, kept in fallback)
    return f"fallback: {shown}"


def _shown_reviewer(decision) -> str:
    """``review: codex — codex is the only tool left (passed over aider: made the
    change)``, or why no tool may review the change."""
    if decision.tool is None:
        return f"review: none — {_shown_reason(decision)}"
    return f"review: {decision.tool} — {decision.reason}"


def _review_fields(decision) -> dict | None:
    """A task's reviewer in the --format json document (None: its changes land unread)."""
    if decision is None:
        return None
    return {
        "tool": decision.tool,
        "reason": _shown_reason(decision),
        "passed_over": [entry.as_dict() for entry in decision.passed_over],
    }


def plan_as_dict(the_plan) -> dict:
    """Return the plan as plain data (the --format json document).

    The readable definition of that document: ``render_json`` writes the same bytes
    from pieces (``_task_lines``), and tests/test_large_plan_paths.py holds it to this."""
    return {**_plan_fields(the_plan), "tasks": _task_fields(the_plan)}


def _plan_fields(the_plan) -> dict:
    """The --format json document but its tasks (the last key)."""
    workstream = the_plan.workstream
    return {
        "workstream": {"id": workstream.id, "title": workstream.title, "file": workstream.source},
        "waves": the_plan.waves,
        "critical_path": the_plan.critical_path,
        "settings": {
            name: {
                "value": list(r.value) if isinstance(r.value, tuple) else r.value,
                "source": r.source,
            }
            for name, r in the_plan.settings.values.items()
        },
        "sandbox": _sandbox_fields(_sandboxing(the_plan.settings)),
    }


def _routing_fields(decision) -> dict:
    """A task's routing in the --format json document."""
    return {
        "tool": decision.tool,
        "strategy": decision.strategy,
        "reason": decision.reason,
        "candidates": list(decision.candidates),
        "rejected": dict(decision.rejected),
        "passed_over": [entry.as_dict() for entry in decision.passed_over],
    }


def _task_fields(the_plan) -> list[dict]:
    """The tasks of the --format json document, in file order."""
    routing_fields: dict[int, dict] = {}  # tasks that route alike share one decision
    for decision in the_plan.decision_of.values():
        if id(decision) not in routing_fields:
            routing_fields[id(decision)] = _routing_fields(decision)
    wave_of = the_plan.wave_of
    decision_of = the_plan.decision_of
    return [
        {
            "id": task.id,
            "title": task.title,
            "kind": task.kind,
            "wave": wave_of[task.id] + 1,
            "depends_on": list(task.depends_on),
            "priority": task.priority,
            **routing_fields[id(decision_of[task.id])],
            "fallback": [
                {"tool": tool, "breaker": kept}
                for tool, kept in the_plan.fallbacks.get(task.id, ())
            ],
            "cannot_run": the_plan.cannot_run.get(task.id),
            "review": _review_fields(the_plan.reviewers.get(task.id)),
        }
        for task in the_plan.workstream.tasks
    ]


def _task_lines(the_plan) -> Iterator[str]:
    """Yield each task of the --format json document as ``json.dumps`` writes its
    ``_task_fields`` entry, written from pieces: the fields that tasks routed alike
    share (the decision, the reviewer) are encoded once, not once a task.

    What it buys: 100,000 tasks are written in 0.2 s instead of 0.6 s (building their
    dictionaries, then encoding every decision's reason and candidates again)."""
    # a decision's fields' JSON by the decision's id (the plan holds every decision, so
    # no other object takes its id meanwhile); a routing decision's without its braces
    routing_json: dict[int, str] = {}
    review_json: dict[int, str] = {}
    wave_of = the_plan.wave_of
    decision_of = the_plan.decision_of
    fallbacks = the_plan.fallbacks
    cannot_run = the_plan.cannot_run
    reviewers = the_plan.reviewers
    for task in the_plan.workstream.tasks:
        task_id = task.id
        decision = decision_of[task_id]
        routing = routing_json.get(id(decision))
        if routing is None:
            routing = routing_json[id(decision)] = _dumps(_routing_fields(decision))[1:-1]
        # most plans have no fallbacks, reviewers or tasks that cannot run: not looked up
        fallback = fallbacks.get(task_id) if fallbacks else None
        if fallback:
            fallback = _dumps([{"tool": tool, "breaker": kept} for tool, kept in fallback])
        reviewer = reviewers.get(task_id) if reviewers else None
        review = "null"
        if reviewer is not None:
            review = review_json.get(id(reviewer)) or _dumps(_review_fields(reviewer))
            review_json[id(reviewer)] = review
        title = task.title
        priority = task.priority  # an int, as TOML gives it, is written as it prints
        yield (
            f'{{"id":{encode_basestring_ascii(task_id)},'
            f'"title":{"null" if title is None else encode_basestring_ascii(title)},'
            f'"kind":"{task.kind}","wave":{wave_of[task_id] + 1},'
            f'"depends_on":[{",".join(map(encode_basestring_ascii, task.depends_on))}],'
            f'"priority":{priority if type(priority) is int else _dumps(priority)},'
            f'{routing},"fallback":{fallback or "[]"},'
            f'"cannot_run":{_string(cannot_run.get(task_id) if cannot_run else None)},'
            f'"review":{review}}}'
        )


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _string(value: str | None) -> str:
    """A string as ``json.dumps`` writes it (ASCII, escaped), or null."""
    return "null" if value is None else encode_basestring_ascii(value)


def _sandboxing(settings):
    """Whether the run's attempts would be sandboxed here (engine/sandbox.py)."""
    from orchestra.engine import sandbox

    return sandbox.choose(settings)


def _sandbox_fields(choice) -> dict:
    return {
        "confined": choice.confined,
        "program": choice.program,
        "required": choice.required,
        "says": choice.describe(),
    }


def render_json(the_plan) -> str:
    """Return ``plan_as_dict``'s document as compact JSON."""
    return "".join(_json_pieces(the_plan))


#: how many tasks a piece of the JSON document holds
TASKS_A_PIECE = 1000


def _json_pieces(the_plan) -> Iterator[str]:
    """Yield ``plan_as_dict``'s document as compact JSON, in pieces of ``TASKS_A_PIECE``
    tasks (``_task_lines`` writes each, as ``json.dumps`` would)."""
    head = _dumps({**_plan_fields(the_plan), "tasks": []})
    yield head[: -len("]}")]  # the tasks are the last key
    lines = _task_lines(the_plan)
    separator = ""
    while piece := ",".join(itertools.islice(lines, TASKS_A_PIECE)):
        yield separator + piece
        separator = ","
    yield "]}"


def render_dot(the_plan) -> str:
    """Return the plan as a Graphviz digraph: an edge from each dependency to its dependent."""
    lines = [
        f"digraph {json.dumps(the_plan.workstream.id)} {{",
        "  rankdir=LR;",
        "  node [shape=box];",
    ]
    for task in the_plan.workstream.tasks:
        label = f"{task.id}\n{the_plan.decision_of[task.id].tool or 'no tool'}"
        lines.append(f"  {json.dumps(task.id)} [label={json.dumps(label)}];")
    for task in the_plan.workstream.tasks:
        for dependency in task.depends_on:
            lines.append(f"  {json.dumps(dependency)} -> {json.dumps(task.id)};")
    lines.append("}")
    return "\n".join(lines)


def render_mermaid(the_plan) -> str:
    """Return the plan as a Mermaid flowchart (paste into Markdown between ```mermaid fences)."""
    tasks = the_plan.workstream.tasks
    node = {task.id: f"t{index}" for index, task in enumerate(tasks)}
    lines = ["flowchart LR"]
    for task in tasks:
        tool = the_plan.decision_of[task.id].tool or "no tool"
        text = f"{task.id}<br/>{tool}".replace('"', "#quot;")
        lines.append(f'  {node[task.id]}["{text}"]')
    for task in tasks:
        for dependency in task.depends_on:
            lines.append(f"  {node[dependency]} --> {node[task.id]}")
    return "\n".join(lines)
