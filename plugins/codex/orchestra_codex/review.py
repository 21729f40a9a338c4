"""Judging codex as a reviewer: its turn read another tool's change, and its last message
is the answer orchestra reads the verdict from.

A review runs the same ``codex exec --json`` as an attempt, with orchestra's review
prompt as it is and codex's ``read-only`` sandbox in place of the profile's: the model's
patches are refused and its commands cannot write (shared/notes/real-tools.md, 4.7). Up to
a completed turn it is judged as an attempt is (``judging.judge_unfinished``); then it
needs an answer where an attempt needs a change.
"""

from __future__ import annotations

import orchestra
from orchestra_codex.events import Turn
from orchestra_codex.judging import judge_unfinished, usage
from orchestra_codex.settings import CodexSettings

#: the sandbox a review runs in, whatever the profile's: reading only
REVIEW_SANDBOX = "read-only"


def judge_review(
    finished: orchestra.ProcessResult, turn: Turn, settings: CodexSettings
) -> orchestra.StepResult:
    """Return the StepResult of a review: as an attempt's until codex's turn completed,
    then succeeded with its last ``agent_message`` as ``answer``, or ``invalid_output``
    when it left none."""
    unfinished = judge_unfinished(finished, turn, settings)
    if unfinished is not None:
        return unfinished
    spent = usage(turn, settings)
    answer = turn.last_agent_message
    if answer is None or not answer.strip():
        return orchestra.StepResult(
            "failed",
            error_class="invalid_output",
            message="codex finished its review without an answer (no agent_message)",
            exit_code=finished.exit_code,
            usage=spent,
        )
    return orchestra.StepResult(
        "succeeded", exit_code=finished.exit_code, usage=spent, answer=answer
    )
