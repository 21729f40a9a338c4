"""Types reach plugin authors: a plugin written against ``orchestra``'s public names is
checked by mypy --strict, as its author's CI would check it, before any run.

A right plugin passes; each mistake a run would only find later (an object that is not a
tool, a misspelled option of ``register``, a field ``attrs.evolve`` does not know, an
optional member with the wrong parameters) is an error on its own line.
"""

from __future__ import annotations

import re
import textwrap

import mypy.api
import pytest

RIGHT = """
from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

import attrs

import orchestra


class EchoTool:
    name = "echo"
    capabilities = frozenset({"command"})
    circuit_breaker = False

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        path = shutil.which("echo")
        return orchestra.Availability(path is not None, path=path, reason="echo not found")

    def execute(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        finished = ctx.run(["echo", request.task.id])
        outcome = "succeeded" if finished.exit_code == 0 else "failed"
        return orchestra.StepResult(outcome, exit_code=finished.exit_code)


class Log(orchestra.EventSink, orchestra.SinkOpen):
    name = "log"

    def open(self, context: orchestra.SinkContext) -> None:
        self.run_id = context.run_id

    def emit(self, event: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


@orchestra.hookimpl
def orchestra_register_tools(register: orchestra.Register[orchestra.ToolAdapter]) -> None:
    register(EchoTool())
    register(EchoTool(), name="echo2")


@orchestra.hookimpl
def orchestra_register_sinks(register: orchestra.Register[orchestra.EventSink]) -> None:
    register(Log())


def retitled(task: orchestra.Task) -> orchestra.Task:
    assert "prompt" in [field.name for field in attrs.fields(orchestra.Task)]
    return attrs.evolve(task, prompt="again")
"""

#: each mistake (one line of the plugin, marked) and what mypy says of it
MISTAKES = """
class NoExecute:
    name = "half"
    capabilities = frozenset({"prompt"})

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        return orchestra.Availability(True)


class OpensWithoutContext(orchestra.EventSink, orchestra.SinkOpen):
    name = "wrong"

    def open(self) -> None:  # MISTAKE: Signature of "open" incompatible with supertype
        pass

    def emit(self, event: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


@orchestra.hookimpl
def orchestra_register_loaders(register: orchestra.Register[orchestra.WorkstreamLoader]) -> None:
    register(EchoTool())  # MISTAKE: incompatible type "EchoTool"; expected "WorkstreamLoader"


def more_tools(register: orchestra.Register[orchestra.ToolAdapter]) -> None:
    register(NoExecute())  # MISTAKE: incompatible type "NoExecute"; expected "ToolAdapter"
    register(EchoTool(), nmae="x")  # MISTAKE: Unexpected keyword argument "nmae"
    register(EchoTool(), name=3)  # MISTAKE: incompatible type "int"; expected "str | None"


def renamed(task: orchestra.Task) -> orchestra.Task:
    return attrs.evolve(task, promt="again")  # MISTAKE: Unexpected keyword argument "promt"


def unknown() -> object:
    return orchestra.Availabilty  # MISTAKE: Module has no attribute "Availabilty"
"""


@pytest.fixture(scope="module")
def check(tmp_path_factory: pytest.TempPathFactory):
    """mypy --strict on a plugin's source, with nothing of this checkout's configuration;
    returns its error lines, each as (line number, message)."""
    directory = tmp_path_factory.mktemp("typed_plugin")
    config = directory / "mypy.ini"
    config.write_text("[mypy]\n")

    def run(source: str) -> list[tuple[int, str]]:
        plugin = directory / "typed_plugin.py"
        plugin.write_text(textwrap.dedent(source))
        arguments = ["--strict", "--config-file", str(config), "--cache-dir", str(directory)]
        stdout, stderr, _ = mypy.api.run([*arguments, "--no-error-summary", str(plugin)])
        assert not stderr, stderr
        found = re.findall(rf"^{re.escape(str(plugin))}:(\d+): error: (.*)$", stdout, re.M)
        return [(int(line), message) for line, message in found]

    return run


def test_a_right_plugin_passes_mypy_strict(check):
    assert check(RIGHT) == []


def test_each_mistake_in_a_plugin_is_a_mypy_error_on_its_line(check):
    source = RIGHT + MISTAKES
    expected = {
        number: line.split("# MISTAKE: ", 1)[1]
        for number, line in enumerate(source.splitlines(), start=1)
        if "# MISTAKE: " in line
    }
    errors = check(source)
    for number, wanted in expected.items():
        said = [message for line, message in errors if line == number]
        assert any(wanted in message for message in said), (number, wanted, errors)
    assert {line for line, _ in errors} == set(expected), errors


def test_every_protocol_is_a_public_name():
    """A plugin imports only ``orchestra``: each protocol its type checker needs is there."""
    import orchestra
    from orchestra.plugin import protocols

    declared = {
        name
        for name, value in vars(protocols).items()
        if isinstance(value, type)
        and value.__module__ == protocols.__name__
        and getattr(value, "_is_protocol", False)
    }
    assert declared - set(orchestra.__all__) == set()
    assert all(getattr(orchestra, name) is getattr(protocols, name) for name in declared)
