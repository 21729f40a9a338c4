"""The facts of one recorded run, gathered from the run database once, for every renderer.

Everything here comes from the store, the attempts' log files and, when it still exists,
the workstream file the run was made from (for the dependencies and the checks, which
the database does not hold).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from orchestra import classes
from orchestra.report.diffs import FileChange, summarize_diff
from orchestra.report.reviews import ReviewFacts, review_counts, reviews_by_attempt

if TYPE_CHECKING:
    from orchestra.store import EventRecord, StepRecord

#: how many lines of the last attempt's log the report shows
LOG_TAIL_LINES = 20
#: step states in the order the report counts them
STATE_ORDER = (
    "succeeded",
    "failed",
    "quarantined",
    "skipped",
    "canceled",
    "running",
    "retrying",
    "ready",
    "pending",
)
_SKIPPED_FOR = re.compile(r"^dependency (\S+) ")


@classes.frozen
class PassedOverFacts:
    """A tool routing passed over for an attempt, and why (``breaker``, ``failed``,
    ``unavailable`` …: the kinds of ``engine/router.py``)."""

    tool: str
    kind: str
    why: str
    until: float | None = None


@classes.frozen
class AttemptFacts:
    """One attempt as the report shows it."""

    number: int
    tool: str
    tool_version: str | None
    outcome: str | None
    error_class: str | None
    message: str | None
    exit_code: int | None
    started_at: float
    ended_at: float | None
    seconds: float | None
    #: seconds between the end of the attempt before (or the task becoming ready) and this start
    waited: float | None
    route_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    log_path: str | None
    files: tuple[FileChange, ...]
    diff: str | None
    #: the tools the task allows that routing passed over for this attempt, and why
    passed_over: tuple[PassedOverFacts, ...] = ()
    #: the reviews of the attempt's change (one, or none when it was not reviewed)
    reviews: tuple[ReviewFacts, ...] = ()


@classes.frozen
class TaskFacts:
    """One task of the run: its state, where it sits in the graph, and its attempts."""

    id: str
    title: str | None
    state: str
    reason: str | None
    wave: int
    depends_on: tuple[str, ...]
    checks: tuple[str, ...]
    ready_at: float | None
    attempts: tuple[AttemptFacts, ...]
    tokens: int
    cost_usd: float
    log_tail: tuple[str, ...]

    @property
    def tool(self) -> str | None:
        """The tool of the last attempt, or None when the task was never attempted."""
        return self.attempts[-1].tool if self.attempts else None

    @property
    def route_reason(self) -> str | None:
        """Why routing chose the last attempt's tool."""
        return self.attempts[-1].route_reason if self.attempts else None

    @property
    def files(self) -> tuple[FileChange, ...]:
        """The files the last attempt changed."""
        return self.attempts[-1].files if self.attempts else ()


@classes.frozen
class RunFacts:
    """A whole run: its outcome and figures, its graph and its tasks in the run's order."""

    id: str
    workstream: str
    title: str | None
    file: str | None
    state: str
    error: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    wall_seconds: float | None
    tasks_by_state: dict[str, int]
    attempts: int
    retries: int
    tokens: int
    cost_usd: float
    budget_tokens: int | None
    budget_cost: float | None
    #: "workstream" when the dependencies come from the file, "database" when it is gone
    graph_source: str
    #: why the graph is incomplete or may differ from the run, when it may
    graph_note: str | None
    waves: tuple[tuple[str, ...], ...]
    tasks: tuple[TaskFacts, ...]
    #: the run's reviews by how they ended (``ReviewFacts.state``): ``approved``,
    #: ``rejected``, ``failed``, ``canceled``, ``running``, ``interrupted`` (only those
    #: there were)
    reviews_by_verdict: dict[str, int] = attrs.field(factory=dict)

    @property
    def reviews(self) -> int:
        """How many reviews the run's attempts had."""
        return sum(self.reviews_by_verdict.values())

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """Every (dependency, task) pair of the graph."""
        return tuple((dependency, task.id) for task in self.tasks for dependency in task.depends_on)


def gather(store, run_id: str, host=None, *, logs: bool = True) -> RunFacts:
    """Return the facts of run ``run_id``; raise UnknownRun when the store has no such run.

    With the plugin ``host``, a workstream in any format is read (else TOML only). With
    ``logs=False`` the tasks' log tails are left empty (a file read per task saved)."""
    record = store.run(run_id)
    steps = store.steps(run_id)
    attempts_of: dict[str, list] = {}
    for attempt in store.attempts(run_id):
        attempts_of.setdefault(attempt.task_id, []).append(attempt)
    ready_at: dict[str, float] = {}
    passed_over: dict[tuple[str, int], tuple[PassedOverFacts, ...]] = {}
    review_started: dict[tuple[str, int], EventRecord] = {}
    for event in store.events(run_id, types=("step.ready", "step.running", "review.started")):
        if event.type == "step.ready" and event.task_id is not None:
            ready_at.setdefault(event.task_id, event.at)
        elif event.type == "step.running" and event.payload.get("passed_over"):
            key = (event.task_id, event.payload.get("attempt"))
            passed_over[key] = tuple(_passed(entry) for entry in event.payload["passed_over"])
        elif event.type == "review.started" and event.task_id and event.attempt is not None:
            review_started[(event.task_id, event.attempt)] = event
    reviews_of = reviews_by_attempt(store, record, review_started)
    usage = store.usage_by_task(run_id)
    task_ids = [step.task_id for step in steps]
    workstream, graph_note = _workstream_of(record, task_ids, host)
    if workstream is not None:
        graph_source = "workstream"
        dependencies, titles, checks = _from_workstream(workstream, task_ids)
    else:
        graph_source = "database"
        dependencies = _dependencies_from_reasons(steps)
        titles, checks = {}, {}
    waves = _waves(dependencies)
    wave_of = {task: index for index, wave in enumerate(waves) for task in wave}

    tasks = []
    for step in steps:
        attempts = _attempts(
            attempts_of.get(step.task_id, []), ready_at.get(step.task_id), passed_over, reviews_of
        )
        tokens, cost = usage.get(step.task_id, (0, 0.0))
        tasks.append(
            TaskFacts(
                id=step.task_id,
                title=titles.get(step.task_id),
                state=step.state.value,
                reason=step.reason,
                wave=wave_of[step.task_id],
                depends_on=dependencies[step.task_id],
                checks=checks.get(step.task_id, ()),
                ready_at=ready_at.get(step.task_id),
                attempts=attempts,
                tokens=tokens,
                cost_usd=round(cost, 6),
                log_tail=_tail(attempts[-1].log_path) if attempts and logs else (),
            )
        )
    counts = {state: 0 for state in STATE_ORDER}
    for step in steps:
        counts[step.state.value] = counts.get(step.state.value, 0) + 1
    ended_at = _run_end(store, record)
    settings = record.settings
    return RunFacts(
        id=record.id,
        workstream=record.workstream_id,
        title=workstream.title if workstream is not None else None,
        file=record.workstream_file,
        state=record.state.value,
        error=record.error,
        created_at=record.created_at,
        started_at=record.started_at,
        ended_at=ended_at,
        wall_seconds=None
        if record.started_at is None or ended_at is None
        else ended_at - record.started_at,
        tasks_by_state={state: count for state, count in counts.items() if count},
        attempts=sum(len(task.attempts) for task in tasks),
        retries=sum(max(0, len(task.attempts) - 1) for task in tasks),
        tokens=sum(task.tokens for task in tasks),
        cost_usd=round(sum(task.cost_usd for task in tasks), 6),
        budget_tokens=settings.get("budget_tokens"),
        budget_cost=settings.get("budget_cost"),
        graph_source=graph_source,
        graph_note=graph_note,
        waves=tuple(tuple(wave) for wave in waves),
        tasks=tuple(tasks),
        reviews_by_verdict=review_counts(reviews_of),
    )


def _passed(entry: dict) -> PassedOverFacts:
    return PassedOverFacts(
        str(entry.get("tool")), str(entry.get("kind")), str(entry.get("why")), entry.get("until")
    )


def _attempts(
    records: list,
    ready_at: float | None,
    passed_over: dict[tuple[str, int], tuple[PassedOverFacts, ...]],
    reviews: dict[tuple[str, int], tuple[ReviewFacts, ...]],
) -> tuple[AttemptFacts, ...]:
    attempts = []
    previous_end = ready_at
    for record in records:
        attempts.append(
            AttemptFacts(
                number=record.number,
                tool=record.tool,
                tool_version=record.tool_version,
                outcome=record.outcome,
                error_class=record.error_class,
                message=record.message,
                exit_code=record.exit_code,
                started_at=record.started_at,
                ended_at=record.ended_at,
                seconds=record.duration,
                waited=None if previous_end is None else max(0.0, record.started_at - previous_end),
                route_reason=record.route_reason,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cost_usd=record.cost_usd,
                log_path=record.log_path,
                files=summarize_diff(record.diff),
                diff=record.diff,
                passed_over=passed_over.get((record.task_id, record.number), ()),
                reviews=reviews.get((record.task_id, record.number), ()),
            )
        )
        previous_end = record.ended_at
    return tuple(attempts)


def _workstream_of(record, task_ids: list[str], host=None):
    """Return (the run's workstream or None, a note on how far the report can trust it).

    With the plugin ``host``, the workstream is read in the format the run recorded (a
    directory of files too); without it, only a TOML file is read."""
    from orchestra.errors import OrchestraError
    from orchestra.loaders.sets import arguments_of

    file = record.workstream_file
    paths = arguments_of(file) if file else []
    shown = ", ".join(paths)
    if not paths or not all(Path(path).exists() for path in paths):
        return None, (
            f"the workstream file {shown} no longer exists: dependencies are known only"
            " from the tasks skipped for a failed one, and checks are not known"
            if file
            else "the run recorded no workstream file: dependencies and checks are not known"
        )
    try:
        workstream, digest = _read(paths, record, host)
    except OrchestraError as error:
        return None, f"the workstream file {shown} cannot be read any more ({error})"
    changed = record.content_hash is not None and digest != record.content_hash
    known = {task.id for task in workstream.tasks}
    if not set(task_ids) <= known:
        return None, f"the workstream file {shown} no longer has every task of the run"
    if changed:
        return workstream, (
            f"the workstream file {shown} has changed since the run: dependencies and checks"
            " are as the file says now"
        )
    return workstream, None


def _read(paths: list[str], record, host):
    """Return (the workstream in ``paths``, their digest), read as the run read them."""
    if host is None:
        from orchestra.loaders.sets import digest, expand
        from orchestra.spec import load_workstream

        return load_workstream(paths[0]), digest(expand(paths[:1], ()))
    from orchestra.loaders import load_source, source_digest

    loaded = load_source(
        paths,
        host,
        file_format=record.settings.get("format"),
        options=record.settings.get("loader_options"),
    )
    return loaded.workstream, source_digest(paths, host)


def _from_workstream(workstream, task_ids: list[str]):
    in_run = set(task_ids)
    dependencies, titles, checks = {}, {}, {}
    default_checks = workstream.defaults.checks or ()
    for task in workstream.tasks:
        if task.id not in in_run:
            continue
        dependencies[task.id] = tuple(d for d in task.depends_on if d in in_run)
        titles[task.id] = task.title
        chosen = task.checks if task.checks is not None else default_checks
        checks[task.id] = tuple(_check_text(check) for check in chosen)
    return {task: dependencies[task] for task in task_ids}, titles, checks


def _check_text(check) -> str:
    """Return a check's name, or its command as it could be pasted into a shell, with
    the secrets written in it masked (``--api-key ***``)."""
    from orchestra.secrets import mask_arguments

    if check.name:
        return check.name
    if isinstance(check.command, str):
        return mask_arguments([check.command])[0]
    from orchestra.engine.attempt_log import command_line  # quoted as the log quotes it

    return command_line(mask_arguments(check.command))


def _dependencies_from_reasons(steps: Sequence[StepRecord]) -> dict[str, tuple[str, ...]]:
    """What the database alone says of the graph: a task skipped because a dependency failed."""
    known = {step.task_id for step in steps}
    found: dict[str, tuple[str, ...]] = {}
    for step in steps:
        match = _SKIPPED_FOR.match(step.reason or "") if step.state.value == "skipped" else None
        found[step.task_id] = (match[1],) if match and match[1] in known else ()
    return found


def _waves(dependencies: dict[str, tuple[str, ...]]) -> list[list[str]]:
    from orchestra.graph import waves

    try:
        return waves(dependencies)
    except ValueError:  # a cycle: a changed file; keep the run's order in one wave
        return [list(dependencies)]


def _run_end(store, record) -> float | None:
    # an interrupted run has no end: its last recorded moment stands in for it
    if record.ended_at is None and record.state.value == "interrupted":
        return store.last_event_at(record.id)
    return record.ended_at


def _tail(path: str | None, lines: int = LOG_TAIL_LINES) -> tuple[str, ...]:
    """The end of a log, read from the file's end: a huge log or line costs no more."""
    from orchestra.logtail import tail_lines

    return tail_lines(path, lines)
