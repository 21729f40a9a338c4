"""Record what the real claude prints in each scripted case, as parser fixtures.

    .venv/bin/python plugins/claude/tests/record_fixtures.py [NAME ...]

Each case runs the real claude (from .tools, see scripts/install-tools) against the fake
Messages API, with the command line and environment the adapter builds, and saves its
stdout and stderr merged, as orchestra's host hands them to the adapter, in
``fixtures/<name>.jsonl``. The absolute paths of the scratch directory and the server's
port are replaced by ``/scratch``, ``/repo`` and ``PORT``; session ids, uuids and times
are left as they came. The tests read these files; re-record them when claude is
upgraded and see what changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_anthropic import (  # noqa: E402
    API_KEY,
    FakeAnthropic,
    Reply,
    Status,
    bash,
    edit,
    read,
    text,
    write,
)
from orchestra_claude.command import build  # noqa: E402
from orchestra_claude.settings import ClaudeSettings  # noqa: E402

import orchestra  # noqa: E402
from orchestra.testing import make_git_repo  # noqa: E402

REPO = HERE.parents[2]
CLAUDE = REPO / ".tools" / "bin" / "claude"
OLD, NEW = 'return "hello"', 'return "hello, world"'
UNREACHABLE = "http://127.0.0.1:9"
#: a path outside the repository (relative to it: the fake fills in the absolute path)
OUTSIDE = "../outside.txt"
#: a command acceptEdits does not let through
BASH_WRITE = "python3 -c \"open('hello.py', 'w').write('x')\""

#: name -> (script, [tools.claude] options)
CASES: dict[str, tuple[list, dict]] = {
    "edit": (
        [
            Reply([text("I'll read hello.py first."), read("hello.py")]),
            Reply([edit("hello.py", OLD, NEW)]),
            Reply([text("greet now returns hello, world.")]),
        ],
        {},
    ),
    "write": (
        [Reply([write("notes.txt", "hello\n")]), Reply([text("Created notes.txt.")])],
        {},
    ),
    "text_only": ([Reply([text("greet already returns a greeting; nothing to do.")])], {}),
    "edit_fails": (
        [Reply([edit("hello.py", "no such line", NEW)]), Reply([text("Done.")])],
        {},
    ),
    "refused": (
        [
            Reply([write(OUTSIDE, "x")]),
            Reply([bash(BASH_WRITE)]),
            Reply([edit("hello.py", "no such line", NEW)]),
            Reply([text("Done.")]),
        ],
        {},
    ),
    "bash_env": (
        [Reply([bash("env")]), Reply([text("Done.")])],
        {"allowed_tools": ["Bash(env)"]},
    ),
    "bypass": (
        [Reply([bash(BASH_WRITE)]), Reply([text("Done.")])],
        {"permission_mode": "bypassPermissions"},
    ),
    "max_turns": (
        [Reply([read("hello.py")]), Reply([read("hello.py")]), Reply([text("Done.")])],
        {"max_turns": 1},
    ),
    "http_401": ([Status(401, "invalid x-api-key", "authentication_error")], {}),
    "http_429": (
        [
            Status(
                429,
                "Number of requests has exceeded your rate limit",
                "rate_limit_error",
                {"retry-after": "7"},
            )
        ],
        {"max_retries": 0},
    ),
    "http_429_retried": (
        [
            Status(
                429,
                "Number of requests has exceeded your rate limit",
                "rate_limit_error",
                {"retry-after": "1"},
            ),
            Reply([edit("hello.py", OLD, NEW)]),
            Reply([text("Done.")]),
        ],
        {"max_retries": 1},
    ),
    "http_500": ([Status(500, "Internal server error")], {"max_retries": 0}),
    "http_529": ([Status(529, "Overloaded", "overloaded_error")] * 3, {"max_retries": 0}),
    "unreachable": ([], {"base_url": UNREACHABLE, "max_retries": 0}),
}


def record(name: str, scratch: Path) -> str:
    script, options = CASES[name]
    repo = make_git_repo(scratch / "repo", {"hello.py": 'def greet():\n    return "hello"\n'})
    with FakeAnthropic(script) as server:
        options = {"base_url": server.base_url, "max_retries": 0, **options}
        settings = ClaudeSettings.from_options(options)
        profile = orchestra.ToolProfile("claude", model="claude-fake", options=options)
        task = orchestra.Task(id="t", prompt="Make greet return hello, world")
        request = orchestra.ExecutionRequest(
            run_id="r", task=task, attempt=1, workdir=str(repo), profile=profile, timeout=60
        )
        work = scratch / "work"
        work.mkdir()
        invocation = build(request, settings, str(CLAUDE), work)
        environment = {
            "PATH": os.environ["PATH"],
            "LANG": "C.UTF-8",
            "ANTHROPIC_API_KEY": API_KEY,
            **invocation.env,
        }
        completed = subprocess.run(
            invocation.argv,
            cwd=repo,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        port = server.base_url.rsplit(":", 1)[1]
    output = completed.stdout.replace(str(repo), "/repo").replace(str(scratch), "/scratch")
    return output.replace(f":{port}", ":PORT")


def main(names: list[str]) -> None:
    for name in names or CASES:
        scratch = Path(tempfile.mkdtemp(prefix=f"claude-{name}-"))
        try:
            (HERE / "fixtures" / f"{name}.jsonl").write_text(record(name, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"recorded fixtures/{name}.jsonl")


if __name__ == "__main__":
    main(sys.argv[1:])
