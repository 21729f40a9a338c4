"""A validated workstream made into a plan: names resolved, tools routed, waves laid out.

``orchestra validate`` uses ``check_names``; ``orchestra plan`` uses ``make_plan``. Neither
runs anything: a plan says what a run would do and why. Both warn, with
``configuration_warnings``, about tools routing may pick that are not configured to work.
"""

from __future__ import annotations

import functools
import operator
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from orchestra import classes, graph
from orchestra.config import Project, Settings, resolve_settings
from orchestra.engine.choice import ToolChoice, stored_memory, waits_for_breaker
from orchestra.engine.ready import STOP, TAKE, ReadyQueue
from orchestra.engine.router import RoutingDecision
from orchestra.errors import (
    ConfigError,
    OrchestraError,
    SpecError,
    WorkstreamInvalid,
    did_you_mean,
)
from orchestra.models import Availability, Defaults, Task, ToolProfile, Workstream
from orchestra.plugin.host import PluginHost
from orchestra.plugin.protocols import SchedulingContext, ToolAdapter

if TYPE_CHECKING:
    from orchestra.store import Store


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
    #: for each task a run could route to several tools, the order failover would try
    #: the others in (``ToolChoice.fallback_order``), each with why it is kept out for
    #: now (its open breaker) or None
    fallbacks: dict[str, tuple[tuple[str, str | None], ...]] = attrs.Factory(dict)
    #: for each task whose changes are reviewed, the reviewer a run would pick and why
    #: (``ToolChoice.reviewer``, the planned tool passed over)
    reviewers: dict[str, RoutingDecision] = attrs.Factory(dict)

    def unroutable(self) -> list[Task]:
        """Return the tasks no installed, available tool can carry out."""
        return [
            task
            for task in self.workstream.tasks
            if self.decision_of[task.id].tool is None
            and not waits_for_breaker(self.decision_of[task.id])
        ]

    def waiting(self) -> list[Task]:
        """Return the tasks a run would hold until a tool's breaker lets it in again."""
        return [
            task for task in self.workstream.tasks if waits_for_breaker(self.decision_of[task.id])
        ]


def check_names(
    workstream: Workstream, host: PluginHost, settings: Settings
) -> Iterator[OrchestraError]:
    """Yield an error for each tool or strategy name that no installed plugin registered."""
    file = workstream.source
    tools = host.tools()
    routers = host.routers()

    def unknown(kind: str, name: str, known: list[str]) -> str:
        listing = f"installed: {', '.join(sorted(known))}" if known else "none installed"
        return f"unknown {kind} {name!r}{did_you_mean(name, known)} ({listing})"

    def unknown_tool(name: str) -> str:
        """The message for a tool no plugin registered, saying where to look for it (the
        host knows no tool plugin by name: it asks what is installed or blocked)."""
        known = tools.names()
        message = unknown("tool", name, known)
        if did_you_mean(name, known):
            return message
        blocked = host.info(name)
        if blocked is not None and blocked.status == "disabled":
            return f"{message}: a plugin called {name!r} ({blocked.origin}) is blocked"
        return f"{message}: is a plugin that provides it installed? ('orchestra plugins')"

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
    scopes: list[tuple[str | None, str, Defaults | Task]] = [
        (None, "defaults.", workstream.defaults)
    ]
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
                    yield SpecError(
                        unknown_tool(name),
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
    declared = [registration.item for registration in host.settings()]
    settings = resolve_settings(
        project, flags=flags, defaults=workstream.defaults, declared=declared
    )
    chosen = Resolved(loaded.format, loaded.reason)
    values = {**settings.values, "format": chosen}
    given = {name: value for name, value in (options or {}).items() if value}
    if given:  # recorded with a run, so that resume loads the same tasks
        values["loader_options"] = Resolved(given, "command line")
    settings = attrs.evolve(settings, values=values)
    problems = list(check_names(workstream, host, settings))
    if problems:
        for problem in problems:  # in a set of files, each task's own file
            if problem.task is not None and problem.task in loaded.file_of:
                problem.file = loaded.file_of[problem.task]
        raise WorkstreamInvalid(workstream.source or str(file), problems)
    return workstream, settings


def make_plan(
    workstream: Workstream,
    host: PluginHost,
    project: Project,
    settings: Settings,
    store: Store | None = None,
) -> Plan:
    """Return the plan of ``workstream``: waves, critical path and, for each task, the
    tool a run started now would pick and why.

    Each task is routed by the code ``run`` routes with (``engine/choice.py``), in the
    order a run would start the tasks (``start_order``), from what the run database
    ``store`` holds now: the track record of earlier attempts, the breakers and the
    strategies' memory (None: no run yet, nothing recorded). ``store`` is only read: what
    a strategy remembers (round robin's position) goes on from task to task in the plan
    alone. Equal decisions are one object; a decision that asks no strategy is made once
    for all the tasks that allow the same tools and need the same capabilities, which
    keeps planning a 100,000-task workstream quick.
    """
    dependencies = graph.of_tasks(workstream.tasks)
    wave_of = graph.levels(dependencies)
    waves = graph.waves(dependencies, wave_of)
    _, chain = graph.critical_path(dependencies, levels=wave_of)
    remembered: list[str] = []
    choice = plan_choice(workstream, host, project, settings, store, remembered.append)
    decision_of = _route_each(workstream.tasks, choice, until=remembered)
    if remembered:
        # a strategy carries something from task to task (round robin's turn): route
        # again, from what the database holds, in the order a run would start the tasks
        choice.start_over(stored_memory(store, write=False))
        scheduler = host.schedulers().get(settings.scheduler)
        slots = settings.max_parallel
        starts = start_order(workstream.tasks, dependencies, waves, scheduler, slots)
        decision_of = _route_each(starts, choice)
    edges = graph.edge_count(dependencies)
    fallbacks = _fallbacks(workstream.tasks, decision_of, choice)
    reviewers = _reviewers(workstream, decision_of, choice)
    cannot_run = _unreviewable(workstream, reviewers, project, settings)
    found: dict[tuple[str, str], bool] = {}
    own_path = os.environ.get("PATH", os.defpath)
    # what ``missing_program`` reads of a task: tasks alike miss the same program, and
    # are asked about once (0.05 s of 100,000 tasks running one command)
    missing_of: dict[tuple, str | None] = {}
    for task in workstream.tasks:
        alike = (task.command, task.shell, task.checks, task.env.get("PATH"))
        if alike not in missing_of:
            missing_of[alike] = missing_program(task, workstream.defaults, found, own_path)
        missing = missing_of[alike]
        if missing:
            cannot_run[task.id] = missing
    return Plan(
        workstream,
        waves,
        wave_of,
        decision_of,
        chain,
        settings,
        edges,
        cannot_run,
        fallbacks,
        reviewers,
    )


def _unreviewable(
    workstream: Workstream,
    reviewers: Mapping[str, RoutingDecision],
    project: Project,
    settings: Settings,
) -> dict[str, str]:
    """Why each task to be reviewed cannot be, here: its workspace is ``inplace`` (a
    project outside git, or set so), where a reviewer's edits cannot be kept apart."""
    if not reviewers:
        return {}
    from orchestra.engine.run_workspaces import default_workspace

    default = settings.workspace  # as RunWorkspaces.name_for finds it
    found = {}
    for task in workstream.tasks:
        if task.id not in reviewers:
            continue
        name = task.workspace or default or default_workspace(project.root)
        if name == "inplace":
            found[task.id] = (
                "its changes are to be reviewed, but workspace 'inplace' cannot keep a"
                ' reviewer\'s edits out of them: use workspace = "worktree" (a git repository)'
            )
    return found


def _reviewers(
    workstream: Workstream, decision_of: Mapping[str, RoutingDecision], choice: ToolChoice
) -> dict[str, RoutingDecision]:
    """Return, for each task whose changes are reviewed, who would review the change of
    the tool planned for it; tasks with the same review, tool and routing share one
    decision (a workstream's [defaults] review is asked once per tool)."""
    from orchestra.engine.review_text import review_of

    defaults = workstream.defaults
    found: dict[str, RoutingDecision] = {}
    made: dict[tuple, RoutingDecision] = {}
    for task in workstream.tasks:
        if task.review is None and defaults.review is None:
            continue
        review = review_of(task, defaults)
        author = decision_of[task.id].tool
        if review is None or author is None:
            continue
        key = (review, author, task.routing)
        if key not in made:
            made[key] = choice.reviewer(task, review, author)
        found[task.id] = made[key]
    return found


def _fallbacks(
    tasks: Sequence[Task], decision_of: Mapping[str, RoutingDecision], choice: ToolChoice
) -> dict[str, tuple[tuple[str, str | None], ...]]:
    """Return, for each task with more than one tool to turn to, the tools failover would
    try after the one planned, in order, each with its open breaker's reason or None."""
    found = {}
    for task in tasks:
        decision = decision_of[task.id]
        if decision.tool is None or len(decision.candidates) + len(decision.passed_over) < 2:
            continue
        order = choice.fallback_order(task, decision)
        if order:
            found[task.id] = tuple((tool, choice.breaker_reason(tool)) for tool in order)
    return found


def plan_choice(
    workstream: Workstream,
    host: PluginHost,
    project: Project,
    settings: Settings,
    store: Store | None,
    on_remember: Callable[[str], None] | None = None,
) -> ToolChoice:
    """Return the tool choice a run of ``workstream`` would start with, reading ``store``
    (the run database, or None) and writing nothing to it; ``on_remember(key)`` hears
    of each value a strategy remembers."""
    from orchestra.engine.resilience import Breakers

    profile = functools.cache(project.profile)
    breakers = None
    if store is not None:
        breakers = Breakers(store, profile, on_event=lambda kind, payload: None)
    return ToolChoice(
        tools=host.tools(),
        routers=host.routers(),
        defaults=workstream.defaults,
        routing=settings.routing,
        profile=profile,
        memory=stored_memory(store, write=False, on_change=on_remember),
        track_record=store.track_record if store is not None else None,
        breakers=breakers,
        settled=True,  # no attempt starts or ends while planning
    )


#: what routing reads of a task when it asks no strategy (``router.route``'s settled
#: decisions): the tools it allows, the capabilities it needs, its routing strategy
ROUTED_ALIKE = operator.attrgetter("tool", "tools", "capabilities", "kind", "routing")


def _route_each(
    tasks: Sequence[Task], choice: ToolChoice, until: Sequence[object] = ()
) -> dict[str, RoutingDecision]:
    """Return each task's decision, in the order given (equal decisions are one object);
    stop early once ``until`` is not empty.

    A decision that asks no strategy depends on ``ROUTED_ALIKE`` alone, and a plan's
    router keeps it and hands the same object to each task that asks again
    (``router.route``'s ``settled``). So once two tasks alike get the same object, the
    others alike get it without being routed: 100,000 commands are routed in 0.05 s
    instead of 0.2 s. A strategy's decision is a new object each time: every task a
    strategy chooses for is routed on its own, as a run routes it."""
    equal: dict[RoutingDecision, RoutingDecision] = {}
    first: dict[tuple, RoutingDecision] = {}  # the router's decision, of the first alike
    settled: dict[tuple, RoutingDecision] = {}  # the decision of all tasks alike
    decision_of = {}
    for task in tasks:
        alike = ROUTED_ALIKE(task)
        decision = settled.get(alike)
        if decision is None:
            made = choice.decide(task)
            decision = equal.setdefault(made, made)
            if alike not in first:
                first[alike] = made
            elif first[alike] is made:
                settled[alike] = decision
        decision_of[task.id] = decision
        if until:
            break
    return decision_of


def start_order(
    tasks: Sequence[Task],
    dependencies: Mapping[str, Sequence[str]],
    waves: Sequence[Sequence[str]],
    scheduler: Any,
    max_parallel: int,
) -> list[Task]:
    """Return ``tasks`` in the order a run would start them, were each to succeed and the
    first started to end first: the run's ready queue (``engine/ready.py``) with
    ``max_parallel`` slots. A scheduler with only ``order``, which a run asks about all
    the ready tasks whenever a slot frees, is asked once per wave instead, with the
    waves before it finished: exact for ``waves``, and quick on a large workstream. A
    task the scheduler never offers comes last, in file order."""
    by_id = {task.id: task for task in tasks}
    finished: set[str] = set()
    ready = ReadyQueue(
        scheduler,
        SchedulingContext(dependencies, finished),
        {task.id: position for position, task in enumerate(tasks)},
    )
    order: list[Task] = []

    def take(task: Task) -> str:
        order.append(task)
        return TAKE

    if getattr(scheduler, "key", None) is None:
        for wave in waves:
            for task_id in wave:
                ready.add(by_id[task_id])
            ready.offer(take)
            for task_id in wave:
                ready.discard(task_id)
            finished.update(wave)
    else:
        _offer_as_a_run(ready, by_id, dependencies, finished, max_parallel, order)
    if len(order) < len(tasks):
        started = {task.id for task in order}
        order.extend(task for task in tasks if task.id not in started)
    return order


def _offer_as_a_run(
    ready: ReadyQueue,
    by_id: Mapping[str, Task],
    dependencies: Mapping[str, Sequence[str]],
    finished: set[str],
    max_parallel: int,
    order: list[Task],
) -> None:
    """Start tasks from ``ready`` into ``order`` as a run would: whenever a slot is free,
    the first started task ending first, its dependents ready once all they need ended."""
    dependents = graph.dependents_of(dependencies)
    waiting = {task_id: len(needs) for task_id, needs in dependencies.items()}
    for task_id, count in waiting.items():
        if not count:
            ready.add(by_id[task_id])
    running: deque[str] = deque()

    def start(task: Task) -> str:
        if len(running) >= max_parallel:
            return STOP
        running.append(task.id)
        order.append(task)
        return TAKE

    while True:
        ready.offer(start)
        if not running:
            return
        done = running.popleft()
        finished.add(done)
        for dependent in dependents[done]:
            waiting[dependent] -= 1
            if not waiting[dependent]:
                ready.add(by_id[dependent])


def open_history(settings: Settings) -> Store | None:
    """Return the run database of ``settings`` opened for reading only (None when there
    is none yet): what routing reads there, ``plan`` reads too."""
    from orchestra.store import Store

    if not Path(settings.db).exists():
        return None
    return Store.open(settings.db, read_only=True)


#: programs people may not know by their file's name
KNOWN_PROGRAMS = {"pwsh": "PowerShell", "powershell": "PowerShell"}


def missing_program(
    task: Task,
    defaults: Any,
    found: dict[tuple[str, str], bool] | None = None,
    own_path: str | None = None,
) -> str | None:
    """Return why ``task`` cannot run here: the first program its command or its checks
    start that is not on PATH (a program named by a path may be made by an earlier
    task, and is not looked for); None when every one is there. ``found`` remembers,
    across tasks, whether each (PATH, program) was found; ``own_path`` is orchestra's
    own PATH, where neither the task nor [defaults] sets one (read from the environment
    when not given: a caller asking of many tasks reads it once)."""
    import shutil

    found = {} if found is None else found
    checks = task.checks if task.checks is not None else defaults.checks
    commands = [("command", task.command, task.shell)] if task.command is not None else []
    for check in checks or ():
        kind = "pre-flight check" if check.before else "check"
        commands.append((f"{kind} {check.label!r}", check.command, check.shell))
    path = None
    for what, command, shell in commands:
        if shell or isinstance(command, str) or not command:
            continue  # runs through /bin/sh
        program = command[0]
        if "/" in program:
            continue
        if path is None:  # the task's PATH, else [defaults]', else orchestra's own
            path = task.env.get("PATH", defaults.env.get("PATH"))
            if path is None:
                path = own_path if own_path is not None else os.environ.get("PATH", os.defpath)
        if (path, program) not in found:
            found[path, program] = shutil.which(program, path=path) is not None
        if not found[path, program]:
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
    from orchestra.engine.environment import build_environment
    from orchestra.engine.router import candidate_tools
    from orchestra.plugin.protocols import ToolSetup

    tools = host.tools()
    assumed = Availability(True)

    def assume_available(name: str) -> Availability:  # asked below, of fewer tools
        return assumed

    filtered: dict[Any, Any] = {}
    may_pick: dict[str, ToolAdapter] = {}
    # which tools may take a task depends on these of its fields alone (the tools it
    # allows, the capabilities it needs): asked once for each of their values, 100,000
    # tasks take 0.02 s instead of 0.09 s
    routed_alike = operator.attrgetter("tool", "tools", "capabilities", "kind")
    for task in {routed_alike(task): task for task in workstream.tasks}.values():
        for adapter in candidate_tools(
            task,
            defaults=workstream.defaults,
            tools=tools,
            profile=project.profile,
            availability=assume_available,
            filtered=filtered,
        ):
            may_pick.setdefault(adapter.name, adapter)
    lines: list[str] = []
    for name, adapter in may_pick.items():
        # a ToolConfigurationProblems, when the adapter has the method
        check: Callable[[ToolProfile, ToolSetup], list[str]] | None = getattr(
            adapter, "configuration_problems", None
        )
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
