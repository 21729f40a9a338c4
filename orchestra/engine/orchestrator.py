"""The run loop: ready set -> route -> execute -> checks -> record -> next.

One thread, the orchestrator's, owns the store: it decides what starts, records every
transition (state and event in one transaction) and tells the sinks. Attempts run where
the run's executor puts them: the ``local`` one runs them on a pool of ``max_parallel``
worker threads, each driving its process through a ``LocalContext``; a worker never
touches the store: it puts its result (and the tool's progress events) in the
orchestrator's inbox.

Each time the orchestrator wakes, it records everything that arrived, what follows from it
(retries, dependents that became ready or were skipped) and the attempts it starts next in
one transaction, and only then hands those attempts to the workers: a run of short tasks
costs about one commit per task.
"""

from __future__ import annotations

import functools
import gc
import heapq
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from orchestra import classes, graph
from orchestra.config import Project, Settings
from orchestra.engine import sandbox, scope
from orchestra.engine.choice import ToolChoice, stored_memory, waits_for_breaker
from orchestra.engine.faults import one_line, says_disk_full
from orchestra.engine.process import LocalContext, Redactor, build_environment, secret_values
from orchestra.engine.queue_ahead import LINGER_SECONDS, QueueAhead
from orchestra.engine.ready import KEEP, STOP, TAKE, ReadyQueue
from orchestra.engine.resilience import (
    FEEDBACK_LINES,
    Breakers,
    BudgetMeter,
    backoff_delay,
    change_digest,
    check_feedback,
    conflict_feedback,
    continues_after,
    fingerprint,
    oscillates,
    refusal_feedback,
    repeats,
    retry_policy,
)
from orchestra.engine.router import RoutingDecision, capability_key
from orchestra.engine.secrets import masked_command
from orchestra.engine.states import RunState, StepState
from orchestra.errors import DiskFull, OrchestraError, WorkspaceError, WorkspaceViolation
from orchestra.models import (
    Availability,
    Budget,
    Check,
    ExecutionRequest,
    ExecutorRun,
    RetryPolicy,
    SinkContext,
    StepResult,
    Task,
    ToolProfile,
    Usage,
    WorkspaceRun,
    Workstream,
)
from orchestra.plugins import PluginHost
from orchestra.protocols import AttemptLaunch, SchedulingContext, ToolAdapter

#: step states after which a step never changes again in this run
FINISHED = frozenset(
    {
        StepState.SUCCEEDED,
        StepState.FAILED,
        StepState.SKIPPED,
        StepState.CANCELED,
        StepState.QUARANTINED,
    }
)
#: failures the loop breaker counts: the tool did its work and it came out wrong the same
#: way. Transient failures (rate limits, timeouts, provider errors) repeat by nature.
LOOP_CLASSES = frozenset(
    {"check_failed", "invalid_output", "scope_violation", "context_overflow", "merge_conflict"}
)
#: events written only to the database, never handed to the sinks (an attempt's end is
#: told by its step's next state)
DATABASE_ONLY = frozenset({"run.created", "run.claimed", "attempt.started", "attempt.finished"})
#: pytest's exit status when it collected no test
PYTEST_NO_TESTS = 5
#: how often the loop looks at the cancel flag while attempts run
POLL_SECONDS = 0.2
#: the GIL's switch interval while a run goes on (see Orchestrator.run)
SWITCH_INTERVAL = 0.0005


@classes.frozen
class RunOutcome:
    """How a run ended: its final state and the count of steps in each state."""

    run_id: str
    state: str
    counts: Mapping[str, int]
    failed: Sequence[str]
    #: why the run stopped short (its budget ran out), if it did
    error: str | None = None
    #: where the run's result is (its workspaces' summaries: the run branch …)
    notes: Sequence[str] = ()
    #: seconds this process drove the run
    seconds: float = 0.0
    tokens: int = 0
    cost: float = 0.0
    #: why each failed (or quarantined) task ended so
    reasons: Mapping[str, str] = attrs.field(factory=dict)
    #: what each workspace last asked to keep (the worktree's: the run branch's tip)
    checkpoints: Mapping[str, Any] = attrs.field(factory=dict)


@classes.define
class _Running:
    task: Task
    attempt: int
    tool: str
    started: float
    ended: float | None = None


class Orchestrator:
    """Drives one run of a workstream to its end, recording everything in the store."""

    def __init__(
        self,
        *,
        store: Any,
        run_id: str,
        workstream: Workstream,
        settings: Settings,
        project: Project,
        host: PluginHost,
        sinks: Sequence[Any],
        log_root: Path,
        cancel: threading.Event,
        fail_fast: bool = False,
        hurry: threading.Event | None = None,
        environ: Mapping[str, str] | None = None,
        resumed: bool = False,
        recorded_since: int | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.workstream = workstream
        self.settings = settings
        #: the values of the settings plugins add, in every attempt's request
        self.plugin_settings = {
            registration.name: settings.values[registration.name].value
            for registration in host.settings()
            if registration.name in settings.values
        }
        self.project = project
        self.host = host
        self.sinks = list(sinks)
        self.log_root = log_root
        self.cancel = cancel
        self.hurry = hurry
        self.fail_fast = fail_fast
        self.environ = dict(os.environ if environ is None else environ)
        self.tasks = {task.id: task for task in workstream.tasks}
        self.dependencies = graph.of_tasks(workstream.tasks)
        self.dependents = graph.dependents_of(self.dependencies)
        self.state: dict[str, StepState] = {}
        self.attempts: dict[str, int] = {}
        #: retrying steps: (when, task id), soonest first; ``retry_at`` has the current ones
        self.retry_heap: list[tuple[float, str]] = []
        self.retry_at: dict[str, float] = {}
        self.finished: set[str] = set()
        self.ready = ReadyQueue(
            host.schedulers().get(settings.scheduler),
            SchedulingContext(self.dependencies, self.finished),  # a view, not a copy
            {task.id: position for position, task in enumerate(workstream.tasks)},
        )
        self.unfinished = len(self.tasks)
        self.running: dict[str, _Running] = {}
        self.in_use: dict[str, int] = {}  # running attempts per tool
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._base_env: dict[str, tuple[dict[str, str], list[str]]] = {}
        self._profiles: dict[str, ToolProfile] = {}
        self._queue_ok: dict[str, bool] = {}
        self.queue_ahead = QueueAhead(self.settings.max_parallel)
        self._state_dirs: dict[str, str] = {}
        self._scratch_root = str(log_root / "scratch")
        self._log_prefix = f"{log_root}{os.sep}"
        #: "canceled", "fail_fast" or "budget" once the run winds down
        self._stopping: str | None = None
        #: a fault found in an attempt's end (a full disk) that stops the run
        self._fault: DiskFull | None = None
        #: whether the database says this run is running (so it may go to interrupted)
        self._recorded_running = False
        self._budget_reason: str | None = None
        self.breakers = Breakers(store, self._profile, self._record_event)
        self.meter = BudgetMeter(
            Budget(settings.budget_cost, settings.budget_tokens), store.usage_by_task(run_id)
        )
        #: which tool each attempt gets (the same code ``orchestra plan`` asks)
        self.choice = ToolChoice(
            tools=host.tools(),
            routers=host.routers(),
            defaults=workstream.defaults,
            routing=settings.routing,
            profile=self._profile,
            memory=stored_memory(store, write=True),
            track_record=store.track_record,
            breakers=self.breakers,
            in_use=self.in_use,
        )
        #: per task: what the next attempt is told to fix, the tool of the last attempt,
        #: and the fingerprints of its attempts' failures (None where none counts)
        self.feedback: dict[str, str | None] = {}
        #: per task: the error class of its last attempt (a retry after a failed check
        #: goes on from that attempt's change)
        self.last_error: dict[str, str | None] = {}
        self.last_tool: dict[str, str] = {}
        self.failures: dict[str, list[str | None]] = {}
        #: per task: a digest of each attempt's change (None when it changed nothing)
        self.changes: dict[str, list[str | None]] = {}
        #: the run's workspaces by name, opened when a task first needs one, and what
        #: each last asked to keep for a resume (``checkpoint``)
        self.spaces: dict[str, Any] = {}
        self._checkpoints: dict[str, Any] = {}
        self._default: str | None = None  # the default workspace, once known
        #: the last line each running task printed, for sinks that show it (live views)
        self.last_lines: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self._began = time.time()
        self._track_output = any(getattr(sink, "wants_output", False) for sink in self.sinks)
        #: the seq after which resume recorded what it did before this loop (leftovers
        #: stopped, attempts closed, steps tried again): the sinks get it once open
        self._recorded_since = recorded_since
        self._workspace_run = WorkspaceRun(
            run_id=run_id,
            project_root=str(project.root),
            state_dir=str(Path(store.path).parent),
            copy=tuple(project.config.workspace.copy),
            setup=tuple(project.config.workspace.setup),
            resumed=resumed,
            include_uncommitted=bool(settings.include_uncommitted),
            ignore=tuple(project.config.workspace.ignore),
        )
        #: whether attempts run in a sandbox here (refused at once when one is required
        #: and this machine cannot give it), and the directories the setting adds to it
        self.sandboxing = sandbox.require(settings)
        self._sandbox_extra = [
            str(project.root / os.path.expanduser(path)) for path in settings.sandbox_writable
        ]

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        """Carry the run from its recorded state to the end and return how it ended.

        A fault that stops the run (a full disk, a database that cannot be written, or a
        bug) stops the running attempts at once, records the run ``interrupted`` if the
        database still takes it (else the next command finds it running with its lock
        free, and marks it so), and is raised again: ``orchestra resume`` goes on."""
        try:
            return self._run_to_the_end()
        except DiskFull as fault:
            fault.run_id = fault.run_id or self.run_id  # say how to go on: resume
            raise

    def _run_to_the_end(self) -> RunOutcome:
        gc.freeze()  # the workstream and the plugins live to the end: never scan them
        self._began = time.time()
        for step in self.store.steps(self.run_id):
            self.state[step.task_id] = StepState(step.state)
            self.attempts[step.task_id] = step.attempts
        for attempt in self.store.attempts(self.run_id):  # a resumed run's history
            self.feedback[attempt.task_id] = attempt.feedback
            self.last_error[attempt.task_id] = attempt.error_class
            self.last_tool[attempt.task_id] = attempt.tool
            self.failures.setdefault(attempt.task_id, []).append(attempt.fingerprint)
            self.changes.setdefault(attempt.task_id, []).append(change_digest(attempt.diff))
        self._open_sinks()
        if self._recorded_since is not None:
            self._emit_recorded(self._recorded_since)
        self.finished.update(t for t, state in self.state.items() if state in FINISHED)
        self.unfinished = len(self.state) - len(self.finished)
        with self.store.batch():
            self._set_run(RunState.RUNNING)
            for task_id, state in list(self.state.items()):
                if state is StepState.READY:
                    self.ready.add(self.tasks[task_id])
                elif state is StepState.RETRYING:
                    self._retry_later(task_id, 0.0)
                elif state is StepState.PENDING:
                    self._settle(task_id)
        self._recorded_running = True
        executor = self._open_executor()
        # The loop's bursts of Python would keep the workers waiting for the GIL after each
        # system call, up to the switch interval (5 ms by default): ask for it sooner.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
        try:
            self._loop(executor)
        except BaseException as error:
            if isinstance(error, DiskFull):
                error.run_id = error.run_id or self.run_id
            self._halt()
            try:
                executor.close()  # quick now: the attempts' processes are being killed
            finally:
                self._leave_interrupted(error)
            raise
        else:
            executor.close()
        finally:
            sys.setswitchinterval(interval)
        return self._end()

    def _loop(self, executor: Any) -> None:
        """Wake, record, start attempts, until nothing runs and nothing can start."""
        messages: list[tuple] = []
        while True:
            with self.store.batch():  # what arrived and what starts next: one commit
                if self.cancel.is_set() and self._stopping is None:
                    self._stop("canceled")  # before finished steps' dependents settle
                for message in messages:
                    self._handle(message)
                starting = self._stopping is None and self._fault is None
                launches = self._start_attempts() if starting else []
            if self._fault is not None:  # recorded with the rest of this wake: now stop
                raise self._fault
            for launch in launches:
                executor.submit(launch)
            if not self.running and not self._waiting():
                return
            messages = self._receive()

    def _halt(self) -> None:
        """Stop every running attempt now: the cancel flag, and hurry, so that their
        process groups get SIGKILL without a grace period (a full disk has nothing
        worth waiting for). Nothing is recorded canceled: the run is interrupted."""
        self.cancel.set()
        if self.hurry is not None:
            self.hurry.set()

    def _leave_interrupted(self, error: BaseException) -> None:
        """Record the run ``interrupted`` by ``error``, with what its stopped attempts
        came to, if the database still takes it; resume tries them again.

        Only after a fault found in an attempt (the database then holds what this loop
        holds) are the ends that arrived meanwhile recorded: successes as such, the
        others as interrupted. After a failed commit, memory is ahead of the database,
        so only the run's state is written."""
        if not self._recorded_running:
            return  # still pending (or interrupted): the next command or resume sees it
        why = one_line(str(error) or type(error).__name__)
        # the run's error says it all; its attempts need only say why they stopped
        cut_short = "the disk is full" if isinstance(error, DiskFull) else why
        try:
            with self.store.batch():
                if error is self._fault:
                    for message in self._drain_inbox():
                        if message[0] == "finished" and message[2].outcome != "succeeded":
                            self._let_go(message[1])
                            self._interrupt_attempt(message[1], f"the run stopped: {cut_short}")
                        else:
                            self._handle(message)
                self._set_run(RunState.INTERRUPTED, payload={"reason": why}, error=why)
        except Exception:
            # The run stays running in the database with its lock free once this
            # process lets go: the next command marks it interrupted. The error being
            # raised says what happened; this one would only hide it.
            pass

    def _drain_inbox(self) -> list[tuple]:
        """Take every message the workers left, now that they have all finished."""
        messages = []
        while True:
            try:
                messages.append(self.inbox.get_nowait())
            except queue.Empty:
                return messages

    def _interrupt_attempt(self, current: _Running, why: str) -> None:
        """Record an attempt that a fault cut short as ``interrupted``; its step stays
        running, and ``resume`` tries it again (as after a crash)."""
        self.store.finish_attempt(
            self.run_id,
            current.task.id,
            current.attempt,
            outcome="interrupted",
            error_class="crashed",
            message=why,
            started_at=current.started,
            ended_at=current.ended,
        )

    def _disk_fault(self, current: _Running, result: StepResult) -> DiskFull | None:
        """Return the fault if the attempt failed because the disk is full (its log,
        its worktree, a git command in it): the run stops rather than retrying on a
        full disk. A task's own command failing on a full disk is the task's failure."""
        if result.error_class not in ("crashed", "setup_failed") or not result.message:
            return None
        if not says_disk_full(result.message, (self.log_root, self.project.root)):
            return None
        log = f"{self._log_prefix}{current.task.id}.{current.attempt}.log"
        return DiskFull(
            f"the disk is full: task {current.task.id!r} attempt {current.attempt}"
            f" (log {log}) could not write: {one_line(result.message)}",
            run_id=self.run_id,
        )

    def _open_executor(self) -> Any:
        """The run's executor (the ``executor`` setting): where its attempts run."""
        return (
            self.host.executors()
            .get(self.settings.executor)
            .open(
                ExecutorRun(
                    run_id=self.run_id,
                    parallel=self.settings.max_parallel,
                    work=self._work,
                    event=lambda task_id, attempt, kind, payload: self.inbox.put(
                        ("event", task_id, attempt, kind, dict(payload))
                    ),
                    history=lambda: self.store.events(self.run_id),
                    options={
                        name: self.settings.values[name].value for name in self.settings.values
                    },
                    project_root=self._workspace_run.project_root,
                    state_dir=self._workspace_run.state_dir,
                    resumed=self._workspace_run.resumed,
                )
            )
        )

    def _waiting(self) -> bool:
        """True while some step can still start (now or after a retry delay)."""
        if self._stopping is not None:
            return False
        return self.unfinished > 0

    def _receive(self) -> list[tuple]:
        """Wait for the workers' news (at most until the cancel flag or a retry is due
        must be looked at) and return all that has arrived."""
        timeout = POLL_SECONDS
        if self.retry_heap:
            timeout = max(0.0, min(timeout, self.retry_heap[0][0] - time.time()))
        wake_at = self.choice.wake_at  # a tool kept out by its breaker may be let in then
        if wake_at is not None:
            timeout = max(0.0, min(timeout, wake_at - time.time()))
        try:
            messages = [self.inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        if self.queue_ahead.worth_lingering(len(self.running)):
            time.sleep(LINGER_SECONDS)  # the workers have queued work: gather more news
        while True:
            try:
                messages.append(self.inbox.get_nowait())
            except queue.Empty:
                return messages

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "finished":
            _, current, result = message
            self._let_go(current)
            if self._queue_ok.get(current.task.id) and current.ended is not None:
                self.queue_ahead.observe(current.ended - current.started)
            fault = self._disk_fault(current, result)
            if fault is None:
                self._record_end(current, result)
                name = self._space_name(current.task)
                if name in self.spaces:
                    self._keep_checkpoint(name)
            else:  # the run stops once this wake is recorded (see _loop)
                self._fault = self._fault or fault
                self._interrupt_attempt(current, str(fault))
        elif kind == "event":
            _, task_id, attempt, event_type, payload = message
            self.store.add_event(self.run_id, event_type, payload, task_id, attempt)
            self._emit(event_type, task_id, payload)

    def _let_go(self, current: _Running) -> None:
        """Forget a running attempt that has ended: its slot and its tool's are free."""
        self.running.pop(current.task.id, None)
        self.in_use[current.tool] -= 1

    def _settle(self, task_id: str) -> None:
        """Make a pending step ready when its dependencies succeeded, or skip it when one
        of them cannot succeed any more. Called when a dependency finishes, so the loop
        never scans the whole graph."""
        if self.state[task_id] is not StepState.PENDING:
            return
        needs = self.dependencies[task_id]
        lost = [
            d
            for d in needs
            if self.state[d] in FINISHED and self.state[d] is not StepState.SUCCEEDED
        ]
        if self._stopping == "budget":
            self._set_step(task_id, StepState.SKIPPED, reason=self._stop_reason())
        elif lost and self._stopping is not None:
            self._set_step(task_id, StepState.CANCELED, reason=self._stop_reason())
        elif lost:
            self._set_step(
                task_id,
                StepState.SKIPPED,
                reason=f"dependency {lost[0]} {self.state[lost[0]].value}",
            )
        elif all(self.state[d] is StepState.SUCCEEDED for d in needs):
            self._set_step(task_id, StepState.READY)

    def _retry_later(self, task_id: str, when: float) -> None:
        self.retry_at[task_id] = when
        heapq.heappush(self.retry_heap, (when, task_id))

    def _release_due_retries(self) -> None:
        now = time.time()
        heap = self.retry_heap
        while heap and heap[0][0] <= now:
            when, task_id = heapq.heappop(heap)
            if self.retry_at.get(task_id) == when and self.state[task_id] is StepState.RETRYING:
                del self.retry_at[task_id]
                self.ready.add(self.tasks[task_id])

    def _start_attempts(self) -> list[AttemptLaunch]:
        """Record the start of as many attempts as there are free slots, in the
        scheduler's order, and return them for the workers."""
        if self.retry_heap:
            self._release_due_retries()
        if self.choice.wake_at is not None and self.choice.wake_at <= time.time():
            self.choice.wake_at = None
        launches: list[AttemptLaunch] = []
        exhausted = self.meter.run_exhausted()
        if exhausted is not None:
            self._stop("budget", exhausted)
            return launches
        # the pool runs max_parallel at once; quick ones wait in its queue (queue_ahead.py)
        capacity = self.queue_ahead.capacity()
        if not self.ready or len(self.running) >= capacity:
            return launches

        def decide(task: Task) -> str:
            if self._stopping is not None or len(self.running) >= capacity:
                return STOP
            if len(self.running) >= self.settings.max_parallel and not self._queueable(task):
                return STOP  # it waits for a free worker (and, in order, so do the rest)
            decision = self._route(task)
            if decision.tool is None:
                if waits_for_breaker(decision):
                    return KEEP  # a breaker keeps its tool out for now: wait for it
                self._set_step(task.id, StepState.FAILED, reason=decision.reason)
                self._after_failure()
                return TAKE
            limit = self._profile(decision.tool).max_concurrency
            if limit is not None and self.in_use.get(decision.tool, 0) >= limit:
                return KEEP
            launches.append(self._launch(task, decision))
            return TAKE

        self.ready.offer(decide)
        return launches

    def _route(self, task: Task) -> RoutingDecision:
        """Return the tool for the task's next attempt: the same as before, unless its
        breaker keeps it out now or the task asks to retry with another tool."""
        avoid: tuple[str, ...] = ()
        if self.attempts.get(task.id) and task.id in self.last_tool:
            if self._policy(task).retry_with_other_tool:
                avoid = (self.last_tool[task.id],)
        return self.choice.decide(task, avoid)

    def _remember(self, current: _Running, result: StepResult) -> None:
        """Add a finished attempt to the track record routing reads."""
        if result.outcome == "canceled":
            return
        seconds = (current.ended or time.time()) - current.started
        self.choice.remember(current.task, current.tool, result.outcome == "succeeded", seconds)

    def _policy(self, task: Task) -> RetryPolicy:
        return retry_policy(task, self.workstream.defaults, self.settings.max_attempts)

    def _available(self, tool: str) -> Availability:
        return self.choice.available(tool)

    def _queueable(self, task: Task) -> bool:
        """Whether the task may wait in the pool's queue: only when none of its candidate
        tools has a breaker. Routing and a breaker must see an attempt when it starts,
        not one attempt early (a queued attempt starts even if its breaker opened)."""
        if task.id not in self._queue_ok:
            candidates = self.choice.candidates(task)
            self._queue_ok[task.id] = bool(candidates) and not any(
                getattr(adapter, "circuit_breaker", True) for adapter in candidates
            )
        return self._queue_ok[task.id]

    def _guarded(self, tool: str) -> bool:
        """Whether the tool has a circuit breaker (the shell tool has none)."""
        return getattr(self.host.tools().get(tool), "circuit_breaker", True)

    def _profile(self, tool: str) -> ToolProfile:
        if tool not in self._profiles:
            self._profiles[tool] = self.project.profile(tool)
        return self._profiles[tool]

    def _state_dir(self, tool: str) -> str:
        if tool not in self._state_dirs:
            self._state_dirs[tool] = str(Path(self.store.path).parent / "tools" / tool)
        return self._state_dirs[tool]

    def _environment(self, tool: str, task: Task, number: int) -> tuple[dict[str, str], list[str]]:
        """Return the attempt's environment and the values in it to redact."""
        if tool not in self._base_env:
            profile = self._profile(tool)
            base = build_environment(
                self.environ, {**profile.env, **self.workstream.defaults.env}, profile.pass_env
            )
            self._base_env[tool] = (base, secret_values(base, profile.secrets))
        base, secrets = self._base_env[tool]
        env = {**base, **task.env} if task.env else dict(base)
        if task.env:
            secrets = secret_values(env, self._profile(tool).secrets)
        env["ORCHESTRA_RUN_ID"] = self.run_id
        env["ORCHESTRA_TASK_ID"] = task.id
        env["ORCHESTRA_ATTEMPT"] = str(number)
        return env, secrets

    def _launch(self, task: Task, decision: RoutingDecision) -> AttemptLaunch:
        """Record the attempt's start (committed with the rest of this wake's changes)
        and return what its worker needs."""
        tool = decision.tool
        profile = self._profile(tool)
        number = self.attempts.get(task.id, 0) + 1
        env, secrets = self._environment(tool, task, number)
        command = masked_command(task.command)  # a secret written in it shows as ***
        if command and secrets:
            command = Redactor(secrets).redact(command)
        # one flat directory per run: a directory per task costs a mkdir per task
        log_path = f"{self._log_prefix}{task.id}.{number}.log"
        before = self.state[task.id]
        number = self.store.begin_attempt(
            self.run_id,
            task.id,
            before,
            tool,
            command=command,
            log_path=log_path,
            tool_version=self._available(tool).version,
            route_reason=decision.reason,
            capabilities=capability_key(task, self.workstream.defaults),
            payload={"tool": tool, "attempt": number, "why": decision.reason},
            number=number,
        )
        self.breakers.on_start(tool)
        self.attempts[task.id] = number
        self.state[task.id] = StepState.RUNNING
        if self.sinks:
            payload = {"from": before.value, "to": "running", "tool": tool, "attempt": number}
            self._emit("step.running", task.id, {**payload, "why": decision.reason})
        timeout = task.timeout if task.timeout is not None else self.settings.timeout
        idle = task.idle_timeout if task.idle_timeout is not None else self.settings.idle_timeout
        request = ExecutionRequest(
            run_id=self.run_id,
            task=task,
            attempt=number,
            workdir=str(self.project.root),
            profile=profile,
            timeout=timeout,
            idle_timeout=idle,
            feedback=self.feedback.get(task.id),
            continues=number > 1 and continues_after(self.last_error.get(task.id)),
            settings=self.plugin_settings,
        )
        inbox = self.inbox

        def emit(kind: str, payload: Mapping[str, Any]) -> None:
            inbox.put(("event", task.id, number, f"tool.{kind}", payload))

        on_line = None
        if self._track_output:
            lines = self.last_lines

            def on_line(line: str, task_id: str = task.id) -> None:
                if line.strip():
                    lines[task_id] = line

        space = self._space(task)
        context = LocalContext(
            cwd=str(self.project.root),
            env=env,
            log_path=log_path,
            on_line=on_line,
            timeout=timeout,
            idle_timeout=idle,
            cancel=self.cancel,
            secrets=secrets,
            hurry=self.hurry,
            emit=emit,
            scratch_root=self._scratch_root,
            state_dir=self._state_dir(tool),
            sandbox=self._sandbox(space, request),
        )
        checks = task.checks if task.checks is not None else self.workstream.defaults.checks
        running = _Running(task, number, tool, time.time())
        self.running[task.id] = running
        self.in_use[tool] = self.in_use.get(tool, 0) + 1
        adapter = self.host.tools().get(tool)
        return AttemptLaunch(adapter, request, context, checks or (), space)

    def _sandbox(self, space: Any, request: ExecutionRequest) -> sandbox.Sandbox | None:
        """The attempt's sandbox, when the run's attempts are confined: it may write what
        its workspace names (``writable_paths``; the directory alone for a workspace that
        does not say), never orchestra's own directory."""
        if not self.sandboxing.confined:
            return None
        named = getattr(space, "writable_paths", None)
        if named is None:
            writable = _directory_alone
        else:
            writable = functools.partial(named, request)
        return sandbox.Sandbox(
            self.sandboxing.program,
            writable=writable,
            protected=[self._workspace_run.state_dir],
            extra=self._sandbox_extra,
            label=self.run_id,
            env=self.sandboxing.env,
            visible=[self._workspace_run.project_root],
        )

    def _work(self, launch: AttemptLaunch) -> None:
        """Carry out one attempt (worker thread) and post its result to the inbox."""
        current = self.running[launch.request.task.id]  # stays until its result is handled
        current.started = time.time()  # when a worker took it, not when queued
        try:
            result = run_attempt(launch, self.workstream.defaults)
        except BaseException as error:  # never lose a result: the loop waits for it
            message = launch.context.redact(f"{type(error).__name__}: {error}")
            result = StepResult("failed", error_class="crashed", message=message)
        finally:
            launch.context.cleanup()
        current.ended = time.time()  # not when the orchestrator gets to record it
        self.inbox.put(("finished", current, result))

    def _space(self, task: Task) -> Any:
        """The run's workspace for ``task`` (its own, the setting, or worktree in a git
        repository with a commit and inplace elsewhere), opened on first use."""
        name = self._space_name(task)
        if name not in self.spaces:
            workspace = self.host.workspaces().get(name)
            recorded = self.store.get_value(checkpoint_key(name, self.run_id))
            run = attrs.evolve(self._workspace_run, checkpoint=recorded)
            space = self.spaces[name] = workspace.open(run)
            self._checkpoints[name] = recorded
            self._keep_checkpoint(name)
            repairs = list(getattr(space, "repairs", ()) or ())
            if repairs:  # what a dead orchestrator left, put right on resuming
                self._record_event("workspace.repaired", {"workspace": name, "done": repairs})
        return self.spaces[name]

    def _keep_checkpoint(self, name: str) -> None:
        """Record what the workspace wants kept for a resume (a run branch's tip), in the
        transaction of this wake, whenever it changed."""
        saver = getattr(self.spaces[name], "checkpoint", None)
        if saver is None:
            return
        value = saver()
        if value != self._checkpoints.get(name):
            self.store.set_value(checkpoint_key(name, self.run_id), value)
            self._checkpoints[name] = value

    def _open_every_space(self) -> None:
        """Open each workspace the run's tasks use, if nothing opened it yet: a resume that
        had nothing left to run still puts right, and then removes, what the dead
        orchestrator left in them (a half-removed worktree of an attempt that landed)."""
        seen: set[str] = set()
        for task in self.workstream.tasks:
            name = self._space_name(task)
            if name in seen:
                continue
            seen.add(name)
            try:
                self._space(task)
            except Exception as error:  # the run's outcome stands; say what was left
                note = f"could not open to clean up: {type(error).__name__}: {error}"
                self._record_event("workspace.cleaned", {"workspace": name, "done": [note]})

    def _close_spaces(self) -> None:
        """Let each workspace remove what is left of the run (``close``), and record what
        it did; a workspace that fails to is recorded, and the run's outcome stands."""
        for name, space in self.spaces.items():
            closer = getattr(space, "close", None)
            if closer is None:
                continue
            try:
                notes = list(closer() or ())
            except Exception as error:
                notes = [f"could not clean up: {type(error).__name__}: {error}"]
            if notes:
                self._record_event("workspace.cleaned", {"workspace": name, "done": notes})

    def _space_name(self, task: Task) -> str:
        return task.workspace or self.settings.workspace or self._default_workspace()

    def _default_workspace(self) -> str:
        if self._default is None:  # asks git, so only when a task needs it
            self._default = default_workspace(self.project.root)
        return self._default

    def summaries(self) -> list[str]:
        """What each workspace says about where the run's result is."""
        notes = []
        for space in self.spaces.values():
            note = space.summary()
            if note:
                notes.append(note)
        return notes

    def _record_end(self, current: _Running, result: StepResult) -> None:
        """Record how an attempt ended and what happens to its step (and, through it, to
        the dependents that became ready or skipped)."""
        task = current.task
        digest = fingerprint(result) if result.error_class in LOOP_CLASSES else None
        self.store.finish_attempt(
            self.run_id,
            task.id,
            current.attempt,
            outcome=result.outcome,
            exit_code=result.exit_code,
            error_class=result.error_class,
            message=result.message,
            retry_after=result.retry_after,
            usage=result.usage,
            diff=result.diff,
            started_at=current.started,
            ended_at=current.ended,
            feedback=result.feedback,
            fingerprint=digest,
        )
        self.breakers.on_end(current.tool, result, self._guarded(current.tool))
        self.meter.add(task.id, result)
        self._remember(current, result)
        self.feedback[task.id] = result.feedback
        self.last_error[task.id] = result.error_class
        self.last_tool[task.id] = current.tool
        failures = self.failures.setdefault(task.id, [])
        failures.append(digest)
        self.changes.setdefault(task.id, []).append(change_digest(result.diff))
        self._decide_after(current, result, failures)
        exhausted = self.meter.run_exhausted()
        if exhausted is not None and self._stopping is None:
            self._stop("budget", exhausted)

    def _decide_after(
        self, current: _Running, result: StepResult, failures: list[str | None]
    ) -> None:
        """Move the step on after an attempt: succeeded, canceled, quarantined (the same
        failure again), retrying after a backoff, or failed for good."""
        task = current.task
        if result.outcome == "succeeded":
            self._set_step(task.id, StepState.SUCCEEDED, payload={"tool": current.tool})
            return
        if result.outcome == "canceled" or self._stopping in ("canceled", "fail_fast"):
            self._set_step(task.id, StepState.CANCELED, reason=result.message or "canceled")
            return
        reason = result.message or result.error_class or result.outcome
        policy = self._policy(task)
        if policy.same_failure_limit > 1 and repeats(failures, policy.same_failure_limit):
            times = policy.same_failure_limit
            self._set_step(
                task.id,
                StepState.QUARANTINED,
                reason=f"the same failure {times} times in a row: {reason}",
            )
            self._after_failure()
            return
        if oscillates(self.changes.get(task.id, [])):
            self._set_step(
                task.id,
                StepState.QUARANTINED,
                reason=(
                    f"oscillating: attempt {current.attempt} made the same change as attempt"
                    f" {current.attempt - 2}: {reason}"
                ),
            )
            self._after_failure()
            return
        over = self.meter.task_exhausted(task)
        if (
            result.error_class not in policy.non_retryable
            and over is None
            and self._stopping is None
            and current.attempt < policy.max_attempts
        ):
            delay = backoff_delay(policy.backoff, current.attempt, result.retry_after)
            why = f"{result.error_class or result.outcome}: {result.message or ''}".strip(": ")
            self._set_step(
                task.id,
                StepState.RETRYING,
                reason=why,
                payload={"attempt": current.attempt, "delay": round(delay, 3)},
            )
            self._retry_later(task.id, time.time() + delay)
            return
        self._set_step(task.id, StepState.FAILED, reason=over or reason)
        self._after_failure()

    def _after_failure(self) -> None:
        if self.fail_fast and self._stopping is None:
            self._stop("fail_fast")

    def _stop(self, why: str, reason: str | None = None) -> None:
        """Wind the run down: nothing new starts and waiting steps end (canceled, or
        skipped when the budget ran out). On cancel and fail-fast the running attempts'
        processes are stopped through the cancel flag; on budget they may finish."""
        self._stopping = why
        self._budget_reason = reason if why == "budget" else None
        if why == "fail_fast":
            self.cancel.set()
        final = StepState.SKIPPED if why == "budget" else StepState.CANCELED
        with self.store.batch():
            for task_id in list(self.state):
                # read the state now: ending one step settles its dependents meanwhile
                if self.state[task_id] in (StepState.PENDING, StepState.READY, StepState.RETRYING):
                    self._set_step(task_id, final, reason=self._stop_reason())
        self.retry_at.clear()
        self.retry_heap.clear()
        self.choice.wake_at = None

    def _stop_reason(self) -> str:
        if self._stopping == "canceled":
            return "run canceled"
        if self._stopping == "budget":
            return self._budget_reason or "budget_exhausted"
        return "another task failed (--fail-fast)"

    def _end(self) -> RunOutcome:
        counts: dict[str, int] = {}
        for state in self.state.values():
            counts[state.value] = counts.get(state.value, 0) + 1
        failed = [t for t, s in self.state.items() if s is StepState.FAILED]
        if self._stopping == "canceled":
            final = RunState.CANCELED
        elif failed or any(s is not StepState.SUCCEEDED for s in self.state.values()):
            final = RunState.FAILED
        else:
            final = RunState.SUCCEEDED
        summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
        payload = {"summary": summary, "tokens": self.meter.tokens, "cost": self.meter.cost}
        if self._workspace_run.resumed:
            self._open_every_space()
        self._close_spaces()
        self._set_run(final, payload=payload, error=self._budget_reason)
        return RunOutcome(
            self.run_id,
            final.value,
            counts,
            failed,
            self._budget_reason,
            self.summaries(),
            seconds=time.time() - self._began,
            tokens=int(self.meter.tokens),
            cost=self.meter.cost,
            reasons={
                task: self.reasons.get(task, "")
                for task, state in self.state.items()
                if state in (StepState.FAILED, StepState.QUARANTINED)
            },
            checkpoints=dict(self._checkpoints),
        )

    # -- recording -----------------------------------------------------------------------

    def _set_run(
        self, state: RunState, payload: Mapping[str, Any] | None = None, error: str | None = None
    ) -> None:
        self.store.set_run_state(self.run_id, state, payload=dict(payload or {}), error=error)
        self._emit(f"run.{state.value}", None, payload)

    def _record_event(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Record an event of the run that is no step's change of state (a breaker's)."""
        self.store.add_event(self.run_id, kind, dict(payload))
        self._emit(kind, None, payload)

    def _set_step(
        self,
        task_id: str,
        state: StepState,
        *,
        reason: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        details = {**(payload or {}), **({"reason": reason} if reason else {})}
        before = self.state[task_id]
        self.store.set_step_state(
            self.run_id, task_id, state, reason=reason, payload=details, current=before
        )
        self.state[task_id] = state
        if reason and state in (StepState.FAILED, StepState.QUARANTINED):
            self.reasons[task_id] = reason
        if self.sinks:
            self._emit(f"step.{state.value}", task_id, {"from": before.value, **details})
        if state is StepState.READY:
            self.ready.add(self.tasks[task_id])
        elif before is StepState.READY:
            self.ready.discard(task_id)
        if state in FINISHED:
            self.unfinished -= 1
            self.finished.add(task_id)
            self.retry_at.pop(task_id, None)
            for dependent in self.dependents[task_id]:
                self._settle(dependent)

    def _emit(
        self,
        kind: str,
        task_id: str | None,
        payload: Mapping[str, Any] | None,
        at: float | None = None,
    ) -> None:
        if not self.sinks:
            return
        event = {"run": self.run_id, "type": kind, "task": task_id}
        event["at"] = time.time() if at is None else at
        event["payload"] = dict(payload or {})
        for sink in list(self.sinks):
            try:
                sink.emit(event)
            except Exception as error:  # a sink's bug must not stop the run
                self._disable_sink(sink, error)

    def _open_sinks(self) -> None:
        """Give each sink that wants it its options and a way to warn, before any event."""
        for sink in list(self.sinks):
            opener = getattr(sink, "open", None)
            if opener is None:
                continue
            name = getattr(sink, "name", "?")
            context = SinkContext(
                run_id=self.run_id,
                options=dict(self.project.config.sink.get(name, {})),
                project_root=str(self.project.root),
                state_dir=str(Path(self.store.path).parent),
                warn=lambda message, name=name: self.inbox.put(
                    ("event", None, None, "sink.warning", {"sink": name, "message": message})
                ),
                steps={task_id: state.value for task_id, state in self.state.items()},
                parallel=self.settings.max_parallel,
                last_line=self.last_lines.get,
            )
            try:
                opener(context)
            except Exception as error:
                self._disable_sink(sink, error)

    def _emit_recorded(self, after_seq: int) -> None:
        """Hand the sinks the events recorded after ``after_seq`` before this loop began
        (what resume did), in their order and with their time; those the sinks never
        get (``DATABASE_ONLY``) stay in the database."""
        if not self.sinks:
            return
        for event in self.store.events(self.run_id, after_seq=after_seq):
            if event.type not in DATABASE_ONLY:
                self._emit(event.type, event.task_id, event.payload, at=event.at)

    def record_late_events(self) -> None:
        """Record the events that reached the inbox after the loop ended: the warnings of
        sinks that were still delivering when they were closed."""
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return
            if message[0] == "event":
                _, task_id, attempt, event_type, payload = message
                self.store.add_event(self.run_id, event_type, payload, task_id, attempt)

    def _disable_sink(self, sink: Any, error: BaseException) -> None:
        """Drop a sink that raised for the rest of the run, saying which plugin it is."""
        if sink in self.sinks:
            self.sinks.remove(sink)
        name = getattr(sink, "name", "?")
        sinks = self.host.sinks()
        plugin = sinks.registration(name).plugin if name in sinks else None
        payload = {"sink": name, "plugin": plugin, "error": f"{type(error).__name__}: {error}"}
        self.store.add_event(self.run_id, "sink.disabled", payload)
        self._emit("sink.disabled", None, payload)  # the other sinks (the console) say so


def checkpoint_key(workspace: str, run_id: str) -> str:
    """Where the run database keeps what workspace ``workspace`` of run ``run_id`` asked
    to be kept (``RunWorkspace.checkpoint``)."""
    return f"workspace.{workspace}.{run_id}"


def default_workspace(project_root: Path) -> str:
    """``worktree`` where the project is in a git repository that has a commit, else
    ``inplace``."""
    from orchestra.workspace import has_git_marker

    # repository_root makes this check too; made here first, outside git the run needs
    # not even import git.py
    if not has_git_marker(Path(project_root).absolute()):
        return "inplace"
    from orchestra.workspace import git

    repo = git.repository_root(Path(project_root))
    if repo is None:
        return "inplace"
    try:
        git.head_commit(repo)
    except OrchestraError:
        return "inplace"
    return "worktree"


def _directory_alone(directory: str) -> list[str]:
    return [directory]


def run_attempt(launch: AttemptLaunch, defaults: Any) -> StepResult:
    """One attempt in its workspace (worker thread): prepare the directory, run the tool and
    the checks there, judge the change against the task's scope, land it, clean up."""
    space, context = launch.workspace, launch.context
    request = launch.request
    try:
        directory = space.prepare(request, context)
    except WorkspaceError as error:
        _discard(space, request, context.cwd, context)
        return StepResult("failed", error_class="setup_failed", message=str(error))
    try:
        context.cwd = directory
        started = getattr(space, "started", None)  # what the directory holds, if it says
        start = started(request) if started is not None else None
        if request.workdir != directory or request.start != start:
            request = attrs.evolve(request, workdir=directory, start=start)
        tool_done = getattr(space, "tool_done", None)
        result = execute_attempt(
            launch.adapter,
            request,
            context,
            launch.checks,
            after_tool=None
            if tool_done is None
            else functools.partial(tool_done, request, directory),
        )
        if result.outcome == "canceled":
            return result
        try:
            change = space.changes(request, directory)
        except WorkspaceViolation as violation:
            return _violated(result, str(violation))
        if result.diff != change.diff:
            result = attrs.evolve(result, diff=change.diff)
        if result.outcome != "succeeded":
            return result
        problems = scope.violations(request.task, defaults, change)
        if problems:
            return attrs.evolve(
                result,
                outcome="failed",
                error_class="scope_violation",
                message="; ".join(problems),
                feedback=refusal_feedback("; ".join(problems)),
            )
        try:
            landing = space.land(request, directory)
        except WorkspaceViolation as violation:
            return _violated(result, str(violation))
        if not landing.merged:
            files = ", ".join(landing.conflicts) or "unknown files"
            return attrs.evolve(
                result,
                outcome="failed",
                error_class="merge_conflict",
                message=f"merge conflict in {files}",
                feedback=conflict_feedback(files),
            )
        return result
    finally:
        _discard(space, request, directory, context)


def _violated(result: StepResult, message: str) -> StepResult:
    """The attempt's result once it turned out to have reached beyond its workspace."""
    return attrs.evolve(
        result,
        outcome="failed",
        error_class="scope_violation",
        message=message,
        feedback=refusal_feedback(message),
    )


def _discard(space: Any, request: ExecutionRequest, directory: str, context: Any) -> None:
    """Let the workspace remove the attempt's directory. A clean-up that fails (a git lock
    held too long) changes nothing of the attempt's result, whose change may have landed
    already: it is said in the attempt's log, and the workspace's ``close`` at the run's
    end removes what is left."""
    try:
        space.discard(request, directory)
    except Exception as error:
        note = f"orchestra: could not clean up the attempt's workspace: {error}\n"
        try:
            with open(context.log_path, "ab") as log:
                log.write(context.redact(note).encode(errors="replace"))
        except OSError:
            pass


def execute_attempt(
    adapter: ToolAdapter,
    request: ExecutionRequest,
    context: LocalContext,
    checks: Sequence[Check],
    after_tool: Callable[[], None] | None = None,
) -> StepResult:
    """Run the pre-flight checks, the tool, then the checks in ``request.workdir`` through
    ``context``, and return how the attempt went (on the calling thread).

    What ``ExecutorRun.work`` does between the workspace's ``prepare`` and ``changes``; an
    executor that runs attempts on other machines calls it there (``orchestra.execute_attempt``).
    A pre-flight check that fails ends the attempt ``preflight_failed``, an adapter that
    raises ``crashed``, a failing check ``check_failed``. ``after_tool`` is called between
    the tool and the checks (the workspace notes what the tool left: what the checks
    write is not the attempt's change)."""
    preflight = [check for check in checks if check.before]
    if preflight:
        checks = [check for check in checks if not check.before]
        refused = _run_checks(preflight, context, "preflight_failed", None)
        if refused is not None:
            return refused
    try:
        result = adapter.execute(request, context)
    except NotImplementedError as error:  # an adapter that cannot run tasks (yet): no retry
        message = f"tool {adapter.name!r} cannot carry out tasks: {error}"
        return StepResult("failed", error_class="tool_missing", message=context.redact(message))
    except Exception as error:  # an adapter's bug fails the attempt, not the run
        message = context.redact(f"{type(error).__name__}: {error}")
        return StepResult("failed", error_class="crashed", message=message)
    if result.outcome != "succeeded":
        return result
    if checks and after_tool is not None:
        after_tool()
    failed = _run_checks(checks, context, "check_failed", result)
    return result if failed is None else failed


def _run_checks(
    checks: Sequence[Any], context: LocalContext, error_class: str, result: StepResult | None
) -> StepResult | None:
    """Run ``checks`` in order; return the attempt's failure at the first that fails
    (``error_class``, the tool's ``result`` usage kept), or None when all pass."""
    kind = "pre-flight check" if error_class == "preflight_failed" else "check"
    for check in checks:
        argv = ["/bin/sh", "-c", check.command] if check.shell else list(check.command)
        output: deque[str] = deque(maxlen=FEEDBACK_LINES)
        finished = context.run(argv, timeout=check.timeout, on_line=output.append)
        if finished.stopped == "canceled":
            return StepResult("canceled", message=f"canceled during {kind}s")
        if finished.exit_code != 0:
            why = _check_failure(check, finished)
            return StepResult(
                "failed",
                error_class=error_class,
                message=f"{kind} {check.label!r} {why}",
                exit_code=finished.exit_code,
                usage=result.usage if result is not None else Usage(),
                feedback=check_feedback(check.label, why, list(output)),
            )
        # always in the log, even when silent: a check is a process of its own (far
        # dearer than the line), and an attempt without checks keeps its lazy log
        context.note(f"{kind} {check.label!r} passed (exit status 0)")
    return None


def _check_failure(check: Any, finished: Any) -> str:
    """Say how a check failed: could not start, timed out, collected no tests, exited N."""
    if finished.error:
        return f"could not start: {finished.error}"
    if finished.stopped:
        return f"timed out ({finished.stopped})"
    if finished.exit_code == PYTEST_NO_TESTS and "pytest" in check.label:
        return f"collected no tests (exit {PYTEST_NO_TESTS}): a check that runs nothing fails"
    if finished.exit_code is None:
        return f"was killed by signal {finished.signal}"
    return f"exited {finished.exit_code}"


def content_hash(path: str | os.PathLike) -> str:
    """Return the SHA-256 of a workstream file's bytes, stored with the run."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
