"""``plan`` and ``validate`` warn about the configuration of the tools routing may pick
(an adapter's optional ``configuration_problems``), and the exit status stays 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.models import Availability, ToolProfile
from orchestra.plugin.host import PluginHost
from orchestra.plugin.protocols import ToolSetup
from orchestra.testing import ScriptedTool, ToolsPlugin, invoke_cli

WORKSTREAM = 'id = "w"\n[[tasks]]\nid = "t"\nprompt = "p"\n[defaults.env]\nFROM_DEFAULTS = "1"\n'


class Unconfigured(ScriptedTool):
    """A tool that says what its configuration lacks, and remembers what it was shown."""

    def configuration_problems(self, profile: ToolProfile, setup: ToolSetup) -> list[str]:
        self.requests.append((profile, setup))  # type: ignore[arg-type]
        if self.name == "raising":
            raise RuntimeError("the check broke")
        return [f"no key for {self.name}"]


@pytest.fixture
def tools() -> dict[str, Unconfigured]:
    gone = Availability(False, reason="not installed")
    return {
        "keyless": Unconfigured(name="keyless"),
        "absent": Unconfigured(name="absent", availability=gone),
        "rusty": Unconfigured(name="rusty", capabilities=frozenset({"rust"})),
        "raising": Unconfigured(name="raising"),
    }


@pytest.fixture
def host(tools) -> PluginHost:
    host = PluginHost.from_environment(environ={"ORCHESTRA_DISABLE_PLUGINS": "aider,codex,ray"})
    host.register(ToolsPlugin(*tools.values()), name="unconfigured-tools")
    return host


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_each_problem_of_a_tool_routing_may_pick_is_one_warning_line(
    tmp_path, host, tools, command, monkeypatch
):
    (tmp_path / "ws.toml").write_text(WORKSTREAM)
    (tmp_path / "orchestra.toml").write_text(
        '[tools.keyless]\npass_env = ["PASSED", "UNSET"]\nenv = { FROM_PROFILE = "1" }\n'
    )
    monkeypatch.setenv("PASSED", "yes")
    monkeypatch.setenv("NOT_PASSED", "no")
    monkeypatch.delenv("UNSET", raising=False)

    result = invoke_cli([command, "ws.toml"], host=host, cwd=tmp_path)

    assert result.exit_code == 0, result.stderr
    prefix = "warning: ws.toml: " if command == "validate" else "warning: "
    assert result.stderr.splitlines() == [
        f"{prefix}tool keyless: no key for keyless",
        f"{prefix}tool raising: its configuration check raised RuntimeError: the check broke",
    ]
    # what the check was shown: the environment an attempt of the tool starts with
    [(profile, setup)] = tools["keyless"].requests
    assert profile.pass_env == ("PASSED", "UNSET")
    assert setup.environ["PASSED"] == "yes" and "UNSET" not in setup.environ
    assert "NOT_PASSED" not in setup.environ
    assert setup.environ["FROM_PROFILE"] == setup.environ["FROM_DEFAULTS"] == "1"
    assert setup.root == Path(tmp_path).resolve()
    assert setup.state_dir == Path(tmp_path).resolve() / ".orchestra" / "tools" / "keyless"
    # a tool that is not installed here, or that no task can use, is not asked or not named
    assert tools["rusty"].requests == []
    assert "absent" not in result.stderr


def test_a_task_that_pins_a_tool_makes_only_that_tool_a_candidate(tmp_path, host):
    (tmp_path / "ws.toml").write_text(
        WORKSTREAM.replace('prompt = "p"', 'prompt = "p"\ntool = "keyless"')
    )

    result = invoke_cli(["plan", "ws.toml"], host=host, cwd=tmp_path)

    assert result.exit_code == 0
    assert result.stderr.splitlines() == ["warning: tool keyless: no key for keyless"]
