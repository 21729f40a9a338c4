"""The executor ``ray``: each attempt runs as a Ray task on a node that has its tool.

The orchestrator stays one process holding the run database; only attempts travel. For
each attempt the run loop still makes the worktree here (from the run branch), judges
the change against the task's scope and lands it; in between, ``RayAttempt`` (the
launch's adapter, standing in for the tool) sends the attempt to a node that advertises
the resource ``tool:<name>`` and applies the patch that comes back.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import attrs

import orchestra
from orchestra import ExecutionRequest, ExecutorRun, OrchestraError, ProcessResult, StepResult
from orchestra_ray import ADDRESS, repository
from orchestra_ray.worker import NodeJob, NodeOutcome, forget_run, run_on_node, sweep_node

#: how often a waiting attempt looks at the run's cancel flag
POLL_SECONDS = 0.2
#: later base commits whose bundles stay in Ray's object store (the newest ones)
KEPT_BUNDLES = 8
#: how long a canceled attempt waits for its node to stop it before it is given up
CANCEL_WAIT = 30.0
#: how long the run's end (or resume) waits for the nodes to clean up after it
CLEANUP_WAIT = 60.0
#: how long the executor waits for the cluster's address to answer before it gives up
PROBE_SECONDS = 5.0


def resource(tool: str) -> str:
    """The custom resource a node advertises to take attempts of ``tool``."""
    return f"tool:{tool}"


class RayRun:
    """One run's use of the cluster: a connection, the bundles sent, a thread per
    running attempt (it waits for the node and then lands the change here)."""

    def __init__(self, run: ExecutorRun) -> None:
        import ray

        self.run = run
        self.address = _address(run.options.get(ADDRESS))
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            _reachable(self.address)
            try:
                ray.init(
                    address=self.address,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise OrchestraError(
                    f"executor 'ray': cannot join the Ray cluster at {self.address}: {error}"
                    " (start one with `ray start --head`, and see docs/ray.md)"
                ) from None
            _cluster_news_to_stderr()
        self.remote = ray.remote(run_on_node)
        self.pool = ThreadPoolExecutor(max_workers=run.parallel, thread_name_prefix="ray")
        #: the run's first base commit and its bundle; later bases' bundles, newest last
        self._anchor: tuple[str, Any] | None = None
        self._bundles: OrderedDict[str, tuple[bool, Any]] = OrderedDict()
        self._bundling = threading.Lock()
        if run.resumed:
            self._cancel_leftovers()

    def submit(self, launch: orchestra.AttemptLaunch) -> None:
        # HereContext forwards every attribute of the LocalContext but ``run``: a proxy
        # that mypy cannot see as the class it stands in for
        here = cast("orchestra.LocalContext", HereContext(launch.context))
        forwarded = attrs.evolve(
            launch,
            adapter=RayAttempt(self, launch.adapter, tuple(launch.checks), launch.workspace),
            checks=(),
            context=here,
        )
        self.pool.submit(self.run.work, forwarded)

    def close(self) -> None:
        import ray

        self.pool.shutdown(wait=True)
        self._bundles.clear()
        self._anchor = None
        try:
            ray.get(_on_every_node(forget_run, self.run.run_id), timeout=CLEANUP_WAIT)
        except Exception:  # a node lost meanwhile keeps its copy until its /tmp is cleared
            pass
        if self._connected_here:
            ray.shutdown()

    def bundles(self, directory: str, commit: str) -> tuple[str, list[Any]]:
        """The references a node needs to have ``commit``: the run's first base commit and
        its whole history (put in the store once per run), then, for a later base, a
        bundle of only the commits since that first one (once per base commit). Returns
        the first base commit and the references."""
        import ray

        with self._bundling:
            if self._anchor is None:
                whole = repository.bundle(directory, self.run.run_id, commit)
                self._anchor = (commit, ray.put(whole))
            anchor, anchor_reference = self._anchor
            if commit == anchor:
                return anchor, [anchor_reference]
            if commit not in self._bundles:
                since = anchor if repository.is_ancestor(directory, anchor, commit) else None
                data = repository.bundle(directory, self.run.run_id, commit, since=since)
                self._bundles[commit] = (since is not None, ray.put(data))
                while len(self._bundles) > KEPT_BUNDLES:
                    self._bundles.popitem(last=False)
            self._bundles.move_to_end(commit)
            incremental, reference = self._bundles[commit]
            return anchor, [anchor_reference, reference] if incremental else [reference]

    def _cancel_leftovers(self) -> None:
        """At resume: cancel the Ray tasks the dead orchestrator recorded as submitted and
        never saw end, and stop on every node what they left running. Their results went
        to the dead process, so none is applied; the attempts run again."""
        import ray

        submitted: dict[tuple[str | None, int | None], dict] = {}
        for event in self.run.history():
            key = (event.task_id, event.attempt)
            if event.type == "ray.submitted":
                submitted[key] = dict(event.payload)
            elif event.type == "ray.ended":
                submitted.pop(key, None)
        for payload in submitted.values():
            try:
                ray.cancel(ray.ObjectRef(bytes.fromhex(payload["object"])), force=True)
            except Exception:  # owned by the dead orchestrator: Ray has ended it already
                pass
        swept = ray.get(_on_every_node(sweep_node, self.run.run_id), timeout=CLEANUP_WAIT)
        for (task_id, attempt), payload in submitted.items():
            if task_id is not None and attempt is not None:
                self.run.event(task_id, attempt, "ray.canceled", {"ray_task": payload["task"]})
        stopped = [sweep for sweep in swept if sweep["pids"] or sweep["worktrees"]]
        if stopped:
            self.run.event(None, None, "ray.leftovers_stopped", {"nodes": stopped})


class HereContext:
    """The attempt's context on the orchestrator's side. The worktree the change lands
    from is made here, but no process of the attempt runs here: ``[workspace] setup``,
    the tool and the checks run on the node."""

    def __init__(self, context: orchestra.LocalContext) -> None:
        self._context = context
        self.cwd = context.cwd

    def run(self, argv: Any, **options: Any) -> ProcessResult:
        return ProcessResult(exit_code=0, duration=0.0, log_path=self._context.log_path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class RayAttempt:
    """Stands in for the tool in the run loop: sends the attempt to a node and makes
    the node's change in the worktree the run loop prepared here."""

    def __init__(
        self,
        run: RayRun,
        adapter: orchestra.ToolAdapter,
        checks: tuple[orchestra.Check, ...],
        space: Any,
    ) -> None:
        self.ray_run = run
        self.adapter = adapter
        self.name = adapter.name
        self.capabilities = adapter.capabilities
        self.checks = checks
        self.space = space

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return the tool's availability as its own adapter says (the node that runs the
        attempt has the tool; routing asked before the attempt started)."""
        return self.adapter.available(profile)

    def execute(self, request: ExecutionRequest, ctx: Any) -> StepResult:
        """Run the attempt on a node with the tool; return its result, its change made
        in ``request.workdir``."""
        import ray

        run = self.ray_run.run
        directory = Path(request.workdir)
        if directory.resolve() == Path(run.project_root).resolve():
            return StepResult(
                "failed",
                error_class="setup_failed",
                message="the ray executor needs the worktree workspace, not inplace",
            )
        top = repository.top_level(directory)
        base = repository.head(directory)
        carried = repository.carried_change(top)  # the node starts from it too
        anchor, bundles = self.ray_run.bundles(str(top), base)
        job = NodeJob(
            request=attrs.evolve(request, workdir=""),
            adapter=self.adapter,
            checks=self.checks,
            environment=_shareable_environment(ctx.env, request),
            setup=tuple(getattr(getattr(self.space, "run", None), "setup", ()) or ()),
            base=base,
            anchor=anchor,
            subdir=os.path.relpath(directory, top),
            carried=carried,
        )
        # no CPU asked: a node runs as many attempts of a tool as it has of its resource;
        # no retry by Ray: orchestra's retry policy decides
        reference = self.ray_run.remote.options(
            num_cpus=0, max_retries=0, resources={resource(self.name): 1}
        ).remote(job, bundles)
        task_id, attempt = request.task.id, request.attempt
        run.event(
            task_id,
            attempt,
            "ray.submitted",
            {
                "task": reference.task_id().hex(),
                "object": reference.hex(),
                "job": ray.get_runtime_context().get_job_id(),
                "resource": resource(self.name),
            },
        )
        ended: dict[str, Any] = {"outcome": "crashed"}
        try:
            outcome = self._wait(reference, ctx)
            if isinstance(outcome, StepResult):
                ended["outcome"] = outcome.outcome
                return outcome
            ended.update(node=outcome.node_id, host=outcome.host, seconds=round(outcome.seconds, 3))
            # the host's own event for where an attempt ran: `orchestra show` lists it
            run.event(
                task_id, attempt, "attempt.placed", {"host": outcome.host, "node": outcome.node_id}
            )
            _append_log(ctx.log_path, outcome.log)
            for kind, payload in outcome.events:
                run.event(task_id, attempt, f"tool.{kind}", payload)
            repository.undo_change(top, carried)  # the node's patch holds it
            repository.apply_patch(top, outcome.patch)  # raising, it crashes the attempt
            ended["outcome"] = outcome.result.outcome
            return outcome.result
        finally:
            run.event(task_id, attempt, "ray.ended", ended)

    def _wait(self, reference: Any, ctx: Any) -> NodeOutcome | StepResult:
        """The node's outcome; or the attempt's result when it was canceled or its node
        (or worker process) was lost."""
        import ray
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        cancel, hurry = ctx.cancel, ctx.hurry
        asked = False
        while True:
            ready, _ = ray.wait([reference], timeout=POLL_SECONDS)
            if ready:
                break
            if cancel is not None and cancel.is_set() and not asked:
                # a graceful stop on the node; a second Ctrl-C (hurry) kills its worker
                ray.cancel(reference, force=bool(hurry is not None and hurry.is_set()))
                asked = True
                deadline = time.monotonic() + CANCEL_WAIT
            elif asked and (time.monotonic() > deadline or (hurry is not None and hurry.is_set())):
                ray.cancel(reference, force=True)
                return StepResult("canceled", message="canceled (the Ray task was killed)")
        try:
            return ray.get(reference)
        except TaskCancelledError:
            return StepResult("canceled", message="canceled on the Ray node")
        except RayTaskError as error:  # orchestra's own code failed on the node
            return StepResult(
                "failed",
                error_class="crashed",
                message=ctx.redact(f"the attempt failed on its Ray node: {_first_line(error)}"),
            )
        except RayError as error:  # the node, or the worker process, is gone
            return StepResult(
                "crashed",
                error_class="crashed",
                message=f"the Ray node running the attempt was lost ({type(error).__name__}):"
                f" {_first_line(error)}",
            )


def _on_every_node(function: Any, *arguments: Any) -> list[Any]:
    """Start ``function(*arguments)`` once on every live node; return the references."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(function)
    return [
        remote.options(
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote(*arguments)
        for node in ray.nodes()
        if node["Alive"]
    ]


def _cluster_news_to_stderr() -> None:
    """Make Ray print the cluster's news (``Raylet is terminated`` …) on stderr. Ray prints
    it on stdout, from a thread of its own, and orchestra's stdout is its output: the
    summary, or the JSON of ``--json``. Ray 2.x calls the module's ``print_to_stdstream``
    for it, with ``is_err`` false. It colours each line's ``(raylet)`` prefix unless
    ``RAY_COLOR_PREFIX`` is ``0``, which it reads at each line: set here when stderr is no
    terminal (a pipe, a file) and the user did not set it."""
    from ray._private import worker

    if "RAY_COLOR_PREFIX" not in os.environ and not sys.stderr.isatty():
        os.environ["RAY_COLOR_PREFIX"] = "0"

    original = getattr(worker.print_to_stdstream, "__wrapped__", worker.print_to_stdstream)

    def print_on_stderr(data: dict, ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    print_on_stderr.__wrapped__ = original  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_on_stderr


def _reachable(address: str) -> None:
    """Refuse at once a ``host:port`` that nothing answers on: ``ray.init`` would keep
    trying for minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", or a Ray client address: ray.init says what is wrong
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
    except OSError as error:
        raise OrchestraError(
            f"executor 'ray': no Ray cluster answers at {address} ({error.strerror or error});"
            " start one with `ray start --head`, or set ray_address (see docs/ray.md)"
        ) from None


def _address(configured: str | None) -> str:
    """The cluster to join: the setting, else ``RAY_ADDRESS``, else the one running here."""
    return configured or os.environ.get("RAY_ADDRESS") or "auto"


def _shareable_environment(env: dict[str, str], request: ExecutionRequest) -> dict[str, str]:
    """The attempt's variables that may travel: those the configuration, the workstream
    and orchestra set. What this machine's environment gives every attempt (``PATH``,
    ``HOME`` …: what ``build_environment`` keeps of it) and what the profile passes
    through (its secrets) the node takes from its own."""
    here = orchestra.build_environment(env, {}, request.profile.pass_env)
    return {name: value for name, value in env.items() if name not in here}


def _append_log(log_path: str, text: bytes) -> None:
    if text:
        with open(log_path, "ab") as log:
            log.write(text)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
