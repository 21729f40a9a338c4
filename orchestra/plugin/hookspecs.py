"""Every hook orchestra calls: this module is the plugin API.

A plugin is a module or object with functions marked ``@orchestra.hookimpl`` whose names
are the hooks below. Registration hooks receive a ``register`` function (a ``Register``
of the kind they register): call it once per object, ``register(obj)`` (the name is
``obj.name``) or ``register(obj, name="x")``. The host refuses a name that another
plugin already registered and remembers which plugin registered what. Configuration
picks registered objects by name, so installing a plugin never silently changes what a
run does. ``docs/hooks.md`` documents each hook; a test keeps the two in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from orchestra.plugin.protocols import (
        EventSink,
        Executor,
        PluginSetting,
        Register,
        RoutingStrategy,
        SchedulingStrategy,
        ToolAdapter,
        Workspace,
        WorkstreamLoader,
    )

hookspec = pluggy.HookspecMarker("orchestra")


@hookspec
def orchestra_register_tools(register: Register[ToolAdapter]) -> None:
    """Register tool adapters: AI coding tools or command runners that carry out tasks.

    Each adapter has a ``name``, ``capabilities`` (a frozenset of words such as
    ``"prompt"``, ``"edit"``, ``"python"``), ``available(profile) -> Availability`` and
    ``execute(request, ctx) -> StepResult`` (see ``orchestra.plugin.protocols.ToolAdapter``).
    """


@hookspec
def orchestra_register_routers(register: Register[RoutingStrategy]) -> None:
    """Register routing strategies: ``choose(task, candidates, context) -> RoutingChoice``.

    ``context`` holds each candidate's track record and tool profile. A workstream or
    configuration selects a strategy by name (``routing = "auto"``).
    """


@hookspec
def orchestra_register_schedulers(register: Register[SchedulingStrategy]) -> None:
    """Register scheduling strategies: ``order(ready, context) -> list[Task]``.

    Selected by name (``scheduler = "critical_path"``); the default is ``eager``.
    """


@hookspec
def orchestra_register_sinks(register: Register[EventSink]) -> None:
    """Register event sinks: ``emit(event)`` for every event of a run, ``close()`` at its end.

    Selected by name (``sinks = ["console", "jsonl"]``).
    """


@hookspec
def orchestra_register_workspaces(register: Register[Workspace]) -> None:
    """Register workspaces: ``open(run) -> RunWorkspace``, which prepares a directory per
    attempt, reports its change and lands it.

    Selected by name (``workspace = "worktree"``).
    """


@hookspec
def orchestra_register_executors(register: Register[Executor]) -> None:
    """Register executors, which decide where attempts run: ``open(run) -> RunExecutor``,
    whose ``submit(launch)`` starts an attempt (an ``AttemptLaunch``) and ``close()`` ends
    the run's use of it.

    Selected by name (``executor = "local"``, the default, or a plugin's executor).
    """


@hookspec
def orchestra_register_loaders(register: Register[WorkstreamLoader]) -> None:
    """Register workstream loaders: file formats that load into a ``Workstream``.

    Each loader has a ``name``, the file ``patterns`` it claims (``"*.toml"``),
    ``sniff(path, head) -> bool`` (does the file's first bytes look like this format?) and
    ``load(path, context) -> Workstream``. ``--format NAME`` picks a loader by name;
    otherwise the one loader whose sniff accepts the file is used.
    """


@hookspec
def orchestra_register_settings(register: Register[PluginSetting]) -> None:
    """Register the plugin's settings: each an ``orchestra.PluginSetting`` (name, type,
    help, default), a configuration key, an ``ORCHESTRA_*`` variable and an option of
    ``run`` and ``resume``.

    ``validate`` checks their values' types and ``run --help`` lists their options; a
    run's values reach executors in ``ExecutorRun.options`` and tools in
    ``ExecutionRequest.settings``.
    """


@hookspec
def orchestra_register_commands(cli: click.Group) -> None:
    """Add commands to the ``orchestra`` command line.

    ``cli`` is the click group: decorate with ``@cli.command()`` or call ``cli.add_command``.
    """
