"""orchestra: run workstreams of coding tasks through AI coding tools, in parallel, durably.

The public face for plugin authors and library users. Names are imported on first use,
so ``import orchestra`` (and ``orchestra --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "hookimpl": "orchestra.markers",
    "Availability": "orchestra.models",
    "Backoff": "orchestra.models",
    "Check": "orchestra.models",
    "Defaults": "orchestra.models",
    "ExecutionRequest": "orchestra.models",
    "FileScope": "orchestra.models",
    "ProcessResult": "orchestra.models",
    "RetryPolicy": "orchestra.models",
    "StepResult": "orchestra.models",
    "Task": "orchestra.models",
    "ToolProfile": "orchestra.models",
    "Usage": "orchestra.models",
    "Workstream": "orchestra.models",
    "Change": "orchestra.models",
    "ExecutorRun": "orchestra.models",
    "Landing": "orchestra.models",
    "SinkContext": "orchestra.models",
    "WorkspaceRun": "orchestra.models",
    "ExecutionContext": "orchestra.protocols",
    "RoutingChoice": "orchestra.protocols",
    "RoutingContext": "orchestra.protocols",
    "SchedulingContext": "orchestra.protocols",
    "ToolAdapter": "orchestra.protocols",
    "ToolSetup": "orchestra.protocols",
    "ToolStats": "orchestra.protocols",
    "OrchestraError": "orchestra.errors",
    "SpecError": "orchestra.errors",
    "WorkspaceError": "orchestra.errors",
    "WorkspaceViolation": "orchestra.errors",
    "WorkstreamInvalid": "orchestra.errors",
    "load_workstream": "orchestra.spec",
    "find_version": "orchestra.toolversion",
    "run_git": "orchestra.workspace.command",
    "git_invocation": "orchestra.workspace.command",
    "GitError": "orchestra.workspace.command",
    "start_note": "orchestra.engine.resilience",
    # executors: the attempt the run loop hands them, and what running one elsewhere needs
    "AttemptLaunch": "orchestra.protocols",
    "Executor": "orchestra.protocols",
    "RunExecutor": "orchestra.protocols",
    "execute_attempt": "orchestra.engine.orchestrator",
    "LocalContext": "orchestra.engine.process",
    "build_environment": "orchestra.engine.process",
    "processes_of_run": "orchestra.engine.process",
    "stop_process_groups": "orchestra.engine.process",
    # the settings a plugin adds (orchestra_register_settings)
    "PluginSetting": "orchestra.protocols",
}

__all__ = [  # noqa: RUF022 - grouped as in _PUBLIC
    "__version__",
    "hookimpl",
    "Availability",
    "Backoff",
    "Check",
    "Defaults",
    "ExecutionRequest",
    "FileScope",
    "ProcessResult",
    "RetryPolicy",
    "StepResult",
    "Task",
    "ToolProfile",
    "Usage",
    "Workstream",
    "Change",
    "ExecutorRun",
    "Landing",
    "SinkContext",
    "WorkspaceRun",
    "ExecutionContext",
    "RoutingChoice",
    "RoutingContext",
    "SchedulingContext",
    "ToolAdapter",
    "ToolSetup",
    "ToolStats",
    "OrchestraError",
    "SpecError",
    "WorkspaceError",
    "WorkspaceViolation",
    "WorkstreamInvalid",
    "load_workstream",
    "find_version",
    "run_git",
    "git_invocation",
    "GitError",
    "start_note",
    "AttemptLaunch",
    "Executor",
    "RunExecutor",
    "execute_attempt",
    "LocalContext",
    "build_environment",
    "processes_of_run",
    "stop_process_groups",
    "PluginSetting",
]

if TYPE_CHECKING:
    from orchestra.engine.orchestrator import execute_attempt
    from orchestra.engine.process import (
        LocalContext,
        build_environment,
        processes_of_run,
        stop_process_groups,
    )
    from orchestra.engine.resilience import start_note
    from orchestra.errors import (
        OrchestraError,
        SpecError,
        WorkspaceError,
        WorkspaceViolation,
        WorkstreamInvalid,
    )
    from orchestra.markers import hookimpl
    from orchestra.models import (
        Availability,
        Backoff,
        Change,
        Check,
        Defaults,
        ExecutionRequest,
        ExecutorRun,
        FileScope,
        Landing,
        ProcessResult,
        RetryPolicy,
        SinkContext,
        StepResult,
        Task,
        ToolProfile,
        Usage,
        WorkspaceRun,
        Workstream,
    )
    from orchestra.protocols import (
        AttemptLaunch,
        ExecutionContext,
        Executor,
        PluginSetting,
        RoutingChoice,
        RoutingContext,
        RunExecutor,
        SchedulingContext,
        ToolAdapter,
        ToolSetup,
        ToolStats,
    )
    from orchestra.spec import load_workstream
    from orchestra.toolversion import find_version
    from orchestra.workspace.command import GitError, git_invocation, run_git


def __getattr__(name: str) -> Any:
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module 'orchestra' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
