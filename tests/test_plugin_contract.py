"""What a plugin author can rely on: built-in names stay built-in whatever a plugin's hook
options, hook wrappers are refused, blocking ends a clash but never an essential plugin,
and `orchestra plugins` shows what each plugin registered."""

import json
import re

import click
import pytest

from orchestra import hookimpl
from orchestra.errors import PluginError
from orchestra.plugin.host import KINDS
from orchestra.testing import ScriptedTool, invoke_cli, make_distribution, run_orchestra


class Named:
    """An object with a name and the given methods: enough for any registry."""

    def __init__(self, name, *methods):
        self.name = name
        self.capabilities = frozenset({"prompt"})
        for method in methods:
            setattr(self, method, lambda *args, **kwargs: None)


# -- a built-in's name stays the built-in's ------------------------------------------------


@pytest.mark.parametrize("option", ["trylast", "tryfirst"])
def test_no_hook_option_lets_a_plugin_take_a_built_in_name(plugin_host, register_plugin, option):
    class Impostor:
        @hookimpl(**{option: True})
        def orchestra_register_tools(self, register):
            register(ScriptedTool(name="shell"))

        @hookimpl(**{option: True})
        def orchestra_register_routers(self, register):
            register(Named("auto", "choose"))

    register_plugin(Impostor(), name="impostor")
    assert plugin_host.tools().registration("shell").plugin == "shell"
    assert plugin_host.routers().registration("auto").plugin == "routing"
    assert plugin_host.info("shell").status == "ok"
    assert plugin_host.info("impostor").status == "broken"
    assert plugin_host.problems() == [
        "plugin 'impostor' (registered at run time) is broken: "
        "plugin 'impostor' registered tool 'shell', which plugin 'shell' already registered"
    ]


IMPOSTOR_SHELL = """
    import orchestra

    class Shell:
        name = "shell"
        capabilities = frozenset({"command"})

        def available(self, profile):
            return orchestra.Availability(True, path="/impostor")

        def execute(self, request, ctx):
            return orchestra.StepResult("succeeded")  # never runs the command

    @orchestra.hookimpl(trylast=True)
    def orchestra_register_tools(register):
        register(Shell())
"""


def test_an_installed_trylast_plugin_cannot_take_over_the_shell_tool_in_a_run(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "orchestra-impostor",
        {"orchestra_impostor": IMPOSTOR_SHELL},
        {"impostor": "orchestra_impostor"},
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "a"\ncommand = ["touch", "made"]\n')
    result = run_orchestra("run", "ws.toml", "--quiet", extra_path=[site], cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / "made").exists()  # the built-in shell ran the command
    assert (
        "warning: plugin 'impostor' (orchestra-impostor 1.0) is broken: plugin 'impostor' "
        "registered tool 'shell', which plugin 'shell' already registered "
        "(see 'orchestra plugins')\n"
    ) in result.stderr


# -- hook wrappers -------------------------------------------------------------------------


def test_a_wrapper_hook_is_refused_naming_the_plugin_and_the_hook(plugin_host):
    class Wrapping:
        @hookimpl(wrapper=True)
        def orchestra_register_tools(self, register):
            register(ScriptedTool(name="wrapped"))
            return (yield)

    with pytest.raises(PluginError) as refused:
        plugin_host.register(Wrapping(), name="wrapping")
    assert refused.value.message == (
        "plugin 'wrapping' marks hook 'orchestra_register_tools' wrapper=True: orchestra "
        "calls each plugin's hook on its own, so a wrapper would register nothing"
    )
    assert plugin_host.info("wrapping") is None
    assert "wrapped" not in plugin_host.tools()


OLD_STYLE_WRAPPER = """
    import orchestra

    @orchestra.hookimpl(hookwrapper=True)
    def orchestra_register_routers(register):
        yield
"""


def test_an_installed_hookwrapper_plugin_is_broken_with_the_reason(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "orchestra-wrapper",
        {"orchestra_wrapper": OLD_STYLE_WRAPPER},
        {"wrapper": "orchestra_wrapper"},
    )
    result = run_orchestra("plugins", "--json", extra_path=[site], cwd=tmp_path)
    row = next(row for row in json.loads(result.stdout) if row["name"] == "wrapper")
    assert row["status"] == "broken"
    assert row["reason"] == (
        "plugin 'wrapper' marks hook 'orchestra_register_routers' hookwrapper=True: orchestra "
        "calls each plugin's hook on its own, so a wrapper would register nothing"
    )


# -- blocking ------------------------------------------------------------------------------

ECHO_PLUGIN = """
    import orchestra

    class Echo:
        name = "echo-tool"
        capabilities = frozenset({"prompt"})

        def available(self, profile):
            return orchestra.Availability(True, version="{version}", path="/echo")

        def execute(self, request, ctx):
            raise NotImplementedError

    @orchestra.hookimpl
    def orchestra_register_tools(register):
        register(Echo())
"""


@pytest.fixture
def two_echoes(tmp_path):
    """Two installed distributions that both declare the plugin name 'echo'."""
    return [
        make_distribution(
            tmp_path / f"site{number}",
            f"orchestra-echo{number}",
            {f"orchestra_echo{number}": ECHO_PLUGIN.replace("{version}", str(number))},
            {"echo": f"orchestra_echo{number}"},
        )
        for number in (1, 2)
    ]


@pytest.mark.parametrize("blocked, kept", [("orchestra-echo2", 1), ("orchestra-echo1", 2)])
def test_blocking_either_distribution_ends_their_name_clash(tmp_path, two_echoes, blocked, kept):
    env = {"ORCHESTRA_DISABLE_PLUGINS": blocked}
    tools = run_orchestra("tools", "--json", extra_path=two_echoes, cwd=tmp_path, env=env)
    assert tools.returncode == 0
    assert tools.stderr == ""  # no warning about the clash
    echo = next(row for row in json.loads(tools.stdout) if row["name"] == "echo-tool")
    assert (echo["plugin"], echo["version"]) == ("echo", str(kept))
    listing = run_orchestra("plugins", "--json", extra_path=two_echoes, cwd=tmp_path, env=env)
    statuses = {
        row["distribution"]: row["status"]
        for row in json.loads(listing.stdout)
        if row["distribution"].startswith("orchestra-echo")
    }
    assert statuses == {blocked: "disabled", f"orchestra-echo{kept}": "ok"}


@pytest.mark.parametrize(
    "name, what_breaks",
    [
        ("shell", "plugin 'shell' cannot be blocked: no task's command could run"),
        ("toml", "plugin 'toml' cannot be blocked: no TOML workstream could be read"),
        ("executors", "plugin 'executors' cannot be blocked: no attempt could run"),
        ("orchestra", "distribution 'orchestra' cannot be blocked: it holds the plugins"),
    ],
)
def test_an_essential_built_in_cannot_be_blocked(tmp_path, name, what_breaks):
    from_environment = run_orchestra(
        "plugins", cwd=tmp_path, env={"ORCHESTRA_DISABLE_PLUGINS": f"routing,{name}"}
    )
    assert from_environment.returncode == 2 and from_environment.stdout == ""
    assert from_environment.stderr.startswith(f"error: ORCHESTRA_DISABLE_PLUGINS: {what_breaks}")
    assert from_environment.stderr.count("\n") == 1
    (tmp_path / "orchestra.toml").write_text(f'disable_plugins = ["{name}"]\n')
    (tmp_path / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    from_file = run_orchestra("validate", "ws.toml", cwd=tmp_path)
    assert from_file.returncode == 2 and from_file.stdout == ""
    assert from_file.stderr.startswith(
        f"error: {tmp_path / 'orchestra.toml'}: field 'disable_plugins': {what_breaks}"
    )


# -- what each plugin registered -----------------------------------------------------------


class EveryKind:
    """A plugin that registers one thing of every kind, and a command."""

    @hookimpl
    def orchestra_register_tools(self, register):
        register(Named("every-tool", "available", "execute"))

    @hookimpl
    def orchestra_register_routers(self, register):
        register(Named("every-router", "choose"))

    @hookimpl
    def orchestra_register_schedulers(self, register):
        register(Named("every-scheduler", "order"))

    @hookimpl
    def orchestra_register_sinks(self, register):
        register(Named("every-sink", "emit", "close"))

    @hookimpl
    def orchestra_register_workspaces(self, register):
        register(Named("every-workspace", "open"))

    @hookimpl
    def orchestra_register_executors(self, register):
        register(Named("every-executor", "open"))

    @hookimpl
    def orchestra_register_loaders(self, register):
        register(Named("every-loader", "patterns", "sniff", "load"))
        register(Named("every-other-loader", "patterns", "sniff", "load"))

    @hookimpl
    def orchestra_register_commands(self, cli):
        @cli.command()
        def every():
            click.echo("every")


def test_plugins_shows_what_each_plugin_registered(plugin_host, register_plugin):
    register_plugin(EveryKind(), name="every")
    listing = json.loads(invoke_cli(["plugins", "--json"], host=plugin_host).stdout)
    every = next(row for row in listing if row["name"] == "every")
    assert {kind: every[kind] for kind in [*KINDS, "commands"]} == {
        "tools": ["every-tool"],
        "routers": ["every-router"],
        "schedulers": ["every-scheduler"],
        "sinks": ["every-sink"],
        "workspaces": ["every-workspace"],
        "executors": ["every-executor"],
        "loaders": ["every-loader", "every-other-loader"],
        "settings": [],
        "commands": ["every"],
    }
    shell = next(row for row in listing if row["name"] == "shell")
    assert shell["tools"] == ["shell"] and shell["loaders"] == []
    table = invoke_cli(["plugins"], host=plugin_host).stdout.splitlines()
    assert table[0].split() == ["plugin", "distribution", "version", "status", "registered"]
    every_line = next(line for line in table if line.startswith("every "))
    assert re.split(r"\s{2,}", every_line) == [
        "every",
        "-",
        "-",
        "ok",
        "tools: every-tool; routers: every-router; schedulers: every-scheduler; "
        "sinks: every-sink; workspaces: every-workspace; executors: every-executor; "
        "loaders: every-loader, every-other-loader; commands: every",
    ]


def test_plugins_and_tools_tables_keep_one_line_per_row_when_piped(tmp_path):
    env = {"COLUMNS": "80"}
    listing = json.loads(run_orchestra("plugins", "--json", cwd=tmp_path).stdout)
    table = run_orchestra("plugins", cwd=tmp_path, env=env).stdout.splitlines()
    assert len(table) == 1 + len(listing)
    routing = next(line for line in table if line.startswith("routing "))
    assert re.split(r"\s{2,}", routing)[3:] == ["ok", "routers: fixed, round_robin, auto"]
    assert [line.split()[0] for line in table[1:]] == [row["name"] for row in listing]

    tools = json.loads(run_orchestra("tools", "--json", cwd=tmp_path).stdout)
    table = run_orchestra("tools", cwd=tmp_path, env=env).stdout.splitlines()
    assert table[len(tools) + 1] == ""  # header, one line per tool, then the sandbox line
    assert [line.split()[0] for line in table[1 : len(tools) + 1]] == [row["name"] for row in tools]
    widest = max(table, key=len)
    assert len(widest) > 80  # the columns stay whole rather than fold at the width
