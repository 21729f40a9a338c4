"""What a reviewer is asked and what its answer must say.

The host writes the whole question (the task, the change's diff, the checks' output, the
team's guidelines and the verdict's format), so every tool is asked the same thing and
judged the same way; an adapter only passes it on, read-only (``ToolReviewer``). The
verdict is read strictly: an answer without exactly one verdict object is
``invalid_output``, never an approval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from orchestra.models import VERDICTS, Defaults, Review, Task

#: how much of the change's diff the reviewer is shown (characters); the rest is cut
DIFF_LIMIT = 60_000
#: how many of each check's last lines of output the reviewer is shown, each cut at
#: ``CHECK_LINE_LIMIT`` characters
CHECK_LINES = 20
CHECK_LINE_LIMIT = 300
#: the most the question may hold of what orchestra adds (characters): some tools take
#: it as one argument, which Linux caps at 128 KiB; the diff is cut further to fit
PROMPT_LIMIT = 100_000
#: how much of the reviewer's comments the next attempt's prompt carries (characters)
COMMENTS_LIMIT = 4_000

VERDICT_FORMAT = """\
Answer with your verdict as the LAST thing you write: one JSON object on a line of its own,
with no code fence around it, either

{"verdict": "approve", "comments": "what you checked, in a sentence or two"}

or

{"verdict": "request_changes", "comments": "what must change, and where (file and line)"}

Request changes only for what is wrong or missing with respect to the task; approve a change
that does the task, even if you would have written it differently. Do not edit any file:
you are reading, not writing."""


def review_of(task: Task, defaults: Defaults) -> Review | None:
    """The review a task's changes get: its own ``review``, else [defaults]'; None when
    there is none or the task turned it off (``review = false``)."""
    review = task.review if task.review is not None else defaults.review
    if review is None or not review.enabled:
        return None
    return review


def review_prompt(
    task: Task,
    review: Review,
    diff: str | None,
    checks: Sequence[tuple[str, Sequence[str]]],
    round_: int,
) -> str:
    """The question a reviewer is asked about one attempt's change: the task, the change
    (its diff, cut at ``DIFF_LIMIT``), what the checks printed, the team's guidelines,
    and the verdict's format."""
    parts = [
        "You are reviewing a change another AI coding tool made for the task below, before"
        " it is merged. The change is in the working tree of this directory, committed"
        " (`git show HEAD` shows it too).",
        f"## The task ({task.id})",
    ]
    if task.title:
        parts.append(task.title)
    if task.prompt:
        parts.append(task.prompt)
    elif task.command is not None:
        command = task.command if isinstance(task.command, str) else " ".join(task.command)
        parts.append(f"The change was made by the command: {command}")
    scope = _scope(task)
    if scope:
        parts.append(scope)
    after = ["## The checks"]
    if checks:
        for label, lines in checks:
            tail = "\n".join(_cut(line) for line in lines[-CHECK_LINES:]).rstrip()
            after.append(f"`{label}` passed." + (f"\n```\n{tail}\n```" if tail else ""))
    else:
        after.append("The task has no checks.")
    if review.prompt:
        after.append(f"## The team's review guidelines\n{review.prompt.strip()}")
    if round_ > 1:
        after.append(
            f"This is review round {round_}: an earlier change for this task was sent back."
        )
    after.append(f"## Your verdict\n{VERDICT_FORMAT}")
    parts.append("## The change")
    if not diff:
        parts.append("The change is empty: the tool changed no file.")
    else:
        room = PROMPT_LIMIT - sum(len(part) + 2 for part in after)
        limit = max(1_000, min(DIFF_LIMIT, room))
        shown = diff if len(diff) <= limit else diff[:limit] + "\n[… diff cut here]"
        parts.append(f"```diff\n{shown.rstrip()}\n```")
    return "\n\n".join([*parts, *after]) + "\n"


def _cut(line: str) -> str:
    return line if len(line) <= CHECK_LINE_LIMIT else line[:CHECK_LINE_LIMIT] + " […]"


def _scope(task: Task) -> str:
    files = task.files
    lines = []
    for name, patterns in (("may write", files.write), ("may create", files.create)):
        if patterns:
            lines.append(f"It {name}: {', '.join(patterns)}.")
    if files.forbidden:
        lines.append(f"It must not touch: {', '.join(files.forbidden)}.")
    return " ".join(lines)


class UnreadableVerdict(ValueError):
    """A reviewer's answer that holds no verdict orchestra can read (``invalid_output``)."""


#: a JSON object on one line that names a verdict
_OBJECT = re.compile(r"\{[^{}\n]*\"verdict\"[^{}\n]*\}")
#: the same object written over several lines (some models pretty-print it)
_SPREAD = re.compile(r"\{[^{}]*\"verdict\"[^{}]*\}", re.DOTALL)


def read_verdict(answer: str | None) -> tuple[str, str]:
    """Return the verdict (``approve`` or ``request_changes``) and the comments of a
    reviewer's answer; raise ``UnreadableVerdict`` saying why there is none.

    The answer must hold JSON objects with a ``verdict`` (a code fence around it is
    tolerated), and they must agree: two different verdicts are no verdict. A request for
    changes must say what to change."""
    if answer is None or not answer.strip():
        raise UnreadableVerdict("the reviewer gave no answer")
    found = _OBJECT.findall(answer) or _SPREAD.findall(answer)
    if not found:
        raise UnreadableVerdict(
            'the reviewer\'s answer holds no {"verdict": …} object: ' + _excerpt(answer)
        )
    verdicts: list[tuple[str, str]] = []
    for text in found:
        try:
            value = json.loads(text)
        except ValueError:
            message = f"the reviewer's verdict is not valid JSON: {text[:200]}"
            raise UnreadableVerdict(message) from None
        if not isinstance(value, dict):
            raise UnreadableVerdict(f"the reviewer's verdict is not an object: {text[:200]}")
        verdict, comments = value.get("verdict"), value.get("comments", "")
        if verdict not in VERDICTS:
            raise UnreadableVerdict(
                f"the reviewer's verdict {verdict!r} is neither of {', '.join(VERDICTS)}"
            )
        if not isinstance(comments, str):
            raise UnreadableVerdict("the reviewer's comments are not a string")
        verdicts.append((verdict, comments.strip()))
    if len({verdict for verdict, _ in verdicts}) > 1:
        raise UnreadableVerdict("the reviewer's answer gives both verdicts")
    verdict, comments = verdicts[-1]
    if verdict == "request_changes" and not comments:
        raise UnreadableVerdict("the reviewer requested changes without saying which")
    return verdict, comments


def _excerpt(answer: str) -> str:
    text = " ".join(answer.split())
    return text if len(text) <= 200 else f"{text[:200]}…"


def rejection_feedback(tool: str, comments: str, diff: str | None) -> str:
    """What the next attempt is told after a reviewer asked for changes: the comments,
    and the diff they refer to (cut to fit)."""
    if len(comments) > COMMENTS_LIMIT:
        comments = comments[:COMMENTS_LIMIT] + " [… cut]"
    text = (
        f"A reviewer ({tool}) read your last change and asked for changes before it may be"
        f" merged. Its comments:\n\n{comments}\n"
    )
    if diff:
        shown = diff if len(diff) <= DIFF_LIMIT // 4 else diff[: DIFF_LIMIT // 4] + "\n[… cut]"
        text += f"\nThe change they refer to:\n```diff\n{shown.rstrip()}\n```\n"
    return text


def unreviewed_feedback(tool: str, why: str) -> str:
    """What the next attempt is told after its change could not be reviewed."""
    return (
        f"Your last change passed its checks, but its review by {tool} could not be made"
        f" ({why}), so it was not merged. Look it over and finish the task."
    )
