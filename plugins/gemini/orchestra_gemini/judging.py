"""Turning how the Gemini CLI ended (process, events, working tree) into a StepResult.

The exit code says next to nothing (shared/notes/gemini-cli.md, section 5): the CLI exits
0 on SIGTERM, on an empty reply and when every edit failed, and exits with the HTTP status
modulo 256 on an API error (401 -> 145, 429 -> 173, 500 -> 244). So an attempt is judged
by the ``result`` event and the working tree: success needs both a ``result`` with
``status: "success"`` and a change to the task's files. The words of the CLI's error
messages are matched here to orchestra's error classes.
"""

from __future__ import annotations

import re
import signal

import orchestra
from orchestra_gemini.events import Session
from orchestra_gemini.settings import GeminiSettings

#: the HTTP status in an API error: ``{"error":{"code":401,…}}`` as the CLI prints it
_CODE = re.compile(r'\\?"code\\?"\s*:\s*(\d{3})\b')
#: "Suggested retry after 2s." (from RetryInfo), "Please retry in 3.5s." (Google's text),
#: and a RetryInfo body passed on as it came (``"retryDelay":"2s"``)
_RETRY = re.compile(
    r'(?:retry after|retry in|retryDelay\\?"\s*:\s*\\?")\s*(\d+(?:\.\d+)?)\s*(ms|s)\b', re.I
)
#: phrases of the CLI's messages, per error class, looked for in this order
_PHRASES = (
    (
        "auth",
        (
            "api key not valid",
            "unauthenticated",
            "permission_denied",
            "invalid auth",
            "must specify the gemini_api_key",
        ),
    ),
    ("rate_limited", ("resource has been exhausted", "resource_exhausted", "exceeded your")),
    ("context_overflow", ("input token count", "exceeds the maximum number of tokens")),
    ("invalid_output", ("empty response",)),
    (
        "provider_error",
        ("fetch failed", "econnrefused", "econnreset", "socket hang up", "api error"),
    ),
)
_TEXT_CLASSES = tuple(
    (name, re.compile("|".join(map(re.escape, phrases)), re.I)) for name, phrases in _PHRASES
)
#: exit codes the CLI gives without a result: its auth error (41), and API errors (the
#: HTTP status mod 256: 401 -> 145, 403 -> 147, 429 -> 173)
_EXIT_CLASSES = {41: "auth", 145: "auth", 147: "auth", 173: "rate_limited"}
#: what the CLI always prints on stderr, which says nothing about a failure
_NOISE = re.compile(
    r"(Warning: 256-color|Ripgrep is not available|\[STARTUP\]|YOLO mode is enabled"
    r"|Loaded cached credentials)"
)
#: a line of the CLI's text that says what went wrong
_COMPLAINT = re.compile(r"error|unknown argument|invalid|must specify|not found|cannot", re.I)
#: the longest message kept from the CLI
MAX_MESSAGE = 1000


def error_class(message: str) -> str | None:
    """Return the error class the CLI's ``message`` names, or None when it names none."""
    for code in _CODE.findall(message):
        status = int(code)
        if status in (401, 403):
            return "auth"
        if status == 429:
            return "rate_limited"
        if status >= 500 or status == 408:
            return "provider_error"
    for name, pattern in _TEXT_CLASSES:
        if pattern.search(message):
            return name
    return None


def retry_after(message: str) -> float | None:
    """Return the wait a rate-limit ``message`` asks for, in seconds, when it says one."""
    match = _RETRY.search(message)
    if match is None:
        return None
    amount = float(match.group(1))
    return amount / 1000 if match.group(2).lower() == "ms" else amount


def usage(session: Session, settings: GeminiSettings) -> orchestra.Usage:
    """Return the tokens of the run (from the ``result``'s stats) and, when the profile
    gives prices, their cost.

    The CLI's ``input_tokens`` include the cached ones (``cached``); cached tokens cost
    ``cached_input_cost_per_token`` (the input price when that is not set).
    """
    stats = session.stats
    if not stats:
        return orchestra.Usage()
    tokens_in, cached, tokens_out = (
        _count(stats.get(name)) for name in ("input_tokens", "cached", "output_tokens")
    )
    cost = None
    if settings.input_cost_per_token is not None and settings.output_cost_per_token is not None:
        cached_price = settings.cached_input_cost_per_token
        if cached_price is None:
            cached_price = settings.input_cost_per_token
        cost = (
            max(tokens_in - cached, 0) * settings.input_cost_per_token
            + cached * cached_price
            + tokens_out * settings.output_cost_per_token
        )
    return orchestra.Usage(
        input_tokens=tokens_in,
        cached_input_tokens=cached,
        output_tokens=tokens_out,
        cost_usd=cost,
    )


def judge(
    finished: orchestra.ProcessResult,
    session: Session,
    changed: list[str] | None,
    settings: GeminiSettings,
) -> orchestra.StepResult:
    """Return the StepResult of an attempt: how the CLI's process ended, what its events
    said, and which of the task's paths changed (None when the tree could not be seen)."""
    unfinished = judge_unfinished(finished, session, settings)
    if unfinished is not None:
        return unfinished
    spent = usage(session, settings)
    if changed:
        return orchestra.StepResult("succeeded", exit_code=finished.exit_code, usage=spent)
    return orchestra.StepResult(
        "failed",
        error_class="invalid_output",
        message=_cut(no_change_message(session, changed)),
        exit_code=finished.exit_code,
        usage=spent,
    )


def judge_unfinished(
    finished: orchestra.ProcessResult, session: Session, settings: GeminiSettings
) -> orchestra.StepResult | None:
    """Return the StepResult of a gemini run that did not end well (canceled, stopped,
    not started, no ``result``, a ``result`` saying error), None when it did.

    An edit and a review are judged alike up to there; they differ only in what a run
    that ended well must have left: a change, or an answer.
    """
    spent = usage(session, settings)
    if finished.stopped == "canceled":
        return orchestra.StepResult("canceled", message="canceled while gemini ran", usage=spent)
    if finished.stopped in ("timeout", "idle"):
        return _stopped(finished, session, spent)
    if finished.error is not None:
        return orchestra.StepResult("failed", error_class="tool_missing", message=finished.error)
    if not session.succeeded:
        return _failed(finished, session, settings, spent)
    return None


def _stopped(
    finished: orchestra.ProcessResult, session: Session, spent: orchestra.Usage
) -> orchestra.StepResult:
    what = (
        "ran past its timeout"
        if finished.stopped == "timeout"
        else "printed nothing for its idle_timeout"
    )
    message = f"gemini {what}"
    said = session.failure or _last_line(session)
    if said:
        message += f"; its last words: {_cut(said)}"
    return orchestra.StepResult(
        "timed_out",
        error_class=finished.stopped,
        message=message,
        exit_code=finished.exit_code,
        usage=spent,
    )


def _failed(
    finished: orchestra.ProcessResult,
    session: Session,
    settings: GeminiSettings,
    spent: orchestra.Usage,
) -> orchestra.StepResult:
    """A run whose ``result`` said error, or that ended without a ``result``."""
    said = session.failure
    if session.result is None:
        said = said or _last_line(session)
    found = error_class(said) if said else None
    if found is None and session.result is None:
        found = _EXIT_CLASSES.get(finished.exit_code or 0)
    if session.result is not None:
        kind = found or "turn_failed"
        message = said or "gemini's run ended with an error it did not name"
    else:
        kind = found or "crashed"
        message = _ended_early(finished, said)
    wait = None
    if kind == "rate_limited":
        wait = retry_after(said or "") or settings.rate_limit_wait
    return orchestra.StepResult(
        "failed",
        error_class=kind,
        message=_cut(message),
        exit_code=finished.exit_code,
        retry_after=wait,
        usage=spent,
    )


def no_change_message(session: Session, changed: list[str] | None) -> str:
    """Return why a run that ended well changed none of the task's files."""
    edits = session.edits()
    refused = [call for call in session.calls if call.error_type == "tool_not_registered"]
    if changed is None:
        message = "gemini finished, but the working tree could not be looked at"
    elif refused:
        message = (
            "gemini finished without changing any of the task's files: the model called"
            f" tools gemini did not offer it ({refused[0].error_message})"
        )
    elif edits and all(call.status != "success" for call in edits):
        last = edits[-1]
        message = (
            f"gemini finished without changing any of the task's files: every edit failed"
            f" ({len(edits)}; the last: {last.name} {last.error_type}: {last.error_message})"
        )
    elif any(call.status == "success" for call in edits):
        message = "gemini finished, but its edits changed none of the task's files"
    else:
        message = "gemini finished without changing any file"
    answer = session.last_text.strip()
    return message + (f"; its last message: {_cut(answer)}" if answer else "")


def _ended_early(finished: orchestra.ProcessResult, said: str | None) -> str:
    if finished.exit_code is None:
        how = f"was killed by {_signal_name(finished.signal)}"
    else:
        how = f"exited {finished.exit_code}"
    return f"gemini {how} without a result" + (f": {said}" if said else "")


def _last_line(session: Session) -> str | None:
    """Return the line of the CLI's own text that best says what went wrong: one naming an
    error, among its first lines (a complaint about its arguments comes before the usage
    text) and then its last; else its first line that is not noise."""
    lines = [
        line
        for line in [*session.first_text, *reversed(session.text)]
        if not line[:1].isspace() and not _NOISE.match(line)
    ]
    for line in lines:
        if _COMPLAINT.search(line):
            return line
    return lines[0] if lines else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _cut(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _signal_name(signum: int | None) -> str:
    if signum is not None:
        try:
            return f"signal {signum} ({signal.Signals(signum).name})"
        except ValueError:  # a number no signal has here
            pass
    return f"signal {signum}"
