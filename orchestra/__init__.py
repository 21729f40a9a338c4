"""orchestra: run workstreams of coding tasks through AI coding tools, in parallel, durably.

The public face for plugin authors and library users. Names are imported on first use,
so ``import orchestra`` (and ``orchestra --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "hookimpl": "orchestra.plugin.markers",
    "Availability": "orchestra.models",
    "Backoff": "orchestra.models",
    "Check": "orchestra.models",
    "Defaults": "orchestra.models",
    "ExecutionRequest": "orchestra.models",
    "FileScope": "orchestra.models",
    "ProcessResult": "orchestra.models",
    "RetryPolicy": "orchestra.models",
    "StepResult": "orchestra.models",
    "ReviewResult": "orchestra.models",
    "Review": "orchestra.models",
    "Task": "orchestra.models",
    "ToolProfile": "orchestra.models",
    "Usage": "orchestra.models",
    "Workstream": "orchestra.models",
    "Change": "orchestra.models",
    "ExecutorRun": "orchestra.models",
    "Landing": "orchestra.models",
    "SinkContext": "orchestra.models",
    "WorkspaceRun": "orchestra.models",
    "ExecutionContext": "orchestra.plugin.protocols",
    "RoutingChoice": "orchestra.plugin.protocols",
    "RoutingContext": "orchestra.plugin.protocols",
    "SchedulingContext": "orchestra.plugin.protocols",
    "ToolAdapter": "orchestra.plugin.protocols",
    "ToolSetup": "orchestra.plugin.protocols",
    "ToolStats": "orchestra.plugin.protocols",
    "OrchestraError": "orchestra.errors",
    "SpecError": "orchestra.errors",
    "WorkspaceError": "orchestra.errors",
    "WorkspaceViolation": "orchestra.errors",
    "WorkstreamInvalid": "orchestra.errors",
    "load_workstream": "orchestra.spec",
    "find_version": "orchestra.toolversion",
    "run_git": "orchestra.git.command",
    "git_invocation": "orchestra.git.command",
    "GitError": "orchestra.git.command",
    "start_note": "orchestra.engine.resilience",
    # executors: the attempt the run loop hands them, and what running one elsewhere needs
    "AttemptLaunch": "orchestra.plugin.protocols",
    "ReviewLaunch": "orchestra.plugin.protocols",
    "Executor": "orchestra.plugin.protocols",
    "RunExecutor": "orchestra.plugin.protocols",
    "execute_attempt": "orchestra.engine.attempts",
    "LocalContext": "orchestra.engine.context",
    "build_environment": "orchestra.engine.environment",
    "processes_of_run": "orchestra.engine.leftovers",
    "stop_process_groups": "orchestra.engine.leftovers",
    # the settings a plugin adds (orchestra_register_settings)
    "PluginSetting": "orchestra.plugin.protocols",
    # recorded runs: the run database and its records, a run's facts, cancel
    "run_database_path": "orchestra.recorded",
    "open_run_database": "orchestra.recorded",
    "gather_run": "orchestra.recorded",
    "request_cancel": "orchestra.recorded",
    "tail_lines": "orchestra.recorded",
    "Store": "orchestra.store",
    "UnknownRun": "orchestra.store",
    "RunRecord": "orchestra.store",
    "StepRecord": "orchestra.store",
    "AttemptRecord": "orchestra.store",
    "ReviewRecord": "orchestra.store",
    "EventRecord": "orchestra.store",
    "BreakerRecord": "orchestra.store",
    "RunFacts": "orchestra.report.facts",
    "TaskFacts": "orchestra.report.facts",
    "AttemptFacts": "orchestra.report.facts",
    "PassedOverFacts": "orchestra.report.facts",
    "FileChange": "orchestra.report.diffs",
    # for a plugin's type checker: what the registration hooks hand over, and the shapes
    # of what they register, their optional members each a protocol of its own
    "Register": "orchestra.plugin.protocols",
    "RoutingStrategy": "orchestra.plugin.protocols",
    "SchedulingStrategy": "orchestra.plugin.protocols",
    "EventSink": "orchestra.plugin.protocols",
    "Workspace": "orchestra.plugin.protocols",
    "RunWorkspace": "orchestra.plugin.protocols",
    "WorkstreamLoader": "orchestra.plugin.protocols",
    "LoadContext": "orchestra.plugin.protocols",
    "ToolCircuitBreaker": "orchestra.plugin.protocols",
    "ToolConfigurationProblems": "orchestra.plugin.protocols",
    "ToolReviewer": "orchestra.plugin.protocols",
    "ContextSandbox": "orchestra.plugin.protocols",
    "SchedulerKey": "orchestra.plugin.protocols",
    "SinkOpen": "orchestra.plugin.protocols",
    "SinkWantsOutput": "orchestra.plugin.protocols",
    "WorkspaceLanded": "orchestra.plugin.protocols",
    "RunWorkspaceCheckpoint": "orchestra.plugin.protocols",
    "RunWorkspaceClose": "orchestra.plugin.protocols",
    "RunWorkspaceRepairs": "orchestra.plugin.protocols",
    "RunWorkspaceWritablePaths": "orchestra.plugin.protocols",
    "RunWorkspaceStarted": "orchestra.plugin.protocols",
    "RunWorkspaceToolDone": "orchestra.plugin.protocols",
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
    "ReviewResult",
    "Review",
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
    "ReviewLaunch",
    "Executor",
    "RunExecutor",
    "execute_attempt",
    "LocalContext",
    "build_environment",
    "processes_of_run",
    "stop_process_groups",
    "PluginSetting",
    "run_database_path",
    "open_run_database",
    "gather_run",
    "request_cancel",
    "tail_lines",
    "Store",
    "UnknownRun",
    "RunRecord",
    "StepRecord",
    "AttemptRecord",
    "ReviewRecord",
    "EventRecord",
    "BreakerRecord",
    "RunFacts",
    "TaskFacts",
    "AttemptFacts",
    "PassedOverFacts",
    "FileChange",
    "Register",
    "RoutingStrategy",
    "SchedulingStrategy",
    "EventSink",
    "Workspace",
    "RunWorkspace",
    "WorkstreamLoader",
    "LoadContext",
    "ToolCircuitBreaker",
    "ToolConfigurationProblems",
    "ToolReviewer",
    "ContextSandbox",
    "SchedulerKey",
    "SinkOpen",
    "SinkWantsOutput",
    "WorkspaceLanded",
    "RunWorkspaceCheckpoint",
    "RunWorkspaceClose",
    "RunWorkspaceRepairs",
    "RunWorkspaceWritablePaths",
    "RunWorkspaceStarted",
    "RunWorkspaceToolDone",
]

if TYPE_CHECKING:
    from orchestra.engine.attempts import execute_attempt
    from orchestra.engine.context import LocalContext
    from orchestra.engine.environment import build_environment
    from orchestra.engine.leftovers import processes_of_run, stop_process_groups
    from orchestra.engine.resilience import start_note
    from orchestra.errors import (
        OrchestraError,
        SpecError,
        WorkspaceError,
        WorkspaceViolation,
        WorkstreamInvalid,
    )
    from orchestra.git.command import GitError, git_invocation, run_git
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
        Review,
        ReviewResult,
        SinkContext,
        StepResult,
        Task,
        ToolProfile,
        Usage,
        WorkspaceRun,
        Workstream,
    )
    from orchestra.plugin.markers import hookimpl
    from orchestra.plugin.protocols import (
        AttemptLaunch,
        ContextSandbox,
        EventSink,
        ExecutionContext,
        Executor,
        LoadContext,
        PluginSetting,
        Register,
        ReviewLaunch,
        RoutingChoice,
        RoutingContext,
        RoutingStrategy,
        RunExecutor,
        RunWorkspace,
        RunWorkspaceCheckpoint,
        RunWorkspaceClose,
        RunWorkspaceRepairs,
        RunWorkspaceStarted,
        RunWorkspaceToolDone,
        RunWorkspaceWritablePaths,
        SchedulerKey,
        SchedulingContext,
        SchedulingStrategy,
        SinkOpen,
        SinkWantsOutput,
        ToolAdapter,
        ToolCircuitBreaker,
        ToolConfigurationProblems,
        ToolReviewer,
        ToolSetup,
        ToolStats,
        Workspace,
        WorkspaceLanded,
        WorkstreamLoader,
    )
    from orchestra.recorded import (
        gather_run,
        open_run_database,
        request_cancel,
        run_database_path,
        tail_lines,
    )
    from orchestra.report.diffs import FileChange
    from orchestra.report.facts import AttemptFacts, PassedOverFacts, RunFacts, TaskFacts
    from orchestra.spec import load_workstream
    from orchestra.store import (
        AttemptRecord,
        BreakerRecord,
        EventRecord,
        ReviewRecord,
        RunRecord,
        StepRecord,
        Store,
        UnknownRun,
    )
    from orchestra.toolversion import find_version


def _import_public(name: str) -> Any:
    """Return the public name ``name``, imported on first use (and kept)."""
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module 'orchestra' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


# Not for type checkers: they read the imports above, so that a misspelt name
# (orchestra.Availabilty) is an error for them rather than Any.
if not TYPE_CHECKING:
    __getattr__ = _import_public
