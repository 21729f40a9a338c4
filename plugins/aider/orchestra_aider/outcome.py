"""Reading what aider printed and logged, and judging an attempt from it and from git.

Aider's output is for people: messages wrap at about 80 columns even with ``--no-pretty``,
and counts are rounded ("2.4k"). Everything here is matched loosely, and an unknown line is
never an error. The working tree decides success; the output only says why there was none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orchestra
from orchestra_aider.supervise import GAVE_UP, NEEDS_PERSON

BANNER = re.compile(r"^Aider v(\d+\.\d+[\w.+-]*)")
APPLIED = re.compile(r"^Applied edit to (.+?)\s*$")
ERROR = re.compile(r"^litellm\.(\w+)")
TOKENS = re.compile(
    r"^Tokens: ([\d.]+[kKmM]?) sent(?:, ([\d.]+[kKmM]?) cache write)?"
    r"(?:, ([\d.]+[kKmM]?) cache hit)?, ([\d.]+[kKmM]?) received\."
    r"(?: Cost: \$([\d.]+) message, \$([\d.]+) session\.)?"
)
CONTEXT_OVERFLOW = re.compile(
    r"has hit a token limit|exceeds the [\d,]+ token limit|context window|"
    r"maximum context length|ContextWindowExceeded",
    re.IGNORECASE,
)
EDIT_FORMAT_FAILURES = (
    "The LLM did not conform to the edit format",
    "Only 3 reflections allowed",
    "SearchReplaceNoExactMatch",
    "Did not apply edit",
    "Malformed response",
)
RETRY_AFTER = re.compile(
    r"(?:try again|retry) (?:in|after) ((?:\d+(?:\.\d+)?\s*(?:ms|h|m|s|seconds?|minutes?)\s*)+)",
    re.IGNORECASE,
)
#: error names and the class of attempt failure they mean (anything else: provider_error)
ERROR_CLASSES = {
    "AuthenticationError": "auth",
    "PermissionDeniedError": "auth",
    "RateLimitError": "rate_limited",
    "ContextWindowExceededError": "context_overflow",
}


@dataclass
class AiderOutput:
    """Collects aider's output line by line (the ``on_line`` of ``ctx.run``) and reports
    progress through ``emit`` as it goes."""

    emit: Callable[[str, Mapping[str, Any]], None] = lambda kind, payload: None
    lines: list[str] = field(default_factory=list)
    version: str | None = None
    applied: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tokens: list[re.Match[str]] = field(default_factory=list)

    def take(self, line: str) -> None:
        """Note one line of output."""
        self.lines.append(line)
        if found := BANNER.match(line):
            self.version = found.group(1)
        elif found := APPLIED.match(line):
            self.applied.append(found.group(1))
            self.emit("edit", {"path": found.group(1)})
        elif found := ERROR.match(line):
            self.errors.append(found.group(1))
            self.emit("api_error", {"error": found.group(1), "line": line[:300]})
        elif found := TOKENS.match(line):
            self.tokens.append(found)

    @property
    def text(self) -> str:
        """Return the whole output with runs of whitespace made one space (undoing wraps)."""
        return " ".join(" ".join(self.lines).split())

    def error_message(self, name: str) -> str:
        """Return the text of aider's last report of error ``name``, unwrapped."""
        start = max(i for i, line in enumerate(self.lines) if line.startswith(f"litellm.{name}"))
        message: list[str] = []
        for line in self.lines[start:]:
            if not line.strip() or (message and line.startswith(("Retrying in", "The API"))):
                break
            message.append(line.strip())
        return re.sub(r"^litellm\.(\w+): \1: ", r"\1: ", " ".join(message))


def parse_count(text: str | None) -> int | None:
    """Return aider's rounded count ("2.4k", "1.2M", "930") as an int."""
    if not text:
        return None
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        return round(float(number) * scale)
    except ValueError:
        return None


def parse_retry_after(message: str) -> float | None:
    """Return the delay a provider asked for in ``message`` ("try again in 1m30s"), in s."""
    found = RETRY_AFTER.search(message)
    if not found:
        return None
    seconds = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)", found.group(1)):
        seconds += float(amount) * {"ms": 0.001, "h": 3600, "m": 60, "s": 1}[unit]
    return seconds or None


def usage_from_analytics(path: Path) -> orchestra.Usage | None:
    """Return the tokens and cost of every model request in aider's analytics log."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    sent = received = 0
    cost = 0.0
    seen = False
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("event") != "message_send":
            continue
        properties = event.get("properties") or {}
        seen = True
        sent += round(_number(properties.get("prompt_tokens")))  # a count: an integer
        received += round(_number(properties.get("completion_tokens")))
        cost += _number(properties.get("cost"))
    if not seen:
        return None
    cost_usd = round(cost, 8) or None
    return orchestra.Usage(input_tokens=sent, output_tokens=received, cost_usd=cost_usd)


def _number(value: object) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def usage_from_output(output: AiderOutput) -> orchestra.Usage:
    """Return the tokens and cost from aider's printed ``Tokens:`` lines (rounded)."""
    if not output.tokens:
        return orchestra.Usage()
    sent = sum(parse_count(found.group(1)) or 0 for found in output.tokens)
    received = sum(parse_count(found.group(4)) or 0 for found in output.tokens)
    session = output.tokens[-1].group(6)
    return orchestra.Usage(
        input_tokens=sent, output_tokens=received, cost_usd=float(session) if session else None
    )


def judge(
    finished: orchestra.ProcessResult,
    output: AiderOutput,
    changed: Sequence[str],
    usage: orchestra.Usage,
) -> orchestra.StepResult:
    """Return the attempt's result: success only when ``changed`` (the task's files that
    changed) is not empty, otherwise the most telling reason aider gave."""
    stopped = judge_stopped(finished, usage)
    if stopped is not None:
        return stopped
    if changed:
        message = "aider changed " + ", ".join(changed)
        return orchestra.StepResult("succeeded", message=message, exit_code=0, usage=usage)
    error_class, message = why_failed(finished, output) or _why_no_change(output)
    return failed(finished, error_class, message, usage)


def judge_stopped(
    finished: orchestra.ProcessResult, usage: orchestra.Usage
) -> orchestra.StepResult | None:
    """Return the result of a run orchestra stopped (canceled, past a timeout) or could not
    start, None for a run that ended by itself."""
    if finished.stopped == "canceled":
        return orchestra.StepResult("canceled", usage=usage)
    if finished.stopped in ("timeout", "idle"):
        why = {"timeout": "ran longer than its timeout", "idle": "printed nothing for too long"}
        message = f"aider {why[finished.stopped]}"
        return orchestra.StepResult("timed_out", finished.stopped, message, usage=usage)
    if finished.error is not None:
        return orchestra.StepResult("failed", "tool_missing", finished.error)
    return None


def failed(
    finished: orchestra.ProcessResult, error_class: str, message: str, usage: orchestra.Usage
) -> orchestra.StepResult:
    """Return a failed result of ``error_class``, with the provider's delay after a rate
    limit."""
    retry_after = parse_retry_after(message) if error_class == "rate_limited" else None
    return orchestra.StepResult(
        "failed",
        error_class,
        message,
        exit_code=finished.exit_code,
        retry_after=retry_after,
        usage=usage,
    )


def why_failed(finished: orchestra.ProcessResult, output: AiderOutput) -> tuple[str, str] | None:
    """Return the error class and message of a run that went wrong whatever it was asked
    (a signal, a wait for a person, refused arguments, the provider's error, a context
    too long), None when aider said nothing of the kind."""
    if finished.exit_code is None:
        return "crashed", f"aider was ended by signal {finished.signal}"
    if finished.exit_code == NEEDS_PERSON:
        return "needs_input", _why_waiting(output)
    if finished.exit_code not in (0, GAVE_UP):
        return _failed_start(finished.exit_code, output)
    if output.errors:
        name = output.errors[-1]
        message = output.error_message(name)
        if CONTEXT_OVERFLOW.search(message):
            return "context_overflow", message
        return ERROR_CLASSES.get(name, "provider_error"), message
    if CONTEXT_OVERFLOW.search(output.text):
        return "context_overflow", "the task did not fit the model's context window"
    return None


def _why_no_change(output: AiderOutput) -> tuple[str, str]:
    """Return the error class and message of an attempt that changed nothing, when
    ``why_failed`` found nothing wrong: the model's answer was not an edit."""
    text = output.text
    for failure in EDIT_FORMAT_FAILURES:
        if failure in text:
            return "invalid_output", f"the model's answer did not fit the edit format ({failure})"
    if output.applied:
        applied = ", ".join(output.applied)
        return "invalid_output", f"aider applied edits to {applied}, but no task file changed"
    return "invalid_output", "the model answered without an edit: no file changed"


def _why_waiting(output: AiderOutput) -> str:
    """Return the message of an attempt stopped because aider waited for a person."""
    if "No LLM model was specified and no API keys were provided" in output.text:
        return (
            "aider has no model and no API key, and waited for a person to sign in to "
            "OpenRouter in a browser: set model and pass_env (the key's variable) in "
            "[tools.aider] (docs/tools/aider.md)"
        )
    return (
        "aider waited for a person to sign in in a browser: check model, pass_env and "
        "api_base in [tools.aider] (docs/tools/aider.md)"
    )


def _failed_start(code: int, output: AiderOutput) -> tuple[str, str]:
    """Return why aider exited non-zero: refused arguments, or a crash."""
    last = [line.strip() for line in output.lines if line.strip()][-3:]
    tail = " / ".join(last) or "no output"
    if code == 127:  # the wrapper could not start aider
        return "tool_missing", tail
    if code == 2 and any("error:" in line for line in last):
        return "exit_status", f"aider refused its arguments (exit 2): {tail}"
    return "crashed", f"aider exited {code}: {tail}"
