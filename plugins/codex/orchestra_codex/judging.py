"""Turning how codex ended (process, events, working tree) into orchestra's StepResult.

The exit code alone says little: codex exits 0 when its patch failed or the model made
no change, and 1 for every provider error. The event stream says why a turn failed, in
codex's words (shared/notes/real-tools.md, section 4.6, and the recorded streams in
tests/fixtures): those words are matched here to orchestra's error classes.
"""

from __future__ import annotations

import re
import signal

import orchestra
from orchestra_codex.events import Turn
from orchestra_codex.settings import CodexSettings

#: "unexpected status 401 Unauthorized: …", "exceeded retry limit, last status: 429 …"
_STATUS = re.compile(r"\bstatus:? (\d{3})\b")
#: "… Please try again in 11.054s." (OpenAI's rate-limit message, passed on by codex)
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?) ?(ms|s|sec|seconds?|m|min|minutes?)\b", re.I)
#: phrases of codex's messages, per error class, looked for in this order
_PHRASES = (
    (
        "auth",
        (
            "unauthorized",
            "incorrect api key",
            "invalid api key",
            "missing environment variable",
            "quota exceeded",
            "insufficient_quota",
        ),
    ),
    ("rate_limited", ("rate limit", "too many requests")),
    ("context_overflow", ("context window", "context_length_exceeded", "maximum context length")),
    (
        "provider_error",
        (
            "connection failed",
            "error sending request",
            "stream closed before",
            "high demand",
            "service unavailable",
            "overloaded",
            "bad gateway",
            "timed out",
        ),
    ),
)
_TEXT_CLASSES = tuple(
    (name, re.compile("|".join(map(re.escape, phrases)), re.I)) for name, phrases in _PHRASES
)
#: "2026-11-26T04:10:53.789751Z ERROR codex_core::tools::router: error=apply_patch …"
_LOGGED_ERROR = re.compile(r"^\S+\s+ERROR\s+\S+:\s+(?:error=)?(.*)$")
#: the longest message kept from codex
MAX_MESSAGE = 1000


def error_class(message: str) -> str | None:
    """Return the error class codex's ``message`` names, or None when it names none."""
    for code in _STATUS.findall(message):
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
    match = _TRY_AGAIN.search(message)
    if match is None:
        return None
    amount, unit = float(match.group(1)), match.group(2).lower()
    if unit == "ms":
        return amount / 1000
    return amount * 60 if unit.startswith("m") else amount


def usage(turn: Turn, settings: CodexSettings) -> orchestra.Usage:
    """Return the tokens of ``turn`` and, when the profile gives prices, their cost.

    codex's ``input_tokens`` include the cached ones; cached tokens cost
    ``cached_input_cost_per_token`` (the input price when that is not set).
    """
    if turn.usage is None:
        return orchestra.Usage()
    counts = turn.usage
    cost = None
    if settings.input_cost_per_token is not None and settings.output_cost_per_token is not None:
        cached_price = settings.cached_input_cost_per_token
        if cached_price is None:
            cached_price = settings.input_cost_per_token
        uncached = max(counts.input_tokens - counts.cached_input_tokens, 0)
        cost = (
            uncached * settings.input_cost_per_token
            + counts.cached_input_tokens * cached_price
            + counts.output_tokens * settings.output_cost_per_token
        )
    return orchestra.Usage(
        input_tokens=counts.input_tokens,
        cached_input_tokens=counts.cached_input_tokens,
        output_tokens=counts.output_tokens,
        cost_usd=cost,
    )


def judge(
    finished: orchestra.ProcessResult,
    turn: Turn,
    changed: list[str] | None,
    settings: CodexSettings,
) -> orchestra.StepResult:
    """Return the StepResult of an attempt: how codex's process ended, what its events
    said, and which paths changed (None when the tree could not be looked at)."""
    unfinished = judge_unfinished(finished, turn, settings)
    if unfinished is not None:
        return unfinished
    spent = usage(turn, settings)
    if changed:
        return orchestra.StepResult("succeeded", exit_code=finished.exit_code, usage=spent)
    return orchestra.StepResult(
        "failed",
        error_class="invalid_output",
        message=_no_change_message(turn, changed),
        exit_code=finished.exit_code,
        usage=spent,
    )


def judge_unfinished(
    finished: orchestra.ProcessResult, turn: Turn, settings: CodexSettings
) -> orchestra.StepResult | None:
    """Return the StepResult of a codex run that did not complete its turn (canceled,
    stopped, not started, failed), None when its turn completed.

    An edit and a review are judged alike up to there; they differ only in what a
    completed turn must have left: a change, or an answer.
    """
    spent = usage(turn, settings)
    if finished.stopped == "canceled":
        return orchestra.StepResult("canceled", message="canceled while codex ran", usage=spent)
    if finished.stopped in ("timeout", "idle"):
        return _stopped(finished, turn, spent)
    if finished.error is not None:
        return orchestra.StepResult("failed", error_class="tool_missing", message=finished.error)
    if turn.failure is not None or not turn.completed:
        return _failed(finished, turn, settings, spent)
    return None


def _stopped(
    finished: orchestra.ProcessResult, turn: Turn, spent: orchestra.Usage
) -> orchestra.StepResult:
    what = (
        "ran past its timeout"
        if finished.stopped == "timeout"
        else "printed nothing for its idle_timeout"
    )
    message = f"codex {what}"
    if turn.last_error:
        message += f"; its last error: {_cut(turn.last_error)}"
    return orchestra.StepResult(
        "timed_out",
        error_class=finished.stopped,
        message=message,
        exit_code=finished.exit_code,
        usage=spent,
    )


def _failed(
    finished: orchestra.ProcessResult, turn: Turn, settings: CodexSettings, spent: orchestra.Usage
) -> orchestra.StepResult:
    """A turn that failed, or a codex that ended without finishing one."""
    message = turn.last_error or _last_text(turn)
    found = error_class(message) if message else None
    if turn.failure is not None:
        kind = found or "turn_failed"
    else:
        kind = found or "crashed"
        message = _ended_early(finished, message)
    wait = None
    if kind == "rate_limited":
        wait = retry_after(message or "") or settings.rate_limit_wait
    return orchestra.StepResult(
        "failed",
        error_class=kind,
        message=_cut(message or "codex failed without saying why"),
        exit_code=finished.exit_code,
        retry_after=wait,
        usage=spent,
    )


def _ended_early(finished: orchestra.ProcessResult, said: str | None) -> str:
    if finished.exit_code is None:
        how = f"was killed by {_signal_name(finished.signal)}"
    else:
        how = f"exited {finished.exit_code}"
    return f"codex {how} before finishing its turn" + (f": {said}" if said else "")


def _no_change_message(turn: Turn, changed: list[str] | None) -> str:
    if changed is None:
        message = "codex finished its turn, but the working tree could not be looked at"
    else:
        message = "codex finished its turn without changing any file"
    logged = _logged_error(turn)
    if logged:
        message += f"; codex logged: {_cut(logged)}"
    answer = turn.last_agent_message
    return message + (f"; its last message: {_cut(answer)}" if answer else "")


def _logged_error(turn: Turn) -> str | None:
    """Return the last ERROR line codex logged on stderr (a failed patch leaves only that)."""
    for line in reversed(turn.text):
        match = _LOGGED_ERROR.match(line)
        if match:
            return match.group(1)
    return None


def _last_text(turn: Turn) -> str | None:
    """Return codex's last line saying "error…" (a usage or config error), else its last."""
    for line in reversed(turn.text):
        if line.lower().startswith("error"):
            return line
    return turn.text[-1] if turn.text else None


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
