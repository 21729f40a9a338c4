"""What a registered object must provide: tool adapters, strategies, sinks, workspaces,
executors, loaders; and what plugins are handed: contexts, launches, their settings.

Plugins register objects of these shapes through the hooks in ``orchestra.plugin.hookspecs``.
They are ``typing.Protocol`` classes: a plugin's class need not inherit from them, only
have the attributes. The registry checks the attributes when a plugin registers.

An optional member, which the host looks up by name (a tool's ``circuit_breaker``, a
sink's ``open`` …), is a small protocol of its own named after the protocol and the
member (``SinkOpen``), so that a plugin's type checker can check it too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import attrs

from orchestra import classes
from orchestra.models import (
    Availability,
    Change,
    Check,
    ExecutionRequest,
    ExecutorRun,
    Landing,
    ProcessResult,
    Review,
    SinkContext,
    StepResult,
    Task,
    ToolProfile,
    WorkspaceRun,
    Workstream,
)

if TYPE_CHECKING:
    from orchestra.engine.context import LocalContext

#: what a registry holds (contravariant: a register for tools takes any tool)
Item = TypeVar("Item", contravariant=True)


class Register(Protocol[Item]):
    """The ``register`` a registration hook is handed (``Register[ToolAdapter]`` …).

    ``register(item)`` records ``item`` under ``item.name``; ``register(item, name="x")``
    under ``x``.
    """

    def __call__(self, item: Item, name: str | None = None) -> None: ...


class ExecutionContext(Protocol):
    """What the host offers an adapter while it runs an attempt (see docs/architecture.md).

    The adapter asks, the host does: ``run`` applies the timeouts, process-group cleanup,
    log file, secret redaction and cancellation the same way for every tool.
    """

    #: the attempt's working directory (the repository, or the attempt's worktree)
    cwd: str

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> ProcessResult:
        """Run ``argv`` (no shell) in ``cwd`` with ``env`` on top of the attempt's
        environment; ``on_line`` gets each line of output, redacted."""
        ...

    def emit(self, kind: str, payload: Mapping[str, Any] | None = None) -> None:
        """Record the tool's progress as the event ``tool.<kind>`` of the attempt."""
        ...

    def redact(self, text: str) -> str:
        """Return ``text`` with the values of the attempt's secrets replaced by ``***``."""
        ...

    @property
    def scratch_dir(self) -> Path:
        """A private, empty directory for this attempt, removed after it (a tool's HOME,
        its message and history files)."""
        ...

    @property
    def state_dir(self) -> Path:
        """The tool's own directory under the project's ``.orchestra/``, kept across
        attempts and runs (a tool's configuration home)."""
        ...


@runtime_checkable
class ContextSandbox(Protocol):
    """An ``ExecutionContext``'s optional ``sandbox``: the attempt's sandbox when its
    processes run confined (orchestra's ``LocalContext``), else None (docs/sandbox.md)."""

    @property
    def sandbox(self) -> object | None: ...


@runtime_checkable
class ToolAdapter(Protocol):
    """A tool orchestra can hand a task to: an AI coding tool, or a command runner.

    ``capabilities`` are plain words routing matches against a task's ``capabilities``.
    Adapters that take a prompt include ``"prompt"``; ones that run a task's command
    include ``"command"``.
    """

    name: str
    capabilities: frozenset[str]

    def available(self, profile: ToolProfile) -> Availability:
        """Return whether the tool can run here, and its version and path."""
        ...

    def execute(self, request: ExecutionRequest, ctx: ExecutionContext) -> StepResult:
        """Carry out one attempt through ``ctx`` and return how it went."""
        ...

    # Optional: ``circuit_breaker`` (ToolCircuitBreaker), ``configuration_problems``
    # (ToolConfigurationProblems) and ``review`` (ToolReviewer).


@runtime_checkable
class ToolReviewer(Protocol):
    """A tool adapter's optional ``review``: the tool can read another tool's change and
    give a verdict (docs/reviews.md). An adapter that has it lists ``"review"`` in its
    ``capabilities``, which is how routing finds the reviewers."""

    def review(self, request: ExecutionRequest, ctx: ExecutionContext) -> StepResult:
        """Ask the tool, read-only, what ``request.task.prompt`` says: orchestra has
        written there the task, the change's diff, the checks' output, the team's
        guidelines and the verdict's format. ``request.workdir`` is a worktree holding
        the change. Run the tool so that it changes no file where the tool allows it
        (what it changes anyway is discarded); return ``StepResult.answer``, the tool's
        final message as text, with the outcome, error class and usage judged as for
        ``execute``. orchestra reads the verdict from the answer."""
        ...


@runtime_checkable
class ToolCircuitBreaker(Protocol):
    """A tool adapter's optional ``circuit_breaker``: False, and the tool gets no circuit
    breaker (the shell tool, whose failures are its commands'); True, or no such member,
    and it gets one."""

    @property
    def circuit_breaker(self) -> bool: ...


@runtime_checkable
class ToolConfigurationProblems(Protocol):
    """A tool adapter's optional check of its configuration."""

    def configuration_problems(self, profile: ToolProfile, setup: ToolSetup) -> list[str]:
        """Return what in the tool's configuration keeps an attempt from working without a
        person, one sentence each (no model, no key reaching the tool); [] when nothing.
        ``orchestra plan`` and ``validate`` ask it for each tool routing may pick and
        print each sentence as a warning: start no process, be quick (docs/hooks.md)."""
        ...


@classes.frozen
class ToolSetup:
    """What a tool's attempts would start with, for its ``configuration_problems``."""

    #: the variables an attempt starts with: orchestra's allow-listed ones, the profile's
    #: ``pass_env`` (when set here) and ``env``, the workstream's ``[defaults] env``
    environ: Mapping[str, str]
    #: the project's root, where the tasks run (a repository's own tool settings live there)
    root: Path
    #: the tool's own directory under ``.orchestra/`` (an attempt's ``ctx.state_dir``)
    state_dir: Path


@classes.frozen
class ToolStats:
    """A tool's recorded track record on tasks like the one being routed."""

    attempts: int = 0
    successes: int = 0
    mean_duration: float | None = None
    running: int = 0


class Memory:
    """Small JSON values a strategy keeps across runs (round_robin's position).

    During a run they live in the run database; in ``orchestra plan``, only in memory.
    """

    def __init__(
        self,
        load: Callable[[str], Any] | None = None,
        save: Callable[[str, Any], None] | None = None,
    ) -> None:
        self._values: dict[str, Any] = {}
        self._load = load
        self._save = save

    def recall(self, key: str, default: Any = None) -> Any:
        """Return the value remembered under ``key``, or ``default``."""
        if key not in self._values and self._load is not None:
            self._values[key] = self._load(key)
        value = self._values.get(key)
        return default if value is None else value

    def remember(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON-serialisable) under ``key``."""
        self._values[key] = value
        if self._save is not None:
            self._save(key, value)


@classes.frozen
class RoutingContext:
    """What a routing strategy may consult besides the task and its candidates."""

    #: each candidate's track record on tasks like this one (empty before any run)
    history: Mapping[str, ToolStats] = attrs.field(factory=dict)
    #: each candidate's [tools.NAME] profile from configuration (model, options …)
    profiles: Mapping[str, ToolProfile] = attrs.field(factory=dict)
    #: where the strategy keeps what it must remember across tasks and runs
    memory: Memory = attrs.field(factory=Memory)

    def stats(self, tool: str) -> ToolStats:
        """Return the tool's record, or an empty one for a tool never tried."""
        return self.history.get(tool) or ToolStats()

    def profile(self, tool: str) -> ToolProfile:
        """Return the tool's profile, or an empty one when none is configured."""
        return self.profiles.get(tool) or ToolProfile(name=tool)


@classes.frozen
class RoutingChoice:
    """The tool a routing strategy chose and the reason shown to people."""

    tool: str
    reason: str


@runtime_checkable
class RoutingStrategy(Protocol):
    """Chooses one tool among the candidates that passed the capability filter."""

    name: str

    def choose(
        self, task: Task, candidates: Sequence[ToolAdapter], context: RoutingContext
    ) -> RoutingChoice:
        """Return the chosen candidate's name and why.

        ``candidates`` is never empty and comes in the order the task allows its tools.
        """
        ...


@classes.frozen
class SchedulingContext:
    """What a scheduling strategy may consult about the run it orders tasks for."""

    #: each task id -> the ids it depends on, for the whole workstream
    dependencies: Mapping[str, Sequence[str]]
    #: ids of the tasks that have reached a final state (succeeded, failed, skipped …);
    #: a live, read-only view during a run
    finished: AbstractSet[str] = frozenset()


@runtime_checkable
class SchedulingStrategy(Protocol):
    """Orders the ready tasks; the run loop starts them in that order while slots are free."""

    name: str

    def order(self, ready: Sequence[Task], context: SchedulingContext) -> list[Task]:
        """Return the ready tasks to start, in order. Leaving a task out holds it back."""
        ...

    # Optional: ``key`` (SchedulerKey).


@runtime_checkable
class SchedulerKey(Protocol):
    """A scheduling strategy's optional ``key``: the way to stay fast with thousands of
    ready tasks."""

    def key(self, task: Task, context: SchedulingContext) -> Any:
        """Return a sortable value for a ready task: smaller starts first, ties go to the
        task earlier in the file. The run loop then asks once per task, when it becomes
        ready, keeps ready tasks in a heap and does not call ``order``."""
        ...


@runtime_checkable
class EventSink(Protocol):
    """Receives every event of a run (console progress, JSONL files, webhooks …)."""

    name: str

    def emit(self, event: Mapping[str, Any]) -> None:
        """Handle one event. Must not block the run for long."""
        ...

    def close(self) -> None:
        """Flush and release whatever the sink holds; called once at the end of a run."""
        ...

    # Optional: ``open`` (SinkOpen) and ``wants_output`` (SinkWantsOutput). A sink that
    # raises, in ``open`` or ``emit``, is disabled for the rest of the run, and the event
    # ``sink.disabled`` names it and its plugin.


@runtime_checkable
class SinkOpen(Protocol):
    """An event sink's optional ``open``."""

    def open(self, context: SinkContext) -> None:
        """Start serving a run, called once when it starts (or resumes), before any
        event: its options from ``[sink.NAME]``, the run id, and ``context.warn(message)``
        to record a ``sink.warning`` event (a webhook that keeps failing)."""
        ...


@runtime_checkable
class SinkWantsOutput(Protocol):
    """An event sink's optional ``wants_output``: True makes the run loop keep each
    running task's last line of output, for ``SinkContext.last_line`` (a live view)."""

    @property
    def wants_output(self) -> bool: ...


class RunWorkspace(Protocol):
    """A workspace serving one run: a directory per attempt, its change, its landing.

    Called from the attempts' worker threads, several at once: an implementation
    serialises what must be (landing changes one after the other).

    Optional, looked up by name: ``checkpoint``, ``close``, ``repairs``,
    ``writable_paths``, ``started`` and ``tool_done`` (the protocols below).
    """

    def prepare(self, request: ExecutionRequest, ctx: ExecutionContext) -> str:
        """Return the directory the attempt runs in, made ready (files copied, setup run
        through ``ctx``); raise ``WorkspaceError`` when it cannot be."""
        ...

    def changes(self, request: ExecutionRequest, directory: str) -> Change:
        """Return what the attempt changed in ``directory``; raise ``WorkspaceViolation``
        when it reached beyond it (the attempt fails with ``scope_violation``)."""
        ...

    def land(self, request: ExecutionRequest, directory: str) -> Landing:
        """Bring the attempt's change into the run's result (a merge); report conflicts;
        raise ``WorkspaceViolation`` when the result was changed by another hand."""
        ...

    def discard(self, request: ExecutionRequest, directory: str) -> None:
        """Remove what ``prepare`` made for the attempt (a failure here is logged and
        changes nothing of the attempt's result)."""
        ...

    def summary(self) -> str | None:
        """One line for the end of the run: where its result is (a branch), or None."""
        ...


@runtime_checkable
class RunWorkspaceCheckpoint(Protocol):
    """A run workspace's optional ``checkpoint``."""

    def checkpoint(self) -> dict[str, Any]:
        """Return what the run database keeps for a resume (JSON), handed back to
        ``open`` as ``WorkspaceRun.checkpoint``; asked after each attempt's end."""
        ...


@runtime_checkable
class RunWorkspaceClose(Protocol):
    """A run workspace's optional ``close``."""

    def close(self) -> list[str]:
        """Remove what is left of the run at its end; each line returned is recorded."""
        ...


@runtime_checkable
class RunWorkspaceRepairs(Protocol):
    """A run workspace's optional ``repairs``: what ``open`` put right when the run
    resumed, one line each."""

    @property
    def repairs(self) -> list[str]: ...


@runtime_checkable
class RunWorkspaceWritablePaths(Protocol):
    """A run workspace's optional ``writable_paths``."""

    def writable_paths(self, request: ExecutionRequest, directory: str) -> list[str]:
        """Return what the attempt's sandbox lets its processes write, asked at each
        process, setup included; without it, the directory the process runs in (see
        docs/sandbox.md)."""
        ...


@runtime_checkable
class RunWorkspaceStarted(Protocol):
    """A run workspace's optional ``started``."""

    def started(self, request: ExecutionRequest) -> str | None:
        """Return what the prepared directory holds, one of ``models.STARTS`` (or None):
        it becomes ``ExecutionRequest.start``, which a retry's prompt states."""
        ...


@runtime_checkable
class RunWorkspaceToolDone(Protocol):
    """A run workspace's optional ``tool_done``."""

    def tool_done(self, request: ExecutionRequest, directory: str) -> None:
        """Hear that the tool is done and the checks are next: what the checks write
        afterwards is not the attempt's change."""
        ...


@runtime_checkable
class RunWorkspaceReviewEdits(Protocol):
    """A run workspace's optional ``review_edits``: a workspace without it cannot hold a
    review (a task whose changes are reviewed fails there, saying so)."""

    def review_edits(self, request: ExecutionRequest, directory: str) -> str | None:
        """After a reviewer read the attempt's change in ``directory``: return what it
        changed there as a diff (None: nothing), and put the change back as it was, so
        that a reviewer's edit never lands."""
        ...


@runtime_checkable
class Workspace(Protocol):
    """Gives attempts directories to work in and brings their changes together."""

    name: str

    def open(self, run: WorkspaceRun) -> RunWorkspace:
        """Return the workspace of one run (called when the run starts or resumes)."""
        ...

    # Optional: ``landed`` (WorkspaceLanded).


@runtime_checkable
class WorkspaceLanded(Protocol):
    """A workspace's optional ``landed``."""

    def landed(self, run: WorkspaceRun) -> dict[str, int]:
        """Return the tasks whose change already reached the run's result, with the
        attempt that brought it (resume asks, so that a landing the crash left
        unrecorded is not made again)."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Decides where an attempt's process runs: here, or on a cluster."""

    name: str

    def open(self, run: ExecutorRun) -> RunExecutor:
        """Return the executor of one run (called when the run starts or resumes)."""
        ...


@classes.frozen
class AttemptLaunch:
    """One attempt the run loop has recorded as started: what ``RunExecutor.submit`` gets.

    ``ExecutorRun.work(launch)`` carries it out on this machine: the workspace prepares
    the attempt's directory, the pre-flight checks, the adapter and the checks run there
    through ``context``, the change is judged against the task's scope and landed, and
    the result goes to the run loop. An executor that runs the tool elsewhere hands
    ``work`` a changed copy, ``attrs.evolve(launch, adapter=..., checks=(), context=...)``,
    whose adapter forwards the attempt (the ``ray`` executor of orchestra-ray does).
    """

    #: the tool that carries out the attempt
    adapter: ToolAdapter
    #: what the adapter is asked: the task, the attempt's number, the tool's profile,
    #: timeouts, feedback, the plugins' settings; ``workdir`` is the project's root until
    #: the workspace has made the attempt's directory
    request: ExecutionRequest
    #: the attempt's context on this machine: ``run``, its log (``log_path``), its
    #: environment (``env``), its cancel and hurry events, its secrets' redaction
    context: LocalContext
    #: the task's checks: the pre-flight ones (``before``) run before the tool, the
    #: others after it
    checks: Sequence[Check]
    #: the run's workspace the attempt runs in
    workspace: RunWorkspace
    #: when the task's changes are reviewed: who reviews this attempt's change, run
    #: after the checks and before the change lands (docs/reviews.md)
    review: ReviewLaunch | None = None


@classes.frozen
class ReviewLaunch:
    """The review of one attempt's change, as the run loop routed it: the reviewer's
    adapter, its request (``task.prompt`` is filled in once the change is known), its
    own context (log, environment and secrets of the reviewing tool), and the round."""

    tool: str
    adapter: ToolAdapter
    request: ExecutionRequest
    context: LocalContext
    review: Review
    #: which round of the task's reviews this is (1 for the first)
    round: int
    #: whether a rejection now is the last one ``max_rounds`` allows
    last_round: bool
    #: called when the review starts (the run loop records ``review.started``)
    announce: Callable[[], None] = attrs.field(default=lambda: None, eq=False, repr=False)


class RunExecutor(Protocol):
    """One run's executor: takes the attempts the run loop starts."""

    def submit(self, launch: AttemptLaunch) -> None:
        """Start the attempt; its result must reach the run loop (``run.work`` posts it),
        whatever happens to it, or the run waits for it for ever."""
        ...

    def close(self) -> None:
        """Wait for the submitted attempts and release what the run used (called once,
        when the run loop ends)."""
        ...


class LoadContext(Protocol):
    """What the host hands a loader with each file: options, and a place for notices."""

    #: options from the command line (``include_done``, ``tag``); ignore ones you do not know
    options: Mapping[str, Any]
    #: True when the file is one of several read as one workstream (a directory, or
    #: several files named together): its ``depends_on`` may name tasks of the other
    #: files, which the host checks once every file is loaded
    in_set: bool

    def notice(self, message: str) -> None:
        """Say something worth knowing that is not an error (fields kept as metadata)."""
        ...


@runtime_checkable
class WorkstreamLoader(Protocol):
    """A workstream file format: recognises its files and loads them into a Workstream.

    The host runs the same semantic checks on what ``load`` returns as on a TOML file
    (ids, dependencies, cycles, paths, ranges), and sets its ``source``.
    """

    name: str
    #: file-name globs this format claims (``"*.toml"``, ``"tasks.json"``); when several
    #: loaders accept a file's head, the one whose pattern matches its name wins
    patterns: tuple[str, ...]

    def sniff(self, path: Path, head: bytes) -> bool:
        """Return whether the file looks like this format, judging by its name and its
        first bytes only (``head``: up to 4 KiB, possibly cut mid-character)."""
        ...

    def load(self, path: Path, context: LoadContext) -> Workstream:
        """Return the workstream in ``path``; raise ``SpecError`` or ``WorkstreamInvalid``
        naming the file, the task and the field for what is wrong."""
        ...


#: the types a plugin's setting may have: its value in the configuration, the environment
#: and on the command line is checked against it
SETTING_TYPES: tuple[type, ...] = (str, int, float, bool)
#: what a plugin's setting may be called: a TOML key, the end of an ORCHESTRA_* variable
#: and, with dashes, an option
SETTING_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_setting_name(setting: Any, attribute: Any, name: str) -> None:
    from orchestra.config import RESERVED_NAMES  # on use: config is not needed to import this

    if not isinstance(name, str) or not SETTING_NAME.fullmatch(name):
        raise ValueError(
            f"setting name {name!r} is not lowercase letters, digits and '_' (a letter first)"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"setting name {name!r} is orchestra's own: put the plugin's name in it")


def _check_setting_type(setting: Any, attribute: Any, kind: Any) -> None:
    if kind not in SETTING_TYPES:
        raise ValueError(f"setting {setting.name!r}: type must be str, int, float or bool")


def _check_setting_default(setting: Any, attribute: Any, default: Any) -> None:
    if default is None:
        return
    wanted = setting.type
    accepted = (int, float) if wanted is float else (wanted,)
    if not isinstance(default, accepted) or (isinstance(default, bool) and wanted is not bool):
        raise ValueError(
            f"setting {setting.name!r}: default {default!r} is not of type {wanted.__name__}"
        )


@classes.frozen
class PluginSetting:
    """A setting a plugin adds (``orchestra_register_settings``): a key of orchestra.toml
    (or ``[tool.orchestra]``), the variable ``ORCHESTRA_<NAME>``, and an option of
    ``run`` and ``resume``, ``--<name>`` with dashes for underscores.

    Its value is resolved as orchestra's own settings are (flag > variable > configuration
    > ``default``); ``validate``, ``plan``, ``run`` and ``resume`` refuse a value of the
    wrong type, in one line naming the file and the key. The run's value reaches
    executors in ``ExecutorRun.options`` and tools in ``ExecutionRequest.settings``; a
    resumed run keeps the value it started with unless ``resume`` is given the option.
    """

    #: the key; put the plugin's name in it (``ray_address``): every plugin shares the table
    name: str = attrs.field(validator=_check_setting_name)
    #: ``str``, ``int``, ``float`` or ``bool`` (an option ``--name/--no-name``)
    type: type = attrs.field(validator=_check_setting_type)
    #: one sentence for ``--help``
    help: str
    #: the value when nothing sets it
    default: Any = attrs.field(default=None, validator=_check_setting_default)
    #: what ``--help`` shows for the option's value (``ADDRESS``)
    metavar: str | None = None
    #: whether ``run`` and ``resume`` take the option (else only the configuration and
    #: the variable set it)
    option: bool = True
    #: whether its value is a secret (a token, a password): never recorded with the run,
    #: so ``resume`` resolves it again. A name that says so (``*_token``, ``*_key``,
    #: ``*_password`` …) makes it one whatever this says.
    secret: bool = False
