"""Turning how claude ended (process, stream, working tree) into orchestra's StepResult.

Neither claude's exit status nor its result's ``subtype`` says whether the task was done
(shared/notes/claude-code.md, section 9): claude exits 0 with ``subtype: "success"`` when
every edit was refused or failed, and reports a failed API call as ``subtype:
"success"`` with ``is_error: true``. So an attempt succeeds only when the final
``result`` line has ``is_error: false`` and the working tree changed during the attempt.
"""

from __future__ import annotations

import re
import signal
from typing import Any

import orchestra
from orchestra_claude.settings import ClaudeSettings
from orchestra_claude.stream import Session, ToolCall

#: the longest message kept from claude
MAX_MESSAGE = 1000
#: the token counts of Anthropic's usage objects
TOKEN_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
#: phrases of claude's error texts, per error class, for errors without an HTTP status
_PHRASES = (
    # "Not logged in · Please run /login": no key reached it (none configured)
    (
        "auth",
        (
            "invalid api key",
            "failed to authenticate",
            "authentication",
            "unauthorized",
            "not logged in",
            "please run /login",
        ),
    ),
    ("rate_limited", ("rate limit", "request rejected (429)")),
    ("context_overflow", ("prompt is too long", "context window", "context length")),
    (
        "provider_error",
        (
            "connection refused",
            "connection dropped",
            "connection error",
            "econnrefused",
            "econnreset",
            "timed out",
            "json parse error",
            "overloaded",
            "server-side issue",
            "socket",
            "fetch failed",
            "unable to connect",
        ),
    ),
)
_TEXT_CLASSES = tuple(
    (name, re.compile("|".join(map(re.escape, phrases)), re.I)) for name, phrases in _PHRASES
)


def error_class(status: Any, message: str) -> str:
    """Return the error class of a failed API call: by its HTTP ``status`` when claude
    gives one, else by the words of its ``message``."""
    if isinstance(status, int) and not isinstance(status, bool):
        if status in (401, 403):
            return "auth"
        if status == 429:
            return "rate_limited"
        if status == 413:
            return "context_overflow"
        if status >= 500 or status == 408:
            return "provider_error"
    for name, pattern in _TEXT_CLASSES:
        if pattern.search(message):
            return name
    return "turn_failed"


def usage(session: Session, settings: ClaudeSettings) -> orchestra.Usage:
    """Return the tokens of the attempt and its cost, from the result line.

    Anthropic counts the input read from the prompt cache and the input written to it
    apart from the rest; orchestra's ``input_tokens`` are all of them, its
    ``cached_input_tokens`` those read from the cache. The cost is computed from the
    profile's prices when it gives them, else it is the one claude reports (computed by
    claude from Anthropic's list prices, whatever the model).
    """
    result = session.result
    counts = result.get("usage") if result is not None else None
    if not isinstance(counts, dict):
        counts = _responses_usage(session)
        if counts is None:
            return orchestra.Usage()
    fresh = _count(counts, "input_tokens")
    read = _count(counts, "cache_read_input_tokens")
    written = _count(counts, "cache_creation_input_tokens")
    output = _count(counts, "output_tokens")
    if settings.prices:
        input_price = settings.input_cost_per_token or 0.0
        read_price = settings.cache_read_cost_per_token
        written_price = settings.cache_write_cost_per_token
        cost: float | None = (
            fresh * input_price
            + read * (input_price if read_price is None else read_price)
            + written * (input_price if written_price is None else written_price)
            + output * (settings.output_cost_per_token or 0.0)
        )
    else:
        reported = result.get("total_cost_usd") if result is not None else None
        cost = float(reported) if isinstance(reported, (int, float)) else None
    return orchestra.Usage(
        input_tokens=fresh + read + written,
        cached_input_tokens=read,
        output_tokens=output,
        cost_usd=cost,
    )


def _responses_usage(session: Session) -> dict[str, int] | None:
    """Return the tokens of the responses claude streamed, for a run that ended without
    its result line (stopped at a timeout, killed): a lower bound, so budgets still see
    them."""
    if not session.responses:
        return None
    responses = session.responses.values()
    return {name: sum(_count(counts, name) for counts in responses) for name in TOKEN_COUNTS}


def judge(
    finished: orchestra.ProcessResult,
    session: Session,
    changed: list[str] | None,
    settings: ClaudeSettings,
) -> orchestra.StepResult:
    """Return the StepResult of an attempt: how claude's process ended, what its stream
    said, and which paths changed (None when the tree could not be looked at)."""
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
    finished: orchestra.ProcessResult, session: Session, settings: ClaudeSettings
) -> orchestra.StepResult | None:
    """Return the StepResult of a claude run that did not end well (canceled, stopped,
    not started, no result line, a result with ``is_error``), None when it did.

    An edit and a review are judged alike up to there; they differ only in what a run
    that ended well must have left: a change, or an answer.
    """
    spent = usage(session, settings)
    if finished.stopped == "canceled":
        return orchestra.StepResult("canceled", message="canceled while claude ran", usage=spent)
    if finished.stopped in ("timeout", "idle"):
        return _stopped(finished, session, spent)
    if finished.error is not None:
        return orchestra.StepResult("failed", error_class="tool_missing", message=finished.error)
    result = session.result
    if result is None:
        return orchestra.StepResult(
            "failed",
            error_class="crashed",
            message=_cut(_ended_early(finished, session)),
            exit_code=finished.exit_code,
            usage=spent,
        )
    if result.get("is_error") is not False:
        return _failed(finished, session, result, settings, spent)
    return None


def _stopped(
    finished: orchestra.ProcessResult, session: Session, spent: orchestra.Usage
) -> orchestra.StepResult:
    if finished.stopped == "timeout":
        message = "claude ran past its timeout"
    else:
        message = "claude printed nothing for its idle_timeout (a stalled or unanswered request?)"
    if session.retries:
        last = session.retries[-1]
        message += f"; its last retry was after {last.get('error_status') or last.get('error')}"
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
    result: dict[str, Any],
    settings: ClaudeSettings,
    spent: orchestra.Usage,
) -> orchestra.StepResult:
    """A result line with ``is_error``: an API error, the turn limit, a failed run."""
    message = _result_text(result)
    if result.get("subtype") == "error_max_turns" or result.get("terminal_reason") == "max_turns":
        kind = "turn_limit"
        message = message or "claude reached its turn limit"
    else:
        kind = error_class(result.get("api_error_status"), message)
    wait = None
    if kind == "rate_limited":
        wait = rate_limit_wait(session) or settings.rate_limit_wait
    return orchestra.StepResult(
        "failed",
        error_class=kind,
        message=_cut(message or f"claude failed ({result.get('subtype')}) without saying why"),
        exit_code=finished.exit_code,
        retry_after=wait,
        usage=spent,
    )


def rate_limit_wait(session: Session) -> float | None:
    """Return the seconds claude last waited out a rate limit (the provider's retry-after,
    or claude's backoff when longer), None when it gave up without waiting."""
    for retry in reversed(session.retries):
        delay = retry.get("retry_delay_ms")
        if retry.get("error_status") == 429 and isinstance(delay, (int, float)) and delay > 0:
            return delay / 1000
    return None


def no_change_message(session: Session, changed: list[str] | None) -> str:
    """Return why a finished run changed nothing: its refused and failed edits, else
    that it only answered."""
    if changed is None:
        return "claude finished, but the working tree could not be looked at"
    parts = ["claude finished without changing any file"]
    denied = session.denials
    if denied:
        refused = ", ".join(_denial(session, entry) for entry in denied[:5])
        parts.append(f"refused: {refused}")
    failed = [call for call in session.calls if call.edits and call.is_error]
    if failed:
        parts.append("failed: " + "; ".join(_failure(session, call) for call in failed[:3]))
    if not denied and not failed:
        parts.append("it made no edit")
    answer = _result_text(session.result or {})
    if answer:
        parts.append(f"its answer: {answer}")
    return "; ".join(parts)


def _denial(session: Session, entry: dict[str, Any]) -> str:
    tool_input = entry.get("tool_input")
    subject = ""
    if isinstance(tool_input, dict):
        path = tool_input.get("file_path")
        if isinstance(path, str):
            subject = session.shown(path)
        else:
            subject = str(tool_input.get("command") or "")
    return f"{entry.get('tool_name')} {subject}".strip()


def _failure(session: Session, call: ToolCall) -> str:
    output = call.output.replace("<tool_use_error>", "").replace("</tool_use_error>", "")
    subject = f" {session.shown(call.path)}" if call.path else ""
    return f"{call.name}{subject}: {' '.join(output.split())}"


def _result_text(result: dict[str, Any]) -> str:
    text = result.get("result")
    if isinstance(text, str) and text.strip():
        return text.strip()
    errors = result.get("errors")
    if isinstance(errors, list):
        return "; ".join(str(error) for error in errors)
    return ""


def _ended_early(finished: orchestra.ProcessResult, session: Session) -> str:
    if finished.exit_code is None:
        how = f"was killed by {_signal_name(finished.signal)}"
    else:
        how = f"exited {finished.exit_code}"
    said = _last_words(session)
    return f"claude {how} without a result" + (f": {said}" if said else "")


def _last_words(session: Session) -> str | None:
    """Return claude's last line saying "error…", else its last line of text (not the
    supervisor's)."""
    lines = [line for line in session.text if not line.startswith("claude: ")]
    for line in reversed(lines):
        if "error" in line.lower():
            return line.strip()
    return lines[-1].strip() if lines else None


def _count(counts: dict[str, Any], name: str) -> int:
    value = counts.get(name)
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
