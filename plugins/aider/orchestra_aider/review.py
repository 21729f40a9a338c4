"""Aider as a reviewer: the command that only asks, and the model's reply as the answer.

A review runs aider as an attempt does (``command.invocation``: the same fixed flags, no
commits, its chat and input histories nowhere), with orchestra's review prompt as its
message, unchanged but for the secrets it masks, and with:

- ``--chat-mode ask`` after the profile's flags and ``args`` (so that it wins over an
  ``edit_format``): the model is asked a question about the code, not for an edit;
- ``--dry-run``: should an edit be found in the reply anyway, aider does not write it;
- the task's files (its ``read``, ``write`` and ``create`` patterns, not the forbidden
  ones) as ``--read`` files: aider has no tools to open a file, so what it is shown is
  all it sees besides the prompt's diff;
- ``--llm-history-file`` in the attempt's scratch directory: aider logs there each reply
  of the model exactly as it came. What aider prints is no record of it: without
  streaming, aider wraps the reply at 80 columns, which breaks a JSON verdict.

Aider exits 0 whatever the provider did, so a review is judged as an attempt is
(``outcome.why_failed``), with the model's last reply in place of a change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import orchestra
from orchestra_aider.command import Invocation, invocation
from orchestra_aider.outcome import AiderOutput, failed, judge_stopped, why_failed
from orchestra_aider.worktree import files_matching

#: the flags that make an attempt a review, after the profile's so that they win
REVIEW_FLAGS = ("--chat-mode", "ask", "--dry-run")
#: how aider heads each entry of its LLM history file ("LLM RESPONSE 2026-12-04T16:11:35")
_ENTRY = re.compile(r"^(?:TO LLM|LLM RESPONSE) \d{4}-\d\d-\d\dT\S*$")
_RESPONSE = "LLM RESPONSE "
#: what aider puts before each line of a reply in that file
_REPLY_LINE = "ASSISTANT"


def build(
    request: orchestra.ExecutionRequest,
    scratch: Path,
    cwd: str,
    aider: str,
    redact: Callable[[str], str],
) -> Invocation:
    """Return the invocation of ``aider`` reviewing as ``request.task.prompt`` asks; write
    its files into ``scratch``."""
    scope = request.task.files
    patterns = [*scope.read, *scope.write, *scope.create]
    read_files = sorted(files_matching(cwd, patterns, scope.forbidden))
    return invocation(
        request,
        scratch,
        aider,
        redact(request.task.prompt or ""),
        chat_files=[],
        read_files=read_files,
        last_flags=REVIEW_FLAGS,
        llm_history=scratch / "llm-history.txt",
    )


def last_reply(llm_history: Path | None) -> str:
    """Return the model's last reply in aider's LLM history file ("" when there is none:
    no file, no reply, or a request that failed, which aider logs as an empty reply)."""
    try:
        lines = llm_history.read_text(errors="replace").splitlines() if llm_history else []
    except OSError:
        return ""
    reply: list[str] | None = None
    for line in lines:
        if _ENTRY.match(line):
            reply = [] if line.startswith(_RESPONSE) else None
        elif reply is not None and line.startswith(_REPLY_LINE):
            reply.append(line[len(_REPLY_LINE) + 1 :])
    return "\n".join(reply or [])


def judge_review(
    finished: orchestra.ProcessResult,
    output: AiderOutput,
    answer: str,
    usage: orchestra.Usage,
) -> orchestra.StepResult:
    """Return the result of a review: succeeded with ``answer`` (the model's last reply)
    when aider ended well with one, else the most telling reason aider gave, and
    ``invalid_output`` when it gave none."""
    stopped = judge_stopped(finished, usage)
    if stopped is not None:
        return stopped
    if finished.exit_code == 0 and answer.strip():
        return orchestra.StepResult("succeeded", exit_code=0, usage=usage, answer=answer)
    found = why_failed(finished, output) or (
        "invalid_output",
        "aider finished its review without an answer (the model's reply was empty)",
    )
    return failed(finished, *found, usage)
