"""The prompt gemini gets: the task's, its file scope, and on a retry what went wrong and
what the working tree holds now."""

from __future__ import annotations

import orchestra

#: the most of a check's output passed on to the model (its end, where errors usually are)
MAX_FEEDBACK = 20_000


def build_prompt(
    task: orchestra.Task, feedback: str | None = None, start: str | None = None
) -> str:
    """Return the prompt for one attempt of ``task``.

    On a retry, ``feedback`` says what went wrong with the last attempt (a failed check's
    output, a refused or conflicting change) and ``start`` what the working tree holds
    now (``orchestra.start_note``): the last change, or a clean start without it.
    """
    parts = [(task.prompt or "").strip()]
    scope = describe_scope(task.files)
    if scope:
        parts.append(scope)
    if feedback and feedback.strip():
        parts.append(
            "An earlier attempt at this task did not succeed. What went wrong:\n\n"
            + _tail(feedback.strip())
        )
    if start:
        parts.append(start)
    return "\n\n".join(part for part in parts if part)


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
    return "Files (patterns relative to the repository root):\n" + "\n".join(sentences)


def _tail(text: str) -> str:
    if len(text) <= MAX_FEEDBACK:
        return text
    return "[… earlier output cut …]\n" + text[-MAX_FEEDBACK:]
