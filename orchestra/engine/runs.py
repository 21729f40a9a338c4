"""Starting, resuming and canceling runs: what ``orchestra run``, ``resume`` and
``cancel`` do, as library calls. The CLI parses, calls these, and prints."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestra.config import Project, Settings
from orchestra.engine.containment import prepare_run, remove_run_cgroups, supervise_run
from orchestra.engine.leftovers import processes_of_run, stop_process_groups
from orchestra.engine.orchestrator import Orchestrator
from orchestra.engine.outcome import RunOutcome
from orchestra.errors import DiskFull, OrchestraError
from orchestra.faults import is_disk_full_error
from orchestra.loaders.sets import arguments_of
from orchestra.models import Workstream
from orchestra.plugin.host import PluginHost
from orchestra.store import Store, StoreError
from orchestra.store.lifecycle import FOUND_LANDED, RunState, StepState
from orchestra.store.records import RunRecord, StepRecord


class ResumeRefused(OrchestraError):
    """A run that cannot be resumed as asked (finished, changed file, wrong state)."""


#: the states a run resumes from: its process died (or a fault stopped it), or it was
#: canceled on request
RESUMABLE = frozenset({RunState.INTERRUPTED, RunState.CANCELED})


def open_store(settings: Settings) -> Store:
    """Return the store at the configured database path (created on first use)."""
    return Store.open(settings.db)


def open_existing_store(settings: Settings) -> Store:
    """Return the store of the run database ``settings`` name (``Store.open_existing``:
    a missing one is an error; runs whose process died are marked interrupted)."""
    return Store.open_existing(settings.db)


def log_root(store: Store, run_id: str) -> Path:
    """Return the directory of a run's attempt logs, ``runs/<run>/`` beside the database
    (made here, once: ``<task>.<attempt>.log`` files go straight into it)."""
    directory = Path(store.path).parent / "runs" / run_id
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if is_disk_full_error(error):
            raise DiskFull(
                f"cannot make the run's log directory: {error.strerror}",
                file=str(directory),
                run_id=run_id,
            ) from None
        raise OrchestraError(
            f"cannot make the run's log directory: {error.strerror}", file=str(directory)
        ) from None
    return directory


def start_run(
    file: str | Sequence[str],
    workstream: Workstream,
    settings: Settings,
    project: Project,
    host: PluginHost,
    *,
    sinks: Sequence[Any],
    cancel: threading.Event,
    fail_fast: bool = False,
    store: Store | None = None,
    hurry: threading.Event | None = None,
) -> RunOutcome:
    """Record a new run of ``workstream`` and drive it to its end."""
    from orchestra.engine import sandbox

    check_workspaces(workstream, settings, project)
    sandbox.require(settings)  # sandbox = "bwrap" where it cannot run: before any record
    prepare_run()  # while the store opens and the run is recorded
    # a store opened here is closed here: its write-ahead log goes back into the file
    with open_store(settings) if store is None else contextlib.nullcontext(store) as store:
        from orchestra.loaders import source_digest
        from orchestra.secrets import secret_settings

        secret = secret_settings(registration.item for registration in host.settings())
        recorded_settings = {
            name: _plain(r.value) for name, r in settings.values.items() if name not in secret
        }
        recorded_settings["fail_fast"] = fail_fast
        from orchestra.loaders.sets import recorded

        paths = [file] if isinstance(file, str) else list(file)
        run_id = store.create_run(
            workstream.id,
            recorded(paths),
            # of the bytes the workstream was parsed from: the files read again now may
            # already hold another version
            workstream.digest or source_digest(paths, host),
            [task.id for task in workstream.tasks],
            recorded_settings,
            claim=True,  # never pending and undriven: a pending run with a free lock is dead
            project_root=str(project.root),  # where resume goes on, wherever it is typed
        )
        try:
            return _drive(
                store, run_id, workstream, settings, project, host, sinks, cancel, fail_fast, hurry
            )
        finally:
            store.release_run(run_id)


def _changed(
    recorded_paths: str, content_hash: str | None, host: PluginHost, parsed: str | None = None
) -> bool:
    """Whether the workstream a run recorded is no longer what it was (a file of a set
    changed, came or went): ``parsed``, the digest of the bytes resume loaded, when it
    has one, else the files as they are now."""
    if parsed is not None:
        return parsed != content_hash
    from orchestra.loaders import source_digest

    return source_digest(arguments_of(recorded_paths), host) != content_hash


def check_workspaces(workstream: Workstream, settings: Settings, project: Project) -> None:
    """Refuse, before a run is recorded, a workspace that cannot work here (worktree
    outside a git repository, or in one without a commit)."""
    from orchestra.engine.run_workspaces import default_workspace

    wanted = {task.workspace or settings.workspace for task in workstream.tasks}
    if "worktree" in wanted and default_workspace(project.root) != "worktree":
        raise OrchestraError(
            f"workspace 'worktree' needs a git repository with at least one commit;"
            f' {project.root} is not in one (use workspace = "inplace")'
        )


def project_of_run(record: RunRecord, here: Project) -> Project:
    """Return the project a recorded run works in: the directory it recorded when it
    started, wherever resume is asked from (``--db`` or ORCHESTRA_DB from another
    directory), or ``here`` for a run an older orchestra recorded without one.

    Raises ResumeRefused, naming both directories, when that directory is gone or is no
    longer a project root of its own (a configuration file above it came or went)."""
    if record.project_root is None or Path(record.project_root) == here.root:
        return here
    from orchestra.config import find_project

    recorded = Path(record.project_root)
    if not recorded.is_dir():
        raise ResumeRefused(
            f"run {record.id} was started in {recorded}, which no longer exists;"
            f" it cannot be resumed from {here.root}"
        )
    project = find_project(recorded)
    if project.root != recorded:
        raise ResumeRefused(
            f"run {record.id} was started in {recorded}, which is now inside the project"
            f" {project.root}; it cannot be resumed from {here.root}"
        )
    return project


def resume_run(
    run_id: str,
    workstream: Workstream,
    settings: Settings,
    project: Project,
    host: PluginHost,
    *,
    store: Store,
    sinks: Sequence[Any],
    cancel: threading.Event,
    force: bool = False,
    fail_fast: bool = False,
    hurry: threading.Event | None = None,
) -> RunOutcome:
    """Continue an interrupted or a canceled run: succeeded steps stay done; interrupted
    attempts are recorded as such and their steps tried again; a canceled run's canceled
    steps (and the steps skipped because of them) wait for their turn again."""
    prepare_run()  # while the run's record is read and set right
    store.mark_interrupted_if_orphaned(run_id)
    run = store.run(run_id)
    if run.state not in RESUMABLE:
        raise ResumeRefused(
            f"run {run_id} is {run.state.value}: only an interrupted or canceled run resumes"
        )
    if run.project_root is not None and Path(run.project_root) != project.root:
        # its worktrees, branches and files are there: going on elsewhere would leave
        # them, and work in a directory the run never knew (``project_of_run``)
        raise ResumeRefused(
            f"run {run_id} works in {run.project_root}, not in {project.root}: resume it"
            " in its own project"
        )
    file = run.workstream_file
    if not force and file and _changed(file, run.content_hash, host, workstream.digest):
        shown = ", ".join(arguments_of(file))
        raise ResumeRefused(
            f"{shown} changed since run {run_id} started; resume with --force to run the"
            " new version"
        )
    _refuse_other_tasks(run_id, workstream, store.steps(run_id))
    store.claim_run(run_id)
    try:
        # what resume records from here on, the run's sinks get once the orchestrator
        # opens them (they are not open yet)
        recorded_since = store.last_event_seq(run_id)
        _stop_leftover_processes(store, run_id)
        steps = store.steps(run_id)
        _settle_unfinished_steps(store, run_id, steps, workstream, settings, project, host)
        if run.state is RunState.CANCELED:
            _reopen_canceled_steps(store, run_id, workstream, steps)
        return _drive(
            store,
            run_id,
            workstream,
            settings,
            project,
            host,
            sinks,
            cancel,
            fail_fast,
            hurry,
            resumed=True,
            recorded_since=recorded_since,
        )
    finally:
        store.release_run(run_id)


def _refuse_other_tasks(run_id: str, workstream: Workstream, steps: Sequence[StepRecord]) -> None:
    """Refuse, before anything is written, a workstream whose tasks are not the run's:
    the run's record is of its tasks, and a task added or removed (``--force`` after an
    edit) has no place in it. A new run takes the new set."""
    recorded = {step.task_id for step in steps}
    now = {task.id for task in workstream.tasks}
    if recorded == now:
        return
    differences = []
    for label, ids in (("adds", now - recorded), ("lacks", recorded - now)):
        if ids:
            shown = ", ".join(sorted(ids)[:5]) + (" …" if len(ids) > 5 else "")
            differences.append(f"{label} {len(ids)} ({shown})")
    raise ResumeRefused(
        f"the workstream {' and '.join(differences)} of the tasks of run {run_id}: resume"
        " carries on a run's own tasks; start a new run (orchestra run) for the new set"
    )


def _reopen_canceled_steps(
    store: Store, run_id: str, workstream: Workstream, steps: Sequence[StepRecord]
) -> None:
    """Let a canceled run's canceled steps wait again (``pending``: the run loop makes
    them ready when their dependencies have succeeded), and with them the steps skipped
    because a step that is reopened could not succeed. A step that failed stays failed,
    and so do the steps skipped because of it."""
    from orchestra import graph

    states = {step.task_id: step.state for step in steps}
    dependencies = graph.of_tasks(workstream.tasks)
    reopened: set[str] = set()
    with store.batch():
        for task_id in graph.topological_order(dependencies):
            state = states.get(task_id)
            if state is StepState.CANCELED:
                reason = "canceled; tried again on resume"
            elif state is StepState.SKIPPED and reopened & set(dependencies[task_id]):
                reason = "skipped because of a canceled task; tried again on resume"
            else:
                continue
            store.set_step_state(run_id, task_id, StepState.PENDING, reason=reason)
            reopened.add(task_id)


def _stop_leftover_processes(store: Store, run_id: str) -> None:
    """Stop the processes the run's dead orchestrator left running (its attempts' tools
    and their children), so the attempts tried again do not race them, and remove the
    private directories its sandboxes left."""
    from orchestra.engine.sandbox import remove_leftovers

    left = processes_of_run(run_id)
    if left:
        stop_process_groups(left.values())
    removed = remove_leftovers(run_id)  # the sandboxes' private directories
    if left or removed:
        payload: dict[str, Any] = {"pids": sorted(left), "groups": sorted(set(left.values()))}
        if removed:
            payload["directories"] = removed
        store.add_event(run_id, "run.leftovers_stopped", payload)


def _settle_unfinished_steps(
    store: Store,
    run_id: str,
    steps: Sequence[StepRecord],
    workstream: Workstream,
    settings: Settings,
    project: Project,
    host: PluginHost,
) -> None:
    """Record what became of the steps a dead orchestrator left unfinished: those whose
    change the run's workspaces hold succeeded, the attempts left open otherwise
    interrupted (their steps are tried again).

    Every step that has not ended is asked about, not only the running ones: a power
    cut may take the database back to before an attempt started (SQLite in WAL with
    ``synchronous = NORMAL`` loses its last transactions) while git keeps its landing,
    and a task run again then would find its own change there already."""
    open_states = FOUND_LANDED | {StepState.RUNNING}
    unfinished = [step for step in steps if step.state in open_states]
    if not unfinished:
        return
    landed = _landed(run_id, workstream, settings, project, host, store)
    for step in unfinished:
        attempt = landed.get(step.task_id)
        if step.state is StepState.RUNNING:
            _close_interrupted_attempt(store, run_id, step.task_id, attempt)
        elif attempt is not None:
            reason = "its change was found landed on resume; the record of its attempt was lost"
            store.record_found_landed(run_id, step.task_id, attempt, reason=reason)


def _landed(
    run_id: str,
    workstream: Workstream,
    settings: Settings,
    project: Project,
    host: PluginHost,
    store: Store,
) -> dict[str, int]:
    """The tasks whose change reached the run's result before its orchestrator died,
    with the attempt that brought it, as the run's workspaces tell (``landed``)."""
    from orchestra.engine.run_workspaces import checkpoint_key, default_workspace
    from orchestra.models import WorkspaceRun

    names = {task.workspace or settings.workspace for task in workstream.tasks}
    if None in names:
        names.discard(None)
        names.add(default_workspace(project.root))
    landed: dict[str, int] = {}
    for name in sorted(names):
        ask = getattr(host.workspaces().get(name), "landed", None)
        if ask is None:
            continue
        run = WorkspaceRun(
            run_id=run_id,
            project_root=str(project.root),
            state_dir=str(Path(store.path).parent),
            resumed=True,
            checkpoint=store.get_value(checkpoint_key(name, run_id)),
        )
        landed.update(ask(run))
    return landed


def _close_interrupted_attempt(
    store: Store, run_id: str, task_id: str, landed: int | None = None
) -> None:
    """Record how the attempts a dead orchestrator left open ended: the one whose change
    had landed (``landed``, its number) succeeded; the others were interrupted. The step
    succeeded if a change of its landed (the attempt's record may be lost, or closed
    already), else it is tried again."""
    attempts = store.attempts(run_id, task_id)
    open_attempts = [a for a in attempts if a.ended_at is None]
    succeeded = landed is not None
    with store.batch():
        for attempt in open_attempts:
            if attempt.number == landed:
                store.finish_attempt(
                    run_id,
                    task_id,
                    attempt.number,
                    outcome="succeeded",
                    message="its change had landed before the orchestrator stopped",
                )
                continue
            store.finish_attempt(
                run_id,
                task_id,
                attempt.number,
                outcome="interrupted",
                error_class="crashed",
                message="the orchestrator stopped while this attempt ran",
            )
        # the step's event names the attempt (a fault may have closed it already): the
        # sinks learn of the attempt's end from it
        told: dict[str, Any] = {}
        if succeeded:
            told["attempt"] = landed
        elif attempts:
            told["attempt"] = attempts[-1].number
        if succeeded:
            reason = "its change had landed before the orchestrator stopped"
            store.set_step_state(run_id, task_id, StepState.SUCCEEDED, reason=reason, payload=told)
        else:
            reason = "interrupted: the orchestrator stopped while it ran; tried again"
            store.set_step_state(run_id, task_id, StepState.RETRYING, reason=reason, payload=told)


def _drive(
    store: Store,
    run_id: str,
    workstream: Workstream,
    settings: Settings,
    project: Project,
    host: PluginHost,
    sinks: Sequence[Any],
    cancel: threading.Event,
    fail_fast: bool,
    hurry: threading.Event | None = None,
    resumed: bool = False,
    recorded_since: int | None = None,
) -> RunOutcome:
    orchestrator = Orchestrator(
        store=store,
        run_id=run_id,
        workstream=workstream,
        settings=settings,
        project=project,
        host=host,
        sinks=sinks,
        log_root=log_root(store, run_id),
        cancel=cancel,
        fail_fast=fail_fast,
        hurry=hurry,
        resumed=resumed,
        recorded_since=recorded_since,
    )
    try:
        with supervise_run(run_id, log_limit=settings.log_limit, hurry=hurry):  # no leftovers
            outcome = orchestrator.run()
    finally:
        orchestrator.close_sinks()  # a sink failing to close does not hide the outcome
    try:
        orchestrator.record_late_events()  # what the sinks warned about while closing
    except (StoreError, DiskFull):
        pass  # the run has ended and is recorded: only late sink warnings are lost
    return outcome


def request_cancel(store: Store, run_id: str) -> str:
    """Ask the process driving ``run_id`` to cancel it (SIGTERM to its pid on this host),
    or cancel an interrupted run directly. Return what was done, for people."""
    store.mark_interrupted_if_orphaned(run_id)
    run = store.run(run_id)
    if run.state is RunState.INTERRUPTED or run.state is RunState.PENDING:
        _cancel_undriven(store, run_id)
        return f"run {run_id} canceled"
    if run.state is not RunState.RUNNING:
        raise OrchestraError(f"run {run_id} is {run.state.value}: nothing to cancel")
    if run.owner_host != os.uname().nodename or run.owner_pid is None:
        raise OrchestraError(
            f"run {run_id} is driven by pid {run.owner_pid} on {run.owner_host}; cancel it there"
        )
    try:
        os.kill(run.owner_pid, signal.SIGTERM)
    except ProcessLookupError:
        raise OrchestraError(f"run {run_id}: its process {run.owner_pid} is gone") from None
    return f"asked process {run.owner_pid} to cancel run {run_id}"


def _cancel_undriven(store: Store, run_id: str) -> None:
    """Cancel a run no process drives: what its dead orchestrator left running, its open
    attempts, unfinished steps, then the run."""
    store.claim_run(run_id)
    try:
        _stop_leftover_processes(store, run_id)
        remove_run_cgroups(run_id)
        with store.batch():
            for step in store.steps(run_id):
                if step.state is StepState.RUNNING:
                    for attempt in store.attempts(run_id, step.task_id):
                        if attempt.ended_at is None:
                            store.finish_attempt(
                                run_id,
                                step.task_id,
                                attempt.number,
                                outcome="canceled",
                                message="canceled after its orchestrator stopped",
                            )
                if step.state in (
                    StepState.PENDING,
                    StepState.READY,
                    StepState.RUNNING,
                    StepState.RETRYING,
                ):
                    store.set_step_state(
                        run_id, step.task_id, StepState.CANCELED, reason="orchestra cancel"
                    )
            store.set_run_state(run_id, RunState.CANCELED, payload={"reason": "orchestra cancel"})
    finally:
        store.release_run(run_id)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


__all__ = [
    "ResumeRefused",
    "open_existing_store",
    "open_store",
    "project_of_run",
    "request_cancel",
    "resume_run",
    "start_run",
]
