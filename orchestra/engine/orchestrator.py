"""The run loop: ready set -> route -> execute -> checks -> record -> next.

One thread, the orchestrator's, owns the store: it decides what starts, records every
transition (state and event in one transaction) and tells the sinks. Attempts run where
the run's executor puts them: the ``local`` one runs them on a pool of ``max_parallel``
worker threads, each carrying out its attempt (``attempts.py``); a worker never touches
the store: it puts its result (and the tool's progress events) in the orchestrator's
inbox (``messages.py``).

Each time the orchestrator wakes, it records everything that arrived, what follows from it
(retries, dependents that became ready or were skipped) and the attempts it starts next in
one transaction, and only then hands those attempts to the workers: a run of short tasks
costs about one commit per task.

The loop holds the run together; each of its parts has a module of its own: the steps'
states and readiness (``steps.py``), which tool an attempt gets (``choice.py``), the
attempts the pool holds (``running.py``), what an attempt starts with (``launches.py``),
what its end makes of its step (``verdict.py``, from ``history.py``), the run's
workspaces (``run_workspaces.py``), its sinks (``fanout.py``), and the way out when a
fault stops it (``interruption.py``).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from orchestra.engine.attempts import carry_out
from orchestra.engine.choice import ToolChoice, stored_memory, waits_for_breaker
from orchestra.engine.failover import next_move
from orchestra.engine.fanout import SinkFanout, sink_context
from orchestra.engine.history import TaskHistory, loop_fingerprint
from orchestra.engine.interruption import Interruption
from orchestra.engine.launches import LaunchBuilder
from orchestra.engine.messages import AttemptEnded, EventPosted, Inbox
from orchestra.engine.outcome import RunOutcome, outcome_of
from orchestra.engine.ready import KEEP, STOP, TAKE
from orchestra.engine.resilience import Breakers, BudgetMeter, retry_policy
from orchestra.engine.review_gate import ReviewGate
from orchestra.engine.run_workspaces import RunWorkspaces
from orchestra.engine.running import RunningAttempts
from orchestra.engine.steps import Steps
from orchestra.engine.verdict import judge
from orchestra.errors import DiskFull
from orchestra.models import Budget, ExecutorRun, RetryPolicy, SinkContext
from orchestra.secrets import redactor_for, secret_values
from orchestra.store.lifecycle import RunState, StepState

if TYPE_CHECKING:
    from orchestra.config import Project, Settings
    from orchestra.engine.messages import Message, Running
    from orchestra.engine.router import RoutingDecision
    from orchestra.models import StepResult, Task, ToolProfile, Workstream
    from orchestra.plugin.host import PluginHost
    from orchestra.plugin.protocols import AttemptLaunch, RunExecutor

#: how often the loop looks at the cancel flag while attempts run
POLL_SECONDS = 0.2
#: what ``judge`` is given for a success, which it does not read
SUCCEEDED_POLICY = RetryPolicy()
#: the GIL's switch interval while a run goes on (see Orchestrator.run)
SWITCH_INTERVAL = 0.0005


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
        self.project = project
        self.host = host
        self.log_root = log_root
        self.cancel = cancel
        self.hurry = hurry
        self.fail_fast = fail_fast
        self._began = time.time()
        #: the seq after which resume recorded what it did before this loop (leftovers
        #: stopped, attempts closed, steps tried again): the sinks get it once open
        self._recorded_since = recorded_since
        self._state_dir = str(Path(store.path).parent)
        self._profiles: dict[str, ToolProfile] = {}
        self._policies: dict[str, RetryPolicy] = {}
        self._breaker_used: dict[str, bool] = {}
        #: the last line each running task printed, for sinks that show it (live views)
        self.last_lines: dict[str, str] = {}
        self.inbox = Inbox()
        environment = dict(os.environ if environ is None else environ)
        #: masks the secrets of orchestra's environment in what sinks say (their warnings
        #: quote their commands' errors, which may quote what was passed to them)
        self._redact = redactor_for(frozenset(secret_values(environment))).redact
        self.fanout = SinkFanout(sinks, store=store, run_id=run_id, host=host, redact=self._redact)
        self.steps = Steps(
            store=store,
            run_id=run_id,
            workstream=workstream,
            scheduler=host.schedulers().get(settings.scheduler),
            fanout=self.fanout,
        )
        self.history = TaskHistory()
        self.running = RunningAttempts(
            settings.max_parallel, lambda task: self.choice.candidates(task)
        )
        self.breakers = Breakers(store, self._profile, self._record_event)
        self.meter = BudgetMeter(
            Budget(settings.budget_cost, settings.budget_tokens), store.usage_by_task(run_id)
        )
        #: which tool each attempt gets (the same code ``orchestra plan`` asks)
        self.choice = self._tool_choice()
        self.workspaces = RunWorkspaces(
            host=host,
            store=store,
            run_id=run_id,
            project=project,
            settings=settings,
            state_dir=self._state_dir,
            resumed=resumed,
            record_event=self._record_event,
        )
        self.launches = self._launch_builder(environment)
        self.reviews = ReviewGate(
            run_id=run_id,
            defaults=workstream.defaults,
            choice=self.choice,
            launches=self.launches,
            profile=self._profile,
            store=store,
            fanout=self.fanout,
            breakers=self.breakers,
            meter=self.meter,
            post=self.inbox.put,
            uses_breaker=self._uses_breaker,
        )
        self.interruption = self._interruption()

    def _tool_choice(self) -> ToolChoice:
        return ToolChoice(
            tools=self.host.tools(),
            routers=self.host.routers(),
            defaults=self.workstream.defaults,
            routing=self.settings.routing,
            profile=self._profile,
            memory=stored_memory(self.store, write=True),
            track_record=self.store.track_record,
            breakers=self.breakers,
            in_use=self.running.in_use,
        )

    def _launch_builder(self, environ: dict[str, str]) -> LaunchBuilder:
        """What builds the attempts' launches; it refuses at once a sandbox the settings
        require and this machine cannot give."""
        return LaunchBuilder(
            run_id=self.run_id,
            host=self.host,
            defaults=self.workstream.defaults,
            settings=self.settings,
            project=self.project,
            state_dir=self._state_dir,
            log_root=self.log_root,
            environ=environ,
            profile=self._profile,
            post=self.inbox.put,
            cancel=self.cancel,
            hurry=self.hurry,
            last_lines=self.last_lines if self.fanout.wants_output else None,
        )

    def _interruption(self) -> Interruption:
        return Interruption(
            store=self.store,
            run_id=self.run_id,
            roots=(self.log_root, self.project.root),
            log_path=self.launches.log_path,
            inbox=self.inbox,
            running=self.running,
            handle=self._handle,
            set_run=self._set_run,
            cancel=self.cancel,
            hurry=self.hurry,
        )

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
        self._began = time.time()
        self.steps.load(self.store.step_states(self.run_id))
        self.history.load(self.store.attempts(self.run_id))  # a resumed run's history
        self.reviews.load(self.store.reviews(self.run_id))
        self.fanout.open(self._sink_context())
        if self._recorded_since is not None:
            self.fanout.emit_recorded(self._recorded_since)
        with self.store.batch():
            self._set_run(RunState.RUNNING)
            self.steps.go_on()
        self.interruption.recorded_running = True
        executor = self._open_executor()
        # The loop's bursts of Python would keep the workers waiting for the GIL after each
        # system call, up to the switch interval (5 ms by default): ask for it sooner.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
        try:
            self._loop(executor)
        except BaseException as error:
            self.interruption.stop(executor, error)
            raise
        else:
            executor.close()
        finally:
            sys.setswitchinterval(interval)
        return self._end()

    def _loop(self, executor: RunExecutor) -> None:
        """Wake, record, start attempts, until nothing runs and nothing can start."""
        messages: list[Message] = []
        while True:
            with self.store.batch():  # what arrived and what starts next: one commit
                if self.cancel.is_set() and self.steps.stopping is None:
                    self._stop("canceled")  # before finished steps' dependents settle
                for message in messages:
                    self._handle(message)
                fault = self.interruption.fault  # a full disk found in this wake's news
                starting = self.steps.stopping is None and fault is None
                launches = self._start_attempts() if starting else []
            if fault is not None:  # recorded with the rest of this wake: now stop
                raise fault
            for launch in launches:
                executor.submit(launch)
            if not self.running and not self._waiting():
                return
            messages = self._receive()

    def _waiting(self) -> bool:
        """True while some step can still start (now or after a retry delay)."""
        return self.steps.stopping is None and self.steps.unfinished > 0

    def _receive(self) -> list[Message]:
        """Wait for the workers' news (at most until the cancel flag or a retry is due
        must be looked at) and return all that has arrived."""
        timeout = POLL_SECONDS
        for due in (self.steps.next_retry(), self.choice.wake_at):
            if due is not None:  # a retry, or a tool kept out by its breaker let in
                timeout = max(0.0, min(timeout, due - time.time()))
        # the workers have queued work: gather the news that follows with the first
        return self.inbox.wait(timeout, linger=self.running.linger)

    def _handle(self, message: Message) -> None:
        """Record what a worker (or a sink) told the loop."""
        if isinstance(message, AttemptEnded):
            self._attempt_ended(message.running, message.result)
        else:
            self.store.add_event(
                self.run_id, message.type, message.payload, message.task_id, message.attempt
            )
            self.fanout.emit(message.type, message.task_id, message.payload)

    def _attempt_ended(self, running: Running, result: StepResult) -> None:
        self.running.end(running)
        if not self.interruption.found_in(running, result):  # else the run stops
            self._record_end(running, result)
            self.workspaces.after_attempt(running.task)

    def record_late_events(self) -> None:
        """Record the events that reached the inbox after the loop ended: the warnings of
        sinks that were still delivering when they were closed."""
        for message in self.inbox.drain():
            if isinstance(message, EventPosted):
                self.store.add_event(
                    self.run_id, message.type, message.payload, message.task_id, message.attempt
                )

    def close_sinks(self) -> None:
        """Close every sink of the run (after ``run``, whatever it did)."""
        self.fanout.close()

    # -- starting attempts ---------------------------------------------------------------

    def _open_executor(self) -> RunExecutor:
        """The run's executor (the ``executor`` setting): where its attempts run."""
        run = ExecutorRun(
            run_id=self.run_id,
            parallel=self.settings.max_parallel,
            work=self._work,
            event=lambda task_id, attempt, kind, payload: self.inbox.put(
                EventPosted(kind, dict(payload), task_id, attempt)
            ),
            history=lambda: self.store.events(self.run_id),
            options={name: self.settings.values[name].value for name in self.settings.values},
            project_root=self.workspaces.run.project_root,
            state_dir=self._state_dir,
            resumed=self.workspaces.run.resumed,
        )
        executor: RunExecutor = self.host.executors().get(self.settings.executor).open(run)
        return executor

    def _start_attempts(self) -> list[AttemptLaunch]:
        """Record the start of as many attempts as there are free slots, in the
        scheduler's order, and return them for the workers."""
        if self.steps.retry_heap:
            self.steps.release_due_retries()
        if self.choice.wake_at is not None and self.choice.wake_at <= time.time():
            self.choice.wake_at = None
        launches: list[AttemptLaunch] = []
        exhausted = self.meter.run_exhausted()
        if exhausted is not None:
            self._stop("budget", exhausted)
            return launches
        # the pool runs max_parallel at once; quick ones wait in its queue (running.py)
        if not self.steps.ready or self.running.full():
            return launches

        def decide(task: Task) -> str:
            if self.steps.stopping is not None or not self.running.admits(task):
                return STOP  # it waits for a free worker (and, in order, so do the rest)
            decision = self._route(task)
            if decision.tool is None:
                if waits_for_breaker(decision):
                    return KEEP  # a breaker keeps its tool out for now: wait for it
                self.steps.set(task.id, StepState.FAILED, reason=decision.reason)
                self._after_failure()
                return TAKE
            limit = self._profile(decision.tool).max_concurrency
            if limit is not None and self.running.in_use.get(decision.tool, 0) >= limit:
                return KEEP
            review = self.reviews.review_of(task)
            reviewer = None
            if review is not None:
                reviewer = self.reviews.route(task, review, decision.tool)
                refused = self.reviews.refusal(
                    self.workspaces.name_for(task), self.workspaces.for_task(task)
                )
                if reviewer.tool is None and waits_for_breaker(reviewer) and not refused:
                    return KEEP  # every reviewer's breaker is open: wait, as for a tool
                if reviewer.tool is None or refused:
                    why = refused or reviewer.reason  # "no tool may review it (…)"
                    self.steps.set(task.id, StepState.FAILED, reason=why)
                    self._after_failure()
                    return TAKE
            launches.append(self._launch(task, decision, reviewer))
            return TAKE

        self.steps.ready.offer(decide)
        return launches

    def _route(self, task: Task) -> RoutingDecision:
        """Return the tool for the task's next attempt: the same as before, unless its
        breaker keeps it out now or the policy table sends the retry to another tool
        (``failover.next_move``, from the task's attempts: after a resume too)."""
        ends = self.history.ends.get(task.id)
        if not self.steps.attempts.get(task.id) or not ends:
            return self.choice.decide(task)
        return self.choice.decide_retry(task, self._policy(task), ends)

    def _launch(
        self, task: Task, decision: RoutingDecision, reviewer: RoutingDecision | None = None
    ) -> AttemptLaunch:
        """Record the attempt's start (committed with the rest of this wake's changes)
        and return what its worker needs, with its change's reviewer if it has one."""
        tool, why = decision.tool, decision.reason
        assert tool is not None  # a decision with no tool starts nothing
        number = self.steps.attempts.get(task.id, 0) + 1
        routed: dict[str, Any] = {"tool": tool, "attempt": number, "why": why}
        if reviewer is not None:
            routed["reviewer"] = reviewer.tool
        if decision.passed_over:  # said only when there is something to say: events stay small
            routed["passed_over"] = [entry.as_dict() for entry in decision.passed_over]
        env, secrets = self.launches.environment(tool, task, number)
        log_path = self.launches.log_path(task.id, number)
        before = self.steps.state[task.id]
        number = self.store.begin_attempt(
            self.run_id,
            task.id,
            before,
            tool,
            command=self.launches.shown_command(task, secrets),
            log_path=log_path,
            tool_version=self.choice.available(tool).version,
            route_reason=why,
            capabilities=self.choice.capabilities(task),
            payload=routed,
            number=number,
        )
        self.breakers.on_start(tool)
        self.steps.started(task.id, number)
        if self.fanout:
            payload = {"from": before.value, "to": "running", **routed, "attempt": number}
            self.fanout.emit("step.running", task.id, payload)
        request = self.launches.request(
            # the workspace reads a task's review (one of [defaults] too) from its task
            task
            if reviewer is None or task.review is not None
            else attrs.evolve(task, review=self.reviews.review_of(task)),
            number,
            self._profile(tool),
            feedback=self.history.feedback.get(task.id),
            continues=number > 1 and self.history.continues(task.id),
        )
        space = self.workspaces.for_task(task)
        launch = self.launches.launch(
            tool, request, space, env=env, secrets=secrets, log_path=log_path
        )
        if reviewer is not None:
            review = self.reviews.review_of(task)
            assert review is not None  # routed because the task has one
            gate = self.reviews.launch(task, number, review, reviewer, space)
            launch = attrs.evolve(launch, review=gate)
        self.running.add(task, number, tool, time.time())
        return launch

    def _work(self, launch: AttemptLaunch) -> None:
        """Carry out one attempt (worker thread) and post its result to the inbox."""
        running = self.running.by_task[launch.request.task.id]  # until its end is recorded
        running.started = time.time()  # when a worker took it, not when queued
        result = carry_out(launch, self.workstream.defaults)
        running.ended = time.time()  # not when the orchestrator gets to record it
        self.inbox.put(AttemptEnded(running, result))

    def _uses_breaker(self, tool: str) -> bool:
        """Whether the tool has a circuit breaker (every tool but the shell)."""
        uses = self._breaker_used.get(tool)
        if uses is None:  # asked at every attempt's end: the registry once per tool
            uses = self._breaker_used[tool] = getattr(
                self.host.tools().get(tool), "circuit_breaker", True
            )
        return uses

    def _profile(self, tool: str) -> ToolProfile:
        if tool not in self._profiles:
            self._profiles[tool] = self.project.profile(tool)
        return self._profiles[tool]

    def _policy(self, task: Task) -> RetryPolicy:
        """The task's retry policy (its policy table resolved), made once per task."""
        policy = self._policies.get(task.id)
        if policy is None:
            policy = retry_policy(task, self.workstream.defaults, self.settings.max_attempts)
            self._policies[task.id] = policy
        return policy

    # -- recording -----------------------------------------------------------------------

    def _record_end(self, running: Running, result: StepResult) -> None:
        """Record how an attempt ended and what happens to its step (and, through it, to
        the dependents that became ready or skipped)."""
        task, tool = running.task, running.tool
        digest = loop_fingerprint(result)
        self.store.finish_attempt(
            self.run_id,
            task.id,
            running.attempt,
            outcome=result.outcome,
            exit_code=result.exit_code,
            error_class=result.error_class,
            message=result.message,
            retry_after=result.retry_after,
            usage=result.usage,
            diff=result.diff,
            started_at=running.started,
            ended_at=running.ended,
            feedback=result.feedback,
            fingerprint=digest,
        )
        self.breakers.on_end(tool, result, self._uses_breaker(tool))
        self.meter.add(task.id, result)
        if result.review is not None:
            self.reviews.ended(task, running.attempt, result.review)
        if result.outcome != "canceled":  # the track record routing reads
            seconds = (running.ended or time.time()) - running.started
            self.choice.remember(task, tool, result.outcome == "succeeded", seconds)
        self.history.add(task.id, tool, result, digest)
        # a success needs no retry policy: most tasks never have one made
        policy = SUCCEEDED_POLICY if result.outcome == "succeeded" else self._policy(task)
        ends = self.history.ends[task.id]
        move = next_move(policy, ends) if result.outcome not in ("succeeded", "canceled") else None
        last_round = self.reviews.stop_after(task, result)
        if last_round is not None:  # sent back as often as the review allows
            result, move = last_round
        switches = move is not None and move.switches
        alone = self.choice.no_other_tool(task, policy, ends) if switches else None
        verdict = judge(
            attempt=running.attempt,
            tool=tool,
            result=result,
            policy=policy,
            failures=self.history.failures[task.id],
            changes=self.history.changes[task.id],
            over_budget=self.meter.task_exhausted(task),
            stopping=self.steps.stopping,
            move=move,
            alone=alone,
        )
        self.steps.set(task.id, verdict.state, reason=verdict.reason, payload=verdict.payload)
        if verdict.state is StepState.RETRYING:
            self.steps.retry_later(task.id, time.time() + verdict.delay)
        elif verdict.failed:
            self._after_failure()
        exhausted = self.meter.run_exhausted()
        if exhausted is not None and self.steps.stopping is None:
            self._stop("budget", exhausted)

    def _after_failure(self) -> None:
        if self.fail_fast and self.steps.stopping is None:
            self._stop("fail_fast")

    def _stop(self, why: str, reason: str | None = None) -> None:
        """Wind the run down: nothing new starts and waiting steps end (canceled, or
        skipped when the budget ran out). On cancel and fail-fast the running attempts'
        processes are stopped through the cancel flag; on budget they may finish."""
        if why == "fail_fast":
            self.cancel.set()
        self.steps.wind_down(why, reason)
        self.choice.wake_at = None

    def _end(self) -> RunOutcome:
        """Record the run's final state, after its workspaces' clean-up, and return it."""
        final = self.steps.final_state()
        payload = {
            "summary": ", ".join(
                f"{n} {state}" for state, n in sorted(self.steps.counts().items())
            ),
            "tokens": self.meter.tokens,
            "cost": self.meter.cost,
        }
        if self.workspaces.run.resumed:
            self.workspaces.open_every(self.workstream.tasks)
        self.workspaces.close()
        self._set_run(final, payload=payload, error=self.steps.budget_reason)
        return outcome_of(
            self.run_id, final, self.steps, self.meter, self.workspaces, time.time() - self._began
        )

    def _sink_context(self) -> Callable[[str], SinkContext]:
        """What each sink is handed when it opens (see ``sink_context``)."""
        return functools.partial(
            sink_context,
            run_id=self.run_id,
            options=self.project.config.sink,
            project_root=str(self.project.root),
            state_dir=self._state_dir,
            inbox=self.inbox,
            steps=self.steps.state,
            parallel=self.settings.max_parallel,
            last_lines=self.last_lines,
            redact=self._redact,
        )

    def _set_run(
        self, state: RunState, payload: Mapping[str, Any] | None = None, error: str | None = None
    ) -> None:
        self.store.set_run_state(self.run_id, state, payload=dict(payload or {}), error=error)
        self.fanout.emit(f"run.{state.value}", None, payload)

    def _record_event(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Record an event of the run that is no step's change of state (a breaker's)."""
        self.store.add_event(self.run_id, kind, dict(payload))
        self.fanout.emit(kind, None, payload)
