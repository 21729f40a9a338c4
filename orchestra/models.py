"""The values orchestra works with: workstreams, tasks, tool profiles, attempts.

All are attrs classes, frozen where they are values. ``orchestra.spec`` turns TOML into
them; everything after loading works with these classes, never with raw dicts.

The annotations are evaluated (no ``from __future__ import annotations``): cattrs reads
them to structure a workstream, and as strings each would be compiled at every start.
"""

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from orchestra import classes


def duration(default: float | None = None) -> Any:
    """An attrs field holding seconds, written in files as "90s", "10m" or "1h"."""
    return attrs.field(default=default, metadata={"duration": True})


def size(default: int | None = None) -> Any:
    """An attrs field holding bytes, written in files as 10_000_000, "10MB" or "512KiB"."""
    return attrs.field(default=default, metadata={"size": True})


#: A command is an argument list, or one string when the task opted into a shell.
Command = tuple[str, ...] | str


@classes.frozen
class FileScope:
    """Which paths (globs relative to the repository) a task may read, write and create."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    create: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.read or self.write or self.create or self.forbidden)


@classes.frozen
class Check:
    """A command run after the tool, its failure fed back to the tool; or, with
    ``before``, run before the tool, a failure ending the attempt before the tool starts."""

    command: Command
    shell: bool = False
    name: str | None = None
    timeout: float | None = duration()
    #: a pre-flight check: it runs before the tool, in the attempt's directory
    before: bool = False

    @property
    def label(self) -> str:
        """A short name for this check in plans, messages and reports: its name, or its
        command with the secrets written in it masked (``--api-key ***``)."""
        if self.name:
            return self.name
        from orchestra.secrets import masked_command

        return masked_command(self.command) or ""


@classes.frozen
class Backoff:
    """How long to wait between attempts: ``initial * factor**n``, capped at ``max``."""

    initial: float = duration(2.0)
    factor: float = 2.0
    max: float = duration(60.0)
    jitter: bool = True


@classes.frozen
class Budget:
    """A cap on what a run (``[defaults]``, configuration) or one task may use."""

    cost: float | None = None
    tokens: int | None = None


#: error classes never retried unless a task says otherwise: trying again cannot help
NON_RETRYABLE = frozenset(
    {"auth", "scope_violation", "tool_missing", "needs_input", "preflight_failed"}
)


#: what the policy table can say of a failure (``engine/failover.py``): try again with
#: the same tool, with another tool if one may run the task (else the same), only with
#: another tool (else stop), or stop
FAILURE_ACTIONS = ("same", "prefer_other", "other", "stop")


@classes.frozen
class RetryPolicy:
    """Whether and when a failed attempt is tried again (shaped like Temporal's)."""

    max_attempts: int = 3
    backoff: Backoff = Backoff()
    non_retryable: frozenset[str] = NON_RETRYABLE
    #: route the retry again, preferring another tool than the one that failed (folded
    #: into ``on_failure``: it makes each ``same`` row ``prefer_other``)
    retry_with_other_tool: bool = False
    #: the same failure this many attempts in a row quarantines the task
    same_failure_limit: int = 2
    #: the policy table, resolved for every error class: what follows a failure of that
    #: class (``engine/failover.py``: same, prefer_other, other, stop); a class it does
    #: not name is retried with the same tool
    on_failure: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    #: a rate limit asking to wait longer than this (seconds) sends the retry to another
    #: tool, where its row says so; a shorter wait is waited out with the same tool
    failover_wait: float = 60.0


#: what a reviewer's verdict can be
VERDICTS = ("approve", "request_changes")


@classes.frozen
class Review:
    """A second tool reading an attempt's change before it lands (``review = {…}`` on a
    task or in [defaults]; ``review = false`` on a task turns the defaults' off)."""

    #: who may review, in routing's hands; empty: every tool that can review
    tools: tuple[str, ...] = ()
    #: the team's review guidelines, added to what the reviewer is asked
    prompt: str | None = None
    #: False: after ``max_rounds`` rejections the change lands anyway, the rejection
    #: recorded; True: the task fails
    required: bool = True
    #: how many times the reviewers may ask for changes before that
    max_rounds: int = 2
    #: the routing strategy that picks the reviewer (else the task's, else the setting)
    routing: str | None = None
    #: whether the tool that made the change may review it (never, unless this is set)
    self_review: bool = False
    #: how long a review may take (else the task's ``timeout``, else the setting)
    timeout: float | None = duration()
    #: False on a task: no review for it, whatever [defaults] says
    enabled: bool = True


@classes.frozen
class Task:
    """One node of the workstream graph. ``None`` means: take the value from [defaults]."""

    id: str
    title: str | None = None
    prompt: str | None = None
    command: Command | None = None
    shell: bool = False
    tool: str | None = None
    tools: tuple[str, ...] | None = None
    routing: str | None = None
    capabilities: tuple[str, ...] | None = None
    depends_on: tuple[str, ...] = ()
    files: FileScope = FileScope()
    checks: tuple[Check, ...] | None = None
    max_attempts: int | None = None
    timeout: float | None = duration()
    idle_timeout: float | None = duration()
    backoff: Backoff | None = None
    non_retryable: tuple[str, ...] | None = None
    retry_with_other_tool: bool | None = None
    same_failure_limit: int | None = None
    #: rows of the policy table (error class -> same, prefer_other, other or stop) over
    #: [defaults]' and the built-in ones
    on_failure: Mapping[str, str] | None = attrs.field(default=None, hash=False)
    failover_wait: float | None = duration()
    budget: Budget | None = None
    workspace: str | None = None
    max_files_changed: int | None = None
    max_lines_changed: int | None = None
    priority: int = 0
    #: a second tool reviews each change before it lands (``Review``)
    review: Review | None = None
    env: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    metadata: Mapping[str, Any] = attrs.field(factory=dict, hash=False)

    @property
    def kind(self) -> str:
        """``"command"`` for a task that runs a command, ``"prompt"`` for one for an AI tool."""
        return "command" if self.command is not None else "prompt"


@classes.frozen
class Defaults:
    """Workstream-wide values that every task takes unless it sets its own."""

    tool: str | None = None
    tools: tuple[str, ...] | None = None
    routing: str | None = None
    capabilities: tuple[str, ...] | None = None
    checks: tuple[Check, ...] | None = None
    max_attempts: int | None = None
    timeout: float | None = duration()
    idle_timeout: float | None = duration()
    backoff: Backoff | None = None
    non_retryable: tuple[str, ...] | None = None
    retry_with_other_tool: bool | None = None
    same_failure_limit: int | None = None
    on_failure: Mapping[str, str] | None = attrs.field(default=None, hash=False)
    failover_wait: float | None = duration()
    #: the run's budget (a task's own ``budget`` caps only that task)
    budget: Budget | None = None
    workspace: str | None = None
    max_files_changed: int | None = None
    max_lines_changed: int | None = None
    #: how much output an attempt's log keeps (the ``log_limit`` setting)
    log_limit: int | None = size()
    #: every task's review, unless a task sets its own or ``review = false``
    review: Review | None = None
    env: Mapping[str, str] = attrs.field(factory=dict, hash=False)

    @property
    def budget_cost(self) -> float | None:
        return self.budget.cost if self.budget else None

    @property
    def budget_tokens(self) -> int | None:
        return self.budget.tokens if self.budget else None


@classes.frozen
class Workstream:
    """A whole workstream file: its identity, its defaults and its tasks in file order."""

    id: str
    tasks: tuple[Task, ...] = ()
    title: str | None = None
    description: str | None = None
    defaults: Defaults = Defaults()
    #: the file it was loaded from; set by the loader, never read from the file
    source: str | None = attrs.field(default=None, eq=False, metadata={"internal": True})
    #: names a dependency may use for a group of tasks (a UET bundle made of steps is
    #: one name for all its steps); set by a loader, resolved by the host when it loads
    aliases: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict, eq=False, hash=False, metadata={"internal": True}
    )
    #: the SHA-256 of the bytes it was read from (``loaders.sets.digest``), what a run
    #: records and resume compares; set by the host when it loads, never by a loader
    digest: str | None = attrs.field(default=None, eq=False, metadata={"internal": True})

    def task(self, task_id: str) -> Task:
        """Return the task with this id (KeyError when there is none)."""
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)


@classes.frozen
class ToolProfile:
    """A tool's settings from configuration (``[tools.NAME]``)."""

    name: str
    enabled: bool = True
    model: str | None = None
    args: tuple[str, ...] = ()
    capabilities: tuple[str, ...] | None = None
    max_concurrency: int | None = None
    env: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    pass_env: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    options: Mapping[str, Any] = attrs.field(factory=dict, hash=False)


@classes.frozen
class Availability:
    """Whether a tool can run on this machine, and which version was found where."""

    available: bool
    version: str | None = None
    path: str | None = None
    reason: str | None = None


@classes.frozen
class ExecutionRequest:
    """Everything an adapter needs to carry out one attempt of one task."""

    run_id: str
    task: Task
    attempt: int
    workdir: str
    profile: ToolProfile
    timeout: float | None = duration()
    idle_timeout: float | None = duration()
    feedback: str | None = None
    #: whether this attempt goes on from the previous attempt's change (a retry after a
    #: failed check) rather than starting over from the run's current work; the
    #: workspace applies that change when it can
    continues: bool = False
    #: what the attempt's directory holds when the tool starts (one of ``STARTS``), as
    #: its workspace made it; None when the workspace does not say. The host sets it
    #: once the directory is ready; tools say it in a retry's prompt (``start_note``)
    start: str | None = None
    #: the run's values of the settings plugins add (``orchestra_register_settings``), by
    #: name; one mapping shared by the run's attempts: read it, never change it
    settings: Mapping[str, Any] = attrs.field(factory=dict, hash=False)


#: What an attempt's directory can hold when its tool starts (``ExecutionRequest.start``):
#: the run's current work ("clean": a first attempt, or a retry that starts over); that
#: plus the previous attempt's change, uncommitted ("continued"); the run's current work
#: because the previous change no longer applies to it ("unapplied"); the directory as
#: the previous attempt left it, nothing undone ("as_left": the inplace workspace).
STARTS = ("clean", "continued", "unapplied", "as_left")


@classes.frozen
class Usage:
    """Tokens and cost one attempt used, where the tool reported them."""

    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None


@classes.frozen
class ReviewResult:
    """What one review of an attempt's change came to (the worker tells the loop)."""

    tool: str
    #: which round of the task's reviews this is (1 for the first)
    round: int
    #: the reviewer's attempt: succeeded (a verdict was read), failed, timed_out, canceled
    outcome: str
    #: ``approve`` or ``request_changes`` when the reviewer gave one
    verdict: str | None = None
    comments: str | None = None
    error_class: str | None = None
    message: str | None = None
    retry_after: float | None = None
    usage: Usage = Usage()
    started_at: float | None = None
    ended_at: float | None = None
    log_path: str | None = None
    #: what the reviewer changed in the change's worktree, as a diff: discarded, kept here
    edits: str | None = None
    #: whether the change landed after this review (approved, or rejected on the last
    #: round of a review that is not required)
    landed: bool = False


@classes.frozen
class StepResult:
    """What an attempt came to: its outcome, the error class when it failed, and usage."""

    outcome: str
    error_class: str | None = None
    message: str | None = None
    exit_code: int | None = None
    retry_after: float | None = None
    usage: Usage = Usage()
    #: what the next attempt's prompt should carry to fix this one (a failed check's
    #: command and the tail of its output), bounded; None when there is nothing to say
    feedback: str | None = None
    #: the attempt's change as a unified diff (filled in by the host's workspace)
    diff: str | None = None
    #: the tool's final answer, as text (what a review's verdict is read from); None
    #: when the tool gave none or the adapter does not say
    answer: str | None = None
    #: the review of the attempt's change, when its task has one and it got that far
    review: ReviewResult | None = None


#: Error classes an attempt can fail with (see docs/architecture.md).
ERROR_CLASSES = frozenset(
    {
        "rate_limited",
        "auth",
        "context_overflow",
        "timeout",
        "idle",
        "tool_missing",
        "needs_input",
        "invalid_output",
        "check_failed",
        "preflight_failed",
        "scope_violation",
        "crashed",
        "provider_error",
        "merge_conflict",
        "setup_failed",
        "turn_failed",
        "turn_limit",
        "exit_status",
        "review_rejected",
        "review_failed",
    }
)


@classes.frozen
class ProcessResult:
    """How a process the host ran for an adapter ended, and where its output went."""

    #: the exit status; None when a signal ended the process or it never started
    exit_code: int | None
    #: seconds from start to the end of the last process of its group (monotonic clock)
    duration: float
    log_path: str | None = None
    #: "timeout", "idle" or "canceled" when orchestra stopped the process, else None
    stopped: str | None = None
    #: the signal that ended the process, when one did
    signal: int | None = None
    #: why the program could not be started (not found, not executable …)
    error: str | None = None
    #: wall-clock UNIX times of the start and the end, for the record
    started_at: float | None = None
    ended_at: float | None = None


@classes.frozen
class WorkspaceRun:
    """What a workspace knows of the run it serves (``Workspace.open``)."""

    run_id: str
    #: the project root (where orchestra.toml is; the attempt's directory mirrors it)
    project_root: str
    #: orchestra's own directory beside the run database (worktrees go under it)
    state_dir: str
    #: files and directories, relative to the project root, copied into each workspace
    copy: tuple[str, ...] = ()
    #: commands run in each new workspace before the tool (``uv sync``)
    setup: tuple[str, ...] = ()
    #: whether the run is being resumed (leftovers of its dead attempts may exist)
    resumed: bool = False
    #: whether the run's work starts from the user's uncommitted changes to tracked
    #: files too (``--include-uncommitted``), not from HEAD alone
    include_uncommitted: bool = False
    #: gitignore-style patterns of files never part of an attempt's change (build
    #: output and caches: ``__pycache__/``), on top of the repository's own ignores
    ignore: tuple[str, ...] = ()
    #: what this workspace last asked to be kept for the run (its ``checkpoint()``),
    #: read back from the run database when the run resumes; None on a new run
    checkpoint: Mapping[str, Any] | None = attrs.field(default=None, hash=False)


@classes.frozen
class ExecutorRun:
    """What an executor knows of the run it serves (``Executor.open``).

    ``work(launch)`` carries out one attempt (an ``AttemptLaunch``) on this machine and
    posts its result to the run loop, as the local executor does; an executor that runs
    attempts elsewhere hands it a launch whose ``adapter`` forwards the attempt (the run
    loop prepares, judges and lands the change around it). ``event(task_id, attempt,
    kind, payload)`` records an event of an attempt; it may be called from any thread.
    """

    run_id: str
    #: how many attempts run at once (``max_parallel``)
    parallel: int
    work: Callable[[Any], None] = attrs.field(eq=False, repr=False)
    event: Callable[[str | None, int | None, str, Mapping[str, Any]], None] = attrs.field(
        eq=False, repr=False
    )
    #: the events recorded so far in this run, oldest first (a resumed run's history)
    history: Callable[[], list[Any]] = attrs.field(eq=False, repr=False, default=list)
    #: the run's resolved settings by name, orchestra's and the plugins' (an executor
    #: reads the ones its plugin adds)
    options: Mapping[str, Any] = attrs.field(factory=dict)
    #: the project root and orchestra's state directory beside the run database
    project_root: str = ""
    state_dir: str = ""
    #: whether the run is being resumed (its dead orchestrator may have left work behind)
    resumed: bool = False


@classes.frozen
class Change:
    """What an attempt changed, relative to where its workspace started."""

    #: paths relative to the repository root, sorted; None when the workspace cannot tell
    paths: tuple[str, ...] | None
    diff: str | None = None
    lines: int = 0
    #: symbolic links the change makes (or turns outward) that lead outside the
    #: repository, followed through the commit (``orchestra.git.links``), each as
    #: ``(path, target)``: a later attempt, orchestra's copy or the user would write
    #: through them
    escapes: tuple[tuple[str, str], ...] = ()


@classes.frozen
class Landing:
    """How an attempt's change was brought into the run's result."""

    merged: bool
    conflicts: tuple[str, ...] = ()
    #: the commit the run's branch points at now, where there is one
    tip: str | None = None


@classes.frozen
class SinkContext:
    """What a sink's optional ``open(context)`` gets when a run starts."""

    run_id: str
    #: the sink's ``[sink.NAME]`` table from configuration
    options: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    project_root: str = "."
    #: orchestra's directory beside the run database (a default place for files)
    state_dir: str = "."
    #: record a ``sink.warning`` event of the run (safe from any thread)
    warn: Any = attrs.field(default=None, eq=False, hash=False)
    #: each task's state when the sink is opened (a resumed run has finished some)
    steps: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    #: how many attempts run at once
    parallel: int = 1
    #: ``last_line(task)``: the last line a running task printed (for live views)
    last_line: Any = attrs.field(default=None, eq=False, hash=False)
