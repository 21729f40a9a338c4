"""A directory (or several files) read as one workstream: the real set of bundles in
../shared, cross-file problems reported together with their files, resume refusing a
set that changed, convert's round trip of a directory, task-master's tasks.json as one
file of a set, and directories of mutated bundles that never give a traceback."""

import copy
import json
import random
import re
import signal
import sqlite3
from pathlib import Path

import pytest

from orchestra.errors import OrchestraError
from orchestra.loaders import load_source
from orchestra.spec import load_workstream
from orchestra.testing import run_orchestra, start_orchestra, wait_for

# CI copies ../shared next to the clone, so this is the same in a fresh clone
UET_BUNDLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "uet-bundles"
SET_REFACTOR = UET_BUNDLES / "set-refactor"
REFACTOR_IDS = [
    "ws-03-refactor-meta-section",
    "ws-04-refactor-gui-section",
    "ws-05-refactor-infra-ci",
]
AIM = "ws-06-refactor-aim-section"


@pytest.fixture(autouse=True)
def shared_data_is_here():
    assert SET_REFACTOR.is_dir(), (
        f"{UET_BUNDLES} is not here: copy the shared data next to the clone, as .ci/run's"
        " machine has it"
    )


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return path


def plan_json(*arguments: str, cwd: Path) -> dict:
    result = run_orchestra("plan", "--format", "json", *arguments, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def error_lines(result) -> list[str]:
    """The stderr lines of a refused command, checked to be what a user should see."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


# -- the real set --------------------------------------------------------------------------


def test_the_real_set_validates_as_one_workstream(tmp_path):
    result = run_orchestra("validate", str(SET_REFACTOR), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ok: {SET_REFACTOR}: 4 tasks, 3 dependencies, 2 waves\n"
    # the four files keep the same fields: one notice for all of them, not four
    assert result.stderr.count("notice: ") == 1
    assert f"notice: {SET_REFACTOR} (4 files): kept as task metadata" in result.stderr
    # each file alone cannot load: ws-06 needs the bundles of the other three
    alone = run_orchestra("validate", str(SET_REFACTOR / f"{AIM}.json"), cwd=tmp_path)
    assert "unknown task 'ws-03-refactor-meta-section'" in "\n".join(error_lines(alone))


def test_the_plan_of_the_real_set_runs_ws_06_after_the_other_three(tmp_path):
    plan = plan_json(str(SET_REFACTOR), cwd=tmp_path)
    assert plan["workstream"]["id"] == "set-refactor"
    assert plan["waves"] == [REFACTOR_IDS, [AIM]]
    tasks = {task["id"]: task for task in plan["tasks"]}
    assert tasks[AIM]["depends_on"] == REFACTOR_IDS
    assert tasks[AIM]["wave"] == 2
    assert plan["critical_path"][-1] == AIM

    text = run_orchestra("plan", str(SET_REFACTOR), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("workstream set-refactor\n  4 tasks, 3 dependencies, 2 waves")


def test_id_and_title_options_name_the_set_and_a_bad_id_is_a_usage_error(tmp_path):
    plan = plan_json(str(SET_REFACTOR), "--id", "my-plan", "--title", "My plan", cwd=tmp_path)
    assert plan["workstream"]["id"] == "my-plan"
    assert plan["workstream"]["title"] == "My plan"
    assert plan["waves"] == [REFACTOR_IDS, [AIM]]

    for command in ("plan", "validate", "run", "convert"):
        refused = run_orchestra(command, str(SET_REFACTOR), "--id", "bad id!", cwd=tmp_path)
        assert refused.returncode == 2, command
        assert "Invalid value for '--id': 'bad id!'" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert not (tmp_path / ".orchestra").exists()  # run refused before recording anything


def test_a_directory_name_becomes_the_id_and_stays_the_title(tmp_path):
    plan_dir = tmp_path / "Q3 plan"
    write_json(plan_dir / "a.json", {"id": "alpha", "tasks": ["Do a"]})
    plan = plan_json(str(plan_dir), cwd=tmp_path)
    assert plan["workstream"]["id"] == "Q3-plan"
    assert plan["workstream"]["title"] == "Q3 plan"


# -- several files on the command line -----------------------------------------------------


def test_several_files_on_the_command_line_are_one_workstream(tmp_path):
    write_json(tmp_path / "pair" / "a.json", {"id": "alpha", "tasks": ["Do a"]})
    write_json(
        tmp_path / "pair" / "b.json", {"id": "beta", "tasks": ["b"], "depends_on": ["alpha"]}
    )
    a, b = "pair/a.json", "pair/b.json"

    plan = plan_json(b, a, cwd=tmp_path)

    assert plan["waves"] == [["alpha"], ["beta"]]
    assert plan["workstream"]["id"] == "pair"  # the directory that holds them
    # validate reads each file on its own unless told to read them together
    apart = run_orchestra("validate", a, b, cwd=tmp_path)
    assert apart.stdout == f"ok: {a}: 1 task, 0 dependencies, 1 wave\n"
    assert error_lines(apart) == [
        f"error: {b}: task 'beta': field 'depends_on': unknown task 'alpha'"
    ]
    together = run_orchestra("validate", "--together", a, b, cwd=tmp_path)
    assert together.returncode == 0, together.stderr
    assert together.stdout == f"ok: {a}, {b}: 2 tasks, 1 dependency, 2 waves\n"


# -- problems across files -----------------------------------------------------------------


def cross_file_problems(plan_dir: Path) -> None:
    """A duplicate id in two files, a dependency on a bundle in none of them, a cycle."""
    write_json(plan_dir / "a.json", {"id": "alpha", "tasks": ["Do a"], "depends_on": ["beta"]})
    write_json(plan_dir / "b.json", {"id": "beta", "tasks": ["Do b"], "depends_on": ["alpha"]})
    write_json(
        plan_dir / "c.json",
        [
            {"id": "alpha", "tasks": ["Do a again"]},
            {"id": "gamma", "tasks": ["Do g"], "depends_on": ["betta"]},
        ],
    )


def test_every_problem_across_files_is_one_line_naming_its_file(tmp_path):
    cross_file_problems(tmp_path / "plan")

    result = run_orchestra("validate", "plan", cwd=tmp_path)

    assert sorted(error_lines(result)) == sorted(
        [
            "error: plan/c.json: task 'alpha': field 'id': duplicate task id, also in plan/a.json",
            "error: plan/c.json: task 'gamma': field 'depends_on': depends on a task in none "
            "of the files: 'betta' (did you mean 'beta'?)",
            "error: plan/a.json: task 'alpha': field 'depends_on': dependency cycle across "
            "files: alpha (a.json) -> beta (b.json) -> alpha (a.json)",
        ]
    )
    assert result.stdout == ""
    # plan and run refuse the same way, and run records nothing
    assert sorted(error_lines(run_orchestra("plan", "plan", cwd=tmp_path))) == sorted(
        error_lines(result)
    )
    assert sorted(error_lines(run_orchestra("run", "plan", cwd=tmp_path))) == sorted(
        error_lines(result)
    )
    assert not (tmp_path / ".orchestra" / "orchestra.db").exists()


def test_problems_of_each_file_are_all_reported_together(tmp_path):
    plan_dir = tmp_path / "plan"
    write_json(plan_dir / "good.json", {"id": "good", "tasks": ["Do it"]})
    write_json(plan_dir / "typed.json", {"id": 5, "tasks": ["Do it"]})
    (plan_dir / "broken.json").write_text('{"id": "broken", "tasks": ["x"],\n}\n')
    (plan_dir / "template.json").write_text(
        '{\n  "id": "ws-t",\n  "tasks": ["x"],\n  "files_scope": {[\'a.py\']}\n}\n'
    )
    (plan_dir / "tasks.toml").write_text(
        'id = "t"\n[[tasks]]\nid = "t1"\ncommand = ["true"]\nmax_attempts = "three"\n'
    )

    lines = error_lines(run_orchestra("validate", "plan", cwd=tmp_path))

    assert sorted(lines) == sorted(
        [
            "error: plan/typed.json: task '#1': field 'id': expected a string, got a number (5)",
            "error: plan/broken.json: invalid JSON: Expecting property name enclosed in "
            "double quotes (at line 2, column 1)",
            "error: plan/template.json: an unfilled template: placeholders where values "
            "belong: files_scope: {['a.py']} at line 4",
            "error: plan/tasks.toml: task 't1': field 'max_attempts': expected an integer, "
            "got a string ('three')",
        ]
    )


def test_a_file_with_a_type_error_does_not_hide_the_problems_between_the_others(tmp_path):
    # "every problem of every file is reported at once": a broken file must not hide a
    # duplicate id or a cycle between files that did load
    cross_file_problems(tmp_path / "plan")
    write_json(tmp_path / "plan" / "d.json", {"id": 5, "tasks": ["x"]})

    lines = error_lines(run_orchestra("validate", "plan", cwd=tmp_path))

    for line in [
        "error: plan/d.json: task '#1': field 'id': expected a string, got a number (5)",
        "error: plan/c.json: task 'alpha': field 'id': duplicate task id, also in plan/a.json",
        "error: plan/a.json: task 'alpha': field 'depends_on': dependency cycle across files: "
        "alpha (a.json) -> beta (b.json) -> alpha (a.json)",
    ]:
        assert line in lines


def test_a_dependency_on_a_bundle_of_steps_suggests_the_bundle_by_its_id(tmp_path):
    plan_dir = tmp_path / "plan"
    steps = [
        {"id": "step-01", "tasks": ["Write it"]},
        {"id": "step-02", "tasks": ["Test it"]},
    ]
    write_json(plan_dir / "steps.json", {"id": "ws-example", "steps": steps})
    write_json(plan_dir / "after.json", {"id": "A", "tasks": ["x"], "depends_on": ["ws-exmple"]})

    lines = error_lines(run_orchestra("validate", "plan", cwd=tmp_path))

    # a hint naming one of its steps would have the dependent wait for that step only
    assert lines == [
        "error: plan/after.json: task 'A': field 'depends_on': depends on a task in none of "
        "the files: 'ws-exmple' (did you mean 'ws-example'?)"
    ]


def test_what_a_directory_holds_besides_workstreams_is_left_alone(tmp_path):
    plan_dir = tmp_path / "plan"
    write_json(plan_dir / "a.json", {"id": "alpha", "tasks": ["Do a"]})
    write_json(plan_dir / "sub" / "b.json", {"id": "beta", "tasks": ["b"], "depends_on": ["alpha"]})
    (plan_dir / "README.md").write_text("# The plan\n\nRun it with orchestra.\n")
    (plan_dir / "orchestra.toml").write_text('[workspace]\nname = "inplace"\n')
    (plan_dir / "pyproject.toml").write_text('[project]\nname = "x"\n')
    write_json(plan_dir / "package.json", {"name": "x", "version": "1.0.0"})
    write_json(plan_dir / ".hidden" / "c.json", {"id": "alpha", "tasks": ["hidden"]})
    write_json(plan_dir / ".d.json", {"id": "alpha", "tasks": ["hidden"]})

    result = run_orchestra("validate", "plan", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok: plan: 2 tasks, 1 dependency, 2 waves\n"
    assert (
        result.stderr == "notice: plan/package.json: passed over: no workstream format reads it\n"
    )
    # named on the command line, the same file is an error, not passed over
    named = error_lines(run_orchestra("validate", "plan/package.json", cwd=tmp_path))
    assert named[0].startswith("error: plan/package.json: unknown format: ")


def test_a_directory_with_no_workstream_file_is_one_error(tmp_path):
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "README.md").write_text("nothing here\n")
    lines = error_lines(run_orchestra("validate", "plan", cwd=tmp_path))
    assert len(lines) == 1 and lines[0].startswith("error: plan: no workstream files (")
    write_json(tmp_path / "plan" / "package.json", {"name": "x"})
    lines = error_lines(run_orchestra("validate", "plan", cwd=tmp_path))
    assert lines == ["error: plan: no workstream files: no format reads any of them"]


# -- resume --------------------------------------------------------------------------------

#: ``first`` succeeds; ``long`` sleeps on its first attempt (until canceled), and on the
#: next one ends at once; ORCHESTRA_ATTEMPT tells the attempts apart
FIRST_TOML = """\
id = "first-file"

[defaults]
workspace = "inplace"

[[tasks]]
id = "first"
command = ["true"]
"""
LONG_COMMAND = "if [ $ORCHESTRA_ATTEMPT = 1 ]; then echo started; exec sleep 60; fi; echo done"
LONG_TOML = f"""\
id = "long-file"

[[tasks]]
id = "long"
depends_on = ["first"]
shell = true
command = "{LONG_COMMAND}"
"""


def canceled_run(project: Path, plan_argument: str, task: str = "long") -> str:
    """Start a run of ``plan_argument``, cancel it with Ctrl-C once ``task``'s first
    attempt sleeps, and return the run's id."""
    process = start_orchestra("run", plan_argument, "--plain", cwd=project)

    def sleeping() -> bool:
        logs = list((project / ".orchestra" / "runs").glob(f"*/{task}.1.log"))
        return bool(logs) and "started" in logs[0].read_text()

    try:
        wait_for(sleeping, what=f"{task}'s first attempt")
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 130
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        ((run_id, state),) = db.execute("SELECT id, state FROM runs").fetchall()
    assert state == "canceled"
    return run_id


@pytest.mark.parametrize("given_as", ["relative", "absolute"])
def test_resume_refuses_a_set_whose_files_changed_and_resumes_it_unchanged(tmp_path, given_as):
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    (plan_dir / "a.toml").write_text(FIRST_TOML)
    (plan_dir / "b.toml").write_text(LONG_TOML)
    argument = "plan" if given_as == "relative" else str(plan_dir)
    run_id = canceled_run(tmp_path, argument)

    (plan_dir / "b.toml").write_text(LONG_TOML + "# a comment changes the file\n")
    changed = run_orchestra("resume", run_id, cwd=tmp_path)
    assert error_lines(changed) == [
        f"error: {plan_dir} changed since run {run_id} started; resume with --force to run "
        "the new version"
    ]

    (plan_dir / "b.toml").write_text(LONG_TOML)
    (plan_dir / "c.toml").write_text('id = "c"\n[[tasks]]\nid = "extra"\ncommand = ["true"]\n')
    added = run_orchestra("resume", run_id, cwd=tmp_path)
    assert f"error: {plan_dir} changed since run {run_id} started" in added.stderr
    assert added.returncode == 2 and "Traceback" not in added.stderr

    (plan_dir / "c.toml").unlink()  # the set is as it was: resume goes on
    resumed = run_orchestra("resume", run_id, "--plain", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"run {run_id} succeeded: 2 succeeded" in resumed.stdout


def test_resume_of_a_directory_passes_over_the_same_files_the_run_did(tmp_path):
    # every file of the set is a uet bundle, so the run records that format; resume must
    # not force it onto the file the run passed over
    plan_dir = tmp_path / "plan"
    steps = [
        {"id": "first", "command": "true"},
        {"id": "long", "command": LONG_COMMAND},
    ]
    write_json(plan_dir / "e.json", {"id": "E", "execution_steps": steps})
    write_json(plan_dir / "package.json", {"name": "x", "version": "1.0.0"})
    run_id = canceled_run(tmp_path, str(plan_dir), task="E.long")

    resumed = run_orchestra("resume", run_id, "--plain", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"run {run_id} succeeded: 2 succeeded" in resumed.stdout


# -- convert -------------------------------------------------------------------------------


def test_convert_of_the_real_set_is_the_same_plan(plugin_host, tmp_path):
    converted = run_orchestra("convert", str(SET_REFACTOR), "-o", "out.toml", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    assert (
        (tmp_path / "out.toml")
        .read_text()
        .startswith("# Converted by `orchestra convert` from set-refactor (uet-bundle).\n")
    )

    of_directory = plan_json(str(SET_REFACTOR), cwd=tmp_path)
    of_toml = plan_json("out.toml", cwd=tmp_path)

    for part in ("tasks", "waves", "critical_path"):
        assert of_toml[part] == of_directory[part], part
    assert of_toml["workstream"]["id"] == of_directory["workstream"]["id"] == "set-refactor"
    assert of_toml["workstream"]["file"] == "out.toml"
    # and every field of every task came through, not only what a plan shows
    loaded = load_source(str(SET_REFACTOR), plugin_host).workstream
    assert load_workstream(tmp_path / "out.toml") == loaded


def test_convert_of_several_files_names_them_and_keeps_their_dependency(tmp_path):
    write_json(tmp_path / "a.json", {"id": "alpha", "tasks": ["Do a"]})
    write_json(tmp_path / "b.json", {"id": "beta", "tasks": ["Do b"], "depends_on": ["alpha"]})
    converted = run_orchestra("convert", "a.json", "b.json", "--id", "ab", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    assert converted.stdout.startswith(
        '# Converted by `orchestra convert` from a.json, b.json (uet-bundle).\nid = "ab"\n'
    )
    (tmp_path / "ab.toml").write_text(converted.stdout)
    assert plan_json("ab.toml", cwd=tmp_path)["waves"] == [["alpha"], ["beta"]]


# -- task-master in a set ------------------------------------------------------------------

TASK_MASTER = {
    "master": {
        "tasks": [
            {"id": 1, "title": "Initialize Project", "status": "done", "dependencies": []},
            {
                "id": 2,
                "title": "Create Core Functionality",
                "status": "pending",
                "dependencies": [1],
                "priority": "high",
                "testStrategy": "Write unit tests for all core functions",
                "subtasks": [
                    {"id": 1, "title": "Set Up Database", "status": "pending", "dependencies": []},
                    {"id": 2, "title": "Data Processing", "status": "pending", "dependencies": [1]},
                ],
            },
            {
                "id": 3,
                "title": "Docs",
                "status": "pending",
                "dependencies": [],
                "subtasks": [
                    # 2 is no sibling here: the parent-level task 2
                    {"id": 5, "title": "Outline", "dependencies": [2]},
                    {"id": 6, "title": "Old notes", "status": "done", "dependencies": []},
                    # a sibling, a done sibling, another task's subtask, a done task
                    {"id": 7, "title": "Publish", "dependencies": [5, 6, "2.1", 1]},
                ],
            },
        ]
    },
    "feature-x": {"tasks": [{"id": 9, "title": "Another tag's task", "dependencies": []}]},
}


def test_task_master_subtasks_and_done_tasks_load_as_documented(plugin_host, tmp_path):
    path = write_json(tmp_path / "tasks.json", TASK_MASTER)
    notices: list[str] = []

    workstream = load_source(str(path), plugin_host, on_notice=notices.append).workstream

    assert [(task.id, task.depends_on) for task in workstream.tasks] == [
        ("2.1", ()),
        ("2.2", ("2.1",)),
        ("2", ("2.1", "2.2")),  # its dependency on the done task 1 is left out
        ("3.5", ("2",)),
        ("3.7", ("3.5", "2.1")),
        ("3", ("3.5", "3.7")),
    ]
    assert notices == [f"{path}: 2 task(s) already done are left out (--include-done keeps them)"]
    everything = load_source(str(path), plugin_host, options={"include_done": True})
    assert everything.workstream.task("3.7").depends_on == ("3.5", "3.6", "2.1", "1")


def test_a_tagged_tasks_json_is_one_file_of_a_set(tmp_path):
    plan_dir = tmp_path / "plan"
    write_json(plan_dir / "tasks.json", TASK_MASTER)
    write_json(
        plan_dir / "review.json", {"id": "ws-review", "tasks": ["Review"], "depends_on": ["3"]}
    )

    result = run_orchestra("plan", "--format", "json", "plan", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["workstream"]["id"] == "plan"
    tasks = {task["id"]: task for task in plan["tasks"]}
    assert set(tasks) == {"2.1", "2.2", "2", "3.5", "3.7", "3", "ws-review"}  # master only
    assert tasks["ws-review"]["depends_on"] == ["3"]
    assert plan["waves"][-1] == ["ws-review"]
    assert plan["settings"]["format"]["value"] is None  # two formats in one set
    assert "notice: plan/tasks.json: 2 task(s) already done are left out" in result.stderr
    # --tag reaches the tasks.json of the set
    tagged = run_orchestra("plan", "--format", "json", "--tag", "feature-x", "plan", cwd=tmp_path)
    assert error_lines(tagged) == [
        "error: plan/review.json: task 'ws-review': field 'depends_on': depends on a task in "
        "none of the files: '3'"
    ]


# -- fuzz ----------------------------------------------------------------------------------

FUZZ_SOURCES = sorted(path for path in UET_BUNDLES.rglob("*.json") if path.is_file())
#: values a mutation puts where another was
JUNK = [None, 0, -1, 2.5, True, "", "x", "{[]}", [], {}, [1], [None], [[]], {"a": None}]
#: what a text mutation puts in place of a number or a literal: what JSON refuses or
#: Python reads into what no field expects
LITERALS = ["NaN", "1e999", "-0", '"\\ud800"', "9" * 5000, "[" * 3000 + "]" * 3000, "{}"]
SCALAR = re.compile(r'(?<=": )(-?\d+(?:\.\d+)?|true|false|null)')


def paths_in(value, prefix=()):
    """Every path (a tuple of keys and indexes) inside a JSON value."""
    yield prefix
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, inner in items:
        yield from paths_in(inner, (*prefix, key))


def mutated(rng: random.Random, document):
    """``document`` with one to four keys deleted or values of another type put in."""
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 4)):
        paths = [path for path in paths_in(document) if path]
        if not paths:
            break
        *parents, last = rng.choice(paths)
        parent = document
        for key in parents:
            parent = parent[key]
        if rng.random() < 0.4:
            del parent[last]
        else:
            parent[last] = copy.deepcopy(rng.choice(JUNK))
    return document


def first_bundle(document):
    if isinstance(document, list):
        return document[0] if document and isinstance(document[0], dict) else None
    return document


def fuzz_case(seed: int, root: Path) -> tuple[Path, bool]:
    """Write directory ``case-SEED`` of mutated real bundles; return it and whether a
    duplicate id or a cycle was planted in it (then it must not load)."""
    rng = random.Random(seed)
    directory = root / f"case-{seed}"
    directory.mkdir(parents=True)
    chosen = rng.sample(FUZZ_SOURCES, rng.randint(1, 4))
    intact = None
    for number, source in enumerate(chosen):
        name = f"{number:02d}-{source.name}"
        text = source.read_text()
        kind = rng.choice(
            ["keep", "mutate", "mutate", "truncate", "placeholder", "comment", "literal"]
        )
        if kind == "keep" and intact is None:
            intact = (name, text)
        elif kind == "truncate":
            text = text[: rng.randrange(len(text))]
        elif kind == "placeholder":
            at = rng.randrange(len(text))
            text = text[:at] + "{[]}" + text[at:]
        elif kind == "literal" and SCALAR.search(text):
            found = rng.choice(list(SCALAR.finditer(text)))
            text = text[: found.start()] + rng.choice(LITERALS) + text[found.end() :]
        elif kind == "comment":
            text = "/* DOC_ID: X */\n// a line comment\n" + text
        elif kind == "mutate":
            start = text.index(next(c for c in text if c in "[{"))  # after /* comments */
            text = json.dumps(mutated(rng, json.loads(text[start:])))
        (directory / name).write_text(text)
    planted = False
    if intact is not None:
        name, text = intact
        document = json.loads(text[text.index(next(c for c in text if c in "[{")) :])
        bundle = first_bundle(document)
        if bundle is not None and isinstance(bundle.get("id"), str):
            planted = True
            if rng.random() < 0.5:  # the same id in another file
                write_json(directory / "zz-duplicate.json", {"id": bundle["id"], "tasks": ["x"]})
            else:  # a cycle through another file
                needs = bundle.get("depends_on") or []
                bundle["depends_on"] = [*needs, "zz-cycle"]
                write_json(directory / name, document)
                write_json(
                    directory / "zz-cycle.json",
                    {"id": "zz-cycle", "tasks": ["x"], "depends_on": [bundle["id"]]},
                )
    return directory, planted


FUZZ_SEEDS = range(200)


def test_directories_of_mutated_bundles_load_or_fail_in_lines_naming_their_files(
    plugin_host, tmp_path
):
    assert len(FUZZ_SOURCES) >= 8
    failures = []
    for seed in FUZZ_SEEDS:
        directory, planted = fuzz_case(seed, tmp_path)
        try:
            load_source(str(directory), plugin_host)
        except OrchestraError as error:
            lines = error.lines()
            wrong = [
                line
                for line in lines
                if not line.startswith(str(directory)) or "failed in " in line  # a loader bug
            ]
            if not lines or wrong:
                failures.append((seed, wrong or "no lines"))
        except Exception as error:  # anything else is a bug, and the CLI's traceback
            failures.append((seed, f"{type(error).__name__}: {error}"))
        else:
            if planted:
                failures.append((seed, "loaded despite a duplicate id or a cycle"))
    assert failures == []


@pytest.mark.parametrize("seed", [7, 14, 17, 38])
def test_validate_of_a_mutated_directory_never_prints_a_traceback(plugin_host, tmp_path, seed):
    directory, _ = fuzz_case(seed, tmp_path)
    result = run_orchestra("validate", str(directory), cwd=tmp_path)
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    for line in result.stderr.splitlines():
        assert line.startswith(("error: ", "notice: ", "warning: ")), line
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    try:
        load_source(str(directory), plugin_host)
    except OrchestraError as error:  # the CLI says what the loader says, no more
        assert errors == [f"error: {line}" for line in error.lines()]
    else:  # loaded: only a tool's name may still be wrong
        assert all("unknown tool" in line for line in errors)
    assert (result.returncode == 0) == (not errors)
    if not errors:
        assert result.stdout.startswith(f"ok: {directory}: ")
