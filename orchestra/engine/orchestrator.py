"""The run loop: ready set -> route -> execute -> checks -> record -> next.

One thread, the orchestrator's, owns the store: it decides what starts, records every
transition (state and event in one transaction) and tells the sinks. Attempts run on a
pool of ``max_parallel`` worker threads, each driving its process through a
``LocalContext``; a worker never touches the store, it only returns a ``StepResult``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs

from orchestra import graph
from orchestra.config import Project, Settings
from orchestra.engine.process import LocalContext, Redactor, build_environment, secret_values
from orchestra.engine.router import RoutingDecision, route
from orchestra.engine.states import RunState, StepState
from orchestra.models import (
    Availability,
    Backoff,
    ExecutionRequest,
    RetryPolicy,
    StepResult,
    Task,
    Workstream,
)
from orchestra.plugins import PluginHost
from orchestra.protocols import SchedulingContext

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
#: how often the loop looks at the cancel flag while attempts run
POLL_SECONDS = 0.2


@attrs.frozen
class RunOutcome:
    """How a run ended: its final state and the count of steps in each state."""

    run_id: str
    state: str
    counts: Mapping[str, int]
    failed: Sequence[str]


@attrs.define
class _Running:
    task: Task
    attempt: int
    tool: str
    started: float


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
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.workstream = workstream
        self.settings = settings
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
        self.scheduler = host.schedulers().get(settings.scheduler)
        self.state: dict[str, StepState] = {}
        self.attempts: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        #: ready and retrying steps, in the order they became so (a dict as ordered set)
        self.startable: dict[str, None] = {}
        self.finished: set[str] = set()
        self.unfinished = len(self.tasks)
        self.decisions: dict[str, RoutingDecision] = {}
        self._availability: dict[str, Availability] = {}
        self._stopping: str | None = None  # "canceled" or "fail_fast" once the run winds down

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        """Carry the run from its recorded state to the end and return how it ended."""
        for step in self.store.steps(self.run_id):
            self.state[step.task_id] = StepState(step.state)
            self.attempts[step.task_id] = step.attempts
        self.finished = {task_id for task_id, state in self.state.items() if state in FINISHED}
        self.unfinished = len(self.state) - len(self.finished)
        self.startable = {
            task_id: None
            for task_id, state in self.state.items()
            if state in (StepState.READY, StepState.RETRYING)
        }
        self._set_run(RunState.RUNNING)
        for task_id, state in list(self.state.items()):
            if state is StepState.PENDING:
                self._settle(task_id)
        running: dict[Future, _Running] = {}
        with ThreadPoolExecutor(max_workers=self.settings.max_parallel) as pool:
            while True:
                if self.cancel.is_set() and self._stopping is None:
                    self._stop("canceled")
                if self._stopping is None:
                    self._start(pool, running)
                if not running and not self._waiting():
                    break
                done, _ = wait(
                    list(running), timeout=self._poll_timeout(), return_when=FIRST_COMPLETED
                )
                for future in done:
                    self._finish(running.pop(future), future)
        return self._end()

    def _waiting(self) -> bool:
        """True while some step can still start (now or after a retry delay)."""
        if self._stopping is not None:
            return False
        return self.unfinished > 0

    def _poll_timeout(self) -> float:
        if not self.retry_at:
            return POLL_SECONDS
        return max(0.0, min(POLL_SECONDS, min(self.retry_at.values()) - time.time()))

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
        if lost and self._stopping is not None:
            self._set_step(task_id, StepState.CANCELED, reason=self._stop_reason())
        elif lost:
            self._set_step(
                task_id,
                StepState.SKIPPED,
                reason=f"dependency {lost[0]} {self.state[lost[0]].value}",
            )
        elif all(self.state[d] is StepState.SUCCEEDED for d in needs):
            self._set_step(task_id, StepState.READY)

    def _start(self, pool: ThreadPoolExecutor, running: dict[Future, _Running]) -> None:
        if not self.startable or len(running) >= self.settings.max_parallel:
            return
        now = time.time()
        retry_at = self.retry_at
        startable = [
            self.tasks[task_id]
            for task_id in self.startable
            if not retry_at or retry_at.get(task_id, 0.0) <= now
        ]
        if not startable:
            return
        context = SchedulingContext(self.dependencies, self.finished)  # a view, not a copy
        ordered = self.scheduler.order(startable, context)
        in_use: dict[str, int] = {}
        for current in running.values():
            in_use[current.tool] = in_use.get(current.tool, 0) + 1
        for task in ordered:
            if len(running) >= self.settings.max_parallel:
                return
            decision = self._route(task)
            if decision.tool is None:
                self._set_step(task.id, StepState.FAILED, reason=decision.reason)
                self._after_failure()
                continue
            limit = self.project.profile(decision.tool).max_concurrency
            if limit is not None and in_use.get(decision.tool, 0) >= limit:
                continue
            in_use[decision.tool] = in_use.get(decision.tool, 0) + 1
            future = self._launch(pool, task, decision)
            running[future] = _Running(task, self.attempts[task.id], decision.tool, time.time())

    def _route(self, task: Task) -> RoutingDecision:
        if task.id not in self.decisions:
            tools = self.host.tools()

            def availability(name: str) -> Availability:
                if name not in self._availability:
                    profile = self.project.profile(name)
                    self._availability[name] = tools.get(name).available(profile)
                return self._availability[name]

            self.decisions[task.id] = route(
                task,
                defaults=self.workstream.defaults,
                strategy_name=task.routing or self.settings.routing,
                tools=tools,
                routers=self.host.routers(),
                profile=self.project.profile,
                availability=availability,
            )
        return self.decisions[task.id]

    def _launch(self, pool: ThreadPoolExecutor, task: Task, decision: RoutingDecision) -> Future:
        """Record the attempt's start and hand it to a worker thread."""
        tool = decision.tool
        profile = self.project.profile(tool)
        env = build_environment(
            self.environ,
            {**profile.env, **self.workstream.defaults.env, **task.env},
            profile.pass_env,
        )
        secrets = secret_values(env, profile.secrets)
        redactor = Redactor(secrets)
        command = _describe_command(task)
        self.retry_at.pop(task.id, None)
        number = self.attempts.get(task.id, 0) + 1
        # one flat directory per run: a directory per task costs a mkdir per task
        log_path = self.log_root / f"{task.id}.{number}.log"
        with self.store.batch():  # the step's move to running and its attempt, one commit
            self._set_step(
                task.id,
                StepState.RUNNING,
                payload={"tool": tool, "attempt": number, "why": decision.reason},
            )
            number = self.store.start_attempt(
                self.run_id,
                task.id,
                tool,
                redactor.redact(command) if command else None,
                str(log_path),
            )
        self.attempts[task.id] = number
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
        )
        context = LocalContext(
            cwd=str(self.project.root),
            env=env,
            log_path=str(log_path),
            timeout=timeout,
            idle_timeout=idle,
            cancel=self.cancel,
            secrets=secrets,
            hurry=self.hurry,
        )
        checks = task.checks if task.checks is not None else self.workstream.defaults.checks
        adapter = self.host.tools().get(tool)
        return pool.submit(execute_attempt, adapter, request, context, checks or ())

    def _finish(self, current: _Running, future: Future) -> None:
        """Record how an attempt ended and what happens to its step (and, through it, to
        the dependents that became ready or skipped), all in one commit."""
        result: StepResult = future.result()
        if self.cancel.is_set() and self._stopping is None:
            self._stop("canceled")  # before this step's dependents are settled as skipped
        with self.store.batch():
            self._record_end(current, result)

    def _record_end(self, current: _Running, result: StepResult) -> None:
        task = current.task
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
        )
        if result.outcome == "succeeded":
            self._set_step(task.id, StepState.SUCCEEDED, payload={"tool": current.tool})
            return
        if result.outcome == "canceled" or self._stopping is not None:
            self._set_step(task.id, StepState.CANCELED, reason=result.message or "canceled")
            return
        policy = self._retry_policy(task)
        retryable = result.error_class not in policy.non_retryable
        if retryable and current.attempt < policy.max_attempts:
            delay = backoff_delay(policy.backoff, current.attempt, result.retry_after)
            self.retry_at[task.id] = time.time() + delay
            reason = f"{result.error_class or result.outcome}: {result.message or ''}".strip(": ")
            self._set_step(
                task.id,
                StepState.RETRYING,
                reason=reason,
                payload={"attempt": current.attempt, "delay": round(delay, 3)},
            )
            return
        reason = result.message or result.error_class or result.outcome
        self._set_step(task.id, StepState.FAILED, reason=reason)
        self._after_failure()

    def _retry_policy(self, task: Task) -> RetryPolicy:
        defaults = self.workstream.defaults
        attempts = (
            task.max_attempts if task.max_attempts is not None else self.settings.max_attempts
        )
        backoff = task.backoff or defaults.backoff or Backoff()
        return RetryPolicy(max_attempts=attempts, backoff=backoff)

    def _after_failure(self) -> None:
        if self.fail_fast and self._stopping is None:
            self._stop("fail_fast")

    def _stop(self, why: str) -> None:
        """Wind the run down: nothing new starts, waiting steps are canceled, and (on
        cancel) the running attempts' processes are stopped through the cancel flag."""
        self._stopping = why
        if why == "fail_fast":
            self.cancel.set()
        with self.store.batch():
            for task_id in list(self.state):
                # read the state now: canceling one step settles its dependents meanwhile
                if self.state[task_id] in (StepState.PENDING, StepState.READY, StepState.RETRYING):
                    self._set_step(task_id, StepState.CANCELED, reason=self._stop_reason())
        self.retry_at.clear()

    def _stop_reason(self) -> str:
        if self._stopping == "canceled":
            return "run canceled"
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
        self._set_run(final, payload={"summary": summary})
        return RunOutcome(self.run_id, final.value, counts, failed)

    # -- recording -----------------------------------------------------------------------

    def _set_run(self, state: RunState, payload: Mapping[str, Any] | None = None) -> None:
        self.store.set_run_state(self.run_id, state, payload=dict(payload or {}))
        self._emit(f"run.{state.value}", None, payload)

    def _set_step(
        self,
        task_id: str,
        state: StepState,
        *,
        reason: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        details = {**(payload or {}), **({"reason": reason} if reason else {})}
        self.store.set_step_state(self.run_id, task_id, state, reason=reason, payload=details)
        self.state[task_id] = state
        self._emit(f"step.{state.value}", task_id, details)
        if state in (StepState.READY, StepState.RETRYING):
            self.startable[task_id] = None
        else:
            self.startable.pop(task_id, None)
        if state in FINISHED:
            self.unfinished -= 1
            self.finished.add(task_id)
            for dependent in self.dependents[task_id]:
                self._settle(dependent)

    def _emit(self, kind: str, task_id: str | None, payload: Mapping[str, Any] | None) -> None:
        event = {"run": self.run_id, "type": kind, "task": task_id, "at": time.time()}
        event["payload"] = dict(payload or {})
        for sink in list(self.sinks):
            try:
                sink.emit(event)
            except Exception as error:  # a sink's bug must not stop the run
                self.sinks.remove(sink)
                self.store.add_event(
                    self.run_id,
                    "sink.disabled",
                    {
                        "sink": getattr(sink, "name", "?"),
                        "error": f"{type(error).__name__}: {error}",
                    },
                )


def execute_attempt(
    adapter: Any, request: ExecutionRequest, context: LocalContext, checks: Sequence[Any]
) -> StepResult:
    """Run the tool, then the checks, and return how the attempt went (worker thread)."""
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
    for check in checks:
        argv = ["/bin/sh", "-c", check.command] if check.shell else list(check.command)
        finished = context.run(argv)
        if finished.stopped == "canceled":
            return StepResult("canceled", message="canceled during checks")
        if finished.exit_code != 0:
            if finished.error:
                why = f"could not start: {finished.error}"
            elif finished.stopped:
                why = f"timed out ({finished.stopped})"
            else:
                why = f"exited {finished.exit_code}"
            return StepResult(
                "failed",
                error_class="check_failed",
                message=f"check {check.label!r} {why}",
                exit_code=finished.exit_code,
                usage=result.usage,
            )
    return result


def backoff_delay(backoff: Backoff, attempt: int, retry_after: float | None = None) -> float:
    """Return the wait before attempt ``attempt + 1``: ``initial * factor**(attempt - 1)``,
    capped at ``max``, with jitter between half and all of it; a tool's ``retry_after``
    is respected as a minimum."""
    delay = min(backoff.initial * backoff.factor ** (attempt - 1), backoff.max)
    if backoff.jitter:
        delay *= random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


def _describe_command(task: Task) -> str | None:
    if task.command is None:
        return None
    return task.command if isinstance(task.command, str) else " ".join(task.command)


def content_hash(path: str | os.PathLike) -> str:
    """Return the SHA-256 of a workstream file's bytes, stored with the run."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
