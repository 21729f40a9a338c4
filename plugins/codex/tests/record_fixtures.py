"""Record what the real codex prints in each scripted case, as parser fixtures.

    .venv/bin/python plugins/codex/tests/record_fixtures.py [NAME ...]

Each case runs the real ``codex exec --json`` (from .tools, see scripts/install-tools)
against the fake Responses API, with the config.toml the adapter writes, and saves its
stdout and stderr merged, as orchestra's host hands them to the adapter, in
``fixtures/<name>.jsonl``. The absolute paths of the scratch directory and the server's
port are replaced by ``/repo``, ``/codex-home`` and ``PORT``. The tests read these files;
re-record them when codex is upgraded and see what changed.
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

from fake_responses import (  # noqa: E402
    FakeResponses,
    Reply,
    Status,
    apply_patch,
    message,
    reasoning,
    shell,
)
from orchestra_codex.settings import CodexSettings, config_toml, write_config  # noqa: E402

from orchestra.testing import make_git_repo  # noqa: E402

PATCH = (
    "*** Begin Patch\n*** Update File: hello.py\n@@\n def greet():\n"
    '-    return "hello"\n+    return "hello, world"\n*** End Patch\n'
)
BAD_PATCH = PATCH.replace('-    return "hello"', '-    return "no such line"')
SED = 'sed -i \'s/"hello"/"hello, world"/\' hello.py'
RATE_LIMIT = (
    "Rate limit reached for gpt-5.5 in organization org-x on tokens per min (TPM): "
    "Limit 30000, Used 30000, Requested 100. Please try again in 11.054s."
)
UNREACHABLE = "http://127.0.0.1:9/v1"

#: name -> (script, options, model, extra environment)
CASES: dict[str, tuple[list, dict, str, dict]] = {
    "apply_patch": (
        [
            Reply([message("I'll update hello.py."), apply_patch(PATCH)]),
            Reply([message("Updated hello.py.")]),
        ],
        {},
        "gpt-5.5",
        {},
    ),
    "shell_command": ([Reply([shell(SED)]), Reply([message("Done.")])], {}, "gpt-5.5", {}),
    "no_change": ([Reply([message("Nothing needs to change.")])], {}, "gpt-5.5", {}),
    "command_fails": (
        [Reply([shell("echo oops >&2; exit 3")]), Reply([message("It failed.")])],
        {},
        "gpt-5.5",
        {},
    ),
    "patch_fails": (
        [Reply([apply_patch(BAD_PATCH)]), Reply([message("The patch failed.")])],
        {},
        "gpt-5.5",
        {},
    ),
    "reasoning": (
        [Reply([reasoning("Thinking about greet."), message("No edit needed.")])],
        {},
        "gpt-5.5",
        {},
    ),
    "unknown_model": ([Reply([message("Hello.")])], {}, "fake-model", {}),
    "response_failed": ([Reply([], fail="fake model failure")], {}, "gpt-5.5", {}),
    "http_401": (
        [Status(401, "Incorrect API key provided", code="invalid_api_key")],
        {},
        "gpt-5.5",
        {},
    ),
    "http_429": (
        [
            Status(
                429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after": "1"}
            )
        ],
        {},
        "gpt-5.5",
        {},
    ),
    "rate_limit_in_stream": (
        [Reply([], fail=RATE_LIMIT, fail_code="rate_limit_exceeded")],
        {},
        "gpt-5.5",
        {},
    ),
    "context_window": (
        [
            Reply(
                [],
                fail="Your input exceeds the context window of this model.",
                fail_code="context_length_exceeded",
            )
        ],
        {},
        "gpt-5.5",
        {},
    ),
    "http_500_retried": (
        [Status(500, "boom")] * 9,
        {"request_max_retries": 1, "stream_max_retries": 1},
        "gpt-5.5",
        {},
    ),
    "unreachable": ([], {"base_url": UNREACHABLE, "request_max_retries": 1}, "gpt-5.5", {}),
    "missing_key": ([], {"env_key": "ORCHESTRA_TEST_UNSET_KEY"}, "gpt-5.5", {}),
}


def native_codex() -> Path:
    tools = HERE.parents[2] / ".tools" / "codex" / "node_modules" / "@openai"
    return sorted(tools.glob("codex-*/vendor/*/bin/codex"))[0]


def record(name: str, scratch: Path) -> str:
    script, options, model, extra = CASES[name]
    repo = make_git_repo(scratch / "repo", {"hello.py": 'def greet():\n    return "hello"\n'})
    home = scratch / "home"
    with FakeResponses(script) as server:
        settings = CodexSettings.from_options(
            {
                "base_url": server.base_url,
                "env_key": "FAKE_KEY",
                "request_max_retries": 0,
                "stream_max_retries": 0,
                **options,
            }
        )
        write_config(home, config_toml(settings))
        environment = {
            "PATH": os.environ["PATH"],
            "HOME": str(scratch),
            "CODEX_HOME": str(home),
            "TMPDIR": str(scratch / "tmp"),
            "FAKE_KEY": "sk-fake-key-0000",
            **extra,
        }
        (scratch / "tmp").mkdir()
        argv = [
            str(native_codex()),
            "exec",
            "--json",
            "--color",
            "never",
            "--sandbox",
            "workspace-write",
            "--ephemeral",
            "--model",
            model,
            "--",
            "Make greet return hello, world",
        ]
        completed = subprocess.run(
            argv,
            cwd=repo,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        port = server.base_url.rsplit(":", 1)[1].split("/")[0]
    text = completed.stdout.replace(str(repo), "/repo").replace(str(home), "/codex-home")
    return text.replace(str(scratch), "/scratch").replace(f":{port}/", ":PORT/")


def main(names: list[str]) -> None:
    for name in names or CASES:
        scratch = Path(tempfile.mkdtemp(prefix=f"codex-{name}-", dir="/var/tmp"))
        try:
            (HERE / "fixtures" / f"{name}.jsonl").write_text(record(name, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"recorded fixtures/{name}.jsonl")


if __name__ == "__main__":
    main(sys.argv[1:])
