"""Record what the real Gemini CLI prints in each scripted case, as parser fixtures.

    .venv/bin/python plugins/gemini/tests/record_fixtures.py [NAME ...]

Each case runs the real ``gemini -p --output-format stream-json`` (from .tools, see
scripts/install-tools) with the command line, settings.json and environment the adapter
gives it, against the fake Gemini API, and saves its stdout and stderr merged, as
orchestra's host hands them to the adapter, in ``fixtures/<name>.jsonl``. The scratch
directory, the repository, the install and the server's port are replaced by
``/scratch``, ``/repo``, ``/tools`` and ``PORT``. The tests read these files; re-record them
when the CLI is upgraded and see what changed.
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

from fake_gemini import (  # noqa: E402
    API_KEY,
    FakeGemini,
    Reply,
    Status,
    call,
    replace,
    text,
    write_file,
)
from orchestra_gemini import NO_RELAUNCH, command_line  # noqa: E402
from orchestra_gemini.settings import GeminiSettings, settings_json  # noqa: E402

import orchestra  # noqa: E402
from orchestra.testing import make_git_repo  # noqa: E402

TOOLS = HERE.parents[2] / ".tools"
OLD, NEW = 'return "hello"', 'return "hello, world"'
UNREACHABLE = "http://127.0.0.1:9"

#: name -> (script, options, extra arguments, whether the key is given)
CASES: dict[str, tuple[list, dict, tuple[str, ...], bool]] = {
    "replace": (
        [
            Reply([call("read_file", file_path="hello.py")]),
            Reply([text("Updating hello.py."), replace("hello.py", OLD, NEW)]),
            Reply([text("Done.")]),
        ],
        {},
        (),
        True,
    ),
    "write_file": (
        [Reply([write_file("NOTES.md", "# Notes\n")]), Reply([text("Wrote NOTES.md.")])],
        {},
        (),
        True,
    ),
    "text_only": ([Reply([text("Nothing needs "), text("to change.")])], {}, (), True),
    "edit_fails": (
        [Reply([replace("hello.py", "no such line", NEW)]), Reply([text("The edit failed.")])],
        {},
        (),
        True,
    ),
    "tool_not_registered": (
        [Reply([call("run_shell_command", command="true")]), Reply([text("I cannot.")])],
        {},
        (),
        True,
    ),
    "shell": (
        [Reply([call("run_shell_command", command="echo hi")]), Reply([text("Ran it.")])],
        {"shell": True},
        (),
        True,
    ),
    "empty_reply": ([Reply([])], {}, (), True),
    "http_401": ([Status(401, "API key not valid. Please pass a valid API key.")], {}, (), True),
    "http_429_retry_info": (
        [Status(429, "Resource has been exhausted (e.g. check quota).", retry_delay="2s")],
        {},
        (),
        True,
    ),
    "http_429_retry_text": (
        [Status(429, "You exceeded your current quota. Please retry in 3.5s.")],
        {},
        (),
        True,
    ),
    "http_500": ([Status(500, "Internal error encountered.")], {}, (), True),
    "unreachable": ([], {"base_url": UNREACHABLE}, (), True),
    "no_key": ([], {}, (), False),
    "unknown_flag": ([], {}, ("--no-such-flag",), True),
}


def record(name: str, program: Path) -> str:
    """Run case ``name`` and return what the CLI printed, with machine paths replaced."""
    script, options, args, keyed = CASES[name]
    with tempfile.TemporaryDirectory() as directory, FakeGemini(script) as server:
        base = Path(directory)
        repo = make_git_repo(base / "repo", {"hello.py": 'def greet():\n    return "hello"\n'})
        scratch = base / "scratch"
        home, temporary = scratch / "home", scratch / "tmp"
        (home / ".gemini").mkdir(parents=True)
        temporary.mkdir()
        settings = GeminiSettings.from_options(
            {"base_url": server.base_url, "max_attempts": 1, **options}
        )
        (home / ".gemini" / "settings.json").write_text(settings_json(settings))
        prompt = scratch / "prompt.md"
        prompt.write_text("Make greet return hello, world")
        profile = orchestra.ToolProfile("gemini", model="gemini-2.5-pro", args=args)
        task = orchestra.Task(id="t", prompt="Make greet return hello, world")
        request = orchestra.ExecutionRequest(
            run_id="r", task=task, attempt=1, workdir=str(repo), profile=profile
        )
        env = {
            "PATH": os.environ["PATH"],
            "LANG": "C.UTF-8",
            "HOME": str(home),
            "TMPDIR": str(temporary),
            "GOOGLE_GEMINI_BASE_URL": settings.base_url or "",
            **NO_RELAUNCH,
        }
        if keyed:
            env["GEMINI_API_KEY"] = API_KEY
        completed = subprocess.run(
            command_line(str(program), request, settings, prompt),
            cwd=repo,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        output = completed.stdout
        port = server.base_url.rsplit(":", 1)[1]
        for path, placeholder in ((scratch, "/scratch"), (repo, "/repo"), (TOOLS, "/tools")):
            output = output.replace(str(path.resolve()), placeholder).replace(
                str(path), placeholder
            )
        return output.replace(f"127.0.0.1:{port}", "127.0.0.1:PORT")


def main(names: list[str]) -> int:
    program = TOOLS / "bin" / "gemini"
    if not os.access(program, os.X_OK) or shutil.which("node") is None:
        sys.stderr.write(
            f"no gemini at {program} (or no node on PATH): run scripts/install-tools\n"
        )
        return 1
    for name in names or list(CASES):
        (HERE / "fixtures" / f"{name}.jsonl").write_text(record(name, program))
        print(f"recorded fixtures/{name}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
