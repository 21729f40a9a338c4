"""`orchestra plan` shows the tool `orchestra run` then picks for each task, and why.

Each test plans a workstream, runs the same file with real `orchestra` processes and
scripted tools, and compares the plan's tool and reason with what each task's first
attempt recorded: for every built-in routing strategy and a third-party router, with
the track record an earlier run left, round robin's stored turn, and an open breaker.
"""

import hashlib
import json
from pathlib import Path

from orchestra.testing import (
    make_distribution,
    run_orchestra,
    scripted_tools_env,
    write_tool_script,
)

#: a router from a plugin that reads each task's metadata and id
LABEL_ROUTER = """
import orchestra

class ByLabel:
    name = "by_label"

    def choose(self, task, candidates, context):
        names = [adapter.name for adapter in candidates]
        wanted = task.metadata.get("tool")
        if wanted in names:
            return orchestra.RoutingChoice(wanted, f"by_label: {task.id} asks for {wanted}")
        return orchestra.RoutingChoice(names[-1], f"by_label: {task.id} takes the last")

@orchestra.hookimpl
def orchestra_register_routers(register):
    register(ByLabel())
"""


class Project:
    """A directory with scripted tools alpha and beta, where orchestra plans and runs."""

    def __init__(self, root: Path, alpha=({},), beta=({},), site: Path | None = None):
        self.root = root
        self.env = scripted_tools_env(
            alpha=write_tool_script(root / "tools" / "alpha.toml", list(alpha)),
            beta=write_tool_script(root / "tools" / "beta.toml", list(beta)),
        )
        self.extra_path = [site] if site is not None else []

    def orchestra(self, *arguments: str):
        return run_orchestra(*arguments, cwd=self.root, env=self.env, extra_path=self.extra_path)

    def plan(self, file: str, *flags: str) -> dict[str, tuple[str | None, str]]:
        """Return each task's (tool, reason) as `plan --format json` gives them."""
        result = self.orchestra("plan", file, "--format", "json", *flags)
        assert result.returncode == 0, result.stderr
        return {task["id"]: (task["tool"], task["reason"]) for task in _tasks(result.stdout)}

    def run(self, file: str, *flags: str) -> dict[str, tuple[str, str]]:
        """Run ``file`` and return each task's first attempt's (tool, routing reason), as
        `orchestra show RUN --json` gives them."""
        result = self.orchestra("run", file, "--quiet", *flags)
        assert result.returncode == 0, result.stdout + result.stderr
        newest = json.loads(self.orchestra("runs", "--json").stdout)[0]["id"]
        shown = json.loads(self.orchestra("show", newest, "--json").stdout)
        return {
            step["task"]: (step["attempts"][0]["tool"], step["attempts"][0]["routing"])
            for step in shown["steps"]
        }

    def database(self) -> Path:
        return self.root / ".orchestra" / "orchestra.db"


def _tasks(output: str) -> list[dict]:
    return json.loads(output)["tasks"]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return path.name


def prompt_tasks(*ids: str, **fields: str) -> str:
    """Return TOML for prompt tasks ``ids``; ``fields`` adds a line to each (raw TOML)."""
    extra = "".join(f"{name} = {value}\n" for name, value in fields.items())
    return "".join(f'[[tasks]]\nid = "{id}"\nprompt = "p"\n{extra}' for id in ids)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_robin_goes_on_from_the_turn_an_earlier_run_stored(tmp_path):
    project = Project(tmp_path)
    defaults = '[defaults]\ntools = ["alpha", "beta"]\nrouting = "round_robin"\n'
    write(tmp_path / "first.toml", 'id = "first"\n' + defaults + prompt_tasks("once"))
    ws = write(tmp_path / "ws.toml", 'id = "w"\n' + defaults + prompt_tasks("a", "b", "c"))
    assert project.run("first.toml") == {"once": ("alpha", "round_robin: alpha's turn")}
    before = digest(project.database())

    planned = project.plan(ws)

    # the plan goes on after alpha, task by task, and leaves the stored turn alone
    assert [tool for tool, _ in planned.values()] == ["beta", "alpha", "beta"]
    assert project.plan(ws) == planned
    assert digest(project.database()) == before
    assert project.run(ws) == planned


def test_round_robin_is_planned_in_the_order_the_run_starts_the_tasks(tmp_path):
    # one at a time: after "a", the higher priority of "b" (which waits for "a") puts
    # it before "c" of the first wave, and round robin takes turns in that order
    project = Project(tmp_path)
    ws = write(
        tmp_path / "ws.toml",
        'id = "w"\n[defaults]\ntools = ["alpha", "beta"]\nrouting = "round_robin"\n'
        + prompt_tasks("a")
        + prompt_tasks("b", depends_on='["a"]', priority="5")
        + prompt_tasks("c")
        + prompt_tasks("d", depends_on='["c"]'),
    )

    planned = project.plan(ws, "--max-parallel", "1")

    assert {task: tool for task, (tool, _) in planned.items()} == {
        "a": "alpha",
        "b": "beta",
        "c": "alpha",
        "d": "beta",
    }
    assert project.run(ws, "--max-parallel", "1") == planned


def test_auto_weighs_the_track_record_earlier_runs_left(tmp_path):
    # alpha's earlier attempt fails (not a tool fault: no breaker), beta's succeeds
    project = Project(tmp_path, alpha=({"action": "fail", "error_class": "invalid_output"},))
    write(
        tmp_path / "first.toml",
        'id = "first"\n'
        + prompt_tasks("on-alpha", tool='"alpha"', max_attempts="1")
        + prompt_tasks("on-beta", tool='"beta"'),
    )
    project.orchestra("run", "first.toml", "--quiet")
    ws = write(
        tmp_path / "ws.toml",
        'id = "w"\n[defaults]\ntools = ["alpha", "beta"]\nrouting = "auto"\n'
        + prompt_tasks("a", "b"),
    )

    planned = project.plan(ws)

    assert planned == {
        "a": ("beta", "auto: beta 1/1, alpha 0/1"),
        "b": ("beta", "auto: beta 1/1, alpha 0/1"),
    }
    assert project.run(ws) == planned


def test_auto_with_no_record_tries_the_untried_tool_as_the_run_does(tmp_path):
    # only alpha has a record: auto tries beta first, in the plan as in the run
    project = Project(tmp_path)
    write(tmp_path / "first.toml", 'id = "first"\n' + prompt_tasks("warm", tool='"alpha"'))
    project.orchestra("run", "first.toml", "--quiet")
    ws = write(
        tmp_path / "ws.toml",
        'id = "w"\n[defaults]\ntools = ["alpha", "beta"]\nrouting = "auto"\n'
        + prompt_tasks("a", "b", "c"),
    )

    planned = project.plan(ws)

    assert {tool for tool, _ in planned.values()} == {"beta"}
    assert project.run(ws) == planned


def test_a_tool_whose_breaker_is_open_is_not_planned_and_the_reason_says_so(tmp_path):
    # alpha is rate limited for ten minutes: its breaker opens until then
    project = Project(tmp_path, alpha=({"action": "rate_limit", "retry_after": 600},))
    write(
        tmp_path / "first.toml",
        'id = "first"\n' + prompt_tasks("limited", tool='"alpha"', max_attempts="1"),
    )
    project.orchestra("run", "first.toml", "--quiet")
    ws = write(
        tmp_path / "ws.toml",
        'id = "w"\n[defaults]\ntools = ["alpha", "beta"]\nrouting = "fixed"\n'
        + prompt_tasks("a", "b"),
    )

    planned = project.plan(ws)

    # beta is not the only tool that can run them: alpha is, once its breaker closes
    assert {tool for tool, _ in planned.values()} == {"beta"}
    for _, reason in planned.values():
        assert reason.startswith(
            "beta is the only tool left (passed over alpha: breaker open until"
        )
    text = project.orchestra("plan", ws).stdout
    assert "beta is the only tool left (passed over alpha: breaker open until" in text
    assert project.run(ws) == planned


def test_a_task_whose_only_tool_has_an_open_breaker_is_planned_to_wait(tmp_path):
    project = Project(tmp_path, alpha=({"action": "rate_limit", "retry_after": 600},))
    write(
        tmp_path / "first.toml",
        'id = "first"\n' + prompt_tasks("limited", tool='"alpha"', max_attempts="1"),
    )
    project.orchestra("run", "first.toml", "--quiet")
    ws = write(tmp_path / "ws.toml", 'id = "w"\n' + prompt_tasks("a", tools='["alpha"]'))

    result = project.orchestra("plan", ws)

    assert result.returncode == 0, result.stderr
    assert "  a  -  waits for a breaker (alpha: breaker open until" in result.stdout
    assert "1 task(s) wait for a tool's breaker to close" in result.stdout
    assert "have no tool that can run them" not in result.stdout
    (task,) = _tasks(project.orchestra("plan", ws, "--format", "json").stdout)
    assert task["tool"] is None
    assert task["rejected"]["alpha"].startswith("breaker open until")


def test_a_plugins_router_is_asked_for_every_task_and_reads_its_fields(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "orchestra-labels",
        {"orchestra_labels": LABEL_ROUTER},
        {"labels": "orchestra_labels"},
    )
    project = Project(tmp_path / "project", site=site)
    ws = write(
        tmp_path / "project" / "ws.toml",
        'id = "w"\n[defaults]\ntools = ["alpha", "beta"]\nrouting = "by_label"\n'
        + prompt_tasks("a", metadata='{ tool = "alpha" }')
        + prompt_tasks("b", metadata='{ tool = "beta" }')
        + prompt_tasks("c"),
    )

    planned = project.plan(ws)

    assert planned == {
        "a": ("alpha", "by_label: a asks for alpha"),
        "b": ("beta", "by_label: b asks for beta"),
        "c": ("beta", "by_label: c takes the last"),
    }
    assert project.run(ws) == planned
