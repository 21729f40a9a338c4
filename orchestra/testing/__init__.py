"""Test helpers for orchestra and for plugin authors.

They give real things, not mocks: a git repository on disk, distributions that Python's
entry-point machinery really finds, the real ``orchestra`` program in a subprocess,
scripted tools that are real programs, and a plugin host of a test's own in which it
registers throwaway plugin objects. This module imports without pytest; the pytest
fixtures built on it (``plugin_host``, ``register_plugin``, ``git_repo`` …) are in
``orchestra.testing.fixtures``, which installing orchestra registers as a pytest plugin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from orchestra import classes
from orchestra.loaders import LocalLoadContext as LocalLoadContext
from orchestra.models import Availability, ExecutionRequest, StepResult, ToolProfile
from orchestra.plugin.host import PluginHost as PluginHost
from orchestra.plugin.markers import hookimpl

if TYPE_CHECKING:
    import click.testing

    from orchestra.plugin.protocols import Register, ToolAdapter

#: a directory that, put on PYTHONPATH, installs the distribution ``orchestra-testing``,
#: whose one plugin, ``scripted``, registers the tools ``ORCHESTRA_SCRIPTED_TOOLS`` names:
#: only ``scripted_tools_env`` puts it there, so no user ever sees that plugin
TESTING_SITE = Path(__file__).with_name("site")


def builtin_plugin_host() -> PluginHost:
    """Return a plugin host of one test's own, holding orchestra's built-in plugins and
    nothing else installed: what a test registers on it is all it adds."""
    host = PluginHost()
    host.load_entry_points(builtin_only=True)
    return host


def orchestra_program() -> str:
    """Return the path of the ``orchestra`` console script of the running interpreter."""
    return str(Path(sys.executable).with_name("orchestra"))


def run_orchestra(
    *arguments: str,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_path: Sequence[str | os.PathLike[str]] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``orchestra`` program and return its exit status, stdout and stderr.

    The program gets the current environment without its ``ORCHESTRA_*`` variables (a
    setting in the tester's shell must not change a test), plus ``env``. ``extra_path``
    entries go in front of PYTHONPATH, which is how ``make_distribution`` directories
    become installed.
    """
    return subprocess.run(
        [orchestra_program(), *arguments],
        cwd=cwd,
        env=_environment(env, extra_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_orchestra(
    *arguments: str,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_path: Sequence[str | os.PathLike[str]] = (),
    new_session: bool = False,
) -> subprocess.Popen[str]:
    """Start the real ``orchestra`` program and return it running, its stdout and stderr
    piped (text), with the environment ``run_orchestra`` gives. ``new_session`` puts it in
    a process group of its own, which a test can then signal or kill whole (as a closed
    terminal or the end of a CI job does)."""
    return subprocess.Popen(
        [orchestra_program(), *arguments],
        cwd=cwd,
        env=_environment(env, extra_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def kill_like_a_power_cut(run_id: str, orchestra: subprocess.Popen[str]) -> None:
    """Kill ``orchestra`` (started with ``new_session``) with its whole process group,
    and every process of run ``run_id`` (attempts run in sessions of their own), with
    SIGKILL: what a power cut or a reboot leaves is what the test then resumes."""
    import signal

    from orchestra.engine.leftovers import processes_of_run

    try:
        os.killpg(orchestra.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    orchestra.wait(timeout=30)
    for pid in processes_of_run(run_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_orchestra_on_a_terminal(
    *arguments: str,
    cwd: str | os.PathLike[str] | None = None,
    columns: int = 120,
    timeout: float = 60.0,
) -> tuple[int | None, str]:
    """Run the real ``orchestra`` program with a pseudo-terminal as its stdout and stderr
    (``TERM=xterm``, ``COLUMNS=columns``), as a person at a terminal would; return its
    exit status (None if it was still running at ``timeout``) and all it wrote."""
    import pty
    import select

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [orchestra_program(), *arguments],
        cwd=cwd,
        env={**_environment(None, ()), "TERM": "xterm", "COLUMNS": str(columns)},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the program ended
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        try:
            status = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            status = None
    finally:
        os.close(leader)
    return status, output.decode(errors="replace")


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Return ``condition()``'s first true value, asking every 50 ms; fail the test when
    none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or 'condition'} not reached in {timeout:g} s")
        time.sleep(0.05)


def _environment(
    env: Mapping[str, str] | None, extra_path: Sequence[str | os.PathLike[str]]
) -> dict[str, str]:
    inherited = {
        name: value for name, value in os.environ.items() if not name.startswith("ORCHESTRA_")
    }
    environment = {**inherited, **(env or {})}
    if extra_path:
        joined = os.pathsep.join(str(path) for path in extra_path)
        previous = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = joined + (os.pathsep + previous if previous else "")
    return environment


def make_distribution(
    directory: Path,
    name: str,
    modules: Mapping[str, str],
    entry_points: Mapping[str, str],
    version: str = "1.0",
) -> Path:
    """Write an installed distribution that importlib.metadata finds when ``directory``
    is on sys.path: the modules' source, and a dist-info with the ``orchestra`` entry
    points (plugin name -> module). Returns ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (directory / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = directory / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = ["[orchestra]", *(f"{plugin} = {target}" for plugin, target in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return directory


def make_git_repo(directory: Path, files: Mapping[str, str] | None = None) -> Path:
    """Create a git repository at ``directory`` with ``files`` committed; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "orchestra tests",
        "GIT_AUTHOR_EMAIL": "tests@orchestra.invalid",
        "GIT_COMMITTER_NAME": "orchestra tests",
        "GIT_COMMITTER_EMAIL": "tests@orchestra.invalid",
    }

    def git(*arguments: str) -> None:
        subprocess.run(
            ["git", *arguments], cwd=directory, env=environment, check=True, capture_output=True
        )

    git("init", "-q", "-b", "main")
    for relative, content in (files or {"README.md": "test repository\n"}).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git("add", "-A")
    git("commit", "-q", "-m", "initial commit")
    return directory


@classes.define
class ScriptedTool:
    """A tool adapter that returns scripted results, for tests of routing and runs.

    ``results`` are returned one per ``execute`` call (the last one repeats); every
    request is kept in ``requests``.
    """

    name: str = "scripted"
    capabilities: frozenset[str] = frozenset({"prompt", "edit", "python"})
    results: list[StepResult] = attrs.Factory(lambda: [StepResult("succeeded")])
    availability: Availability = attrs.Factory(
        lambda: Availability(True, version="1.0", path="/scripted")
    )
    requests: list[ExecutionRequest] = attrs.Factory(list)

    def available(self, profile: ToolProfile) -> Availability:
        return self.availability

    def execute(self, request: ExecutionRequest, ctx: object) -> StepResult:
        self.requests.append(request)
        index = min(len(self.requests), len(self.results)) - 1
        return self.results[index]


class ToolsPlugin:
    """A throwaway plugin that registers the given tool adapters."""

    def __init__(self, *tools: ToolAdapter) -> None:
        self.tools = tools

    @hookimpl
    def orchestra_register_tools(self, register: Register[ToolAdapter]) -> None:
        for tool in self.tools:
            register(tool)


def invoke_cli(
    arguments: Sequence[str], *, host: PluginHost | None = None, cwd: Path | None = None
) -> click.testing.Result:
    """Run the orchestra CLI in this process with ``host`` as its plugins; return the result.

    Use it to drive commands with throwaway plugins; ``run_orchestra`` runs the real
    program instead. The result has ``exit_code``, ``stdout`` and ``stderr``.
    """
    from click.testing import CliRunner

    from orchestra.cli import cli
    from orchestra.cli.session import CliSession

    state = CliSession(host=host)
    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(
            cli, list(arguments), obj=state, prog_name="orchestra", catch_exceptions=False
        )
    finally:
        os.chdir(previous)


# -- scripted tools: a real program per tool, its behaviour per attempt from a TOML script --


def write_tool_script(
    path: str | os.PathLike[str],
    steps: Sequence[Mapping[str, object]],
    tasks: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
    reviews: Sequence[Mapping[str, object]] = (),
) -> Path:
    """Write a scripted tool's script: ``steps[N-1]`` is what attempt N does (the last one
    repeats), ``tasks`` gives a task id steps of its own, ``reviews[N-1]`` is what the
    tool does reviewing attempt N's change (its ``answer`` holds the verdict). Returns
    the path.

    A step is a dict such as ``{"action": "fail", "error_class": "auth"}``; see
    ``orchestra.testing.scripted_tool`` for every key. The calls log starts empty (made here: a
    sandboxed attempt may write that file, ``scripted_tools_env``, but not make it).
    """
    from orchestra.testing.scripted_tool import calls_path, dump_script

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_script(steps, tasks, reviews))
    calls_path(path).write_text("")
    return path


def scripted_tools_env(
    **scripts: str | os.PathLike[str] | tuple[str | os.PathLike[str], Iterable[str]],
) -> dict[str, str]:
    """Return the environment that makes ``orchestra`` register scripted tools, one per
    keyword: ``scripted_tools_env(alpha=script)`` or ``alpha=(script, {"prompt", "rust"})``
    to set the capabilities. Pass it as ``run_orchestra(..., env=...)``.

    The plugin that registers them, ``scripted``, is installed only where this
    environment goes: its ``PYTHONPATH`` puts ``TESTING_SITE`` in front of the one this
    process has. The program records its calls beside its script, outside any worktree:
    that file is made writable in the attempts' sandbox (``sandbox_writable``), and
    nothing else."""
    from orchestra.testing.scripted_tool import calls_path

    entries, logs = [], []
    for name, value in scripts.items():
        script, capabilities = value if isinstance(value, tuple) else (value, ())
        entry = f"{name}={Path(script).absolute()}"
        if capabilities:
            entry += ":" + "+".join(sorted(capabilities))
        entries.append(entry)
        logs.append(str(calls_path(Path(script).absolute())))
    inherited = os.environ.get("PYTHONPATH")
    return {
        "ORCHESTRA_SCRIPTED_TOOLS": ",".join(entries),
        "ORCHESTRA_SANDBOX_WRITABLE": ",".join(logs),
        "PYTHONPATH": os.pathsep.join([str(TESTING_SITE), *([inherited] if inherited else [])]),
    }


def tool_calls(script: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Return what a scripted tool was asked, one dict per call, oldest first: ``attempt``,
    ``step``, ``kind`` (attempt or review), ``action``, ``task``, ``run``, ``prompt``,
    ``feedback``, ``cwd``, ``pid``."""
    from orchestra.testing.scripted_tool import read_calls

    return read_calls(script)


# a real tool adapter that runs the scripted program; register it with ToolsPlugin
from orchestra.testing.scripted_tool import ScriptedToolAdapter as ScriptedToolAdapter  # noqa: E402
