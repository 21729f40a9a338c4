"""The plugin host: every hook, duplicate names, broken and blocked plugins, tracing."""

import io
import json
import types

import click
import pytest

from orchestra import hookimpl
from orchestra.errors import PluginError
from orchestra.models import Availability
from orchestra.plugin.host import KINDS, PluginHost
from orchestra.testing import (
    ScriptedTool,
    ToolsPlugin,
    invoke_cli,
    make_distribution,
    run_orchestra,
)


class Named:
    """An object with just a name and the given methods: enough for any registry."""

    def __init__(self, name, *methods):
        self.name = name
        self.capabilities = frozenset({"prompt"})
        for method in methods:
            setattr(self, method, lambda *args, **kwargs: None)


REQUIRED = {
    "tools": ("available", "execute"),
    "routers": ("choose",),
    "schedulers": ("order",),
    "sinks": ("emit", "close"),
    "workspaces": ("open",),
    "executors": ("open",),
    "loaders": ("patterns", "sniff", "load"),
    "settings": ("type", "help", "default", "metavar", "option", "secret"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_registration_hook_reaches_its_registry_with_provenance(
    plugin_host, register_plugin, kind
):
    hook_name = KINDS[kind][0]
    thing = Named(f"throwaway-{kind}", *REQUIRED[kind])
    plugin = type("Plugin", (), {hook_name: hookimpl(lambda self, register: register(thing))})()
    register_plugin(plugin, name="throwaway")
    registry = plugin_host.registry(kind)
    assert registry.get(f"throwaway-{kind}") is thing
    assert registry.registration(f"throwaway-{kind}").plugin == "throwaway"
    assert plugin_host.info("throwaway").hooks == [hook_name]


def test_a_module_plugin_s_hooks_are_found_whatever_else_it_holds(plugin_host, register_plugin):
    thing = Named("from-a-module", *REQUIRED["tools"])

    class Holder:
        @hookimpl
        def orchestra_register_tools(self, register):
            register(thing)

    module = types.ModuleType("a_plugin_module")
    module.json = json  # an imported module, a class, a constant: no hooks
    module.Holder, module.LIMIT = Holder, 3
    module.orchestra_register_tools = Holder().orchestra_register_tools  # a bound method
    module.orchestra_register_settings = hookimpl(staticmethod(lambda register: None))
    module.helper = lambda: None  # a function that is no hook
    register_plugin(module, name="module-plugin")
    assert plugin_host.tools().get("from-a-module") is thing
    assert plugin_host.info("module-plugin").hooks == [
        "orchestra_register_settings",
        "orchestra_register_tools",
    ]


def test_unregistering_a_throwaway_plugin_removes_what_it_registered(plugin_host):
    plugin_host.register(ToolsPlugin(ScriptedTool(name="temp")), name="temp-plugin")
    assert "temp" in plugin_host.tools()
    plugin_host.unregister("temp-plugin")
    assert "temp" not in plugin_host.tools()


def test_registering_an_object_without_its_protocol_breaks_the_plugin(plugin_host, register_plugin):
    class Incomplete:
        name = "half"

    register_plugin(ToolsPlugin(Incomplete()), name="half-plugin")
    assert "half" not in plugin_host.tools()
    info = plugin_host.info("half-plugin")
    assert info.status == "broken"
    assert (
        info.reason
        == "plugin 'half-plugin' registered tool 'half' without available, capabilities, execute"
    )


def test_a_duplicate_name_is_refused_naming_both_plugins(plugin_host, register_plugin):
    register_plugin(ToolsPlugin(ScriptedTool(name="shell")), name="impostor")
    assert plugin_host.tools().registration("shell").plugin == "shell"
    assert plugin_host.info("impostor").status == "broken"
    assert plugin_host.info("impostor").reason == (
        "plugin 'impostor' registered tool 'shell', which plugin 'shell' already registered"
    )
    assert any("impostor" in problem and "'shell'" in problem for problem in plugin_host.problems())


def test_a_misspelled_hook_fails_loudly(plugin_host):
    class Misspelled:
        @hookimpl
        def orchestra_register_tool(self, register):
            pass

    with pytest.raises(
        PluginError,
        match=r"unknown hook 'orchestra_register_tool' \(did you mean 'orchestra_register_tools'\?\)",
    ):
        plugin_host.register(Misspelled(), name="misspelled")
    assert plugin_host.info("misspelled") is None


def test_a_hook_with_wrong_arguments_is_refused(plugin_host):
    class WrongArguments:
        @hookimpl
        def orchestra_register_tools(self, registry):
            pass

    with pytest.raises(PluginError, match="registry"):
        plugin_host.register(WrongArguments(), name="wrong")


def test_a_plugin_raising_in_its_hook_is_broken_and_others_keep_working(
    plugin_host, register_plugin
):
    class Exploding:
        @hookimpl
        def orchestra_register_tools(self, register):
            register(ScriptedTool(name="partial"))
            raise RuntimeError("boom")

    register_plugin(Exploding(), name="exploding")
    tools = plugin_host.tools()
    assert "partial" not in tools and "shell" in tools
    assert (
        plugin_host.info("exploding").reason == "orchestra_register_tools raised RuntimeError: boom"
    )


def test_tracing_writes_hook_calls_to_the_stream():
    stream = io.StringIO()
    host = PluginHost(trace=True, trace_to=stream)
    host.load_entry_points()
    host.tools()
    text = stream.getvalue()
    assert "orchestra trace: loading plugin 'shell' from orchestra" in text
    assert "orchestra trace: calling orchestra_register_tools of plugin 'shell'" in text


def test_plugins_can_add_commands(plugin_host, register_plugin):
    class Commands:
        @hookimpl
        def orchestra_register_commands(self, cli):
            @cli.command()
            @click.argument("who")
            def hello(who):
                """Say hello."""
                click.echo(f"hello {who}")

    register_plugin(Commands(), name="commands")
    result = invoke_cli(["hello", "world"], host=plugin_host)
    assert result.exit_code == 0 and result.stdout == "hello world\n"
    assert invoke_cli(["hello", "--help"], host=plugin_host).stdout.startswith(
        "Usage: orchestra hello"
    )
    listing = json.loads(invoke_cli(["plugins", "--json"], host=plugin_host).stdout)
    assert next(row for row in listing if row["name"] == "commands")["commands"] == ["hello"]
    assert "'orchestra plugins' lists them" in invoke_cli(["--help"], host=plugin_host).stdout
    unknown = invoke_cli(["hello"], host=PluginHost.from_environment(environ={}))
    assert unknown.exit_code == 2 and "No such command 'hello'" in unknown.stderr


# -- real installed distributions, through the real program -------------------------------

GOOD_PLUGIN = """
    import orchestra

    class Echo:
        name = "echo-tool"
        capabilities = frozenset({"prompt", "edit"})

        def available(self, profile):
            return orchestra.Availability(True, version="9.9", path="/echo")

        def execute(self, request, ctx):
            raise NotImplementedError

    @orchestra.hookimpl
    def orchestra_register_tools(register):
        register(Echo())
"""


def test_an_installed_plugin_is_listed_and_used(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "orchestra-echo",
        {"orchestra_echo": GOOD_PLUGIN},
        {"echo": "orchestra_echo"},
        "2.1",
    )
    result = run_orchestra("plugins", "--json", extra_path=[site], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    echo = next(row for row in json.loads(result.stdout) if row["name"] == "echo")
    assert echo == {
        "name": "echo",
        "distribution": "orchestra-echo",
        "version": "2.1",
        "status": "ok",
        "reason": None,
        "hooks": ["orchestra_register_tools"],
        "tools": ["echo-tool"],
        "routers": [],
        "schedulers": [],
        "sinks": [],
        "workspaces": [],
        "executors": [],
        "loaders": [],
        "settings": [],
        "commands": [],
    }
    tools = json.loads(run_orchestra("tools", "--json", extra_path=[site], cwd=tmp_path).stdout)
    assert {
        "name": "echo-tool",
        "plugin": "echo",
        "version": "9.9",
        "available": True,
    }.items() <= next(row for row in tools if row["name"] == "echo-tool").items()


def test_a_plugin_that_fails_to_import_is_reported_and_other_commands_work(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "orchestra-broken",
        {"orchestra_broken": "import no_such_module\n"},
        {"broken": "orchestra_broken"},
    )
    listing = run_orchestra("plugins", "--json", extra_path=[site], cwd=tmp_path)
    assert listing.returncode == 0
    broken = next(row for row in json.loads(listing.stdout) if row["name"] == "broken")
    assert broken["status"] == "broken" and broken["distribution"] == "orchestra-broken"
    assert broken["reason"] == (
        "cannot import orchestra_broken: ModuleNotFoundError: No module named 'no_such_module'"
    )
    (tmp_path / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    validated = run_orchestra("validate", "ws.toml", extra_path=[site], cwd=tmp_path)
    assert validated.returncode == 0 and validated.stdout.startswith("ok: ws.toml")
    assert validated.stderr == (
        "warning: plugin 'broken' (orchestra-broken 1.0) is broken: cannot import orchestra_broken: "
        "ModuleNotFoundError: No module named 'no_such_module' (see 'orchestra plugins')\n"
    )


def test_plugins_are_blocked_by_environment_and_configuration(tmp_path):
    site = make_distribution(
        tmp_path / "site",
        "orchestra-echo",
        {"orchestra_echo": GOOD_PLUGIN},
        {"echo": "orchestra_echo"},
    )

    def statuses(env=None):
        result = run_orchestra("plugins", "--json", extra_path=[site], cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        return {row["name"]: row["status"] for row in json.loads(result.stdout)}

    assert statuses()["echo"] == "ok"
    assert statuses({"ORCHESTRA_DISABLE_PLUGINS": "echo,routing"}) | {} == {
        **statuses(),
        "echo": "disabled",
        "routing": "disabled",
    }
    (tmp_path / "orchestra.toml").write_text('disable_plugins = ["orchestra-echo"]\n')
    assert statuses()["echo"] == "disabled"
    tools = json.loads(run_orchestra("tools", "--json", extra_path=[site], cwd=tmp_path).stdout)
    assert "echo-tool" not in {row["name"] for row in tools}


def test_disabling_an_unknown_plugin_warns(tmp_path):
    result = run_orchestra("tools", env={"ORCHESTRA_DISABLE_PLUGINS": "shel"}, cwd=tmp_path)
    assert result.returncode == 0
    assert "warning: no installed plugin is called 'shel'; nothing to disable" in result.stderr


def test_trace_variable_traces_to_stderr(tmp_path):
    result = run_orchestra("tools", "--json", env={"ORCHESTRA_TRACE_PLUGINS": "1"}, cwd=tmp_path)
    assert result.returncode == 0
    assert "orchestra trace: calling orchestra_register_tools of plugin 'shell'" in result.stderr
    json.loads(result.stdout)  # tracing never mixes into stdout


def test_two_distributions_claiming_one_plugin_name(tmp_path):
    first = make_distribution(
        tmp_path / "one",
        "orchestra-echo",
        {"orchestra_echo": GOOD_PLUGIN},
        {"echo": "orchestra_echo"},
    )
    second = make_distribution(
        tmp_path / "two",
        "orchestra-echo2",
        {"orchestra_echo2": GOOD_PLUGIN},
        {"echo": "orchestra_echo2"},
    )
    result = run_orchestra("plugins", "--json", extra_path=[first, second], cwd=tmp_path)
    rows = json.loads(result.stdout)
    clash = next(row for row in rows if row["distribution"] == "orchestra-echo2")
    assert clash["status"] == "broken"
    assert clash["reason"] == "plugin name 'echo' is already taken by orchestra-echo 1.0"


def test_same_tool_from_two_distributions_is_refused_naming_both(tmp_path):
    first = make_distribution(
        tmp_path / "one",
        "orchestra-echo",
        {"orchestra_echo": GOOD_PLUGIN},
        {"echo": "orchestra_echo"},
    )
    second = make_distribution(
        tmp_path / "two",
        "orchestra-echo2",
        {"orchestra_echo2": GOOD_PLUGIN},
        {"echo2": "orchestra_echo2"},
    )
    result = run_orchestra("tools", "--json", extra_path=[first, second], cwd=tmp_path)
    assert result.returncode == 0
    assert (
        "plugin 'echo2' registered tool 'echo-tool', which plugin 'echo' already registered"
        in result.stderr
    )


def test_availability_is_what_the_adapter_reports(plugin_host, register_plugin):
    missing = ScriptedTool(
        name="missing", availability=Availability(False, reason="missing not found on PATH")
    )
    register_plugin(ToolsPlugin(missing), name="missing-plugin")
    result = invoke_cli(["tools", "--json"], host=plugin_host)
    row = next(row for row in json.loads(result.stdout) if row["name"] == "missing")
    assert row["available"] is False and row["reason"] == "missing not found on PATH"


def test_a_plugin_command_may_not_take_a_built_in_name(plugin_host, register_plugin):
    class Shadowing:
        @hookimpl
        def orchestra_register_commands(self, cli):
            @cli.command()
            def validate():
                click.echo("shadowed")

            @cli.command()
            def extra():
                click.echo("extra")

    register_plugin(Shadowing(), name="shadowing")
    listing = json.loads(invoke_cli(["plugins", "--json"], host=plugin_host).stdout)
    row = next(row for row in listing if row["name"] == "shadowing")
    assert row["status"] == "broken" and row["commands"] == []
    assert (
        row["reason"]
        == "plugin 'shadowing' added command 'validate', which 'orchestra' already provides"
    )
    assert invoke_cli(["extra"], host=plugin_host).exit_code == 2  # none of its commands stay


def test_a_third_party_plugin_cannot_take_a_built_in_tool_name(tmp_path):
    impostor = GOOD_PLUGIN.replace('name = "echo-tool"', 'name = "shell"')
    site = make_distribution(
        tmp_path / "site",
        "orchestra-impostor",
        {"orchestra_impostor": impostor},
        {"impostor": "orchestra_impostor"},
    )
    tools = json.loads(run_orchestra("tools", "--json", extra_path=[site], cwd=tmp_path).stdout)
    shell = next(row for row in tools if row["name"] == "shell")
    assert shell["plugin"] == "shell" and shell["version"] is None
    plugins = json.loads(run_orchestra("plugins", "--json", extra_path=[site], cwd=tmp_path).stdout)
    assert next(row for row in plugins if row["name"] == "impostor")["status"] == "broken"
