"""The prompt claude gets: the task's, its file scope, and on a retry what went wrong and
what the working tree holds now."""

from __future__ import annotations

from collections.abc import Callable

import orchestra

#: the most of a check's output passed on to claude (its end, where errors usually are)
MAX_FEEDBACK = 20_000


def build_prompt(request: orchestra.ExecutionRequest, redact: Callable[[str], str] = str) -> str:
    """Return the prompt for one attempt.

    On a retry, ``request.feedback`` says what went wrong with the last attempt (a failed
    check's output, a refused or conflicting change; ``redact`` masks the secrets in it)
    and ``orchestra.start_note`` what the working tree holds now: the last change, or a
    clean start without it. Claude's file tools take absolute paths; it is told they are
    relative to its working directory, which it knows.
    """
    task = request.task
    parts = [(task.prompt or "").strip()]
    scope = describe_scope(task.files)
    if scope:
        parts.append(scope)
    feedback = (request.feedback or "").strip()
    if feedback:
        parts.append(
            "An earlier attempt at this task did not succeed. What went wrong:\n\n"
            + _tail(redact(feedback))
        )
    start = orchestra.start_note(request)
    if start:
        parts.append(start)
    return "\n\n".join(part for part in parts if part) + "\n"


def describe_scope(files: orchestra.FileScope) -> str:
    """Return the task's file scope as sentences for the model ("" when it has none)."""
    sentences = []
    for patterns, what in (
        (files.read, "Read"),
        (files.write, "You may change"),
        (files.create, "You may create"),
        (files.forbidden, "Do not read or change"),
    ):
        if patterns:
            sentences.append(f"{what}: {', '.join(patterns)}.")
    if not sentences:
        return ""
    return "Files (patterns relative to your working directory):\n" + "\n".join(sentences)


def _tail(text: str) -> str:
    if len(text) <= MAX_FEEDBACK:
        return text
    return "[… earlier output cut …]\n" + text[-MAX_FEEDBACK:]
