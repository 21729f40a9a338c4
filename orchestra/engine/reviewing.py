"""The review of one attempt's change, on the worker, between its checks and its landing.

The reviewer runs in the attempt's worktree, which holds the change committed; whatever
it changes there is kept as a diff for the record and put back (the workspace's
``review_edits``), so a reviewer's edit never lands. Its answer's verdict is read
strictly (``review_text.read_verdict``): a reviewer that fails or gives no readable
verdict never approves.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from orchestra.engine.review_text import UnreadableVerdict, read_verdict, review_prompt
from orchestra.models import ReviewResult, StepResult

if TYPE_CHECKING:
    from orchestra.models import ExecutionRequest
    from orchestra.plugin.protocols import ReviewLaunch, RunWorkspace


def review_change(
    launch: ReviewLaunch,
    space: RunWorkspace,
    request: ExecutionRequest,
    directory: str,
    diff: str | None,
    checks: Sequence[tuple[str, Sequence[str]]],
) -> ReviewResult:
    """Ask the reviewer about the change of ``request``'s attempt in ``directory`` and
    return what it came to; the directory holds the change again afterwards."""
    context = launch.context
    context.cwd = directory
    task = request.task
    prompt = review_prompt(task, launch.review, diff, checks, launch.round)
    asked = attrs.evolve(
        launch.request,
        task=attrs.evolve(task, prompt=prompt, command=None, shell=False),
        workdir=directory,
        feedback=None,
    )
    launch.announce()
    started = time.time()
    try:
        answered = launch.adapter.review(asked, context)  # type: ignore[attr-defined]
    except Exception as error:  # an adapter's bug fails the review, never approves
        message = context.redact(f"{type(error).__name__}: {error}")
        answered = StepResult("failed", error_class="crashed", message=message)
    ended = time.time()
    try:
        edits = _edits(space, request, directory)
    finally:
        context.cleanup()
    result = ReviewResult(
        tool=launch.tool,
        round=launch.round,
        outcome=answered.outcome,
        error_class=answered.error_class,
        message=answered.message,
        retry_after=answered.retry_after,
        usage=answered.usage,
        started_at=started,
        ended_at=ended,
        log_path=context.log_path,
        edits=context.redact(edits) if edits else None,
    )
    if answered.outcome != "succeeded":
        return result
    try:
        verdict, comments = read_verdict(answered.answer)
    except UnreadableVerdict as unreadable:
        return attrs.evolve(
            result,
            outcome="failed",
            error_class="invalid_output",
            message=context.redact(str(unreadable)),
        )
    return attrs.evolve(result, verdict=verdict, comments=context.redact(comments))


def _edits(space: RunWorkspace, request: ExecutionRequest, directory: str) -> str | None:
    """What the reviewer changed, as a diff, after putting the change back as it was."""
    review_edits = getattr(space, "review_edits", None)
    return review_edits(request, directory) if review_edits is not None else None
