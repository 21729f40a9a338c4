"""What runs on a Ray node: one attempt, in a worktree of the node's copy of the repository.

The node gets the attempt's request, the tool adapter, the checks, the settings' part of
the environment and the base commit; its own environment gives the rest (``PATH``,
``HOME`` and the variables the tool's profile passes through, its secrets among them).
It returns the attempt's result, its log, the tool's progress events and the change as
a patch; the orchestrator applies the patch and lands it as it would a local attempt.
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from orchestra import (
    ExecutionRequest,
    LocalContext,
    StepResult,
    build_environment,
    execute_attempt,
    processes_of_run,
    stop_process_groups,
)
from orchestra_ray import repository

#: how often the node looks at a cancel request while the attempt runs
POLL_SECONDS = 0.2


@attrs.frozen
class NodeJob:
    """What travels to the node for one attempt (no secret: see ``environment``)."""

    request: ExecutionRequest
    adapter: Any
    checks: Sequence[Any]
    #: the attempt's variables set by the configuration, the workstream and orchestra
    #: (``ORCHESTRA_*``); the node adds its own allow-listed and passed-through ones
    environment: Mapping[str, str]
    #: ``[workspace] setup`` commands, run in the node's worktree before the tool
    setup: tuple[str, ...]
    #: the commit the attempt starts from, and the project's directory inside the repository
    base: str
    subdir: str
    #: the run's first base commit, whose bundle holds the history later bundles build on
    anchor: str
    #: what the attempt's worktree starts with beyond ``base`` (a retry after a failed
    #: check goes on from the previous attempt's change), a binary patch
    carried: bytes = b""


@attrs.frozen
class NodeOutcome:
    """What comes back from the node."""

    result: StepResult
    patch: bytes
    log: bytes
    #: the tool's progress events, (kind, payload), in order
    events: Sequence[tuple[str, Mapping[str, Any]]]
    node_id: str
    host: str
    seconds: float


def run_on_node(job: NodeJob, bundles: list[Any]) -> NodeOutcome:
    """Carry out one attempt on this node (the body of the Ray task). ``bundles`` holds
    the references to the bundles that give the base commit: the run's first base with
    its history, then (for a later base) the commits since. In a list, Ray does not fetch
    them: the node fetches only what its copy lacks."""
    import ray

    began = time.monotonic()
    request = job.request
    run_id, task_id = request.run_id, request.task.id
    home = repository.node_directory(run_id)
    copy = home / "repository.git"
    with repository.locked(home / "repository.lock"):
        if not repository.has_commit(copy, job.base):
            if len(bundles) == 2 and not repository.has_commit(copy, job.anchor):
                repository.fetch_bundle(copy, ray.get(bundles[0]))
            repository.fetch_bundle(copy, ray.get(bundles[-1]))
    tree = home / "attempts" / f"{task_id}.{request.attempt}"
    log_path = home / "logs" / f"{task_id}.{request.attempt}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    with repository.locked(home / "repository.lock"):
        repository.add_worktree(copy, tree, job.base)
    repository.apply_patch(tree, job.carried)  # raising, it crashes the attempt
    events: list[tuple[str, Mapping[str, Any]]] = []
    cancel = threading.Event()
    context = _context(job, tree / job.subdir, log_path, cancel, events)
    try:
        result = _run_until_done(job, context, cancel)
        patch = b"" if result.outcome == "canceled" else repository.patch_since(tree, job.base)
        log = log_path.read_bytes() if log_path.exists() else b""
    finally:
        context.cleanup()
        if copy.exists():  # else the run ended meanwhile and its directory is gone
            with repository.locked(home / "repository.lock"):
                repository.remove_worktree(copy, tree)
        log_path.unlink(missing_ok=True)
    return NodeOutcome(
        result,
        patch,
        log,
        events,
        ray.get_runtime_context().get_node_id(),
        socket.gethostname(),
        time.monotonic() - began,
    )


def _context(
    job: NodeJob,
    directory: os.PathLike,
    log_path: os.PathLike,
    cancel: threading.Event,
    events: list[tuple[str, Mapping[str, Any]]],
) -> LocalContext:
    """The attempt's context on this node: this node's environment under the job's."""
    request = job.request
    profile = request.profile
    env = build_environment(os.environ, job.environment, profile.pass_env)
    home = repository.node_directory(request.run_id)
    return LocalContext(
        cwd=directory,
        env=env,
        log_path=log_path,
        timeout=request.timeout,
        idle_timeout=request.idle_timeout,
        cancel=cancel,
        secret_names=profile.secrets,
        emit=lambda kind, payload: events.append((kind, dict(payload))),
        scratch_root=home / "scratch",
        state_dir=repository.tool_directory(profile.name),
    )


def _run_until_done(job: NodeJob, context: LocalContext, cancel: threading.Event) -> StepResult:
    """Run the attempt on a thread of its own, so that a cancel request (Ray interrupts
    this, the task's main thread) stops its processes through the context, gracefully."""
    outcome: list[StepResult] = []

    def attempt() -> None:
        try:
            outcome.append(_attempt(job, context))
        except Exception as error:  # a bug here fails the attempt, not the node
            message = context.redact(f"{type(error).__name__}: {error}")
            outcome.append(StepResult("failed", error_class="crashed", message=message))

    thread = threading.Thread(target=attempt, name="orchestra-attempt", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(POLL_SECONDS)
    except KeyboardInterrupt:  # ray.cancel
        cancel.set()
        thread.join()
        return StepResult("canceled", message="canceled on the Ray node")
    return outcome[0]


def _attempt(job: NodeJob, context: LocalContext) -> StepResult:
    directory = context.cwd
    for line in job.setup:
        finished = context.run(shlex.split(line), cwd=directory)
        if finished.exit_code != 0:
            how = finished.error or finished.stopped or f"exited {finished.exit_code}"
            message = f"workspace setup {line!r} failed ({how}): see the log"
            return StepResult("failed", error_class="setup_failed", message=message)
    request = attrs.evolve(job.request, workdir=directory)
    return execute_attempt(job.adapter, request, context, job.checks)


def sweep_node(run_id: str) -> dict[str, Any]:
    """Stop what a dead orchestrator's attempts left running on this node (their
    processes carry ``ORCHESTRA_RUN_ID``) and remove their worktrees; say what went."""
    import ray

    left = processes_of_run(run_id)
    if left:
        stop_process_groups(left.values())
    home = repository.node_directory(run_id)
    copy = home / "repository.git"
    removed = []
    attempts = home / "attempts"
    if attempts.is_dir():
        with repository.locked(home / "repository.lock"):
            for tree in sorted(attempts.iterdir()):
                repository.remove_worktree(copy, tree)
                removed.append(tree.name)
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "pids": sorted(left),
        "worktrees": removed,
    }


#: how often a run's directory is removed again while a straggler's file keeps it
_REMOVE_TRIES = 20


def _remove_run_directory(home: Path) -> None:
    """Remove a run's directory on this node. Nodes that share one temporary directory
    (several on one machine) all clean up after the run at once, and one still sweeping
    may be writing in it (git's lock files) as another removes it: so the directory is
    renamed away first, atomically (one node takes it, and nothing is made under its
    name again), then removed, again while a straggler's last file keeps it there."""
    import shutil

    gone = home.with_name(f"{home.name}.removed-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(home, gone)
    except OSError:  # another node took it, or there was none
        return
    for _ in range(_REMOVE_TRIES):
        shutil.rmtree(gone, ignore_errors=True)
        if not os.path.lexists(gone):
            return
        time.sleep(0.05)


def forget_run(run_id: str) -> None:
    """Stop what is left of a run that ended on this node (a canceled attempt's tool that
    outlived its Ray task), and remove the node's copy of the repository and the rest,
    with ``runs/`` and ``orchestra-ray/`` when nothing else is left in them."""
    sweep_node(run_id)
    home = repository.node_directory(run_id)
    _remove_run_directory(home)
    for parent in (home.parent, home.parent.parent):
        try:
            parent.rmdir()
        except OSError:  # another run's directory, or a tool's (kept across runs)
            break
