"""One attempt, on a worker: its workspace, its pre-flight checks, the tool, its checks,
its change judged against the task's scope and landed.

This is the worker's side of the run loop. It gets an ``AttemptLaunch`` (protocols.py)
and gives back a ``StepResult``; it never touches the store. ``execute_attempt`` is the
part between the workspace's ``prepare`` and ``changes``, public as
``orchestra.execute_attempt``: an executor that runs attempts on other machines calls it
there.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from orchestra import classes
from orchestra.engine import scope
from orchestra.engine.resilience import (
    FEEDBACK_LINES,
    check_feedback,
    conflict_feedback,
    refusal_feedback,
)
from orchestra.errors import WorkspaceError, WorkspaceViolation
from orchestra.models import ReviewResult, StepResult, Usage

if TYPE_CHECKING:
    from orchestra.engine.context import LocalContext
    from orchestra.models import Check, Defaults, ExecutionRequest, ProcessResult
    from orchestra.plugin.protocols import (
        AttemptLaunch,
        ReviewLaunch,
        RunWorkspace,
        ToolAdapter,
    )

#: pytest's exit status when it collected no test
PYTEST_NO_TESTS = 5


def carry_out(launch: AttemptLaunch, defaults: Defaults) -> StepResult:
    """Return how the attempt went (``run_attempt``); whatever it raises fails it
    ``crashed``, for the loop waits for every attempt's result. The attempt's context
    is cleaned up either way."""
    try:
        return run_attempt(launch, defaults)
    except BaseException as error:  # never lose a result
        message = launch.context.redact(f"{type(error).__name__}: {error}")
        return StepResult("failed", error_class="crashed", message=message)
    finally:
        launch.context.cleanup()


def run_attempt(launch: AttemptLaunch, defaults: Defaults) -> StepResult:
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
        request = _in_directory(space, request, directory)
        tool_done = getattr(space, "tool_done", None)
        passed: list[tuple[str, list[str]]] = []
        result = execute_attempt(
            launch.adapter,
            request,
            context,
            launch.checks,
            after_tool=None
            if tool_done is None
            else functools.partial(tool_done, request, directory),
            passed=passed,
        )
        if result.outcome != "canceled":
            result = _judge_change(
                space, request, directory, result, defaults, PendingReview(launch.review, passed)
            )
        return _redacted(result, context.redact)
    finally:
        _discard(space, request, directory, context)


def _in_directory(
    space: RunWorkspace, request: ExecutionRequest, directory: str
) -> ExecutionRequest:
    """The request for the attempt's directory, with what the directory holds (the
    workspace's ``started``, if it says)."""
    started = getattr(space, "started", None)
    start = started(request) if started is not None else None
    if request.workdir != directory or request.start != start:
        request = attrs.evolve(request, workdir=directory, start=start)
    return request


@classes.frozen
class PendingReview:
    """The review an attempt's change gets before it lands, if any, and what the checks
    printed (the reviewer reads it)."""

    launch: ReviewLaunch | None
    checks: Sequence[tuple[str, Sequence[str]]] = ()


def _judge_change(
    space: RunWorkspace,
    request: ExecutionRequest,
    directory: str,
    result: StepResult,
    defaults: Defaults,
    review: PendingReview | None = None,
) -> StepResult:
    """The attempt's result once its change is known: kept with it, refused if it reaches
    beyond the task's scope or its workspace, sent back or let through by its review,
    landed if the attempt succeeded."""
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
    if review is not None and review.launch is not None:
        # here: most runs review nothing, and need not import the review's modules
        from orchestra.engine.reviewing import review_change

        reviewed = review_change(
            review.launch, space, request, directory, change.diff, review.checks
        )
        result = attrs.evolve(result, review=reviewed)
        held = _held_by_review(review.launch, result, reviewed, change.diff)
        if held is not None:
            return held
    try:
        landing = space.land(request, directory)
    except WorkspaceViolation as violation:
        return _violated(result, str(violation))
    if landing.merged and result.review is not None:
        result = attrs.evolve(result, review=attrs.evolve(result.review, landed=True))
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


def _held_by_review(
    launch: ReviewLaunch, result: StepResult, review: ReviewResult, diff: str | None
) -> StepResult | None:
    """The attempt's end when its review keeps the change from landing: canceled, failed
    with ``review_failed`` (no verdict: the reviewer failed, or its answer had none) or
    ``review_rejected`` (changes asked for, rounds left or the review required); None
    when the change lands (approved, or rejected on the last round of a review that is
    not required: the rejection stays on record)."""
    from orchestra.engine.review_text import rejection_feedback, unreviewed_feedback

    tool = review.tool
    if review.outcome == "canceled":
        return attrs.evolve(result, outcome="canceled", message="canceled during the review")
    if review.verdict is None:
        why = f"{review.error_class or review.outcome}: {review.message or ''}".strip(": ")
        return attrs.evolve(
            result,
            outcome="failed",
            error_class="review_failed",
            message=f"the review by {tool} failed ({why})",
            retry_after=review.retry_after,
            feedback=unreviewed_feedback(tool, why),
        )
    if review.verdict == "approve":
        return None
    if launch.last_round and not launch.review.required:
        return None
    first = (review.comments or "").strip().splitlines()[0]
    return attrs.evolve(
        result,
        outcome="failed",
        error_class="review_rejected",
        message=f"{tool} asked for changes: {first}",
        feedback=rejection_feedback(tool, review.comments or "", diff),
    )


def _redacted(result: StepResult, redact: Callable[[str], str]) -> StepResult:
    """The attempt's result with the secrets its context knows masked in all the store
    keeps of it: the message, the feedback, the diff (a task may write a key into a
    file) and what its review brought (the reviewer's own were masked as it ran)."""

    def masked(text: str | None) -> str | None:
        return None if text is None else redact(text)

    review = result.review
    if review is not None:
        review = attrs.evolve(
            review,
            comments=masked(review.comments),
            message=masked(review.message),
            edits=masked(review.edits),
        )
    message, feedback, diff = masked(result.message), masked(result.feedback), masked(result.diff)
    if (message, feedback, diff, review) == (
        result.message,
        result.feedback,
        result.diff,
        result.review,
    ):
        return result  # most results hold no secret: no copy of them
    return attrs.evolve(result, review=review, message=message, feedback=feedback, diff=diff)


def _violated(result: StepResult, message: str) -> StepResult:
    """The attempt's result once it turned out to have reached beyond its workspace."""
    return attrs.evolve(
        result,
        outcome="failed",
        error_class="scope_violation",
        message=message,
        feedback=refusal_feedback(message),
    )


def _discard(space: RunWorkspace, request: ExecutionRequest, directory: str, context: Any) -> None:
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
    passed: list[tuple[str, list[str]]] | None = None,
) -> StepResult:
    """Run the pre-flight checks, the tool, then the checks in ``request.workdir`` through
    ``context``, and return how the attempt went (on the calling thread).

    What ``ExecutorRun.work`` does between the workspace's ``prepare`` and ``changes``; an
    executor that runs attempts on other machines calls it there (``orchestra.execute_attempt``).
    A pre-flight check that fails ends the attempt ``preflight_failed``, an adapter that
    raises ``crashed``, a failing check ``check_failed``. ``after_tool`` is called between
    the tool and the checks (the workspace notes what the tool left: what the checks
    write is not the attempt's change). ``passed``, when given, gets each check that
    passed with its last lines of output (what a reviewer reads)."""
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
    failed = _run_checks(checks, context, "check_failed", result, passed)
    return result if failed is None else failed


def _run_checks(
    checks: Sequence[Check],
    context: LocalContext,
    error_class: str,
    result: StepResult | None,
    passed: list[tuple[str, list[str]]] | None = None,
) -> StepResult | None:
    """Run ``checks`` in order; return the attempt's failure at the first that fails
    (``error_class``, the tool's ``result`` usage kept), or None when all pass."""
    kind = "pre-flight check" if error_class == "preflight_failed" else "check"
    for check in checks:
        command = check.command  # a string exactly when the check opted into a shell
        argv = (
            ["/bin/sh", "-c", command]
            if check.shell and isinstance(command, str)
            else list(command)
        )
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
        if passed is not None:
            passed.append((check.label, list(output)))
    return None


def _check_failure(check: Check, finished: ProcessResult) -> str:
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
