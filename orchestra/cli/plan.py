"""``orchestra plan PATH…``: show what a run would do — waves, tools and why."""

from __future__ import annotations

import json
from typing import Any

import click

from orchestra.cli.convert import echo_notice, loader_options
from orchestra.cli.session import CliSession, pass_session

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
@pass_session
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
        "json": render_json,
        "dot": render_dot,
        "mermaid": render_mermaid,
    }
    store = _history(settings)
    try:
        # kept for its speed: planning and rendering 100,000 tasks (plan_scale.py's
        # workstream) make no cycles, and the collector would take ~0.2 s of their ~0.95 s
        with paused_gc():
            the_plan = make_plan(workstream, session.host, session.project, settings, store)
            output = render[output_format](the_plan)
    finally:
        if store is not None:
            store.close()
    click.echo(output)
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
    for number, wave in enumerate(the_plan.waves, start=1):
        lines.append("")
        lines.append(f"wave {number}")
        for task_id in wave:
            task = tasks[task_id]
            decision = the_plan.decision_of[task_id]
            after = f"  after {', '.join(task.depends_on)}" if task.depends_on else ""
            tool = decision.tool or "-"
            why = _shown_reason(decision)
            lines.append(f"  {task_id:<{width}}  {tool:<{tool_width}}  {why}{after}")
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
    """Return the plan as plain data (the --format json document)."""
    workstream = the_plan.workstream
    routing_fields: dict[int, dict] = {}  # tasks that route alike share one decision
    for decision in the_plan.decision_of.values():
        if id(decision) not in routing_fields:
            routing_fields[id(decision)] = {
                "tool": decision.tool,
                "strategy": decision.strategy,
                "reason": decision.reason,
                "candidates": list(decision.candidates),
                "rejected": dict(decision.rejected),
                "passed_over": [entry.as_dict() for entry in decision.passed_over],
            }
    wave_of = the_plan.wave_of
    decision_of = the_plan.decision_of
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
        "tasks": [
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
            for task in workstream.tasks
        ],
    }


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
    return json.dumps(plan_as_dict(the_plan), separators=(",", ":"))


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
