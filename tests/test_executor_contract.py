"""Executors get a public, typed contract: ``RunExecutor.submit`` receives an
``orchestra.AttemptLaunch``, and an executor that runs attempts "elsewhere", written
against ``orchestra``'s public names only, carries a real run to its end."""

import json
import re
from pathlib import Path

import attrs

import orchestra
from orchestra.testing import make_distribution, make_git_repo, run_orchestra

ROOT = Path(__file__).resolve().parents[1]

#: an executor as the ray one is built, without Ray: each attempt's tool and checks run
#: through a context of its own (an environment built as on another machine), on a
#: thread of their own; the run loop prepares, judges and lands the change around them
ELSEWHERE = """
import os
import threading

import attrs

import orchestra


class Elsewhere:
    name = "elsewhere"

    def open(self, run):
        return ElsewhereRun(run)


class ElsewhereRun:
    def __init__(self, run):
        self.run = run
        self.threads = []

    def submit(self, launch):
        if not isinstance(launch, orchestra.AttemptLaunch):
            raise TypeError(f"submit got a {type(launch).__name__}")
        remote = Remote(launch.adapter, tuple(launch.checks), self.run)
        forwarded = attrs.evolve(launch, adapter=remote, checks=())
        thread = threading.Thread(target=self.run.work, args=(forwarded,))
        thread.start()
        self.threads.append(thread)

    def close(self):
        for thread in self.threads:
            thread.join()


class Remote:
    def __init__(self, adapter, checks, run):
        self.adapter = adapter
        self.name = adapter.name
        self.checks = checks
        self.run = run

    def execute(self, request, ctx):
        environment = {**request.profile.env, "WHERE": "elsewhere"}
        there = orchestra.LocalContext(
            cwd=request.workdir,
            env=orchestra.build_environment(os.environ, environment, request.profile.pass_env),
            log_path=ctx.log_path + ".elsewhere",
            timeout=request.timeout,
            cancel=ctx.cancel,
        )
        try:
            result = orchestra.execute_attempt(self.adapter, request, there, self.checks)
        finally:
            there.cleanup()
        place = {"host": "elsewhere", "node": "n1"}
        self.run.event(request.task.id, request.attempt, "attempt.placed", place)
        return result


@orchestra.hookimpl
def orchestra_register_executors(register):
    register(Elsewhere())
"""

WORKSTREAM = """\
id = "w"
[[tasks]]
id = "where"
command = ["sh", "-c", "echo $WHERE > where.txt"]
checks = ["grep -q elsewhere where.txt"]
files = { create = ["where.txt"] }
"""


def test_an_executor_written_against_the_public_api_carries_a_run(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "orchestra-elsewhere",
        {"orchestra_elsewhere": ELSEWHERE},
        {"elsewhere": "orchestra_elsewhere"},
    )
    repo = make_git_repo(tmp_path / "repo", {"ws.toml": WORKSTREAM})

    ran = run_orchestra(
        "run", "ws.toml", "--json", "--executor", "elsewhere", extra_path=[site], cwd=repo
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = json.loads(ran.stdout)["run"]
    shown = run_orchestra("show", run_id, "--json", extra_path=[site], cwd=repo)
    [attempt] = json.loads(shown.stdout)["steps"][0]["attempts"]
    assert (attempt["outcome"], attempt["host"]) == ("succeeded", "elsewhere")
    landed = run_orchestra("diff", run_id, "where", cwd=repo).stdout
    assert "+elsewhere" in landed


def test_the_launch_is_documented_field_by_field_and_typed_in_the_protocol():
    import typing

    from orchestra.plugin.protocols import RunExecutor

    hints = typing.get_type_hints(RunExecutor.submit, vars(orchestra.plugin.protocols))
    assert hints["launch"] is orchestra.AttemptLaunch
    executors = (ROOT / "docs" / "hooks.md").read_text().split("## orchestra_register_executors")
    section = re.split(r"^## ", executors[1], flags=re.M)[0]
    for field in attrs.fields(orchestra.AttemptLaunch):
        assert f"`{field.name}`" in section, f"docs/hooks.md does not describe launch.{field.name}"
