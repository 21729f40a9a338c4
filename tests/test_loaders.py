"""Workstream formats as plugins: choosing a loader, the uet-bundle and task-master
loaders on files shaped like the real ones, convert's round trip, and runs of them."""

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from orchestra import hookimpl
from orchestra.errors import OrchestraError, WorkstreamInvalid
from orchestra.loaders import load
from orchestra.loaders.tomlwriter import to_toml
from orchestra.loaders.uet_checks import reads_as_prose
from orchestra.models import Budget, Check, FileScope, Task, Workstream
from orchestra.spec import load_workstream
from orchestra.testing import (
    orchestra_program,
    run_orchestra,
    scripted_tools_env,
    tool_calls,
    write_tool_script,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "formats"
# CI copies ../shared next to the clone, so this is the same in a fresh clone
UET_BUNDLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "uet-bundles"


def failure(plugin_host, path, **arguments) -> list[str]:
    with pytest.raises(OrchestraError) as caught:
        load(path, plugin_host, **arguments)
    return caught.value.lines()


# -- choosing the loader ---------------------------------------------------------------


def test_each_builtin_format_is_recognised_from_the_file(plugin_host):
    assert load(FIXTURES / "single-bundle.json", plugin_host).format == "uet-bundle"
    assert load(FIXTURES / "bundles-with-deps.json", plugin_host).format == "uet-bundle"
    assert load(FIXTURES / "tasks.json", plugin_host).format == "task-master"
    examples = Path(__file__).resolve().parents[1] / "examples"
    loaded = load(examples / "hello" / "workstream.toml", plugin_host)
    assert loaded.format == "toml"
    assert loaded.workstream == load_workstream(examples / "hello" / "workstream.toml")


def test_a_toml_file_without_the_extension_is_recognised_by_its_content(plugin_host, tmp_path):
    path = tmp_path / "plan.txt"
    path.write_text('id = "w"\n\n[[tasks]]\nid = "t"\ncommand = ["true"]\n')
    loaded = load(path, plugin_host)
    assert (loaded.format, loaded.workstream.tasks[0].command) == ("toml", ("true",))


def test_broken_toml_keeps_its_toml_errors(plugin_host, tmp_path):
    path = tmp_path / "t3.toml"
    path.write_text("[[tasks]\n")
    assert failure(plugin_host, path)[0].startswith(f"{path}: invalid TOML: ")


def test_an_unknown_format_names_the_loaders_tried(plugin_host, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("buy milk\n")
    assert failure(plugin_host, path) == [
        f"{path}: unknown format: no workstream format accepts this file "
        "(tried: task-master, toml, uet-bundle); name one with --format"
    ]
    assert failure(plugin_host, tmp_path / "nosuch.json") == [
        f"{tmp_path}/nosuch.json: no such file"
    ]


def test_an_unknown_format_name_is_refused_with_the_installed_ones(plugin_host):
    path = FIXTURES / "single-bundle.json"
    assert failure(plugin_host, path, file_format="uet-bundel") == [
        f"{path}: unknown workstream format 'uet-bundel' (did you mean 'uet-bundle'?) "
        "(installed: task-master, toml, uet-bundle)"
    ]


class Greedy:
    """A plugin's loader that accepts every JSON file."""

    name = "greedy"

    def __init__(self, patterns=("*.json",)):
        self.patterns = patterns

    def sniff(self, path, head):
        return path.suffix == ".json"

    def load(self, path, context):
        context.notice("greedy was here")
        return Workstream(id="greedy", tasks=(Task(id="all", prompt=path.read_text()),))


def register_loader(register_plugin, loader):
    class Plugin:
        @hookimpl
        def orchestra_register_loaders(self, register):
            register(loader)

    register_plugin(Plugin(), name="greedy-plugin")


def test_two_loaders_accepting_a_file_is_an_error_naming_both(plugin_host, register_plugin):
    register_loader(register_plugin, Greedy())
    path = FIXTURES / "single-bundle.json"
    assert failure(plugin_host, path) == [
        f"{path}: ambiguous format: 'uet-bundle' and 'greedy' all accept this file; "
        "choose one with --format"
    ]
    notices = []
    loaded = load(path, plugin_host, file_format="greedy", on_notice=notices.append)
    assert (loaded.format, loaded.workstream.id, notices) == (
        "greedy",
        "greedy",
        ["greedy was here"],
    )
    assert load(path, plugin_host, file_format="uet-bundle").workstream.id == "ws-auth-models"


def test_the_loader_whose_pattern_matches_the_name_breaks_a_tie(plugin_host, register_plugin):
    register_loader(register_plugin, Greedy(patterns=("*.plan.json",)))
    # tasks.json: both task-master and greedy accept it; only task-master claims the name
    assert load(FIXTURES / "tasks.json", plugin_host).format == "task-master"


def test_a_plugin_loader_gets_the_same_checks_as_toml(plugin_host, register_plugin, tmp_path):
    class Cyclic(Greedy):
        def load(self, path, context):
            tasks = (
                Task(id="a", prompt="p", depends_on=("b",)),
                Task(id="b", prompt="p", depends_on=("a",), files=FileScope(write=("../x",))),
            )
            return Workstream(id="w", tasks=tasks)

    register_loader(register_plugin, Cyclic())
    path = tmp_path / "w.json"
    path.write_text("{}")
    assert failure(plugin_host, path, file_format="greedy") == [
        f"{path}: task 'b': field 'files.write': '../x': '..' leaves the repository; write a path inside it",
        f"{path}: task 'a': field 'depends_on': dependency cycle: a -> b -> a",
    ]


def test_a_loader_that_crashes_is_one_line_naming_its_plugin(
    plugin_host, register_plugin, tmp_path
):
    class Crashing(Greedy):
        def load(self, path, context):
            raise KeyError("tasks")

    register_loader(register_plugin, Crashing())
    path = tmp_path / "w.json"
    path.write_text("{}")
    assert failure(plugin_host, path, file_format="greedy") == [
        f"{path}: workstream format 'greedy' (plugin 'greedy-plugin') failed in load(): "
        "KeyError: 'tasks'"
    ]


# -- uet-bundle ---------------------------------------------------------------------------


def test_a_single_bundle_maps_onto_one_task(plugin_host):
    notices = []
    workstream = load(
        FIXTURES / "single-bundle.json", plugin_host, on_notice=notices.append
    ).workstream
    (task,) = workstream.tasks
    assert workstream.id == task.id == "ws-auth-models"
    assert task.title == "User model"
    assert task.prompt == (
        "User model\n\nThe data layer for login.\n\n"
        "1. Create src/models.py with a User class (id, email, password_hash)\n"
        "2. Export User from src/__init__.py\n"
        "3. Add tests/test_models.py covering User\n\n"
        "Acceptance criteria:\n- The User class is documented"
    )
    assert task.files == FileScope(
        write=("src/models.py", "src/__init__.py"), create=("tests/test_models.py",)
    )
    assert task.checks == (
        Check(command=("python", "-m", "pytest", "-q", "tests/test_models.py")),
        Check(command="ruff check src && ruff format --check src", shell=True),
    )
    assert (task.tool, task.priority, task.max_attempts, task.same_failure_limit) == (
        "aider",
        1,
        4,
        3,
    )
    assert task.budget == Budget(cost=0.75)
    assert task.metadata == {
        "openspec_change": "OS-101",
        "ccpm_issue": 3101,
        "gate": 2,
        "circuit_breaker": {"oscillation_threshold": 2},
        "phase": "Phase 1",
        "estimated_hours": 3,
    }
    file = FIXTURES / "single-bundle.json"
    assert notices == [
        f"{file}: kept as task metadata, orchestra does not use them: ccpm_issue, "
        "circuit_breaker.oscillation_threshold, gate, openspec_change",
        f"{file}: task 'ws-auth-models': 1 acceptance test(s) read as prose, not commands: "
        "they are in the prompt as acceptance criteria",
    ]


def test_a_list_of_bundles_keeps_its_dependencies(plugin_host):
    workstream = load(FIXTURES / "bundles-with-deps.json", plugin_host).workstream
    assert workstream.id == "bundles-with-deps"
    assert [(task.id, task.depends_on, task.tool) for task in workstream.tasks] == [
        ("ws-core-lib", (), "aider"),
        ("ws-api-layer", ("ws-core-lib",), "codex"),
        ("ws-cli", ("ws-api-layer", "ws-core-lib"), None),
    ]
    assert workstream.task("ws-api-layer").priority == 5
    # a null field is left out: TOML, and so a converted file, has no null
    assert workstream.task("ws-cli").metadata == {"ccpm_issue": 2003, "gate": 1}


@pytest.mark.parametrize(
    ("text", "prose"),
    [
        ("test -f README.md", False),
        ("python -m pytest -q", False),
        ("make test", False),
        ("npm run build", False),
        ("./scripts/check.sh --fast", False),
        ("All directories exist and contain .gitkeep files", True),
        ("router.config.yaml validates against YAML syntax", True),
        ("Migration file validates against SQL schema standards", True),
    ],
)
def test_acceptance_tests_in_prose_are_told_from_commands(text, prose):
    assert reads_as_prose(text) is prose


def test_a_half_filled_template_is_named_as_one(plugin_host):
    path = FIXTURES / "placeholders.json"
    assert load_cli_errors(path) == [
        f"error: {path}: an unfilled template: placeholders where values belong: "
        "id: {{ID}} at line 2, openspec_change: {{CHANGE}} at line 3, "
        "files_scope: {[]} at line 4 and 2 more"
    ]


def load_cli_errors(path: Path, *arguments: str) -> list[str]:
    result = run_orchestra("validate", str(path), *arguments, cwd=path.parent)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_malformed_bundles_get_one_line_per_problem_naming_bundle_and_field(plugin_host):
    path = FIXTURES / "bad-bundles.json"
    with pytest.raises(WorkstreamInvalid) as caught:
        load(path, plugin_host)
    assert caught.value.lines() == [
        f"{path}: task '#1': field 'id': missing required key",
        f"{path}: task 'ws-two': field 'files_scope': expected a list of strings, got a string ('src/b.py')",
        f"{path}: task 'ws-two': field 'tasks': expected a list of strings, got a string ('Do the second thing')",
        f"{path}: task 'ws-two': field 'circuit_breaker.max_attempts': expected a whole number, got a string ('3')",
        f"{path}: task 'ws-three': field 'tasks': expected a list of strings, got a list",
        f"{path}: task 'ws-three': field 'depends_on': unknown task 'ws-tw0' (did you mean 'ws-two'?)",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"a bundle"', "expected a bundle object or a list of bundles, got a string ('a bundle')"),
        ("[]", "no bundles: the list is empty"),
        (
            '{"id": 1, "tasks": ["x"], "files_scope": []}',
            "task '#1': field 'id': expected a string, got a number (1)",
        ),
        (
            '{"id": "x", "tasks": ["x"], "gate": NaN}',
            "invalid JSON: NaN is not a number JSON allows",
        ),
        (
            '[{"id": "x", "tasks": ["a"]}, 7]',
            "task '#2': expected a bundle object, got a number (7)",
        ),
    ],
)
def test_other_malformed_bundle_files(plugin_host, tmp_path, text, message):
    path = tmp_path / "ws.json"
    path.write_text(text)
    assert failure(plugin_host, path, file_format="uet-bundle") == [f"{path}: {message}"]


def test_the_real_uet_bundles_load_or_fail_in_one_clear_line(plugin_host):
    assert UET_BUNDLES.is_dir(), (
        f"{UET_BUNDLES} is not here: copy the shared data next to the clone, as .ci/run's"
        " machine has it"
    )
    loaded = {path.name: load(path, plugin_host) for path in UET_BUNDLES.glob("ws-[2t]*.json")}
    loaded["example_multi.json"] = load(UET_BUNDLES / "example_multi.json", plugin_host)
    assert {name: item.format for name, item in loaded.items()} == {
        "example_multi.json": "uet-bundle",
        "ws-22-pipeline-plus-phase0-schema.json": "uet-bundle",
        "ws-test-aider.json": "uet-bundle",
    }
    schema = loaded["ws-22-pipeline-plus-phase0-schema.json"].workstream.tasks[0]
    assert schema.checks is None  # its three acceptance tests are prose
    assert schema.prompt.endswith("- router.config.yaml validates against YAML syntax")
    assert (schema.max_attempts, schema.same_failure_limit) == (3, 2)
    assert schema.metadata["phase"] == "Phase 0: Pre-Flight & Schema Setup"
    assert loaded["ws-test-aider.json"].workstream.tasks[0].checks == (
        Check(command=("test", "-f", "README.md")),
    )
    # this bundle depends on one kept in another file
    resilience = UET_BUNDLES / "ws-uet-phase-e-resilience.json"
    assert failure(plugin_host, resilience) == [
        f"{resilience}: task 'ws-uet-phase-e-resilience': field 'depends_on': "
        "unknown task 'ws-uet-phase-c-orchestration'"
    ]


# -- task-master --------------------------------------------------------------------------


def test_task_master_subtasks_become_tasks_and_done_ones_are_left_out(plugin_host):
    notices = []
    workstream = load(FIXTURES / "tasks.json", plugin_host, on_notice=notices.append).workstream
    assert (workstream.id, workstream.description) == ("master", "Tasks for master context")
    assert [(task.id, task.depends_on, task.priority) for task in workstream.tasks] == [
        ("2.2", (), 0),
        ("2.3", ("2.2",), 0),
        ("2", ("2.2", "2.3"), 1),
        ("3", ("2", "2.3"), -1),
    ]
    core = workstream.task("2")
    assert core.title == "Create Core Functionality"
    assert core.prompt == (
        "Create Core Functionality\n\nImplement the main features of the application\n\n"
        "Implement user authentication and data processing.\n\n"
        "Test strategy (how the result will be checked): Write unit tests for all core functions"
    )
    assert core.metadata == {"status": "in-progress", "complexity": 7}
    assert notices[-1].endswith("2 task(s) already done are left out (--include-done keeps them)")


def test_include_done_keeps_every_task(plugin_host):
    options = {"include_done": True}
    workstream = load(FIXTURES / "tasks.json", plugin_host, options=options).workstream
    assert [(task.id, task.depends_on) for task in workstream.tasks] == [
        ("1", ()),
        ("2.1", ()),
        ("2.2", ("2.1",)),
        ("2.3", ("2.2",)),
        ("2", ("1", "2.1", "2.2", "2.3")),
        ("3", ("2", "2.3")),
    ]


def test_a_tag_is_chosen_by_name_and_a_wrong_one_is_refused(plugin_host):
    path = FIXTURES / "tasks.json"
    workstream = load(path, plugin_host, options={"tag": "feature-export"}).workstream
    assert [task.id for task in workstream.tasks] == ["1"]
    assert workstream.id == "feature-export"
    assert failure(plugin_host, path, options={"tag": "feature-exprt"}) == [
        f"{path}: no tag 'feature-exprt' (did you mean 'feature-export'?) "
        "(tags: master, feature-export)"
    ]


def test_a_tag_pattern_loads_every_matching_tag_as_one_workstream(plugin_host):
    path = FIXTURES / "tasks.json"
    every = load(path, plugin_host, options={"tag": "*"}).workstream
    master = load(path, plugin_host, options={"tag": "master"}).workstream
    feature = load(path, plugin_host, options={"tag": "feature-*"}).workstream
    # each tag's tasks, ids led by the tag, dependencies kept inside the tag
    assert [(task.id, task.depends_on) for task in every.tasks] == [
        *((f"master.{t.id}", tuple(f"master.{d}" for d in t.depends_on)) for t in master.tasks),
        *((t.id, t.depends_on) for t in feature.tasks),
    ]
    assert [task.id for task in feature.tasks] == ["feature-export.1"]
    assert every.id == "tasks"
    assert failure(plugin_host, path, options={"tag": "nope-*"}) == [
        f"{path}: no tag matches 'nope-*' (tags: master, feature-export)"
    ]


def test_a_legacy_task_master_file_loads_and_bad_fields_are_named(plugin_host, tmp_path):
    path = tmp_path / "tasks.json"
    tasks = [
        {"id": 1, "title": "One", "status": "pending", "dependencies": []},
        {"id": 2, "title": "Two", "dependencies": [1, 9], "priority": "urgent"},
        {"id": 3, "dependencies": "1"},
    ]
    path.write_text(json.dumps({"meta": {"projectName": "p"}, "tasks": tasks}))
    assert failure(plugin_host, path) == [
        f"{path}: task '2': field 'priority': expected a whole number or one of low, medium, "
        "high, critical, got a string ('urgent')",
        f"{path}: task '3': field 'title': nothing to do: no title, description or details",
        f"{path}: task '3': field 'dependencies': expected a list of task ids, got a string ('1')",
    ]
    tasks[1]["priority"] = "medium"
    tasks[2] = {"id": 3, "title": "Three", "dependencies": [2]}
    path.write_text(json.dumps({"tasks": tasks}))
    assert failure(plugin_host, path) == [
        f"{path}: task '2': field 'depends_on': unknown task '9'",
    ]


# -- convert --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("single-bundle.json", ()),
        ("bundles-with-deps.json", ()),
        ("tasks.json", ()),
        ("tasks.json", ("--include-done",)),
        ("tasks.json", ("--tag", "feature-export")),
    ],
)
def test_convert_writes_toml_that_loads_back_to_the_same_workstream(
    plugin_host, tmp_path, name, arguments
):
    output = tmp_path / "converted.toml"
    result = run_orchestra(
        "convert", str(FIXTURES / name), *arguments, "-o", str(output), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    options = {"include_done": "--include-done" in arguments}
    if "--tag" in arguments:
        options["tag"] = arguments[-1]
    original = load(FIXTURES / name, plugin_host, options=options).workstream
    assert load_workstream(output) == original
    assert (
        run_orchestra("convert", str(FIXTURES / name), "-o", str(output), cwd=tmp_path).returncode
        == 2
    )


def test_to_toml_round_trips_awkward_values(tmp_path):
    tasks = (
        Task(
            id="t",
            prompt="ends with a quote '\nand a tab\t and ''' three",
            metadata={"nested": {"list": [1, 2.5, "x\ny"], "empty": {}}, "weird key": True},
            timeout=90.0,
            checks=(Check(command=("make", "test"), name="unit", timeout=0.25),),
        ),
        Task(id="u", command="printf 'a\\n'\nexit 0", shell=True, env={"A": 'b"c'}),
    )
    workstream = Workstream(id="w", title="T \\ \x7f", tasks=tasks)
    path = tmp_path / "w.toml"
    path.write_text(to_toml(workstream))
    assert load_workstream(path) == workstream


def test_convert_names_the_field_toml_cannot_hold(tmp_path):
    path = tmp_path / "ws.json"
    path.write_text(json.dumps({"id": "w", "tasks": ["x"], "labels": [None]}))
    result = run_orchestra("convert", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: {path}: task 'w': field 'metadata.labels': null cannot be written in TOML"
    )


# -- the command line ---------------------------------------------------------------------


def test_validate_and_plan_take_a_format_and_print_notices(tmp_path):
    other = tmp_path / "other.data"  # a name no loader claims, and no format's content
    other.write_text(json.dumps({"name": "w", "version": "1.0"}))
    refused = run_orchestra("validate", str(other), cwd=tmp_path)
    assert refused.returncode == 2 and "unknown format" in refused.stderr
    path = tmp_path / "bundle.data"
    path.write_text(json.dumps({"id": "w", "title": "Only a title", "tasks": []}))
    forced = run_orchestra("validate", "--format", "uet-bundle", str(path), cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == f"ok: {path}: 1 task, 0 dependencies, 1 wave\n"
    plan = run_orchestra(
        "plan", str(path), "--from", "uet-bundle", "--format", "json", cwd=tmp_path
    )
    assert json.loads(plan.stdout)["settings"]["format"] == {
        "value": "uet-bundle",
        "source": "chosen by name",
    }
    noticed = run_orchestra(
        "validate", str(FIXTURES / "tasks.json"), "--include-done", cwd=tmp_path
    )
    assert noticed.returncode == 0 and "6 tasks" in noticed.stdout
    assert "notice: " in noticed.stderr and "complexity" in noticed.stderr


RUN_BUNDLES = [
    {
        "id": "write-notes",
        "title": "Notes",
        "tasks": ["Write NOTES.md saying hello"],
        "tool": "scribe",
        "files_create": ["NOTES.md"],
        "acceptance_tests": ["test -f NOTES.md", "grep -q hello NOTES.md && test -s NOTES.md"],
        "ccpm_issue": 7,
    },
    {
        "id": "review-notes",
        "tasks": ["Review NOTES.md"],
        "depends_on": ["write-notes"],
        "tool": "scribe",
        "acceptance_tests": ["test -f NOTES.md"],
    },
]


def test_a_converted_bundle_file_runs_with_its_checks(tmp_path):
    (tmp_path / "bundles.json").write_text(json.dumps(RUN_BUNDLES))
    script = write_tool_script(
        tmp_path / "scripts" / "scribe.toml",
        [{"action": "succeed", "edit": {"path": "NOTES.md", "content": "hello\n"}}],
    )
    env = scripted_tools_env(scribe=script)
    converted = run_orchestra("convert", "bundles.json", "-o", "plan.toml", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    ran = run_orchestra("run", "plan.toml", "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["steps"] == {"succeeded": 2}
    calls = tool_calls(script)
    assert [call["task"] for call in calls] == ["write-notes", "review-notes"]
    assert calls[0]["prompt"].startswith("Notes\n\n1. Write NOTES.md saying hello")
    assert (tmp_path / "NOTES.md").read_text() == "hello\n"
    (log,) = (tmp_path / ".orchestra" / "runs").glob("*/write-notes.1.log")
    assert "grep -q hello NOTES.md && test -s NOTES.md" in log.read_text()  # the check ran
    # the bundle file itself runs too, and its run records the format it was read in
    direct = run_orchestra("run", "bundles.json", "--quiet", cwd=tmp_path, env=env)
    assert direct.returncode == 0, direct.stderr
    assert sorted(recorded_formats(tmp_path)) == ["toml", "uet-bundle"]


def recorded_formats(project: Path) -> list[str]:
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as connection:
        rows = connection.execute("SELECT settings FROM runs ORDER BY id").fetchall()
    return [json.loads(settings)["format"] for (settings,) in rows]


def test_resume_reads_the_file_with_the_format_the_run_started_with(tmp_path):
    # no loader recognises this file: only --format says what it is
    bundles = [{"id": "slow", "title": "Take your time", "tasks": [], "tool": "scribe"}]
    (tmp_path / "work.data").write_text(json.dumps(bundles))
    script = write_tool_script(tmp_path / "scribe.toml", [{"action": "succeed", "seconds": 60}])
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")},
        **scripted_tools_env(scribe=script),
    }
    process = subprocess.Popen(
        [orchestra_program(), "run", "work.data", "--format", "uet-bundle", "--quiet"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not tool_calls(script):
        assert time.monotonic() < deadline, "the scripted tool was never called"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert recorded_formats(tmp_path) == ["uet-bundle"]
    write_tool_script(tmp_path / "scribe.toml", [{"action": "succeed"}])
    with sqlite3.connect(tmp_path / ".orchestra" / "orchestra.db") as connection:
        (run_id,) = connection.execute("SELECT id FROM runs").fetchone()
    resumed = run_orchestra(
        "resume", run_id, "--json", cwd=tmp_path, env=scripted_tools_env(scribe=script)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == {"succeeded": 1}


def test_show_lists_a_bundles_fields_kept_as_metadata(tmp_path):
    script = write_tool_script(tmp_path / "alpha.toml", [{}])
    (tmp_path / "plan.json").write_text(
        json.dumps(
            {
                "id": "ws-meta",
                "openspec_change": "OS-7",
                "gate": 2,
                "tasks": ["Do the thing"],
                "tool": "alpha",
            }
        )
    )
    env = scripted_tools_env(alpha=script)
    ran = run_orchestra("run", "plan.json", "--json", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run"]

    shown = run_orchestra("show", run_id, cwd=tmp_path, env=env)
    document = json.loads(run_orchestra("show", run_id, "--json", cwd=tmp_path, env=env).stdout)

    assert "  format uet-bundle" in shown.stdout
    assert "  metadata: " in shown.stdout and "openspec_change=OS-7" in shown.stdout
    assert document["format"] == "uet-bundle"
    assert document["steps"][0]["metadata"]["gate"] == 2


def test_run_keeps_done_tasks_with_include_done_and_resume_remembers_it(plugin_host, tmp_path):
    everything = load(FIXTURES / "tasks.json", plugin_host, options={"include_done": True})
    (tmp_path / "tasks.json").write_text((FIXTURES / "tasks.json").read_text())
    script = write_tool_script(tmp_path / "alpha.toml", [{}])
    env = {**scripted_tools_env(alpha=script), "ORCHESTRA_DISABLE_PLUGINS": "aider,codex"}

    ran = run_orchestra("run", "tasks.json", "--include-done", "--json", cwd=tmp_path, env=env)

    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert sum(summary["steps"].values()) == len(everything.workstream.tasks)
    with sqlite3.connect(tmp_path / ".orchestra" / "orchestra.db") as db:
        (settings,) = db.execute("SELECT settings FROM runs").fetchone()
    assert json.loads(settings)["loader_options"] == {"include_done": True}
