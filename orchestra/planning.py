"""A validated workstream made into a plan: names resolved, tools routed, waves laid out.

``orchestra validate`` uses ``check_names``; ``orchestra plan`` uses ``make_plan``. Neither
runs anything: a plan says what a run would do and why. Both warn, with
``configuration_warnings``, about tools routing may pick that are not configured to work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from orchestra import classes, graph
from orchestra.config import Project, Settings, resolve_settings
from orchestra.engine.router import RoutingDecision, route
from orchestra.errors import ConfigError, SpecError, WorkstreamInvalid, did_you_mean
from orchestra.models import Availability, Task, Workstream
from orchestra.plugins import PluginHost


@classes.frozen
class Plan:
    """The whole plan of a workstream: waves, critical path, and each task's routing.

    Tasks that route alike share one ``RoutingDecision`` object.
    """

    workstream: Workstream
    waves: list[list[str]]
    wave_of: dict[str, int]
    decision_of: dict[str, RoutingDecision]
    critical_path: list[str]
    settings: Settings
    edges: int
    #: why a task cannot run here although a tool can take it: a program its command or
    #: a check needs that is not installed (a PowerShell check without pwsh …)
    cannot_run: dict[str, str] = attrs.Factory(dict)

    def unroutable(self) -> list[Task]:
        """Return the tasks no installed, available tool can carry out."""
        return [task for task in self.workstream.tasks if self.decision_of[task.id].tool is None]


#: the distribution that provides a tool people often name before installing it
PLUGIN_FOR_TOOL = {"aider": "orchestra-aider", "codex": "orchestra-codex"}


def check_names(
    workstream: Workstream, host: PluginHost, settings: Settings
) -> Iterator[SpecError]:
    """Yield an error for each tool or strategy name that no installed plugin registered."""
    file = workstream.source
    tools = host.tools()
    routers = host.routers()

    def unknown(kind: str, name: str, known: list[str]) -> str:
        listing = f"installed: {', '.join(sorted(known))}" if known else "none installed"
        return f"unknown {kind} {name!r}{did_you_mean(name, known)} ({listing})"

    for setting, registry, kind in (
        ("routing", routers, "routing strategy"),
        ("scheduler", host.schedulers(), "scheduling strategy"),
        ("sinks", host.sinks(), "sink"),
        ("workspace", host.workspaces(), "workspace"),
        ("executor", host.executors(), "executor"),
    ):
        value = settings.values[setting].value
        if value is None:
            continue
        if settings.source(setting) == "workstream [defaults]":
            continue  # reported below, with the file and the field
        for name in (value,) if isinstance(value, str) else value:
            if name not in registry:
                source = settings.source(setting)
                yield ConfigError(
                    f"{setting}: {name!r} from {source}: {unknown(kind, name, registry.names())}"
                )
    scopes: list[tuple[str | None, str, object]] = [(None, "defaults.", workstream.defaults)]
    scopes.extend(
        (task.id, "", task)
        for task in workstream.tasks
        if task.tool is not None or task.tools is not None or task.routing is not None
    )
    for task_id, prefix, values in scopes:
        for field_name in ("tool", "tools"):
            named = getattr(values, field_name)
            names = (named,) if isinstance(named, str) else (named or ())
            for name in names:
                if name not in tools:
                    hint = PLUGIN_FOR_TOOL.get(name)
                    yield SpecError(
                        unknown("tool", name, tools.names())
                        + (f": install the plugin {hint} to use it" if hint else ""),
                        file=file,
                        task=task_id,
                        field=prefix + field_name,
                    )
        if values.routing is not None and values.routing not in routers:
            yield SpecError(
                unknown("routing strategy", values.routing, routers.names()),
                file=file,
                task=task_id,
                field=f"{prefix}routing",
            )
    workspaces = host.workspaces()
    for task_id, prefix, values in [(None, "defaults.", workstream.defaults)] + [
        (task.id, "", task) for task in workstream.tasks if task.workspace is not None
    ]:
        if values.workspace is not None and values.workspace not in workspaces:
            yield SpecError(
                unknown("workspace", values.workspace, workspaces.names()),
                file=file,
                task=task_id,
                field=f"{prefix}workspace",
            )


def load_checked(
    file: str | Sequence[str],
    project: Project,
    host: PluginHost,
    flags: Mapping[str, Any] | None = None,
    *,
    file_format: str | None = None,
    options: Mapping[str, Any] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> tuple[Workstream, Settings]:
    """Return the workstream in ``file`` and its resolved settings, every name checked.

    ``file`` is one workstream file, a directory of them, or several files read as one
    workstream (``loaders.load_source``). ``file_format`` names the workstream format
    (loader) to read them with; without it, the format is recognised from each file.
    ``options`` go to the loader (``include_done``, ``tag``, ``workstream_id``,
    ``title``) and ``on_notice`` hears its notices. The settings hold the format under
    ``"format"``, so that a run records it and ``resume`` reads the files the same way.
    Raises WorkstreamInvalid (or another OrchestraError) listing what is wrong; this is
    all ``orchestra validate`` checks and what ``orchestra plan`` needs first.
    """
    from orchestra.config import Resolved
    from orchestra.loaders import load_source

    loaded = load_source(file, host, file_format=file_format, options=options, on_notice=on_notice)
    workstream = loaded.workstream
    settings = resolve_settings(project, flags=flags, defaults=workstream.defaults)
    chosen = Resolved(loaded.format, loaded.reason)
    values = {**settings.values, "format": chosen}
    given = {name: value for name, value in (options or {}).items() if value}
    if given:  # recorded with a run, so that resume loads the same tasks
        values["loader_options"] = Resolved(given, "command line")
    settings = attrs.evolve(settings, values=values)
    problems = list(check_names(workstream, host, settings))
    if problems:
        for problem in problems:  # in a set of files, each task's own file
            if problem.task in loaded.file_of:
                problem.file = loaded.file_of[problem.task]
        raise WorkstreamInvalid(workstream.source or str(file), problems)
    return workstream, settings


def make_plan(
    workstream: Workstream, host: PluginHost, project: Project, settings: Settings
) -> Plan:
    """Return the plan of ``workstream``: waves, critical path and a routing decision per task.

    Tasks that route alike (same pinned or allowed tools, capabilities and strategy) share
    one decision, so planning a 100,000-task workstream routes only a handful of times.
    """
    dependencies = graph.of_tasks(workstream.tasks)
    waves = graph.waves(dependencies)
    wave_of = {task_id: number for number, wave in enumerate(waves) for task_id in wave}
    order = [task_id for wave in waves for task_id in wave]
    _, chain = graph.critical_path(dependencies, order=order)
    availability_cache: dict[str, Availability] = {}
    tools = host.tools()
    routers = host.routers()

    def availability(name: str) -> Availability:
        if name not in availability_cache:
            availability_cache[name] = tools.get(name).available(project.profile(name))
        return availability_cache[name]

    defaults = workstream.defaults
    decisions: dict[tuple, RoutingDecision] = {}
    decision_of = {}
    for task in workstream.tasks:
        strategy = task.routing or settings.routing
        key = (task.kind, task.tool, task.tools, task.capabilities, strategy)
        decision = decisions.get(key)
        if decision is None:
            decision = route(
                task,
                defaults=defaults,
                strategy_name=strategy,
                tools=tools,
                routers=routers,
                profile=project.profile,
                availability=availability,
            )
            decisions[key] = decision
        decision_of[task.id] = decision
    edges = graph.edge_count(dependencies)
    cannot_run = {}
    for task in workstream.tasks:
        missing = missing_program(task, defaults)
        if missing:
            cannot_run[task.id] = missing
    return Plan(workstream, waves, wave_of, decision_of, chain, settings, edges, cannot_run)


#: programs people may not know by their file's name
KNOWN_PROGRAMS = {"pwsh": "PowerShell", "powershell": "PowerShell"}


def missing_program(task: Task, defaults: Any, found: dict[str, bool] | None = None) -> str | None:
    """Return why ``task`` cannot run here: the first program its command or its checks
    start that is not on PATH (a program named by a path may be made by an earlier
    task, and is not looked for); None when every one is there."""
    import shutil

    found = {} if found is None else found
    environment = {**defaults.env, **task.env}
    path = environment.get("PATH", os.environ.get("PATH", os.defpath))
    checks = task.checks if task.checks is not None else defaults.checks
    commands = [("command", task.command, task.shell)] if task.command is not None else []
    for check in checks or ():
        kind = "pre-flight check" if check.before else "check"
        commands.append((f"{kind} {check.label!r}", check.command, check.shell))
    for what, command, shell in commands:
        if shell or isinstance(command, str) or not command:
            continue  # runs through /bin/sh
        program = command[0]
        if "/" in program:
            continue
        if program not in found:
            found[program] = shutil.which(program, path=path) is not None
        if not found[program]:
            known = f" ({KNOWN_PROGRAMS[program]})" if program in KNOWN_PROGRAMS else ""
            return f"its {what} needs {program!r}{known}, which is not installed here (not on PATH)"
    return None


def configuration_warnings(
    workstream: Workstream, host: PluginHost, project: Project, settings: Settings
) -> list[str]:
    """Return one line per problem in the configuration of a tool routing may pick for
    a task (an AI tool with no model or no key), as its adapter's optional
    ``configuration_problems`` says; a tool that is not available here is left out.

    Availability is asked only of a tool with a problem: ``validate`` runs no tool's
    ``--version`` otherwise."""
    from orchestra.engine.process import build_environment
    from orchestra.engine.router import candidate_tools
    from orchestra.protocols import ToolSetup

    tools = host.tools()
    assumed = Availability(True)

    def assume_available(name: str) -> Availability:  # asked below, of fewer tools
        return assumed

    filtered: dict = {}
    may_pick: dict[str, Any] = {}
    for task in workstream.tasks:
        for adapter in candidate_tools(
            task,
            defaults=workstream.defaults,
            tools=tools,
            profile=project.profile,
            availability=assume_available,
            filtered=filtered,
        ):
            may_pick.setdefault(adapter.name, adapter)
    lines = []
    for name, adapter in may_pick.items():
        check = getattr(adapter, "configuration_problems", None)
        if check is None:
            continue
        profile = project.profile(name)
        setup = ToolSetup(
            environ=build_environment(
                os.environ, {**profile.env, **workstream.defaults.env}, profile.pass_env
            ),
            root=project.root,
            state_dir=Path(settings.db).parent / "tools" / name,
        )
        try:
            problems = list(check(profile, setup))
        except Exception as error:  # a warning's check never stops a plan
            problems = [f"its configuration check raised {type(error).__name__}: {error}"]
        if problems and adapter.available(profile).available:
            lines.extend(f"tool {name}: {problem}" for problem in problems)
    return lines
