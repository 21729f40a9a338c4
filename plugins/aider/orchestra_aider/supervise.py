"""Runs aider, passing its output through, and stops it when it starts to wait: out a rate
limit, or for a person.

``python supervise.py -- aider ARGS...``: the output of aider (stdout and stderr, merged) is
copied unchanged to this program's stdout. Aider retries a rate-limited request for about a
minute with no flag to change that; orchestra retries the attempt itself after the
provider's delay, so once aider says it will retry a ``RateLimitError`` this program stops it
and exits with ``GAVE_UP``. Without a model and an API key, aider asks a person to sign in
to OpenRouter in a browser and waits minutes for it (``--yes-always`` accepts the offer);
nobody is there, so at the first line of that this program stops it and exits with
``NEEDS_PERSON``. Otherwise it exits with aider's status (128 + N after signal N).

The adapter runs this file by path, not with ``-m``: ``-m`` would put the repository (the
working directory) first on ``sys.path``, where a ``signal.py`` of the project would shadow
the standard library's. It imports the standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

#: the exit status after stopping aider because it was waiting out a rate limit
GAVE_UP = 75
#: the exit status after stopping aider because it was waiting for a person
NEEDS_PERSON = 76
#: errors aider retries which orchestra would rather retry itself
GIVE_UP_ON = frozenset({"RateLimitError"})
ERROR_LINE = re.compile(rb"^litellm\.(\w+)")
RETRYING_LINE = re.compile(rb"^Retrying in [\d.]+ seconds")
#: what aider 0.86 prints when it will wait for a person: the reason (no model, no key),
#: then the sign-in in a browser; the first of them is enough
WAITING_LINE = re.compile(
    rb"^(No LLM model was specified and no API keys were provided"
    rb"|Please open this URL in your browser"
    rb"|Waiting up to \d+ minutes? for you to finish in the browser)"
)
STOP_GRACE = 5.0
#: why this program stopped aider, by its exit status (the line it adds to the output)
STOPS = {
    GAVE_UP: "it was waiting out a rate limit; orchestra retries",
    NEEDS_PERSON: "it was waiting for a person to sign in in a browser",
}


def main(argv: list[str]) -> int:
    """Run the command in ``argv`` (after an optional ``--``); return the exit status."""
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        sys.stderr.write("usage: supervise.py -- PROGRAM [ARGUMENTS...]\n")
        return 2
    try:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as error:
        sys.stderr.write(f"orchestra-aider: cannot run {command[0]!r}: {error.strerror}\n")
        return 127
    assert child.stdout is not None  # stdout=PIPE
    stop = _relay(child.stdout.fileno())
    if stop is not None:
        _stop(child)
        _write(f"\norchestra-aider: stopped aider: {STOPS[stop]}\n".encode())
        return stop
    code = child.wait()
    return 128 - code if code < 0 else code


def _relay(fd: int) -> int | None:
    """Copy the output to stdout until its end; return the exit status to stop aider
    with (``GAVE_UP``, ``NEEDS_PERSON``) when it starts to wait, or None."""
    last_error = b""
    pending = b""
    while chunk := os.read(fd, 65536):
        _write(chunk)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if found := ERROR_LINE.match(line):
                last_error = found.group(1)
            elif RETRYING_LINE.match(line) and last_error.decode() in GIVE_UP_ON:
                return GAVE_UP
            elif WAITING_LINE.match(line):
                return NEEDS_PERSON
    return None


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _stop(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
