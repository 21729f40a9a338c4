"""What a review of the workstream loaders found, each held to its fix: a bundle whose
keys come after its first 4 KiB, a file of a directory that a format claims but no
format reads, a bundle's acceptance tests run once on the work of all its parallel
steps, phases of numbered or like-named steps, ordinary commands kept from pwsh, a pipe
given as the workstream, and the digest a run keeps being of the version it runs."""

import hashlib
import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from orchestra import hookimpl
from orchestra.config import find_project
from orchestra.engine.runs import start_run
from orchestra.errors import OrchestraError
from orchestra.loaders import load_source
from orchestra.loaders.uet_bundle import UetBundleLoader
from orchestra.models import Task, Workstream
from orchestra.planning import load_checked
from orchestra.testing import orchestra_program, run_orchestra


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return path


def error_lines(result) -> list[str]:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def tasks_of(path: Path, cwd: Path) -> dict[str, dict]:
    result = run_orchestra("plan", "--format", "json", str(path), cwd=cwd)
    assert result.returncode == 0, result.stderr
    return {task["id"]: task for task in json.loads(result.stdout)["tasks"]}


# -- 1. a bundle is a bundle wherever its keys are -------------------------------------------

LONG = "word " * 1000  # 5 KB: the work comes after the first 4 KiB


def test_a_bundle_whose_work_comes_after_4_kib_is_one_file_of_the_set(tmp_path):
    write_json(tmp_path / "set" / "big.json", {"id": "big", "description": LONG, "tasks": ["x"]})
    write_json(tmp_path / "set" / "small.json", {"id": "small", "tasks": ["Do it"]})
    bundles = [{"id": "first", "description": LONG, "tasks": ["a"]}, {"id": "second"}]
    bundles[1]["tasks"] = ["b"]
    write_json(tmp_path / "set" / "list.json", bundles)

    result = run_orchestra("validate", "set", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok: set: 4 tasks, 0 dependencies, 1 wave\n"
    assert result.stderr == ""
    named = run_orchestra("validate", "set/big.json", cwd=tmp_path)
    assert named.returncode == 0, named.stderr


@pytest.mark.parametrize(
    "document, bundle",
    [
        ({"id": "b", "description": LONG, "tasks": ["x"]}, True),
        ({"description": LONG, "id": "b", "steps": [{"id": "s", "tasks": ["x"]}]}, True),
        ({"id": "b", "notes": {"tasks": ["nested"]}, "description": LONG}, False),
        ({"name": "x", "scripts": {"test": LONG}, "files_scope": ["a.py"]}, True),
        ({"name": "x", "dependencies": {"files_scope": LONG}}, False),
        ({"description": LONG, "tasks": [{"id": 1, "title": "task-master's"}]}, False),
        ({"description": LONG + '"\\"}{', "id": "b", "tasks": ["x"]}, True),
    ],
)
def test_the_sniff_reads_the_top_level_keys_of_the_whole_file(tmp_path, document, bundle):
    path = write_json(tmp_path / "b.json", document)
    loader = UetBundleLoader()
    assert loader.sniff(path, path.read_bytes()[:4096]) is bundle


def test_the_sniff_reads_no_further_than_the_keys_that_tell(tmp_path):
    path = tmp_path / "b.json"
    # the bundle's keys, then a value too large to read (and not JSON at its end)
    path.write_bytes(b'{"id": "b", "tasks": ["x"], "description": "' + b"y" * 10_000_000)
    assert UetBundleLoader().sniff(path, path.read_bytes()[:4096])


def test_a_file_a_format_claims_but_none_reads_is_an_error_unless_never_work(tmp_path):
    write_json(tmp_path / "plan" / "a.json", {"id": "alpha", "tasks": ["Do a"]})
    write_json(tmp_path / "plan" / "notes.json", {"owner": "me", "work": ["Do b"]})
    write_json(tmp_path / "plan" / "package.json", {"name": "x", "version": "1.0.0"})
    write_json(tmp_path / "plan" / "ws.schema.json", {"$schema": "x", "type": "object"})

    result = run_orchestra("validate", "plan", cwd=tmp_path)

    assert error_lines(result) == [
        "error: plan/notes.json: not a workstream: its name is one that uet-bundle (*.json)"
        " reads, but no format recognises its content; fix it, or move it out of the "
        "directory"
    ]
    # the files that are never work are passed over, as before
    assert result.stderr.startswith("notice: plan (2 files): passed over: no workstream ")
    # with a format chosen, the files of other formats are passed over, not its own
    (tmp_path / "plan" / "w.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\nprompt = "p"\n')
    chosen = run_orchestra("validate", "--format", "uet-bundle", "plan", cwd=tmp_path)
    assert error_lines(chosen) == [
        "error: plan/notes.json: not a workstream: its name is one that uet-bundle (*.json)"
        " reads, but uet-bundle does not recognise its content; fix it, or move it out of "
        "the directory"
    ]
    assert "notice: plan/w.toml: passed over: not a uet-bundle file" not in chosen.stderr
    assert "plan (3 files): passed over: not a uet-bundle file" in chosen.stderr
    (tmp_path / "plan" / "notes.json").unlink()
    (tmp_path / "plan" / "w.toml").unlink()
    passed = run_orchestra("validate", "plan", cwd=tmp_path)
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout == "ok: plan: 1 task, 0 dependencies, 1 wave\n"


# -- 2. a bundle's acceptance tests run once, on all its parallel steps' work ----------------


def parallel_bundle(tmp_path: Path) -> Path:
    steps = [{"id": "a", "command": "touch a.txt"}, {"id": "b", "command": "touch b.txt"}]
    return write_json(
        tmp_path / "par.json",
        {
            "id": "par",
            "execution": {"parallel": True},
            "acceptance_tests": ["test -f a.txt && test -f b.txt"],
            # what the steps write: declared, each gets a worktree of its own, whose
            # change lands (a command that declares none may change nothing)
            "files_create": ["a.txt", "b.txt"],
            "execution_steps": steps,
        },
    )


def test_parallel_steps_are_judged_together_by_one_acceptance_task(tmp_path):
    path = parallel_bundle(tmp_path)
    write_json(tmp_path / "after.json", {"id": "after", "tasks": ["x"], "depends_on": ["par"]})

    tasks = tasks_of(path, tmp_path)

    assert list(tasks) == ["par.a", "par.b", "par.acceptance"]
    converted = run_orchestra("convert", str(path), cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    assert (
        '[[tasks]]\nid = "par.acceptance"\ntitle = "Acceptance tests of par"\n'
        'command = ["true"]\ndepends_on = ["par.a", "par.b"]\n'
        'checks = [{ command = "test -f a.txt && test -f b.txt", shell = true }]\n'
        "max_attempts = 1\n"
    ) in converted.stdout
    assert converted.stdout.count("test -f a.txt") == 1
    # a bundle depending on "par" waits for its acceptance tests
    together = run_orchestra(
        "plan", "--format", "json", str(path), str(tmp_path / "after.json"), cwd=tmp_path
    )
    after = next(t for t in json.loads(together.stdout)["tasks"] if t["id"] == "after")
    assert after["depends_on"] == ["par.acceptance"]


def test_a_step_named_acceptance_keeps_its_id(tmp_path):
    document = json.loads(parallel_bundle(tmp_path).read_text())
    document["execution_steps"][0]["id"] = "acceptance"
    path = write_json(tmp_path / "par.json", document)
    assert list(tasks_of(path, tmp_path)) == ["par.acceptance", "par.b", "par.acceptance-2"]


def test_the_acceptance_tests_of_parallel_steps_pass_on_their_work_together(git_repo):
    path = parallel_bundle(git_repo.parent)

    result = run_orchestra("run", str(path), "--plain", cwd=git_repo)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 succeeded" in result.stdout


# -- 3. phases -------------------------------------------------------------------------------


def test_numbered_steps_of_phases_carry_their_phase(tmp_path):
    phases = [
        {"id": "one", "steps": [{"step": 1, "tasks": ["x"]}, {"step": 2, "tasks": ["y"]}]},
        {"id": "two", "steps": [{"step": 1, "tasks": ["z"]}]},
    ]
    path = write_json(tmp_path / "ph.json", {"id": "ph", "phases": phases})

    tasks = tasks_of(path, tmp_path)

    assert {task_id: tasks[task_id]["depends_on"] for task_id in tasks} == {
        "ph.one.step-1": [],
        "ph.one.step-2": ["ph.one.step-1"],
        "ph.two.step-1": ["ph.one.step-2"],
    }


def test_a_step_depends_on_the_step_of_its_own_phase_first(tmp_path):
    phases = [
        {
            "id": "one",
            "steps": [
                {"id": "prep", "tasks": ["x"]},
                {"id": "go", "tasks": ["y"], "depends_on": ["prep"]},
            ],
        },
        {"id": "two", "steps": [{"id": "prep", "tasks": ["z"]}]},
        {"id": "three", "steps": [{"id": "end", "tasks": ["z"], "depends_on": ["go"]}]},
    ]
    path = write_json(tmp_path / "ph.json", {"id": "ph", "phases": phases})

    tasks = tasks_of(path, tmp_path)

    assert tasks["ph.one.go"]["depends_on"] == ["ph.one.prep"]
    assert tasks["ph.three.end"]["depends_on"] == ["ph.two.prep", "ph.one.go"]


def test_a_step_name_of_several_other_phases_is_an_error_naming_them(tmp_path):
    phases = [
        {"id": "one", "steps": [{"id": "prep", "tasks": ["x"]}]},
        {"id": "two", "steps": [{"id": "prep", "tasks": ["z"]}]},
        {"id": "three", "steps": [{"id": "go", "tasks": ["z"], "depends_on": ["prep"]}]},
    ]
    write_json(tmp_path / "ph.json", {"id": "ph", "phases": phases})

    assert error_lines(run_orchestra("validate", "ph.json", cwd=tmp_path)) == [
        "error: ph.json: task 'ph': field 'phases[2].steps[0].depends_on': 'prep' is a step "
        "of several phases (one.prep, two.prep) and of none in phase 'three': name the one "
        "meant as '<phase>.<step>'"
    ]
    phases[2]["steps"][0]["depends_on"] = ["two.prep"]
    write_json(tmp_path / "ph.json", {"id": "ph", "phases": phases})
    tasks = tasks_of(tmp_path / "ph.json", tmp_path)
    assert tasks["ph.three.go"]["depends_on"] == ["ph.two.prep"]


# -- 4. PowerShell -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "test, command",
    [
        ("grep -q Content-Type server.py", ["grep", "-q", "Content-Type", "server.py"]),
        ("curl -H Accept-Encoding x", ["curl", "-H", "Accept-Encoding", "x"]),
        ("Test-Path out.txt", "pwsh"),
        ("if (-not (Test-Path out.txt)) { exit 1 }", "pwsh"),
        ("echo $env:HOME", "pwsh"),
        ("python x.py -not y", "pwsh"),
    ],
)
def test_only_a_powershell_command_runs_with_pwsh(tmp_path, plugin_host, test, command):
    tests = [{"id": "it", "command": test}]  # an object: never read as prose
    path = write_json(tmp_path / "b.json", {"id": "b", "tasks": ["x"], "acceptance_tests": tests})
    (check,) = load_source(str(path), plugin_host).workstream.tasks[0].checks
    if command == "pwsh":
        assert check.command[0] == "pwsh" and check.command[-1] == test
    else:
        assert list(check.command) == command


# -- 5. a pipe -----------------------------------------------------------------------------


def test_a_pipe_as_the_workstream_is_one_clear_error(tmp_path):
    (tmp_path / "a.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\ncommand = ["true"]\n')
    result = subprocess.run(
        ["bash", "-c", f'"{orchestra_program()}" validate <(cat a.toml)'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    (line,) = error_lines(result)
    assert line.startswith("error: /dev/fd/") and line.endswith(
        ": not a regular file: write it to a file first"
    )


# -- 6. the digest a run keeps -----------------------------------------------------------


class Rewriting:
    """A loader that reads its file, then finds it changed by someone else."""

    name = "rewriting"
    patterns = ("*.work",)

    def sniff(self, path, head):
        return path.suffix == ".work"

    def load(self, path, context):
        prompt = path.read_text()
        path.write_text("version B\n")
        return Workstream(id="w", tasks=(Task(id="t", prompt=prompt),))


@pytest.fixture
def rewriting(register_plugin):
    class Plugin:
        @hookimpl
        def orchestra_register_loaders(self, register):
            register(Rewriting())

    register_plugin(Plugin(), name="rewriting-plugin")


@pytest.mark.parametrize("as_set", [False, True])
def test_a_file_changed_while_it_is_read_is_an_error(tmp_path, plugin_host, rewriting, as_set):
    path = tmp_path / "plan" / "a.work"
    path.parent.mkdir()
    path.write_text("version A\n")
    if as_set:
        write_json(tmp_path / "plan" / "b.json", {"id": "b", "tasks": ["x"]})
    with pytest.raises(OrchestraError) as raised:
        load_source(str(path.parent if as_set else path), plugin_host)
    assert raised.value.lines()[-1] == f"{path}: changed while it was being read: read it again"


def test_the_digest_is_of_the_bytes_loaded(tmp_path, plugin_host):
    write_json(tmp_path / "plan" / "a.json", {"id": "a", "tasks": ["x"]})
    (tmp_path / "plan" / "b.toml").write_text('id = "b"\n[[tasks]]\nid = "t"\nprompt = "p"\n')
    one = load_source(str(tmp_path / "plan" / "a.json"), plugin_host)
    assert one.digest == hashlib.sha256((tmp_path / "plan" / "a.json").read_bytes()).hexdigest()
    both = load_source(str(tmp_path / "plan"), plugin_host)
    from orchestra.loaders import source_digest

    assert both.digest == source_digest([str(tmp_path / "plan")], plugin_host)


def test_a_run_records_the_digest_of_the_version_it_loaded(tmp_path, plugin_host, monkeypatch):
    path = tmp_path / "ws.toml"
    version_a = (
        'id = "w"\n[defaults]\nworkspace = "inplace"\n[[tasks]]\nid = "t"\ncommand = ["true"]\n'
    )
    path.write_text(version_a)
    monkeypatch.chdir(tmp_path)
    project = find_project(tmp_path)
    loaded = load_source(str(path), plugin_host)
    assert loaded.workstream.digest == loaded.digest
    _, settings = load_checked(str(path), project, plugin_host)
    path.write_text(version_a + "# version B\n")  # changed after it was read

    outcome = start_run(
        str(path),
        loaded.workstream,
        settings,
        project,
        plugin_host,
        sinks=[],
        cancel=threading.Event(),
    )

    assert outcome.state == "succeeded"
    with sqlite3.connect(tmp_path / ".orchestra" / "orchestra.db") as db:
        ((content_hash,),) = db.execute("SELECT content_hash FROM runs")
    assert content_hash == hashlib.sha256(version_a.encode()).hexdigest()


def test_load_checked_hands_the_run_the_digest_of_what_it_parsed(
    tmp_path, plugin_host, monkeypatch
):
    path = tmp_path / "ws.toml"
    version_a = 'id = "w"\n[defaults]\nworkspace = "inplace"\n[[tasks]]\nid = "t"\n'
    path.write_text(version_a + 'command = ["true"]\n')
    monkeypatch.chdir(tmp_path)
    project = find_project(tmp_path)
    workstream, settings = load_checked(str(path), project, plugin_host)
    parsed = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(version_a + 'command = ["false"]\n')  # changed after it was read

    start_run(
        str(path), workstream, settings, project, plugin_host, sinks=[], cancel=threading.Event()
    )

    with sqlite3.connect(tmp_path / ".orchestra" / "orchestra.db") as db:
        ((content_hash,),) = db.execute("SELECT content_hash FROM runs")
    assert content_hash == parsed
