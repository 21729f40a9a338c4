"""What ``orchestra`` does to start quickly (benchmarks/startup.py) and what it keeps:
the garbage collector paused while the command line starts and on for the command's work;
the read commands without the engine."""

import gc
import json
import re
import subprocess
import sys
import types

import click
import pytest

from orchestra.cli import cli, main
from orchestra.cli.commands import BUILTIN_COMMANDS
from orchestra.cli.session import pass_session, pause_collector, resume_collector
from orchestra.patterns import LazyPattern
from orchestra.testing import run_orchestra


@pytest.fixture
def clean_collector():
    """The collector as a fresh interpreter has it, before and after the test."""
    gc.unfreeze()
    gc.enable()
    yield
    gc.unfreeze()
    gc.enable()


def run_main(monkeypatch, *arguments: str) -> int:
    """Run the console script's ``main`` in this process; return its exit status."""
    monkeypatch.setattr(sys, "argv", ["orchestra", *arguments])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code or 0


def test_the_collector_is_off_while_the_command_line_is_read_and_on_for_the_work(
    monkeypatch, clean_collector
):
    seen = {}

    def note_parsing(context: click.Context, parameter: click.Parameter, value: object) -> object:
        seen["parsing"] = gc.isenabled()
        return value

    @click.command()
    @click.option("--flag", is_flag=True, callback=note_parsing)
    @pass_session
    def with_session(session, flag):
        seen["with session"] = gc.isenabled()

    @click.command()
    def without_session():  # as a plugin's command may be
        seen["without session"] = gc.isenabled()

    # a built-in command, loaded on use as the others are
    module = types.ModuleType("orchestra_startup_probe")
    module.with_session = with_session
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(BUILTIN_COMMANDS, "with-session", f"{module.__name__}:with_session")
    monkeypatch.setitem(cli.commands, "without-session", without_session)
    assert run_main(monkeypatch, "with-session", "--flag") == 0
    assert gc.isenabled()  # main leaves it as it found it
    assert run_main(monkeypatch, "without-session") == 0
    assert seen == {"parsing": False, "with session": True, "without session": True}
    assert gc.isenabled()


def test_a_collector_that_orchestra_did_not_turn_off_is_left_as_it_is(clean_collector):
    gc.disable()  # someone else's choice, such as a host embedding orchestra
    pause_collector()
    resume_collector()
    assert not gc.isenabled()
    gc.enable()
    resume_collector()  # nothing paused: nothing to do
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_run_and_resume_work_with_the_collector_on(tmp_path):
    (tmp_path / "orchestra.toml").write_text('sandbox = "none"\n')
    (tmp_path / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    probe = (
        "import gc, sys\n"
        "import orchestra.engine.runs as runs\n"
        "start = runs.start_run\n"
        "def checked(*arguments, **options):\n"
        "    assert gc.isenabled(), 'the run loop would run without the collector'\n"
        "    return start(*arguments, **options)\n"
        "runs.start_run = checked\n"
        "sys.argv = ['orchestra', 'run', '--quiet', 'ws.toml']\n"
        "from orchestra.cli import main\n"
        "main()\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr
    assert "succeeded" in finished.stdout


MODULES_AT_EXIT = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "sys.argv = ['orchestra', *sys.argv[1:]]\n"
    "from orchestra.cli import main\n"
    "main()\n"
)


def modules_of(cwd, *arguments: str) -> set[str]:
    """The modules an ``orchestra`` command has imported when it ends."""
    finished = subprocess.run(
        [sys.executable, "-c", MODULES_AT_EXIT, *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(finished.stderr.strip().splitlines()[-1]))


def test_the_read_commands_do_not_import_the_engine(tmp_path):
    (tmp_path / "orchestra.toml").write_text('sandbox = "none"\n')
    (tmp_path / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    ran = run_orchestra("run", "--quiet", "--json", "ws.toml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split('"run": "')[1].split('"')[0]
    for command in (["runs"], ["status"], ["show", run_id], ["logs", run_id, "a"]):
        engine = {name for name in modules_of(tmp_path, *command) if "orchestra.engine" in name}
        assert engine == set(), command


def test_a_run_in_place_imports_neither_git_nor_the_bundle_shapes(tmp_path):
    (tmp_path / "orchestra.toml").write_text('sandbox = "none"\n')
    (tmp_path / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    loaded = modules_of(tmp_path, "run", "--quiet", "ws.toml")
    assert "orchestra.engine.orchestrator" in loaded  # it did run
    unwanted = {"orchestra.git.command", "orchestra.git.refs", "orchestra.loaders.uet_shapes"}
    assert loaded & unwanted == set()


def test_a_lazy_pattern_is_compiled_once_at_its_first_use():
    pattern = LazyPattern(r"(\d+)(ms|s)", re.IGNORECASE)
    assert pattern() is pattern()  # kept
    compiled = re.compile(r"(\d+)(ms|s)", re.IGNORECASE)
    assert pattern().findall("90S and 250ms") == compiled.findall("90S and 250ms") != []
    assert LazyPattern(rb"[{}]")().search(b'{"a": 1}').group() == b"{"


# -- the console script ends without the interpreter's teardown, losing nothing ----------

CONSOLE = (
    "import atexit, sys, threading, time\n"
    "from orchestra.cli import console\n"
    "atexit.register(lambda: print('atexit ran', flush=True))\n"
    "if sys.argv[1] == 'thread':\n"
    "    def late():\n"
    "        time.sleep(0.3)\n"
    "        open('late', 'w').write('done')\n"
    "    threading.Thread(target=late).start()\n"
    "sys.argv = ['orchestra', *sys.argv[2:]]\n"
    "console()\n"
    "print('not reached')\n"
)


def console(cwd, *arguments: str, thread: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CONSOLE, "thread" if thread else "-", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def test_the_console_script_ends_with_the_commands_status_and_all_its_output(tmp_path):
    (tmp_path / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "a"\ncommand = ["false"]\n'
        '[[tasks]]\nid = "b"\ncommand = ["true"]\n'
    )
    (tmp_path / "orchestra.toml").write_text('sandbox = "none"\n')
    failed = console(tmp_path, "run", "ws.toml")
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.rstrip().endswith("atexit ran")  # after the command's own output
    assert "1 failed, 1 succeeded" in failed.stdout
    listed = console(tmp_path, "runs")
    assert listed.returncode == 0 and "failed" in listed.stdout, listed.stderr
    wrong = console(tmp_path, "show", "no-such-run")
    assert wrong.returncode == 2 and "no-such-run" in wrong.stderr
    # the run's store was closed: its write-ahead log is back in the file
    assert not (tmp_path / ".orchestra" / "orchestra.db-wal").exists()


def test_the_console_script_waits_for_a_thread_still_running(tmp_path):
    ended = console(tmp_path, "--version", thread=True)
    assert ended.returncode == 0, ended.stderr
    assert (tmp_path / "late").read_text() == "done"
    assert ended.stdout.splitlines()[-1] == "atexit ran"
