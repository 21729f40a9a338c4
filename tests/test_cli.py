"""The orchestra program, driven as a user drives it: real processes, real files."""

import json
import os
from pathlib import Path

import pytest

import orchestra
from orchestra.testing import run_orchestra

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello" / "workstream.toml"


def write(path, text):
    path.write_text(text)
    return path


VALID = 'id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n[[tasks]]\nid = "b"\ndepends_on = ["a"]\ncommand = ["true"]\n'


def test_version_and_help():
    assert run_orchestra("--version").stdout == f"orchestra {orchestra.__version__}\n"
    help_text = run_orchestra("--help").stdout
    for command in ("init", "plan", "plugins", "tools", "validate"):
        assert f"  {command} " in help_text
    plan_help = run_orchestra("plan", "--help").stdout
    assert "--format [text|json|dot|mermaid]" in plan_help


def test_validate_reports_each_file(tmp_path):
    good = write(tmp_path / "good.toml", VALID)
    bad = write(
        tmp_path / "bad.toml", 'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ndepends_on = ["b"]\n'
    )
    ok = run_orchestra("validate", str(good), cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout == f"ok: {good}: 2 tasks, 1 dependency, 2 waves\n"
    both = run_orchestra("validate", str(good), str(bad), cwd=tmp_path)
    assert both.returncode == 2
    assert both.stdout == f"ok: {good}: 2 tasks, 1 dependency, 2 waves\n"
    assert both.stderr == f"error: {bad}: task 'a': field 'depends_on': unknown task 'b'\n"


def test_user_mistakes_exit_2_with_one_line_each_and_no_traceback(tmp_path):
    cases = {
        "missing.toml": "error: missing.toml: no such file\n",
        write(
            tmp_path / "syntax.toml", "id = \n"
        ).name: "error: syntax.toml: invalid TOML: Invalid value (at line 1, column 6)\n",
    }
    for name, expected in cases.items():
        for command in ("validate", "plan"):
            result = run_orchestra(command, name, cwd=tmp_path)
            assert (result.returncode, result.stderr, result.stdout) == (2, expected, "")
    unknown_tool = write(
        tmp_path / "tool.toml", 'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ntool = "shel"\n'
    )
    result = run_orchestra("plan", unknown_tool.name, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: tool.toml: task 'a': field 'tool': unknown tool 'shel' (did you mean 'shell'?) (installed: "
    )
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    bad_config = write(tmp_path / "orchestra.toml", "max_parallel = 0\n")
    result = run_orchestra("validate", str(HELLO), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"error: {bad_config}: field 'max_parallel': must be at least 1\n"
    os.remove(bad_config)
    result = run_orchestra("plan", str(HELLO), env={"ORCHESTRA_MAX_PARALLEL": "lots"}, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "error: environment variable ORCHESTRA_MAX_PARALLEL='lots': invalid literal for int() with base 10: 'lots'\n",
    )
    assert run_orchestra("plan", str(HELLO), "--format", "yaml", cwd=tmp_path).returncode == 2
    result = run_orchestra("plan", str(HELLO), "--routing", "fastest", cwd=tmp_path)
    assert result.returncode == 2 and "unknown routing strategy 'fastest'" in result.stderr


def test_plan_text_shows_waves_tools_reasons_and_sources(tmp_path):
    result = run_orchestra("plan", str(HELLO), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "workstream hello — Build and check a tiny report"
    assert "  max_attempts = 2  (workstream [defaults])" in lines
    assert "  routing = auto  (built-in default)" in lines
    assert lines[lines.index("wave 1") + 1].split() == [
        "python-version",
        "shell",
        "shell",
        "is",
        "the",
        "only",
        "tool",
        "that",
        "can",
        "run",
        "it",
    ]
    assert any(
        line.startswith("  count-lines") and line.endswith("after python-version, git-status")
        for line in lines
    )
    assert lines.index("wave 1") < lines.index("wave 2") < lines.index("wave 3")


def test_plan_json_is_complete_and_precedence_is_visible(tmp_path):
    write(tmp_path / "orchestra.toml", 'routing = "round_robin"\nmax_parallel = 2\n')
    result = run_orchestra(
        "plan",
        str(HELLO),
        "--format",
        "json",
        "--max-parallel",
        "3",
        env={"ORCHESTRA_ROUTING": "fixed"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["workstream"] == {
        "id": "hello",
        "title": "Build and check a tiny report",
        "file": str(HELLO),
    }
    assert plan["waves"] == [["python-version", "git-status"], ["count-lines"], ["summary"]]
    assert plan["critical_path"] == ["python-version", "count-lines", "summary"]
    assert plan["settings"]["max_parallel"] == {
        "value": 3,
        "source": "command line (--max-parallel)",
    }
    assert plan["settings"]["routing"] == {
        "value": "fixed",
        "source": "environment (ORCHESTRA_ROUTING)",
    }
    assert plan["settings"]["db"]["value"] == str(tmp_path / ".orchestra" / "orchestra.db")
    summary = plan["tasks"][3]
    assert summary["id"] == "summary" and summary["wave"] == 3 and summary["tool"] == "shell"
    assert summary["depends_on"] == ["count-lines"] and summary["priority"] == 1
    assert summary["candidates"] == ["shell"] and summary["kind"] == "command"


def test_plan_shows_why_no_tool_can_run_a_task(tmp_path):
    ws = write(
        tmp_path / "ai.toml", 'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ntools = ["shell"]\n'
    )
    result = run_orchestra("plan", ws.name, "--format", "json", cwd=tmp_path)
    task = json.loads(result.stdout)["tasks"][0]
    assert task["tool"] is None
    assert task["rejected"]["shell"] == "lacks capability prompt"
    text = run_orchestra("plan", ws.name, cwd=tmp_path).stdout
    assert "no tool can run this task (" in text
    assert "1 task(s) have no tool that can run them on this machine." in text


def test_plan_dot_and_mermaid_draw_every_task_and_edge(tmp_path):
    dot = run_orchestra("plan", str(HELLO), "--format", "dot", cwd=tmp_path).stdout.splitlines()
    assert dot[0] == 'digraph "hello" {'
    assert '  "summary" [label="summary\\nshell"];' in dot
    assert '  "count-lines" -> "summary";' in dot and dot[-1] == "}"
    assert sum("->" in line for line in dot) == 3
    mermaid = run_orchestra(
        "plan", str(HELLO), "--format", "mermaid", cwd=tmp_path
    ).stdout.splitlines()
    assert mermaid[0] == "flowchart LR"
    assert '  t3["summary<br/>shell"]' in mermaid and "  t2 --> t3" in mermaid
    assert sum("-->" in line for line in mermaid) == 3


def test_plugins_and_tools_list_the_builtins(tmp_path):
    plugins = json.loads(run_orchestra("plugins", "--json", cwd=tmp_path).stdout)
    builtins = {row["name"]: row for row in plugins if row["distribution"] == "orchestra"}
    assert set(builtins) == {
        *("shell", "routing", "scheduling", "sinks", "workspaces"),
        "executors",
        *("toml", "uet-bundle", "task-master"),
    }
    assert builtins["routing"]["hooks"] == ["orchestra_register_routers"]
    assert all(
        row["status"] == "ok" and row["version"] == orchestra.__version__
        for row in builtins.values()
    )
    tools = json.loads(run_orchestra("tools", "--json", cwd=tmp_path).stdout)
    shell = next(row for row in tools if row["name"] == "shell")
    assert (
        shell["plugin"] == "shell" and shell["capabilities"] == ["command"] and shell["available"]
    )
    table = run_orchestra("tools", cwd=tmp_path).stdout
    assert table.splitlines()[0].split() == [
        "tool",
        "plugin",
        "capabilities",
        "available",
        "version",
        "breaker",
        "path",
    ]


def test_init_writes_a_config_and_an_example_that_validates_and_never_overwrites(tmp_path):
    project = tmp_path / "project"
    first = run_orchestra("init", "-C", str(project), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"wrote {project / 'orchestra.toml'}" in first.stdout
    example = project / "workstreams" / "example.toml"
    assert example.is_file()
    validated = run_orchestra("validate", str(example), cwd=project)
    assert validated.returncode == 0, validated.stderr
    write(project / "orchestra.toml", "# mine\n")
    second = run_orchestra("init", "-C", str(project), cwd=tmp_path)
    assert second.returncode == 0
    assert f"kept {project / 'orchestra.toml'} (already exists)" in second.stdout
    assert f"kept {example} (already exists)" in second.stdout
    assert (project / "orchestra.toml").read_text() == "# mine\n"
    assert not list(project.rglob("*.partial"))


def test_init_lists_the_ai_tools_found_on_path(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # a stand-in program is enough here: what is tested is init's use of available()
    site = tmp_path / "site"
    from orchestra.testing import make_distribution

    make_distribution(
        site,
        "orchestra-fake",
        {
            "orchestra_fake": """
            import orchestra

            class Fake:
                name = "fake"
                capabilities = frozenset({"prompt", "edit"})

                def available(self, profile):
                    return orchestra.Availability(True, version="1.2.3", path="/fake")

                def execute(self, request, ctx):
                    raise NotImplementedError

            @orchestra.hookimpl
            def orchestra_register_tools(register):
                register(Fake())
            """
        },
        {"fake": "orchestra_fake"},
    )
    result = run_orchestra("init", extra_path=[site], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "orchestra.toml").read_text()
    assert "[tools.fake]   # found: fake 1.2.3" in config
    example = (tmp_path / "workstreams" / "example.toml").read_text()
    assert 'tools = ["fake"' in example
    plan = run_orchestra(
        "plan", "workstreams/example.toml", "--format", "json", extra_path=[site], cwd=tmp_path
    )
    assert plan.returncode == 0, plan.stderr
    assert {task["tool"] for task in json.loads(plan.stdout)["tasks"]} >= {"fake", "shell"}


@pytest.mark.parametrize("fmt", ["text", "json", "dot", "mermaid"])
def test_every_format_of_a_real_workstream_from_the_examples(tmp_path, fmt):
    result = run_orchestra(
        "plan", str(REPO / "examples" / "ai" / "workstream.toml"), "--format", fmt, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "format" in result.stdout


def test_strategy_names_from_the_environment_and_config_are_checked(tmp_path):
    result = run_orchestra(
        "validate", str(HELLO), env={"ORCHESTRA_ROUTING": "fastest"}, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: routing: 'fastest' from environment (ORCHESTRA_ROUTING): unknown routing strategy 'fastest' (installed: "
    )
    write(tmp_path / "orchestra.toml", 'scheduler = "critical-path"\n')
    result = run_orchestra("plan", str(HELLO), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "unknown scheduling strategy 'critical-path' (did you mean 'critical_path'?)"
        in result.stderr
    )


def test_init_into_an_impossible_directory_is_a_one_line_error(tmp_path):
    write(tmp_path / "afile", "")
    result = run_orchestra("init", "-C", str(tmp_path / "afile" / "sub"), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: {tmp_path / 'afile' / 'sub'}: cannot create the directory: Not a directory\n"
    )


def test_a_pyproject_whose_tool_is_not_a_table_is_no_configuration(tmp_path):
    write(tmp_path / "pyproject.toml", "tool = 5\n")
    result = run_orchestra("validate", str(HELLO), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
