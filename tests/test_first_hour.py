"""The small things a newcomer notices in the first hour (issue 17, item 9), each through
the real ``orchestra`` program: real runs in real git repositories, real files."""

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from orchestra.testing import (
    make_distribution,
    make_git_repo,
    run_orchestra,
    scripted_tools_env,
    write_tool_script,
)

WORKSTREAM = """
id = "first-hour"

[[tasks]]
id = "names"
command = "printf 'one\\\\n' > 'my file.txt' && printf 'two\\\\n' > café.txt"
shell = true
files = { create = ["*.txt"] }
checks = ["true"]

[[tasks]]
id = "refused"
command = "printf 'x\\\\n' > outside.cfg && printf 'y\\\\n' > allowed.txt"
shell = true
files = { create = ["allowed.txt"] }
max_attempts = 1
"""


def run_id_of(project: Path) -> str:
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
    return run_id


@pytest.fixture(scope="module")
def git_run(tmp_path_factory) -> tuple[Path, str]:
    """A run in a git repository: one task's change merged (files with a space and an
    accent in their names, a silent check), another's refused for leaving its scope."""
    project = make_git_repo(tmp_path_factory.mktemp("first-hour") / "repo")
    (project / "ws.toml").write_text(WORKSTREAM)
    result = run_orchestra("run", "ws.toml", "--quiet", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    return project, run_id_of(project)


def test_diff_says_which_changes_were_merged_and_why_not(git_run):
    project, run_id = git_run

    shown = run_orchestra("diff", run_id, cwd=project)

    assert shown.returncode == 0, shown.stderr
    headers = [line for line in shown.stdout.splitlines() if line.startswith("# ")]
    assert headers[0] == "# names, attempt 1 (shell): merged"
    assert headers[1].startswith(
        "# refused, attempt 1 (shell): not merged, failed: scope_violation"
    )
    assert "outside.cfg" in headers[1]
    # one task's diff alone stays a patch on stdout; what became of it goes to stderr
    alone = run_orchestra("diff", run_id, "refused", cwd=project)
    assert alone.stdout.startswith("diff --git ")
    assert "not merged, failed: scope_violation" in alone.stderr


def test_the_report_names_files_with_spaces_and_accents_as_they_are(git_run):
    project, run_id = git_run

    shown = run_orchestra("report", run_id, "--format", "json", cwd=project)

    assert shown.returncode == 0, shown.stderr
    tasks = {task["id"]: task for task in json.loads(shown.stdout)["tasks"]}
    paths = sorted(change["path"] for change in tasks["names"]["attempts"][-1]["files"])
    assert paths == ["café.txt", "my file.txt"]
    markdown = run_orchestra("report", run_id, "--format", "md", cwd=project).stdout
    assert "café.txt +1 -0" in markdown and "my file.txt +1 -0" in markdown


def test_a_check_that_prints_nothing_is_still_in_the_log(git_run):
    project, run_id = git_run

    log = run_orchestra("logs", run_id, "names", cwd=project)

    assert log.returncode == 0, log.stderr
    lines = log.stdout.splitlines()
    assert "$ true" in lines
    assert lines[-1] == "orchestra: check 'true' passed (exit status 0)"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_report_and_convert_write_files_under_the_umask(git_run, tmp_path, umask):
    project, run_id = git_run
    previous = os.umask(umask)  # the children inherit it
    try:
        reported = run_orchestra("report", run_id, "-o", str(tmp_path / "r.md"), cwd=project)
        converted = run_orchestra("convert", "ws.toml", "-o", str(tmp_path / "c.toml"), cwd=project)
    finally:
        os.umask(previous)

    assert reported.returncode == 0 and converted.returncode == 0, reported.stderr
    for name in ("r.md", "c.toml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_convert_onto_an_existing_file_is_one_error_line(tmp_path):
    (tmp_path / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    (tmp_path / "out.toml").write_text("mine\n")

    converted = run_orchestra("convert", "ws.toml", "-o", "out.toml", cwd=tmp_path)

    assert converted.returncode == 2
    assert converted.stderr == "error: out.toml: already exists; use --force to overwrite it\n"
    assert (tmp_path / "out.toml").read_text() == "mine\n"


def test_run_takes_routing_from_the_command_line(tmp_path):
    tools = scripted_tools_env(
        alpha=write_tool_script(tmp_path / "alpha.toml", [{}]),
        beta=write_tool_script(tmp_path / "beta.toml", [{}]),
    )
    (tmp_path / "ws.toml").write_text(
        'id = "w"\n[defaults]\nrouting = "fixed"\n[[tasks]]\nid = "a"\nprompt = "Say hi."\n'
    )

    ran = run_orchestra(
        "run", "--routing", "round_robin", "ws.toml", "--quiet", cwd=tmp_path, env=tools
    )

    assert ran.returncode == 0, ran.stderr
    shown = run_orchestra("show", run_id_of(tmp_path), "--json", cwd=tmp_path, env=tools)
    (attempt,) = json.loads(shown.stdout)["steps"][0]["attempts"]
    assert attempt["routing"].startswith("round_robin: ")
    refused = run_orchestra("run", "--routing", "cheapest", "ws.toml", cwd=tmp_path, env=tools)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: routing: 'cheapest' from command line (--routing)")


def test_listing_runs_without_a_database_lists_none(tmp_path):
    as_json = run_orchestra("runs", "--json", cwd=tmp_path)
    as_text = run_orchestra("runs", cwd=tmp_path)

    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])
    assert (as_text.returncode, as_text.stdout) == (0, "")
    assert "no runs recorded yet" in as_text.stderr
    assert not (tmp_path / ".orchestra").exists()  # never made just to be read


def test_status_prints_json(git_run):
    project, run_id = git_run

    shown = run_orchestra("status", "--json", cwd=project)

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "id": run_id,
        "workstream": "first-hour",
        "state": "failed",
        "done": 2,
        "total": 2,
        "steps": {"failed": 1, "succeeded": 1},
        "running": [],
    }


def test_status_watch_lines_end_cleanly(git_run):
    project, run_id = git_run

    watched = run_orchestra("status", "--watch", run_id, cwd=project)  # it ended: one line

    assert watched.returncode == 0, watched.stderr
    line, summary = watched.stdout.splitlines()
    assert line.endswith(f"  run {run_id}  failed  2/2 done, 1 failed"), line
    assert summary == f"run {run_id}  failed  2/2 done  1 failed, 1 succeeded"


LONG = "a-directory-with-a-long-name-so-that-the-path-is-wider-than-eighty-columns"


def test_tools_and_plugins_tables_are_not_wrapped_when_piped(tmp_path):
    program = tmp_path / LONG / LONG / "aider"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\necho 'aider 0.86.2'\n")
    program.chmod(0o755)
    (tmp_path / "orchestra.toml").write_text(f'[tools.aider]\nbinary = "{program}"\n')
    broken = make_distribution(
        tmp_path / "site",
        "orchestra-broken",
        {"broken_plugin": f"raise ImportError('{LONG} is missing')"},
        {"broken": "broken_plugin"},
    )
    environment = {"COLUMNS": "80", "XDG_CACHE_HOME": str(tmp_path / "cache")}

    tools = run_orchestra("tools", cwd=tmp_path, env=environment)
    plugins = run_orchestra("plugins", cwd=tmp_path, env=environment, extra_path=[broken])

    (aider,) = [line for line in tools.stdout.splitlines() if line.startswith("aider ")]
    assert aider.endswith(f"  {program}")
    (line,) = [line for line in plugins.stdout.splitlines() if line.startswith("broken ")]
    assert f"broken: cannot import broken_plugin: ImportError: {LONG} is missing  " in line
    for text in (tools.stdout, plugins.stdout):
        assert all(line == line.rstrip() for line in text.splitlines())


def test_a_tools_version_is_asked_once_per_program_file(tmp_path):
    calls = tmp_path / "calls"
    program = tmp_path / "bin" / "aider"
    program.parent.mkdir()

    def install(version: str) -> None:
        program.write_text(f"#!/bin/sh\necho asked >> '{calls}'\necho 'aider {version}'\n")
        program.chmod(0o755)

    install("0.86.2")
    environment = {
        "PATH": f"{program.parent}{os.pathsep}{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }

    def aider_version() -> str | None:
        listed = run_orchestra("tools", "--json", cwd=tmp_path, env=environment)
        assert listed.returncode == 0, listed.stderr
        return {row["name"]: row for row in json.loads(listed.stdout)}["aider"]["version"]

    assert aider_version() == "0.86.2"
    assert aider_version() == "0.86.2"
    initialised = run_orchestra("init", "-C", "project", cwd=tmp_path, env=environment)
    assert initialised.returncode == 0, initialised.stderr
    assert "# found: aider 0.86.2" in (tmp_path / "project" / "orchestra.toml").read_text()
    assert calls.read_text().count("asked") == 1, "asked again with the file unchanged"
    install("0.87.0")  # an upgrade rewrites the program
    assert aider_version() == "0.87.0"
    assert calls.read_text().count("asked") == 2


def test_an_empty_file_is_told_it_has_no_tasks(tmp_path):
    (tmp_path / "empty.toml").write_text("")

    checked = run_orchestra("validate", "empty.toml", cwd=tmp_path)

    assert checked.returncode == 2
    assert checked.stderr.splitlines() == [
        "error: empty.toml: field 'id': missing required key",
        "error: empty.toml: no tasks: add at least one [[tasks]] table with an id and a"
        " prompt or a command",
    ]


BOM = "\ufeff"


def test_a_byte_order_mark_is_no_statement(tmp_path):
    (tmp_path / "ws.toml").write_text(BOM + 'id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    (tmp_path / "orchestra.toml").write_text(BOM + "max_parallel = 3\n")
    tasks = {"master": {"tasks": [{"id": 1, "title": "One", "status": "pending"}]}}
    (tmp_path / "tasks.json").write_text(BOM + json.dumps(tasks))

    checked = run_orchestra("validate", "ws.toml", "tasks.json", cwd=tmp_path)
    planned = run_orchestra("plan", "ws.toml", "--format", "json", cwd=tmp_path)

    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: ws.toml: 1 task")
    assert "ok: tasks.json: 1 task" in checked.stdout
    settings = json.loads(planned.stdout)["settings"]
    assert settings["max_parallel"] == {"value": 3, "source": str(tmp_path / "orchestra.toml")}


def test_a_huge_check_string_validates_in_linear_work(tmp_path):
    """4 MB in one check word: shlex copies the word at each character, minutes of work
    (0.13 s at 100 KB, four times that at twice the size); linear splitting takes a
    second. The subprocess's timeout is only the bound that turns a hang into a failure."""
    word = "x" * 4_000_000
    (tmp_path / "ws.toml").write_text(
        f'id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\nchecks = ["echo {word}"]\n'
    )

    try:
        checked = run_orchestra("validate", "ws.toml", cwd=tmp_path, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("validating a 4 MB check string did not end in 90 s")

    assert checked.returncode == 0, checked.stderr[:500]


def test_every_option_of_every_command_says_what_it_does():
    import click

    from orchestra.cli import BUILTIN_COMMANDS, cli

    context = click.Context(cli)
    for name in BUILTIN_COMMANDS:
        command = cli.get_command(context, name)
        for parameter in command.params:
            if isinstance(parameter, click.Option):
                assert parameter.help, f"orchestra {name} {parameter.opts[0]} has no help"


def test_the_gc_help_sentence_reads():
    listed = run_orchestra("--help").stdout

    (line,) = [line for line in listed.splitlines() if line.startswith("  gc ")]
    # it read "Remove what runs no process drives any more left in the repository"
    assert line.split(None, 1)[1].startswith("Clean up "), line
