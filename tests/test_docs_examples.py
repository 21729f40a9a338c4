"""Every Python example of docs/plugins.md and docs/hooks.md works as the page says.

An example with ``@orchestra.hookimpl`` is a plugin: it is installed as a distribution of
its own (its entry point found by the real entry-point machinery, in a real ``orchestra``
process), ``orchestra plugins --json`` must list it ok, and each thing it registers is
put to work in a real ``orchestra`` run: a tool runs a task, a router routes one, a
scheduler orders tasks, a sink receives a run's events, a workspace holds an attempt, an
executor carries one out, a loader's file is validated and run, a command answers, a
setting is an option. An
example with test functions is a plugin's test: it runs under pytest, in a project where
the page's plugin examples are installed.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import pytest
import tomli

from orchestra.testing import (
    PluginHost,
    make_distribution,
    make_git_repo,
    run_orchestra,
    scripted_tools_env,
    tool_calls,
    write_tool_script,
)

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("plugins.md", "hooks.md")
BLOCK = re.compile(r"^```(?P<language>\w*)\n(?P<code>.*?)^```$", re.M | re.S)
#: "`orchestra-cheapest/orchestra_cheapest.py`:" just above a block names its file
CAPTION = re.compile(r"`(?:[\w.-]+/)*(?P<module>\w+)\.py`:\n\n$")


@attrs.frozen
class Example:
    """A Python example of a page: its code, the module it is (named by its caption, else
    by its line), and the line it starts at."""

    page: str
    line: int
    module: str
    code: str

    @property
    def is_test(self) -> bool:
        return re.search(r"^def test_", self.code, re.M) is not None


def examples(page: str) -> list[Example]:
    text = (ROOT / "docs" / page).read_text()
    found = []
    for block in BLOCK.finditer(text):
        if block.group("language") != "python":
            continue
        line = text.count("\n", 0, block.start()) + 1
        caption = CAPTION.search(text, 0, block.start())
        named = caption is not None and caption.end() == block.start()
        module = caption.group("module") if named else f"docs_{Path(page).stem}_{line}"
        found.append(Example(page, line, module, block.group("code")))
    return found


def entry_points_of(page: str) -> dict[str, tuple[str, str]]:
    """Return, for each module a ``pyproject.toml`` example of the page declares as a
    plugin, its distribution's name and its entry point's name."""
    declared = {}
    for block in BLOCK.finditer((ROOT / "docs" / page).read_text()):
        if block.group("language") != "toml" or "[project]" not in block.group("code"):
            continue
        project = tomli.loads(block.group("code"))["project"]
        for name, target in project.get("entry-points", {}).get("orchestra", {}).items():
            declared[target.partition(":")[0]] = (project["name"], name)
    return declared


def install(site: Path, page: str, example: Example) -> str:
    """Install ``example`` in ``site`` as a distribution, as its page's pyproject declares
    it (else as one of its own); return its plugin's name."""
    distribution, plugin = entry_points_of(page).get(
        example.module, (example.module.replace("_", "-"), example.module)
    )
    make_distribution(site, distribution, {example.module: example.code}, {plugin: example.module})
    return plugin


ALL = [example for page in PAGES for example in examples(page)]


def test_every_python_block_of_the_pages_is_marked_python():
    """A block of Python fenced otherwise (```py, no language) would pass unseen here."""
    for page in PAGES:
        for block in BLOCK.finditer((ROOT / "docs" / page).read_text()):
            if block.group("language") != "python":
                assert not re.search(
                    r"^(import orchestra|from orchestra|def |class )", block.group("code"), re.M
                ), f"docs/{page}: a block of Python is fenced as {block.group('language')!r}"
    assert {example.module for example in examples("plugins.md")} >= {
        "orchestra_cheapest",
        "test_cheapest",
    }


@pytest.mark.parametrize("example", ALL, ids=lambda example: f"{example.page}:{example.line}")
def test_an_example_imports_only_orchestras_public_modules(example):
    """What the pages show a plugin importing is what a plugin may import: ``orchestra``,
    and ``orchestra.testing`` in its tests (docs/plugins.md, what a plugin may import)."""
    imported = set()
    for node in ast.walk(ast.parse(example.code)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    private = sorted(
        name for name in imported if name.startswith("orchestra.") and name != "orchestra.testing"
    )
    assert not private, f"{example.page}:{example.line} imports {private}"


# -- exercising what a plugin registers ---------------------------------------------------


def run_json(
    project: Path, site: Path, *arguments: str, env: Mapping[str, str] | None = None
) -> dict:
    """Run ``orchestra run --json`` in ``project`` with the plugin installed; return the
    run's summary, failing the test unless the run succeeded."""
    ran = run_orchestra("run", *arguments, "--json", cwd=project, env=env, extra_path=[site])
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return json.loads(ran.stdout)


def attempts_of(
    project: Path, site: Path, run_id: str, env: Mapping[str, str] | None = None
) -> dict:
    """Return each task's attempts, as ``orchestra show --json`` gives them."""
    shown = run_orchestra("show", run_id, "--json", cwd=project, env=env, extra_path=[site])
    assert shown.returncode == 0, shown.stderr
    return {step["task"]: step["attempts"] for step in json.loads(shown.stdout)["steps"]}


def log_of(project: Path, site: Path, run_id: str, task: str) -> str:
    """Return the log of the task's attempt, as ``orchestra logs`` prints it."""
    shown = run_orchestra("logs", run_id, task, cwd=project, extra_path=[site])
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def exercise_tool(name: str, project: Path, site: Path) -> None:
    """The tool carries out a task pinned to it: a command, or a prompt, as it can."""
    listed = run_orchestra("tools", "--json", cwd=site, extra_path=[site])
    (row,) = [row for row in json.loads(listed.stdout) if row["name"] == name]
    work = 'command = ["true"]' if "command" in row["capabilities"] else 'prompt = "greet"'
    workstream = f'id = "w"\n[[tasks]]\nid = "greet"\ntool = "{name}"\n{work}\n'
    make_git_repo(project, {"ws.toml": workstream})
    summary = run_json(project, site, "ws.toml")
    (attempt,) = attempts_of(project, site, summary["run"])["greet"]
    assert attempt["tool"] == name and attempt["outcome"] == "succeeded"
    assert "greet" in log_of(project, site, summary["run"], "greet")


def exercise_setting(name: str, project: Path, site: Path) -> None:
    """The setting is an option of ``run`` and ``resume``."""
    option = "--" + name.replace("_", "-")
    for command in ("run", "resume"):
        shown = run_orchestra(command, "--help", cwd=site, extra_path=[site])
        assert option in shown.stdout, f"orchestra {command} --help lacks {option}"


def two_scripted_tools(directory: Path) -> dict[str, str]:
    alpha = write_tool_script(directory / "alpha.toml", [{"action": "succeed"}])
    beta = write_tool_script(directory / "beta.toml", [{"action": "succeed"}])
    return scripted_tools_env(alpha=alpha, beta=beta)


def exercise_router(name: str, project: Path, site: Path) -> None:
    """The router, chosen by name, decides between two tools in plan and run alike."""
    tools = two_scripted_tools(project.parent)
    make_git_repo(
        project,
        {"ws.toml": 'id = "w"\n[[tasks]]\nid = "t"\nprompt = "p"\ntools = ["beta", "alpha"]\n'},
    )
    env = {**tools, "ORCHESTRA_ROUTING": name}
    plan = run_orchestra("plan", "ws.toml", cwd=project, env=env, extra_path=[site])
    assert plan.returncode == 0, plan.stderr
    (line,) = [line.split() for line in plan.stdout.splitlines() if line.split()[:1] == ["t"]]
    summary = run_json(project, site, "ws.toml", env=env)
    (attempt,) = attempts_of(project, site, summary["run"], env)["t"]
    assert attempt["tool"] == line[1] and attempt["outcome"] == "succeeded"


def exercise_scheduler(name: str, project: Path, site: Path) -> None:
    """The scheduler, chosen by name, decides which of the ready tasks starts first."""
    tasks = [("c", 0), ("a", 1), ("d", 0), ("b", 0)]
    lines = ['id = "w"']
    for task, priority in tasks:
        lines += ["[[tasks]]", f'id = "{task}"', f"priority = {priority}"]
        lines += [f'command = "echo {task} >> order.txt"', "shell = true"]
    project.mkdir()
    (project / "ws.toml").write_text("\n".join(lines) + "\n")
    run_json(
        project, site, "ws.toml", env={"ORCHESTRA_SCHEDULER": name, "ORCHESTRA_MAX_PARALLEL": "1"}
    )
    started = (project / "order.txt").read_text().split()
    eager = ["a", "c", "d", "b"]  # by priority, then in file order
    assert sorted(started) == ["a", "b", "c", "d"] and started != eager


def exercise_sink(name: str, project: Path, site: Path) -> None:
    """The sink, chosen by name, receives the run's events."""
    project.mkdir()
    (project / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\ncommand = ["true"]\n')
    summary = run_json(project, site, "ws.toml", env={"ORCHESTRA_SINKS": name})
    written = [path for path in project.rglob("*.jsonl") if ".orchestra" not in path.parts]
    assert written, f"sink {name} wrote no file of events"
    events = [json.loads(line) for line in written[0].read_text().splitlines()]
    assert {event["run"] for event in events} == {summary["run"]}
    assert {"step.succeeded", "run.succeeded"} <= {event["type"] for event in events}


def exercise_workspace(name: str, project: Path, site: Path) -> None:
    """The workspace, chosen by name, holds the attempt: its command runs there."""
    project.mkdir()
    (project / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\ncommand = ["pwd"]\n')
    summary = run_json(project, site, "ws.toml", env={"ORCHESTRA_WORKSPACE": name})
    ran_in = log_of(project, site, summary["run"], "t")
    assert str(project) not in ran_in, f"the attempt ran in the project, not in {name}'s directory"


def exercise_executor(name: str, project: Path, site: Path) -> None:
    """The executor, chosen by name, carries out the run's attempts."""
    project.mkdir()
    lines = ['id = "w"']
    for task in ("a", "b"):
        lines += [
            "[[tasks]]",
            f'id = "{task}"',
            f'command = "echo {task} > {task}.txt"',
            "shell = true",
        ]
    (project / "ws.toml").write_text("\n".join(lines) + "\n")
    summary = run_json(project, site, "ws.toml", env={"ORCHESTRA_EXECUTOR": name})
    assert summary["state"] == "succeeded"
    assert (project / "a.txt").read_text() == "a\n" and (project / "b.txt").read_text() == "b\n"


def exercise_loader(name: str, project: Path, site: Path) -> None:
    """A file of the loader's format is recognised, and its tasks run."""
    alpha = write_tool_script(project.parent / "alpha.toml", [{"action": "succeed"}])
    project.mkdir()
    sample = project / f"todo{loader_suffix(name, site)}"
    sample.write_text("Write hello.py\n\nWrite its test\n")
    env = scripted_tools_env(alpha=alpha)
    checked = run_orchestra("validate", sample.name, cwd=project, env=env, extra_path=[site])
    assert checked.returncode == 0 and checked.stdout.startswith(f"ok: {sample.name}: 2 tasks")
    run_json(project, site, sample.name, env=env)
    prompts = sorted(call["prompt"].splitlines()[0] for call in tool_calls(alpha))
    assert prompts == ["Write hello.py", "Write its test"]


def loader_suffix(name: str, site: Path) -> str:
    """The file-name suffix a loader claims, from its first pattern (``*.tasks``): its
    plugin's module, registered on a throwaway host, says."""
    host = PluginHost()
    for source in site.glob("*.py"):
        spec = importlib.util.spec_from_file_location(source.stem, source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        host.register(module, name=source.stem)
    return Path(host.loaders().get(name).patterns[0]).suffix


def exercise_command(name: str, project: Path, site: Path) -> None:
    """The command runs by name, with its argument and without, as the page shows."""
    project.mkdir()
    greeted = run_orchestra(name, "ada", cwd=project, extra_path=[site])
    assert (greeted.returncode, greeted.stdout) == (0, "hello, ada\n"), greeted.stderr
    default = run_orchestra(name, cwd=project, extra_path=[site])
    assert default.stdout == "hello, world\n"


EXERCISES: dict[str, Callable[[str, Path, Path], None]] = {
    "tools": exercise_tool,
    "routers": exercise_router,
    "schedulers": exercise_scheduler,
    "sinks": exercise_sink,
    "workspaces": exercise_workspace,
    "executors": exercise_executor,
    "loaders": exercise_loader,
    "commands": exercise_command,
    "settings": exercise_setting,
}


@pytest.mark.parametrize(
    "example",
    [example for example in ALL if not example.is_test],
    ids=lambda example: f"{example.page}:{example.line}",
)
def test_a_plugin_example_is_listed_and_does_what_it_registers(example, tmp_path):
    assert "@orchestra.hookimpl" in example.code, "an example is a plugin or a test"
    site = tmp_path / "site"
    plugin = install(site, example.page, example)
    listing = run_orchestra("plugins", "--json", cwd=tmp_path, extra_path=[site])
    (row,) = [row for row in json.loads(listing.stdout) if row["name"] == plugin]
    assert row["status"] == "ok", row["reason"]
    # every list of the row but its hooks says what the plugin registered, by kind
    registered = {kind: names for kind, names in row.items() if isinstance(names, list) and names}
    registered.pop("hooks", None)
    assert registered, f"{example.page}:{example.line} registers nothing"
    assert set(registered) <= set(EXERCISES), (
        f"no exercise here for {set(registered) - set(EXERCISES)}"
    )
    for kind, names in registered.items():
        for name in names:
            EXERCISES[kind](name, tmp_path / f"{kind}-{name}", site)


@pytest.mark.parametrize(
    "example",
    [example for example in ALL if example.is_test],
    ids=lambda example: f"{example.page}:{example.line}",
)
@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_a_plugin_test_example_passes_with_the_plugin_installed(example, tmp_path):
    """The page's plugin examples are installed, as their pyproject says, and the test
    passes with orchestra's pytest plugin (its fixtures) as a plugin's own tests would."""
    site = tmp_path / "site"
    for other in examples(example.page):
        if not other.is_test and "@orchestra.hookimpl" in other.code:
            install(site, example.page, other)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / f"test_{example.module.removeprefix('test_')}.py").write_text(example.code)
    env = {name: value for name, value in os.environ.items() if not name.startswith("ORCHESTRA_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b\d+ passed\b", result.stdout) and "failed" not in result.stdout
