"""Judging gemini as a reviewer: the model's final text is the answer orchestra reads the
verdict from.

A review runs the same ``gemini -p --output-format stream-json`` as an attempt, with
orchestra's review prompt as it is and ``--approval-mode default`` in place of the
profile's: in a run without a person, that mode declares only the CLI's read-only tools
(``read_file``, ``grep_search``, ``glob``, ``list_directory`` …), so a ``replace``,
``write_file`` or shell command of the model fails as ``tool_not_registered``
(shared/notes/gemini-cli.md, section 3). The CLI's ``plan`` mode is read-only too, but
its system prompt asks the model for an implementation plan saved to a plans directory
and an ``exit_plan_mode`` call, not for an answer.

Up to a ``result`` that says success a review is judged as an attempt is
(``judging.judge_unfinished``); then it needs an answer where an attempt needs a change.
"""

from __future__ import annotations

import orchestra
from orchestra_gemini.events import Session
from orchestra_gemini.judging import judge_unfinished, usage
from orchestra_gemini.settings import GeminiSettings

#: the approval mode of a review: only the read-only tools are declared to the model
REVIEW_APPROVAL_MODE = "default"


def judge_review(
    finished: orchestra.ProcessResult, session: Session, settings: GeminiSettings
) -> orchestra.StepResult:
    """Return the StepResult of a review: as an attempt's until the CLI's ``result`` said
    success, then succeeded with the model's text after its last tool call as ``answer``,
    or ``invalid_output`` when there is none."""
    unfinished = judge_unfinished(finished, session, settings)
    if unfinished is not None:
        return unfinished
    spent = usage(session, settings)
    answer = session.last_text
    if not answer.strip():
        return orchestra.StepResult(
            "failed",
            error_class="invalid_output",
            message="gemini finished its review without an answer (no text after its last"
            " tool call)",
            exit_code=finished.exit_code,
            usage=spent,
        )
    return orchestra.StepResult(
        "succeeded", exit_code=finished.exit_code, usage=spent, answer=answer
    )
