"""Starts the Gemini CLI with the prompt on its stdin: ``python launch.py PROMPT_FILE PROGRAM
ARGUMENTS...``.

The CLI reads a prompt from stdin and puts the ``-p`` text after it, so ``-p ""`` with the
prompt file as stdin keeps the prompt off the command line (out of ``ps`` and of the stored
command). orchestra starts every tool with stdin on /dev/null; this program opens the file
as stdin and then becomes the CLI (``exec``), so the process orchestra times out and stops
is the CLI's own, in its own process group.

The adapter runs this file by path, not with ``-m``: ``-m`` would put the working
directory (the repository) first on ``sys.path``. It imports the standard library only.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    """Open ``argv[0]`` as stdin and exec ``argv[1:]``; return a status only on failure."""
    if len(argv) < 2:
        sys.stderr.write("usage: launch.py PROMPT_FILE PROGRAM [ARGUMENTS...]\n")
        return 2
    prompt_file, command = argv[0], argv[1:]
    try:
        descriptor = os.open(prompt_file, os.O_RDONLY)
    except OSError as error:
        sys.stderr.write(f"orchestra-gemini: cannot read the prompt: {error.strerror}\n")
        return 2
    os.dup2(descriptor, 0)
    os.close(descriptor)
    try:
        os.execv(command[0], command)
    except OSError as error:
        sys.stderr.write(f"orchestra-gemini: cannot run {command[0]!r}: {error.strerror}\n")
        return 127
    return 0  # not reached: execv returns only by raising


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
