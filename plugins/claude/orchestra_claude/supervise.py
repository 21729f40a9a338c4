"""Runs claude with the prompt on its stdin, passing its output through with a readable
line for each tool call.

``python -I supervise.py PROMPT_FILE -- claude ARGS...``: claude reads its prompt from
stdin when ``-p`` is given none, which keeps the prompt off the command line (``ps`` shows
argv to every user, and the attempt's log records it). Its stream-json lines are copied
unchanged to this program's stdout (stderr goes straight through), and after each one
that calls a tool, reports a tool's result, a refusal, a retry or the end, a line
``claude: …`` says it in words, so the attempt's log reads as a story. It exits with
claude's status (128 + N after signal N).

The API key does not stay in claude's environment, from where every command the model
has claude run would inherit it (``env`` would print it into the conversation): this
program takes ``ANTHROPIC_API_KEY`` out, writes it into a pipe and tells claude to read it
from there (``CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR``). Claude reads the key once, at start,
and its commands get neither the variable nor the descriptor. This program starts itself
again without the key first: a process's environment as it started stays readable in
``/proc/<pid>/environ`` to the model's commands, which run as the same user.

The adapter runs this file by path with ``-I``, so neither the working directory (the
repository, where a ``json.py`` of the project would shadow the standard library's) nor
the PYTHON* variables reach ``sys.path``. It imports the standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

#: the variable claude reads its key from, and the one naming a descriptor to read it from
KEY_VARIABLE = "ANTHROPIC_API_KEY"
KEY_DESCRIPTOR_VARIABLE = "CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR"
#: where claude makes its socket under XDG_RUNTIME_DIR (a pid has up to 7 digits), and the
#: longest socket path claude takes there
SOCKET = "cc-socks/4194304.sock"
MAX_SOCKET_PATH = 103
#: the TMPDIR the adapter gives claude; this program's own is the attempt's
CLAUDE_TMPDIR_VARIABLE = "ORCHESTRA_CLAUDE_TMPDIR"
#: a string in a readable line is cut to this many characters
MAX_SHOWN = 200
#: the tool input that names what a call works on, per tool
SUBJECTS = {"Read": "file_path", "Edit": "file_path", "Write": "file_path", "Bash": "command"}


def describe(event: Any, cwd: str) -> list[str]:
    """Return the readable lines for one stream-json event (none for most)."""
    if not isinstance(event, dict):
        return []
    kind, subtype = event.get("type"), event.get("subtype")
    if kind == "assistant":
        return [_call(block, cwd) for block in _blocks(event) if block.get("type") == "tool_use"]
    if kind == "user":
        return [_result(block) for block in _blocks(event) if block.get("type") == "tool_result"]
    if kind == "system" and subtype == "api_retry":
        status = event.get("error_status") or event.get("error") or "no answer"
        delay = event.get("retry_delay_ms")
        wait = f" in {delay / 1000:.1f}s" if isinstance(delay, (int, float)) else ""
        return [f"claude: the provider failed ({status}); retry {event.get('attempt')}{wait}"]
    if kind == "system" and subtype == "permission_denied":
        return [f"claude: refused {event.get('tool_name')}: {_short(event.get('decision_reason'))}"]
    if kind == "result":
        how = "failed" if event.get("is_error") else "finished"
        reason = event.get("terminal_reason") or event.get("subtype")
        return [f"claude: {how} ({reason}) after {event.get('num_turns')} turns"]
    return []


def _blocks(event: dict[str, Any]) -> list[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict)]


def _call(block: dict[str, Any], cwd: str) -> str:
    name = block.get("name")
    tool_input = block.get("input")
    if not isinstance(tool_input, dict):
        tool_input = {}
    subject = tool_input.get(SUBJECTS.get(str(name), ""), "")
    if isinstance(subject, str) and subject.startswith(cwd + os.sep):
        subject = subject[len(cwd) + 1 :]
    return f"claude: {name} {_short(subject)}".rstrip()


def _result(block: dict[str, Any]) -> str:
    if not block.get("is_error"):
        return "claude:   ok"
    content = block.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return f"claude:   error: {_short(content)}"


def _short(value: Any) -> str:
    text = " ".join(str(value or "").split())
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def environment_without_key(environ: Mapping[str, str]) -> tuple[dict[str, str], int | None]:
    """Return claude's environment without ``ANTHROPIC_API_KEY``, and the read end of a
    pipe holding the key (None when there is no key)."""
    env = dict(environ)
    key = env.pop(KEY_VARIABLE, "")
    if not key:
        return env, None
    reading, writing = os.pipe()
    os.write(writing, key.encode())  # far below a pipe's capacity: it never blocks
    os.close(writing)
    env[KEY_DESCRIPTOR_VARIABLE] = str(reading)
    return env, reading


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: supervise.py PROMPT_FILE -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    if os.environ.get(KEY_VARIABLE):
        env, key_descriptor = environment_without_key(os.environ)
        if key_descriptor is not None:
            os.set_inheritable(key_descriptor, True)
        os.execve(sys.executable, [sys.executable, "-I", __file__, *argv[1:]], env)
    # stopped with the attempt's process group, this program still removes its directory
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    runtime = runtime_directory()
    try:
        return supervise(argv[1], argv[3:], claude_environment(os.environ, runtime))
    finally:
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)


def runtime_directory() -> str | None:
    """Return a new directory for claude's socket, short enough for one: in the attempt's
    TMPDIR, else in /tmp; None when neither will do."""
    for parent in (tempfile.gettempdir(), "/tmp"):
        if len(os.path.join(parent, "claude-12345678", SOCKET)) > MAX_SOCKET_PATH:
            continue
        try:
            return tempfile.mkdtemp(prefix="claude-", dir=parent)
        except OSError:  # read-only: /tmp in orchestra's sandbox
            continue
    return None


def claude_environment(environ: Mapping[str, str], runtime: str | None) -> dict[str, str]:
    """Return claude's environment: its own TMPDIR (the adapter's ``CLAUDE_TMPDIR``), and
    ``runtime`` as XDG_RUNTIME_DIR.

    claude makes its messaging socket in ``$XDG_RUNTIME_DIR/cc-socks`` (else in TMPDIR),
    and where that path is longer than a socket's may be (103 bytes), as under a deep
    project's scratch directory, in ``/tmp/cc-socks-<uid>``, which stays behind.
    ``runtime`` is short: a directory of this program's own (``runtime_directory``).
    """
    env = dict(environ)
    temporary = env.pop(CLAUDE_TMPDIR_VARIABLE, "")
    if temporary:
        env["TMPDIR"] = temporary
    if runtime is not None:
        env["XDG_RUNTIME_DIR"] = runtime
    return env


def supervise(prompt_file: str, command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` with ``prompt_file`` on its stdin, copy its output with the readable
    lines added; return its status."""
    descriptor = env.get(KEY_DESCRIPTOR_VARIABLE, "")
    key_descriptor = int(descriptor) if descriptor.isdigit() else None
    try:
        with open(prompt_file, "rb") as prompt:
            claude = subprocess.Popen(
                command,
                stdin=prompt,
                stdout=subprocess.PIPE,
                env=env,
                pass_fds=() if key_descriptor is None else (key_descriptor,),
            )
    except OSError as error:
        print(f"cannot run {command[0]}: {error.strerror or error}", file=sys.stderr)
        return 127
    finally:
        if key_descriptor is not None:
            os.close(key_descriptor)
    cwd = os.getcwd()
    out = sys.stdout.buffer
    assert claude.stdout is not None
    for line in claude.stdout:
        out.write(line)
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        for said in describe(event, cwd):
            out.write(said.encode(errors="replace") + b"\n")
        out.flush()
    status = claude.wait()
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
