"""The prompt codex gets: the task's, its file scope, and a failed check's output."""

from __future__ import annotations

import orchestra

#: the most of a check's output passed on to codex (its end, where errors usually are)
MAX_FEEDBACK = 20_000


def build_prompt(task: orchestra.Task, feedback: str | None = None) -> str:
    """Return the prompt for one attempt of ``task``.

    On a retry after a failed check, ``feedback`` is the check's output: codex is told
    its earlier edits are still in the tree and what the check said.
    """
    parts = [(task.prompt or "").strip()]
    scope = describe_scope(task.files)
    if scope:
        parts.append(scope)
    if feedback and feedback.strip():
        parts.append(
            "An earlier attempt at this task made changes that are still in the working"
            " tree, but a check failed. Fix the problem it reports. The check's output:\n\n"
            + _tail(feedback.strip())
        )
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
