"""A scripted tool for tests: a real program whose behaviour per attempt comes from a script.

Run as ``python -m orchestra.testing.scripted_tool --script PATH [--prompt-file F]``. The
script is a TOML file with one
``[[attempt]]`` table per attempt: attempt N (``ORCHESTRA_ATTEMPT``, default 1) plays step
N, and the last step repeats. ``[[tasks.ID.attempt]]`` gives one task steps of its own
(``ORCHESTRA_TASK_ID``). A step prints its ``output``, makes its edits, waits ``seconds``
in silence, then acts and prints one last line, ``ORCHESTRA-SCRIPTED-RESULT {json}``:

    [[attempt]]
    action = "rate_limit"                 # succeed | fail | hang | rate_limit | crash
    retry_after = 30
    [[attempt]]
    action = "succeed"
    edit = { path = "src/app.py", content = "print('hi')\\n" }
    usage = { input_tokens = 1200, output_tokens = 300, cost_usd = 0.02 }

A scripted tool can review too (``ToolReviewer``): the review of attempt N's change plays
step N of ``[[review]]`` (or ``[[tasks.ID.review]]``), whose ``answer`` is the tool's
final message, where orchestra reads the verdict:

    [[review]]
    answer = '{"verdict": "request_changes", "comments": "add a test"}'
    edit = { path = "notes.txt", content = "a reviewer's edit, never merged\n" }

Each call is appended to ``<script>.calls.jsonl`` (attempt, task, prompt, feedback, pid,
``kind``: attempt or review), so a test can assert what a retry's prompt carried.

``ScriptedToolAdapter`` runs the program through the attempt's ``ExecutionContext``. This
module is also the plugin ``scripted``: it registers one adapter per entry of
``ORCHESTRA_SCRIPTED_TOOLS`` (``alpha=/path/alpha.toml,beta=/path/beta.toml:prompt+rust``)
and nothing when the variable is unset. No entry point of orchestra's distribution names
it: it is the one plugin of the distribution ``orchestra-testing``, in
``orchestra/testing/site``, which only ``orchestra.testing.scripted_tools_env`` puts on a
test's ``PYTHONPATH``. Every orchestra command of such a test imports this module, so it
imports only the standard library at the top.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra.plugin.markers import hookimpl

if TYPE_CHECKING:
    from orchestra.models import Availability, ExecutionRequest, StepResult, ToolProfile
    from orchestra.plugin.protocols import ExecutionContext

#: the environment variable naming the scripted tools to register
TOOLS_VARIABLE = "ORCHESTRA_SCRIPTED_TOOLS"
#: the start of the program's last line; a JSON object follows
RESULT_PREFIX = "ORCHESTRA-SCRIPTED-RESULT "
DEFAULT_CAPABILITIES = frozenset({"prompt", "edit", "python", "review"})
ACTIONS = ("succeed", "fail", "hang", "rate_limit", "crash")
STEP_KEYS = frozenset(
    {
        "action",
        "error_class",
        "message",
        "retry_after",
        "seconds",
        "exit_code",
        "signal",
        "edit",
        "append",
        "output",
        "usage",
        "answer",
    }
)
USAGE_KEYS = frozenset({"input_tokens", "cached_input_tokens", "output_tokens", "cost_usd"})
#: how long a ``hang`` waits when the step gives no ``seconds``: longer than any test
HANG_SECONDS = 86400.0
_CAPABILITY_LIST = re.compile(r"^[A-Za-z0-9_.-]+(\+[A-Za-z0-9_.-]+)*$")


def calls_path(script: str | os.PathLike) -> Path:
    """Return the JSONL file beside ``script`` where the program records each call."""
    script = Path(script)
    return script.with_name(script.name + ".calls.jsonl")


def read_calls(script: str | os.PathLike) -> list[dict[str, Any]]:
    """Return the calls the program recorded for ``script``, oldest first."""
    path = calls_path(script)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dump_script(
    steps: Sequence[Mapping[str, Any]],
    tasks: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    reviews: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Return the TOML text of a script: ``steps`` for every task, ``tasks`` per task id,
    ``reviews`` the steps of its reviews."""
    lines: list[str] = []
    for step in steps:
        lines += ["[[attempt]]", *_toml_pairs(step), ""]
    for step in reviews:
        lines += ["[[review]]", *_toml_pairs(step), ""]
    for task_id, task_steps in (tasks or {}).items():
        for step in task_steps:
            lines += [f"[[tasks.{_toml_value(task_id)}.attempt]]", *_toml_pairs(step), ""]
    return "\n".join(lines)


def _toml_pairs(step: Mapping[str, Any]) -> list[str]:
    return [f"{key} = {_toml_value(value)}" for key, value in step.items()]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):  # a JSON string is a TOML basic string
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"a script cannot hold {value!r}")


def parse_tools_variable(value: str) -> list[tuple[str, Path, frozenset[str]]]:
    """Return (name, script, capabilities) for each entry of ``ORCHESTRA_SCRIPTED_TOOLS``.

    Entries are ``NAME=SCRIPT`` or ``NAME=SCRIPT:CAP+CAP``, separated by commas; a
    relative script is taken from the current directory. Raises ``ValueError`` naming
    the variable and the entry.
    """
    tools = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        name, equals, script = (part.strip() for part in entry.partition("="))
        capabilities = DEFAULT_CAPABILITIES
        head, colon, tail = script.rpartition(":")
        if colon and _CAPABILITY_LIST.match(tail):
            script, capabilities = head, frozenset(tail.split("+"))
        if not equals or not name or not script:
            raise ValueError(
                f"{TOOLS_VARIABLE}: entry {entry!r} is not NAME=SCRIPT or NAME=SCRIPT:CAP+CAP"
            )
        tools.append((name, Path(script).absolute(), capabilities))
    return tools


class ScriptedToolAdapter:
    """A tool adapter that runs the scripted program on each attempt (see the module doc)."""

    def __init__(
        self,
        name: str,
        script: str | os.PathLike,
        capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
    ) -> None:
        self.name = name
        self.script = Path(script).absolute()
        self.capabilities = frozenset(capabilities)

    def __repr__(self) -> str:
        return f"ScriptedToolAdapter({self.name!r}, {str(self.script)!r})"

    def available(self, profile: ToolProfile) -> Availability:
        """Return available, unless the script file is missing."""
        from orchestra.models import Availability

        if not self.script.is_file():
            return Availability(False, reason=f"script {self.script} not found")
        return Availability(True, version="1.0", path=sys.executable)

    def review(self, request: ExecutionRequest, ctx: ExecutionContext) -> StepResult:
        """Play the ``[[review]]`` step of the reviewed attempt on orchestra's review
        prompt; the step's ``answer`` is the tool's final message."""
        return self._play(request, ctx, ["--review"])

    def execute(self, request: ExecutionRequest, ctx: ExecutionContext) -> StepResult:
        """Run the program on the task's prompt (on a retry: what went wrong, and what the
        working tree holds) and return what it reported."""
        return self._play(request, ctx, [])

    def _play(
        self, request: ExecutionRequest, ctx: ExecutionContext, extra: list[str]
    ) -> StepResult:
        from orchestra.builtin.shell import stopped_result
        from orchestra.models import StepResult

        argv = [
            sys.executable,
            # run as a file, not with -m: no import of the orchestra.testing package
            str(Path(__file__)),
            "--script",
            str(self.script),
            *extra,
        ]
        from orchestra.engine.resilience import start_note

        prompt = request.task.prompt or ""
        if request.feedback:
            prompt += "\n\n" + request.feedback
            feedback_file = ctx.scratch_dir / "feedback.txt"
            feedback_file.write_text(request.feedback)
            argv += ["--feedback-file", str(feedback_file)]
        start = start_note(request)
        if start:  # what the working tree holds, as every tool says it
            prompt += "\n\n" + start
        prompt_file = ctx.scratch_dir / "prompt.txt"
        prompt_file.write_text(prompt)
        argv += ["--prompt-file", str(prompt_file)]
        lines: list[str] = []
        finished = ctx.run(
            argv, env={"ORCHESTRA_ATTEMPT": str(request.attempt)}, on_line=lines.append
        )
        stopped = stopped_result(finished)
        if stopped is not None:
            return stopped
        try:
            reported = _result_line(lines)
        except ValueError as error:  # redacting a secret can break the JSON
            return StepResult("failed", error_class="invalid_output", message=f"result: {error}")
        if reported is None:
            last = next((line for line in reversed(lines) if line.strip()), "")
            ending = (
                f"exit status {finished.exit_code}"
                if finished.exit_code is not None
                else f"signal {finished.signal}"
            )
            return StepResult(
                "failed",
                error_class="crashed",
                message=f"scripted tool printed no result ({ending})"
                + (f": {last}" if last else ""),
                exit_code=finished.exit_code,
            )
        return _step_result(reported, finished.exit_code)


def _result_line(lines: Sequence[str]) -> dict[str, Any] | None:
    for line in reversed(lines):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def _step_result(reported: Mapping[str, Any], exit_code: int | None) -> StepResult:
    from orchestra.models import StepResult, Usage

    usage = reported.get("usage") or {}
    return StepResult(
        reported["outcome"],
        error_class=reported.get("error_class"),
        message=reported.get("message"),
        exit_code=exit_code,
        retry_after=reported.get("retry_after"),
        usage=Usage(**{key: usage[key] for key in USAGE_KEYS if key in usage}),
        answer=reported.get("answer"),
    )


@hookimpl
def orchestra_register_tools(register) -> None:
    """Register one scripted tool per entry of ``ORCHESTRA_SCRIPTED_TOOLS``, if it is set."""
    for name, script, capabilities in parse_tools_variable(os.environ.get(TOOLS_VARIABLE, "")):
        register(ScriptedToolAdapter(name, script, capabilities))


# -- the program -------------------------------------------------------------------------


class ScriptError(Exception):
    """A script the program cannot follow."""


def main(argv: Sequence[str] | None = None) -> int:
    """Play the step of this attempt; return the exit status (0 success, 1 failure)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python orchestra/testing/scripted_tool.py",
        description="A tool that does what its script says.",
    )
    parser.add_argument("--script", required=True, type=Path)
    parser.add_argument("--prompt-file", type=Path)
    parser.add_argument("--feedback-file", type=Path)
    parser.add_argument("--review", action="store_true", help="play a [[review]] step")
    arguments = parser.parse_args(argv)
    try:
        attempt = int(os.environ.get("ORCHESTRA_ATTEMPT") or 1)
        task_id = os.environ.get("ORCHESTRA_TASK_ID")
        kind = "review" if arguments.review else "attempt"
        number, step = load_step(arguments.script, attempt, task_id, kind)
        _record_call(arguments, attempt, task_id, number, step)
        return _play(step)
    except (ScriptError, OSError, ValueError) as error:
        print(f"orchestra.testing.scripted_tool: {arguments.script}: {error}", file=sys.stderr)
        return 2


def load_step(
    script: Path, attempt: int, task_id: str | None, kind: str = "attempt"
) -> tuple[int, dict[str, Any]]:
    """Return the step number (from 1) and the checked step that ``attempt`` plays (of
    the ``[[attempt]]`` steps, or of the ``[[review]]`` ones for its review)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    document = tomllib.loads(script.read_text())
    unknown = set(document) - {"attempt", "review", "tasks"}
    if unknown:
        known = "attempt, review, tasks"
        raise ScriptError(f"unknown top-level key {sorted(unknown)[0]!r} (known: {known})")
    steps = document.get(kind, [])
    where = kind
    own = document.get("tasks", {}).get(task_id) if task_id is not None else None
    if own is not None and kind in own:
        steps, where = own[kind], f"tasks.{task_id}.{kind}"
    if not isinstance(steps, list) or not steps:
        raise ScriptError(f"no [[{where}]] steps")
    number = min(max(attempt, 1), len(steps))
    step = steps[number - 1]
    _check_step(step, f"{where}[{number}]")
    return number, step


def _check_step(step: Mapping[str, Any], where: str) -> None:
    unknown = set(step) - STEP_KEYS
    if unknown:
        known = ", ".join(sorted(STEP_KEYS))
        raise ScriptError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {known})")
    if step.get("action", "succeed") not in ACTIONS:
        raise ScriptError(f"{where}: action {step['action']!r} is not one of {', '.join(ACTIONS)}")
    for key in ("retry_after", "seconds"):
        if key in step and (not isinstance(step[key], (int, float)) or step[key] < 0):
            raise ScriptError(f"{where}: {key} must be a number of seconds, not {step[key]!r}")
    if not isinstance(step.get("output", []), list):
        raise ScriptError(f"{where}: output must be a list of lines")
    unknown_usage = set(step.get("usage", {})) - USAGE_KEYS
    if unknown_usage:
        raise ScriptError(f"{where}: usage has unknown key {sorted(unknown_usage)[0]!r}")
    for key, fields in (("edit", ("path", "content")), ("append", ("path", "text"))):
        for change in _changes(step, key):
            if set(change) != set(fields):
                raise ScriptError(f"{where}: each {key} needs exactly {' and '.join(fields)}")
            path = Path(change["path"])
            if path.is_absolute() or ".." in path.parts:
                raise ScriptError(f"{where}: {key} path {change['path']!r} leaves the directory")


def _changes(step: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = step.get(key, [])
    return [value] if isinstance(value, Mapping) else list(value)


def _record_call(
    arguments: Any, attempt: int, task_id: str | None, number: int, step: Mapping[str, Any]
) -> None:
    kind = "review" if arguments.review else "attempt"

    def read(path: Path | None) -> str | None:
        return None if path is None else path.read_text()

    call = {
        "attempt": attempt,
        "step": number,
        "kind": kind,
        "action": step.get("action", "succeed"),
        "task": task_id,
        "run": os.environ.get("ORCHESTRA_RUN_ID"),
        "prompt": read(arguments.prompt_file),
        "feedback": read(arguments.feedback_file),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "time": time.time(),
    }
    # one write() of one line with O_APPEND: calls from parallel attempts do not interleave
    descriptor = os.open(
        calls_path(arguments.script), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
    )
    try:
        os.write(descriptor, (json.dumps(call) + "\n").encode())
    finally:
        os.close(descriptor)


def _play(step: Mapping[str, Any]) -> int:
    action = step.get("action", "succeed")
    for line in step.get("output", []):
        print(line, flush=True)
    for change in _changes(step, "edit"):
        path = Path(change["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(change["content"])
    for change in _changes(step, "append"):
        path = Path(change["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as file:
            file.write(change["text"])
    seconds = step.get("seconds", HANG_SECONDS if action == "hang" else 0)
    if seconds:
        time.sleep(seconds)
    if action == "crash":
        if "signal" in step:
            os.kill(os.getpid(), int(step["signal"]))
        return int(step.get("exit_code", 3))  # no result line: the adapter sees a crash
    result = _outcome(action, step, seconds)
    if result["message"] and action != "succeed":
        print(result["message"], flush=True)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0 if result["outcome"] == "succeeded" else int(step.get("exit_code", 1))


def _outcome(action: str, step: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    retry_after = step.get("retry_after")
    if action == "succeed":
        outcome, error_class, message = "succeeded", None, step.get("message")
    elif action == "fail":
        outcome, error_class = "failed", step.get("error_class", "turn_failed")
        message = step.get("message", "scripted failure")
    elif action == "rate_limit":
        outcome, error_class = "failed", step.get("error_class", "rate_limited")
        wait = f": retry after {retry_after:g} seconds" if retry_after is not None else ""
        message = step.get("message", f"rate limit reached{wait}")
    else:  # hang, woken up because nothing stopped it
        outcome, error_class = "failed", step.get("error_class", "timeout")
        message = step.get("message", f"hung for {seconds:g} s and nobody stopped it")
    return {
        "outcome": outcome,
        "error_class": error_class,
        "message": message,
        "retry_after": retry_after,
        "usage": dict(step.get("usage", {})),
        "answer": step.get("answer"),
    }


if __name__ == "__main__":
    sys.exit(main())
