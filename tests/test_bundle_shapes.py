"""The shapes UET bundles come in, from the real files in ../shared: ``steps`` (in order
or in parallel, a bundle of steps named by its id), ``execution_steps`` with pre-flight
checks and PowerShell acceptance tests, comments around the JSON, half-filled templates;
pre-flight checks running before the tool for real; convert's round trip of each."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from orchestra.loaders import load_source
from orchestra.models import Check, FileScope
from orchestra.spec import load_workstream
from orchestra.testing import run_orchestra

# CI copies ../shared next to the clone, so this is the same in a fresh clone
UET_BUNDLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "uet-bundles"
VARIANTS = UET_BUNDLES / "variants"
STEPS = VARIANTS / "steps-parallel-execution.json"
EXECUTION_STEPS = VARIANTS / "execution-steps-ws-001.json"
COMMENTED = VARIANTS / "comment-header-example-multi.json"

BUNDLE = "ws-example-02-parallel-execution"
STEP_IDS = [
    f"{BUNDLE}.step-01-math-utils",
    f"{BUNDLE}.step-02-string-utils",
    f"{BUNDLE}.step-03-file-utils",
]
#: python on PATH, whatever the tester's shell has: the ws-001 bundle's commands need it
WITH_PYTHON = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(autouse=True)
def shared_data_is_here():
    assert VARIANTS.is_dir(), (
        f"{UET_BUNDLES} is not here: copy the shared data next to the clone, as .ci/run's"
        " machine has it"
    )


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return path


def plan_json(*arguments: str, cwd: Path) -> dict:
    result = run_orchestra("plan", "--format", "json", *arguments, cwd=cwd, env=WITH_PYTHON)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def error_lines(result) -> list[str]:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def serial_copy(directory: Path) -> Path:
    """The steps bundle with ``execution.parallel`` false, in ``directory``."""
    document = json.loads(STEPS.read_text())
    document["execution"]["parallel"] = False
    return write_json(directory / "steps-serial.json", document)


# -- steps -------------------------------------------------------------------------------


def test_a_bundle_of_parallel_steps_is_a_task_per_step(plugin_host):
    workstream = load_source(str(STEPS), plugin_host).workstream

    assert [task.id for task in workstream.tasks] == STEP_IDS
    files = FileScope(
        write=("examples/math_utils.py", "examples/string_utils.py", "examples/file_utils.py"),
        create=("examples/math_utils.py", "examples/string_utils.py", "examples/file_utils.py"),
    )
    for task in workstream.tasks:
        assert task.depends_on == ()  # execution.parallel: each waits for nothing
        assert (task.tool, task.timeout, task.files) == ("aider", 300.0, files)
        # circuit_breaker: its attempts and its loop breaker
        assert (task.max_attempts, task.same_failure_limit) == (3, 2)
        # what orchestra has no meaning for is kept
        assert task.metadata["circuit_breaker"] == {"per_step": True}
        assert task.metadata["execution"] == {"max_workers": 3}
        assert task.metadata["openspec_change"] == "EX-002"
    math, strings, _ = workstream.tasks
    assert math.title == "Create math utilities module with basic functions"
    assert math.prompt == (
        f"Part of {BUNDLE}.\n\n"
        "Create math utilities module with basic functions\n\n"
        "1. Create examples/math_utils.py\n"
        "2. Add functions: add, subtract, multiply, divide\n"
        "3. Include type hints and docstrings\n"
        "4. Handle division by zero with proper exception"
    )
    # each step's own acceptance test, split into arguments like a shell would
    assert math.checks == (
        Check(
            command=("python", "-c", "from examples.math_utils import add; assert add(2,3) == 5")
        ),
    )
    assert strings.checks == (
        Check(
            command=(
                "python",
                "-c",
                "from examples.string_utils import reverse; assert reverse('hello') == 'olleh'",
            )
        ),
    )


def test_comment_keys_are_left_out_like_comments(plugin_host):
    # docs/formats.md: "_comment…" keys are left out, like the /* */ comments; the real
    # file has them at the top, in its steps, its execution, its circuit_breaker and its
    # metadata
    workstream = load_source(str(STEPS), plugin_host).workstream

    def comment_keys(value) -> list[str]:
        if isinstance(value, dict):
            found = [key for key in value if key.startswith("_comment")]
            return found + [key for inner in value.values() for key in comment_keys(inner)]
        if isinstance(value, list):
            return [key for inner in value for key in comment_keys(inner)]
        return []

    for task in workstream.tasks:
        assert comment_keys(task.metadata) == [], task.id


def test_the_plan_of_parallel_steps_is_one_wave_and_of_serial_steps_a_chain(tmp_path):
    parallel = plan_json(str(STEPS), cwd=tmp_path)
    assert parallel["waves"] == [STEP_IDS]
    assert parallel["workstream"]["id"] == BUNDLE

    serial = plan_json(str(serial_copy(tmp_path)), cwd=tmp_path)

    assert serial["waves"] == [[step] for step in STEP_IDS]
    assert [task["depends_on"] for task in serial["tasks"]] == [[], STEP_IDS[:1], STEP_IDS[1:2]]


# in order, the last step is the one that waits for all the others
@pytest.mark.parametrize(("parallel", "waits_for"), [(True, STEP_IDS), (False, STEP_IDS[-1:])])
def test_a_bundle_depending_on_a_bundle_of_steps_waits_for_all_its_steps(
    tmp_path, parallel, waits_for
):
    plan_dir = tmp_path / "plan"
    if parallel:
        plan_dir.mkdir()
        shutil.copy(STEPS, plan_dir / STEPS.name)
    else:
        serial_copy(plan_dir)
    write_json(
        plan_dir / "after.json", {"id": "ws-after", "tasks": ["Use them"], "depends_on": [BUNDLE]}
    )

    plan = plan_json("plan", cwd=tmp_path)

    tasks = {task["id"]: task for task in plan["tasks"]}
    assert tasks["ws-after"]["depends_on"] == waits_for
    assert plan["waves"][-1] == ["ws-after"]
    assert len(plan["waves"]) == (2 if parallel else 4)


def test_in_one_file_too_a_bundle_of_steps_is_named_by_its_id(plugin_host, tmp_path):
    steps = json.loads(STEPS.read_text())
    after = {"id": "ws-after", "tasks": ["Use them"], "depends_on": [BUNDLE]}
    path = write_json(tmp_path / "both.json", [after, steps])

    workstream = load_source(str(path), plugin_host).workstream

    assert workstream.task("ws-after").depends_on == tuple(STEP_IDS)
    assert workstream.id == "both"


def test_steps_depend_on_sibling_steps_by_their_step_id(plugin_host, tmp_path):
    bundle = {
        "id": "ws-diamond",
        "execution": {"parallel": True},
        "steps": [
            {"id": "base", "tasks": ["Lay the base"]},
            {"id": "left", "tasks": ["Left"], "depends_on": ["base"]},
            {"id": "right", "tasks": ["Right"], "depends_on": ["base"]},
            {"id": "top", "tasks": ["Top"], "depends_on": ["left", "right"]},
        ],
    }
    after = {"id": "z", "tasks": ["z"], "depends_on": ["ws-diamond"]}
    path = write_json(tmp_path / "diamond.json", [bundle, after])

    workstream = load_source(str(path), plugin_host).workstream

    assert {task.id: task.depends_on for task in workstream.tasks} == {
        "ws-diamond.base": (),
        "ws-diamond.left": ("ws-diamond.base",),
        "ws-diamond.right": ("ws-diamond.base",),
        "ws-diamond.top": ("ws-diamond.left", "ws-diamond.right"),
        "z": ("ws-diamond.top",),  # the steps no other step waits for
    }


# -- execution_steps -----------------------------------------------------------------------


def test_execution_steps_are_command_tasks_with_their_checks(plugin_host):
    notices: list[str] = []
    workstream = load_source(str(EXECUTION_STEPS), plugin_host, on_notice=notices.append).workstream

    assert (workstream.id, workstream.title) == ("ws-001", "Example Phase - Setup Documentation")
    generate, report = workstream.tasks
    assert generate.id == "ws-001.generate-workstream"
    assert generate.command == ("python", "phase_plan_to_workstream.py")
    assert generate.title == "Convert phase plan to workstream JSON"
    assert report.id == "ws-001.run-orchestrator"
    assert report.command == ("python", "run_master_splinter.py")
    assert report.depends_on == (generate.id,)  # in order
    # pre-flight checks before the first step's command, acceptance tests after the last
    assert generate.checks == (
        Check(command=("ls", "config"), name="verify-config", before=True),
        Check(command=("python", "--version"), name="check-python", before=True),
    )
    pwsh = ("pwsh", "-NoProfile", "-NonInteractive", "-Command")
    assert report.checks == (
        Check(
            command=(*pwsh, "if (-not (Test-Path reports/COMPLETION_REPORT_*)) { exit 1 }"),
            name="report-exists",
        ),
        Check(
            command=(*pwsh, "if (-not (Test-Path workstreams/ws-001.json)) { exit 1 }"),
            name="workstream-exists",
        ),
    )
    scope = FileScope(
        read=("README.md", "CLAUDE.md"),
        write=("reports/*", "workstreams/*"),
        create=("reports/*", "workstreams/*"),
        forbidden=(".git/*", "safe_merge/*"),
    )
    for task in workstream.tasks:
        assert task.files == scope
        assert task.max_attempts == 2  # execution_profile.retry_attempts 1, and the first
        assert task.tool is None  # a command: the bundle's claude-code is for prompts
        assert task.metadata["expected_artifacts"][0] == {
            "id": "workstream-json",
            "path": "workstreams/ws-001.json",
        }
    assert any("2 command(s) written for PowerShell run with pwsh" in n for n in notices)


def test_plan_says_which_tasks_cannot_run_here_and_why(tmp_path):
    text = run_orchestra("plan", str(EXECUTION_STEPS), cwd=tmp_path, env=WITH_PYTHON)
    plan = plan_json(str(EXECUTION_STEPS), cwd=tmp_path)

    assert text.returncode == 0, text.stderr
    cannot_run = {task["id"]: task["cannot_run"] for task in plan["tasks"]}
    if shutil.which("pwsh") is None:
        why = (
            "its check 'report-exists' needs 'pwsh' (PowerShell), which is not installed here "
            "(not on PATH)"
        )
        assert cannot_run == {"ws-001.generate-workstream": None, "ws-001.run-orchestrator": why}
        assert text.stdout.endswith(
            "\n1 task(s) cannot run on this machine as they are:\n"
            f"  ws-001.run-orchestrator: {why}\n"
        )
    else:
        assert set(cannot_run.values()) == {None}
        assert "cannot run on this machine" not in text.stdout
    # the tasks still route: a command is the shell's
    assert {task["tool"] for task in plan["tasks"]} == {"shell"}


def test_a_program_that_is_missing_is_named_for_the_step_that_needs_it(tmp_path):
    bundle = {
        "id": "ws-lint",
        "pre_flight_checks": [{"id": "linter", "command": "no-such-linter-here --version"}],
        "execution_steps": [
            {"id": "one", "command": "true"},
            {"id": "two", "command": "no-such-program-either --go"},
        ],
    }
    write_json(tmp_path / "lint.json", bundle)
    plan = plan_json("lint.json", cwd=tmp_path)
    cannot_run = {task["id"]: task["cannot_run"] for task in plan["tasks"]}
    assert cannot_run == {
        "ws-lint.one": "its pre-flight check 'linter' needs 'no-such-linter-here', which is not "
        "installed here (not on PATH)",
        "ws-lint.two": "its command needs 'no-such-program-either', which is not installed "
        "here (not on PATH)",
    }


# -- comments --------------------------------------------------------------------------------


def test_a_file_with_comment_lines_before_the_json_validates(tmp_path):
    assert COMMENTED.read_text().startswith("/* DOC_ID: ")
    result = run_orchestra("validate", str(COMMENTED), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ok: {COMMENTED}: 3 tasks, 2 dependencies, 3 waves\n"


def test_line_comments_and_comments_inside_the_json_are_allowed(plugin_host, tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(
        "// DOC_ID: DOC-X\n"
        "// a second line\n"
        "{\n"
        '  "id": "ws-docs", /* the bundle\'s id */\n'
        "  // what to do\n"
        '  "tasks": ["Read https://example.com/a//b and sum it up", "Keep /* this */ too"],\n'
        '  "acceptance_tests": ["curl -fsS http://localhost:8000/health"]\n'
        "}\n"
    )

    loaded = load_source(str(path), plugin_host)

    assert loaded.format == "uet-bundle"
    (task,) = loaded.workstream.tasks
    assert task.prompt == "1. Read https://example.com/a//b and sum it up\n2. Keep /* this */ too"
    assert task.checks == (Check(command=("curl", "-fsS", "http://localhost:8000/health")),)
    # an error's position is the line and column in the file as written
    path.write_text(path.read_text().replace('"ws-docs",', '"ws-docs" "x",'))
    result = run_orchestra("validate", str(path), cwd=tmp_path)
    assert error_lines(result) == [
        f"error: {path}: invalid JSON: Expecting ',' delimiter (at line 4, column 19)"
    ]


# -- templates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            '{\n  "id": "{ws-abs-001-tool-adapter}",\n  "tasks": ["Build the adapter"]\n}\n',
            "id: {ws-abs-001-tool-adapter} at line 2",
        ),
        (
            '{\n  "id": "ws-abs-002",\n  "tasks": ["x"],\n  "files_scope": {[\'a.py\']}\n}\n',
            "files_scope: {['a.py']} at line 4",
        ),
        (  # nothing in it but placeholders where the bundle's work belongs
            '{\n  "id": "{ws-id}",\n  "tasks": {[\'Do it\']},\n  "tool": "aider"\n}\n',
            "id: {ws-id} at line 2, tasks: {['Do it']} at line 3",
        ),
    ],
    ids=["id", "files_scope", "only-placeholders"],
)
def test_an_unfilled_template_is_named_as_one(tmp_path, text, shown):
    path = tmp_path / "ws-template.json"
    path.write_text(text)

    alone = run_orchestra("validate", str(path), cwd=tmp_path)
    (tmp_path / "other.json").write_text('{"id": "ws-other", "tasks": ["x"]}')
    in_a_set = run_orchestra("validate", str(tmp_path), cwd=tmp_path)

    line = f"error: {path}: an unfilled template: placeholders where values belong: {shown}"
    assert error_lines(alone) == [line]
    assert error_lines(in_a_set) == [line]  # not passed over as a file of no format


def test_braces_inside_a_sentence_are_no_template(plugin_host, tmp_path):
    path = write_json(
        tmp_path / "log-format.json",
        {
            "id": "ws-log-format",
            "tasks": [
                "Write each log line in the format: {timestamp} {level} {message}",
                # a GitHub Actions expression, as a plan that edits workflows has them
                "Publish with ${{ secrets.PYPI_TOKEN }} in .github/workflows/release.yml",
            ],
            "acceptance_tests": ["python -c \"print(f'total: {1 + 1}')\""],
        },
    )
    result = run_orchestra("validate", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (task,) = load_source(str(path), plugin_host).workstream.tasks
    assert "format: {timestamp} {level} {message}" in task.prompt
    assert "${{ secrets.PYPI_TOKEN }}" in task.prompt


# -- pre-flight checks, for real ------------------------------------------------------------

PREFLIGHT = """\
id = "preflight"

[defaults]
workspace = "inplace"

[[tasks]]
id = "t"
command = ["touch", "ran"]
checks = [{{ command = {before}, before = true, name = "ready" }}, {{ command = ["test", "-e", "ran"] }}]
"""


def run_and_show(project: Path) -> tuple[dict, dict]:
    ran = run_orchestra("run", "ws.toml", "--json", cwd=project)
    assert "Traceback" not in ran.stderr
    summary = json.loads(ran.stdout)
    shown = run_orchestra("show", summary["run"], "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    return summary, json.loads(shown.stdout)


def test_a_failing_pre_flight_check_stops_the_task_before_it_runs(tmp_path):
    (tmp_path / "ws.toml").write_text(PREFLIGHT.format(before='["false"]'))

    summary, shown = run_and_show(tmp_path)

    assert summary["state"] == "failed"
    assert summary["reasons"] == {"t": "pre-flight check 'ready' exited 1"}
    assert not (tmp_path / "ran").exists()  # the command never ran
    (step,) = shown["steps"]
    # not retried: the same check would fail again
    assert [(a["outcome"], a["error_class"]) for a in step["attempts"]] == [
        ("failed", "preflight_failed")
    ]


def test_a_passing_pre_flight_check_runs_before_the_task(tmp_path):
    # it passes only while "ran" does not exist yet: so it ran before the command
    (tmp_path / "ws.toml").write_text(PREFLIGHT.format(before='["sh", "-c", "test ! -e ran"]'))

    summary, shown = run_and_show(tmp_path)

    assert summary["state"] == "succeeded", summary
    assert (tmp_path / "ran").exists()
    log = Path(shown["steps"][0]["attempts"][0]["log"]).read_text()
    assert log.index("pre-flight check 'ready' passed") < log.index("$ touch ran")


# -- convert ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [STEPS, EXECUTION_STEPS, COMMENTED], ids=lambda p: p.stem)
def test_convert_of_each_shape_is_the_same_plan(plugin_host, tmp_path, source):
    converted = run_orchestra("convert", str(source), "-o", "out.toml", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr

    original = plan_json(str(source), cwd=tmp_path)
    again = plan_json("out.toml", cwd=tmp_path)

    for part in ("tasks", "waves", "critical_path"):
        assert again[part] == original[part], part
    assert again["workstream"]["id"] == original["workstream"]["id"]
    assert again["workstream"]["title"] == original["workstream"]["title"]
    # every field (pre-flight checks, scopes, metadata …), not only what a plan shows
    assert (
        load_workstream(tmp_path / "out.toml") == load_source(str(source), plugin_host).workstream
    )
