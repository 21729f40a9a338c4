"""Claude as a reviewer: the settings that keep it from editing, and judging its answer.

A review runs the same ``claude -p --output-format stream-json`` as an attempt, with
orchestra's review prompt as it is, and with:

- ``--permission-mode dontAsk``: what would need a person's permission is refused, so
  claude reads files and runs the commands it deems read-only (``git diff``, ``ls``) and
  nothing else (a ``Bash`` that writes is refused);
- ``--disallowedTools Edit Write NotebookEdit`` (with the profile's own): the edit tools
  are not even offered to the model;
- no ``--allowedTools``: the profile's (``Bash(pytest *)`` …) let an attempt run what may
  write, which a reviewer has no need of.

Up to a result line without ``is_error`` a review is judged as an attempt is
(``judging.judge_unfinished``); then its ``result`` text is the answer, where an attempt
needs a change.
"""

from __future__ import annotations

import dataclasses

import orchestra
from orchestra_claude.judging import judge_unfinished, usage
from orchestra_claude.settings import ClaudeSettings
from orchestra_claude.stream import Session

#: the permission mode of a review: refuse, without asking, whatever is not read-only
REVIEW_PERMISSION_MODE = "dontAsk"
#: the tools a review never offers the model: every one that writes a file
EDIT_TOOLS = ("Edit", "Write", "NotebookEdit")


def read_only(settings: ClaudeSettings) -> ClaudeSettings:
    """Return ``settings`` for a review: the read-only permission mode, the edit tools
    disallowed besides the profile's, no tool allowed beyond what the mode allows."""
    disallowed = [
        *EDIT_TOOLS,
        *(name for name in settings.disallowed_tools if name not in EDIT_TOOLS),
    ]
    return dataclasses.replace(
        settings,
        permission_mode=REVIEW_PERMISSION_MODE,
        allowed_tools=(),
        disallowed_tools=tuple(disallowed),
    )


def judge_review(
    finished: orchestra.ProcessResult, session: Session, settings: ClaudeSettings
) -> orchestra.StepResult:
    """Return the StepResult of a review: as an attempt's until claude's result line said
    no error, then succeeded with that line's ``result`` text as ``answer``, or
    ``invalid_output`` when it holds none."""
    unfinished = judge_unfinished(finished, session, settings)
    if unfinished is not None:
        return unfinished
    spent = usage(session, settings)
    answer = (session.result or {}).get("result")
    if not isinstance(answer, str) or not answer.strip():
        return orchestra.StepResult(
            "failed",
            error_class="invalid_output",
            message="claude finished its review without an answer (an empty result)",
            exit_code=finished.exit_code,
            usage=spent,
        )
    return orchestra.StepResult(
        "succeeded", exit_code=finished.exit_code, usage=spent, answer=answer
    )
