"""orchestra.testing, what a plugin's own tests rely on: it imports without pytest, its
``plugin_host`` is a host of the test's own, the contexts a plugin's methods are handed
can be made in a test, and the test-only plugin ``scripted`` reaches tests and no user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orchestra
from orchestra.testing import (
    LocalLoadContext,
    ScriptedTool,
    ToolsPlugin,
    make_distribution,
    run_orchestra,
    scripted_tools_env,
    write_tool_script,
)

ROOT = Path(__file__).resolve().parents[1]


def test_orchestra_testing_imports_where_pytest_cannot_be_imported():
    """A plugin's tests may use unittest, or run the helpers from a script."""
    probe = (
        "import sys; sys.modules['pytest'] = None; import orchestra.testing as testing; "
        "print(testing.run_orchestra.__name__, 'pytest' in sys.modules and sys.modules['pytest'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "run_orchestra None\n"


def test_the_plugin_host_fixture_holds_the_builtins_and_what_the_test_registers(
    plugin_host, register_plugin
):
    assert plugin_host.info("shell").distribution == "orchestra"
    assert "shell" in plugin_host.tools() and "toml" in plugin_host.loaders()
    # the environment has orchestra-aider installed; the test's host does not: a plugin
    # test registers its own plugin under its own name without clashing with it
    assert plugin_host.info("aider") is None
    tool = ScriptedTool(name="aider")
    register_plugin(ToolsPlugin(tool), name="aider")
    assert plugin_host.tools().get("aider") is tool


def test_a_plugins_own_tests_pass_with_the_plugin_installed(tmp_path):
    """The plugin under test is installed (pip install -e .), as it is where its author
    runs its tests: the fixture's host is still the test's own."""
    source = """\
        import orchestra
        from orchestra.testing import ScriptedTool


        @orchestra.hookimpl
        def orchestra_register_tools(register):
            register(ScriptedTool(name="mine"))
    """
    site = make_distribution(
        tmp_path / "site", "orchestra-mine", {"orchestra_mine": source}, {"mine": "orchestra_mine"}
    )
    (tmp_path / "test_mine.py").write_text(
        "import orchestra_mine\n\n\n"
        "def test_mine(plugin_host, register_plugin):\n"
        "    register_plugin(orchestra_mine, name='mine')\n"
        "    assert plugin_host.tools().registration('mine').plugin == 'mine'\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("ORCHESTRA_")}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_scripted_is_no_plugin_of_orchestra_and_reaches_only_tests(tmp_path):
    script = write_tool_script(tmp_path / "alpha.toml", [{"action": "succeed"}])
    plugins = json.loads(run_orchestra("plugins", "--json", cwd=tmp_path).stdout)
    assert "scripted" not in {row["name"] for row in plugins}
    # the variable alone, as a user might set it, registers nothing
    alone = {"ORCHESTRA_SCRIPTED_TOOLS": f"alpha={script}"}
    tools = json.loads(run_orchestra("tools", "--json", cwd=tmp_path, env=alone).stdout)
    assert "alpha" not in {row["name"] for row in tools}
    # a test's environment installs it
    env = scripted_tools_env(alpha=script)
    plugins = json.loads(run_orchestra("plugins", "--json", cwd=tmp_path, env=env).stdout)
    (row,) = [row for row in plugins if row["name"] == "scripted"]
    assert (row["distribution"], row["status"]) == ("orchestra-testing", "ok")
    tools = json.loads(run_orchestra("tools", "--json", cwd=tmp_path, env=env).stdout)
    assert {row["name"]: row["plugin"] for row in tools}["alpha"] == "scripted"
    assert not Path(sys.executable).with_name("orchestra-scripted-tool").exists()


def test_a_plugin_test_makes_the_contexts_a_plugins_methods_are_handed(tmp_path, plugin_host):
    """An attempt, by hand, from public names only: a loader's file, a workspace's run, an
    adapter's context; as a test of a workspace or a tool plugin would do it."""
    (tmp_path / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "t"\ncommand = ["sh", "-c", "echo $GREETING > out.txt"]\n'
    )
    notices: list[str] = []
    context = LocalLoadContext(on_notice=notices.append)
    (task,) = plugin_host.loaders().get("toml").load(tmp_path / "ws.toml", context).tasks
    assert notices == []

    run = orchestra.WorkspaceRun(
        run_id="r1", project_root=str(tmp_path), state_dir=str(tmp_path / ".orchestra")
    )
    space = plugin_host.workspaces().get("inplace").open(run)
    request = orchestra.ExecutionRequest(
        "r1", task, 1, str(tmp_path), orchestra.ToolProfile(name="shell")
    )
    environment = orchestra.build_environment(os.environ, {"GREETING": "hi"}, ())
    ctx = orchestra.LocalContext(cwd=tmp_path, env=environment, log_path=tmp_path / "t.1.log")
    try:
        directory = space.prepare(request, ctx)
        result = plugin_host.tools().get("shell").execute(request, ctx)
    finally:
        ctx.cleanup()
    assert directory == str(tmp_path) and result.outcome == "succeeded"
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert space.land(request, directory) == orchestra.Landing(merged=True)

    warnings: list[str] = []
    sink_context = orchestra.SinkContext(run_id="r1", warn=warnings.append)
    sink_context.warn("the webhook answered 500")
    assert warnings == ["the webhook answered 500"]
    executor_run = orchestra.ExecutorRun(run_id="r1", parallel=2, work=print, event=print)
    assert executor_run.parallel == 2 and orchestra.Change(None).paths is None
