"""Plugins own their settings: a throwaway tool plugin, installed as a distribution the host
has never heard of, declares a setting with an option of its own; `run --help` lists the
option, the value from orchestra.toml, a variable or the command line reaches the tool,
`validate` refuses a value of the wrong type, and a resumed run keeps its value."""

import json
import signal
from pathlib import Path

import click
import pytest

import orchestra
from orchestra.testing import make_distribution, run_orchestra, start_orchestra, wait_for

#: a tool plugin written as a plugin author would, against the public API only: the tool
#: writes what its settings say into said.txt, in the attempt's directory
PARROT = """
from pathlib import Path

import orchestra


class Parrot:
    name = "parrot"
    capabilities = frozenset({"prompt"})

    def available(self, profile):
        return orchestra.Availability(True, version="1.0")

    def execute(self, request, ctx):
        words = request.settings["parrot_words"]
        if request.settings["parrot_loud"]:
            words = words.upper()
        lines = [words] * request.settings["parrot_times"]
        Path(request.workdir, "said.txt").write_text("".join(f"{line}\\n" for line in lines))
        if request.settings["parrot_token"] is not None:
            Path(request.workdir, "token.txt").write_text(request.settings["parrot_token"])
        return orchestra.StepResult("succeeded")


@orchestra.hookimpl
def orchestra_register_tools(register):
    register(Parrot())


@orchestra.hookimpl
def orchestra_register_settings(register):
    register(orchestra.PluginSetting("parrot_words", str, "What the parrot says.", default="hello"))
    register(orchestra.PluginSetting("parrot_times", int, "How many times it says it.", default=1))
    register(orchestra.PluginSetting("parrot_loud", bool, "Whether it shouts.", default=False))
    register(orchestra.PluginSetting("parrot_token", str, "The parrot's token."))
"""

WORKSTREAM = 'id = "w"\n[[tasks]]\nid = "speak"\nprompt = "say it"\ntool = "parrot"\n'


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A directory holding the installed distribution orchestra-parrot."""
    return make_distribution(
        tmp_path_factory.mktemp("site"),
        "orchestra-parrot",
        {"orchestra_parrot": PARROT},
        {"parrot": "orchestra_parrot"},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project outside git (workspace inplace): the tool writes said.txt in it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "ws.toml").write_text(WORKSTREAM)
    return project


def test_run_and_resume_help_list_the_options_of_the_plugins_settings(site, tmp_path):
    shown = run_orchestra("run", "--help", extra_path=[site], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # as one line: --help wraps at 80 columns
    assert "--parrot-words TEXT What the parrot says." in text
    assert "--parrot-times N How many times it says it." in text
    assert "--parrot-loud / --no-parrot-loud Whether it shouts." in text
    # after run's own options, before --help
    assert text.index("--json") < text.index("--parrot-words") < text.index("--help")
    resume = run_orchestra("resume", "--help", extra_path=[site], cwd=tmp_path).stdout
    assert "--parrot-words TEXT What the parrot says (default: as the run started)." in " ".join(
        resume.split()
    )

    without = run_orchestra("run", "--help", cwd=tmp_path).stdout
    assert "--parrot" not in without


def test_the_setting_reaches_the_tool_from_the_configuration_a_variable_and_the_command_line(
    site, project
):
    (project / "orchestra.toml").write_text('parrot_words = "hello from the config"\n')

    planned = run_orchestra("plan", "ws.toml", "--format", "json", extra_path=[site], cwd=project)
    assert planned.returncode == 0, planned.stderr
    settings = json.loads(planned.stdout)["settings"]
    assert settings["parrot_words"] == {
        "value": "hello from the config",
        "source": str(project / "orchestra.toml"),
    }
    assert settings["parrot_times"] == {"value": 1, "source": "plugin default"}

    first = run_orchestra("run", "ws.toml", "--json", extra_path=[site], cwd=project)
    assert first.returncode == 0, first.stderr
    assert (project / "said.txt").read_text() == "hello from the config\n"

    second = run_orchestra(
        *("run", "ws.toml", "--json", "--parrot-words", "from the flag", "--parrot-loud"),
        extra_path=[site],
        env={"ORCHESTRA_PARROT_TIMES": "2", "ORCHESTRA_PARROT_WORDS": "from the variable"},
        cwd=project,
    )
    assert second.returncode == 0, second.stderr
    assert (project / "said.txt").read_text() == "FROM THE FLAG\nFROM THE FLAG\n"


def test_validate_refuses_a_value_of_the_wrong_type_in_one_line(site, project):
    config = project / "orchestra.toml"
    config.write_text('parrot_times = "three"\n')

    checked = run_orchestra("validate", "ws.toml", extra_path=[site], cwd=project)

    assert (checked.returncode, checked.stdout) == (2, "")
    assert checked.stderr == (
        f"error: {config}: field 'parrot_times': expected an integer, got a string ('three')\n"
    )
    config.write_text("parrot_times = 3\n")
    variable = {"ORCHESTRA_PARROT_TIMES": "lots"}
    checked = run_orchestra("validate", "ws.toml", extra_path=[site], env=variable, cwd=project)
    assert checked.returncode == 2
    assert checked.stderr == (
        "error: environment variable ORCHESTRA_PARROT_TIMES='lots': "
        "invalid literal for int() with base 10: 'lots'\n"
    )
    ran = run_orchestra("run", "ws.toml", "--parrot-times", "x", extra_path=[site], cwd=project)
    assert ran.returncode == 2 and "'x' is not a valid integer" in ran.stderr
    assert not (project / "said.txt").exists()


def test_a_broken_configuration_is_what_run_reports_even_with_a_plugins_option(site, project):
    config = project / "orchestra.toml"
    config.write_text("routing = 5\n")

    ran = run_orchestra("run", "ws.toml", "--parrot-times", "2", extra_path=[site], cwd=project)

    assert (ran.returncode, ran.stderr) == (
        2,
        f"error: {config}: field 'routing': expected a string, got an integer (5)\n",
    )


def test_without_the_plugin_its_key_is_unknown(project):
    (project / "orchestra.toml").write_text("parrot_times = 3\n")

    checked = run_orchestra("validate", "ws.toml", cwd=project)

    assert checked.returncode == 2
    assert (
        f"error: {project / 'orchestra.toml'}: field 'parrot_times': unknown key 'parrot_times'"
        " (neither orchestra nor a plugin uses it)\n"
    ) in checked.stderr


def test_a_resumed_run_keeps_the_value_it_started_with(site, project):
    hold = project / "hold"
    hold.touch()
    started = project / "started"
    (project / "ws.toml").write_text(
        'id = "w"\n'
        "[[tasks]]\n"
        'id = "wait"\n'
        'command = ["sh", "-c", "touch started; while [ -e hold ]; do sleep 0.05; done"]\n'
        + WORKSTREAM.removeprefix('id = "w"\n')
        + 'depends_on = ["wait"]\n'
    )
    (project / "orchestra.toml").write_text('parrot_words = "as the run started"\n')
    process = start_orchestra(
        "run", "ws.toml", "--quiet", extra_path=[site], cwd=project, new_session=True
    )
    wait_for(started.exists, what="the first task to start")
    process.send_signal(signal.SIGINT)
    printed, errors = process.communicate(timeout=60)
    assert process.returncode == 130, printed + errors
    run_id = next(
        line.split()[-1] for line in printed.splitlines() if line.startswith("to go on with it:")
    )
    (project / "orchestra.toml").write_text('parrot_words = "changed since"\n')
    hold.unlink()

    resumed = run_orchestra("resume", run_id, "--json", extra_path=[site], cwd=project)

    assert resumed.returncode == 0, resumed.stderr
    assert (project / "said.txt").read_text() == "as the run started\n"


def test_a_setting_cannot_take_a_name_of_orchestras_own(plugin_host, register_plugin):
    class Greedy:
        @orchestra.hookimpl
        def orchestra_register_settings(self, register):
            register(orchestra.PluginSetting("max_parallel", int, "Mine now."))

    class Twice:
        @orchestra.hookimpl
        def orchestra_register_settings(self, register):
            register(orchestra.PluginSetting("parrot_words", str, "Also mine."))

    class First:
        @orchestra.hookimpl
        def orchestra_register_settings(self, register):
            register(orchestra.PluginSetting("parrot_words", str, "Mine."))

    for plugin, name in ((Greedy(), "greedy"), (First(), "first"), (Twice(), "twice")):
        register_plugin(plugin, name=name)

    assert plugin_host.settings().names()[-1:] == ["parrot_words"]
    assert plugin_host.settings().registration("parrot_words").plugin == "first"
    problems = plugin_host.problems()
    assert any(
        "'greedy'" in line and "setting name 'max_parallel' is orchestra's own" in line
        for line in problems
    )
    assert any(
        "plugin 'twice' registered setting 'parrot_words', which plugin 'first' already" in line
        for line in problems
    )


@pytest.mark.parametrize("command", ["run", "resume"])
def test_no_plugin_setting_can_shadow_an_option_of_run_or_resume(command):
    from orchestra.cli import cli
    from orchestra.config import RESERVED_NAMES

    own = cli.get_command(click.Context(cli), command)
    names = set()
    for parameter in own.params:
        names.add(parameter.name)
        for option in [*parameter.opts, *parameter.secondary_opts]:
            if option.startswith("--"):  # -q is no --q
                names.add(option[2:].replace("-", "_"))
    names.add("help")
    assert names <= RESERVED_NAMES


def test_a_secret_setting_reaches_the_tool_but_never_the_database(site, project):
    # a setting named as a secret (parrot_token) is not recorded with the run: resume
    # reads it again from where a new run would, so the tool still gets it
    secret = "pt-live-5f0c1e9a"
    hold = project / "hold"
    hold.touch()
    (project / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "wait"\n'
        'command = ["sh", "-c", "touch started; while [ -e hold ]; do sleep 0.05; done"]\n'
        + WORKSTREAM.removeprefix('id = "w"\n')
        + 'depends_on = ["wait"]\n'
    )
    env = {"ORCHESTRA_PARROT_TOKEN": secret}
    process = start_orchestra(
        "run", "ws.toml", "--quiet", extra_path=[site], cwd=project, env=env, new_session=True
    )
    wait_for((project / "started").exists, what="the first task to start")
    process.send_signal(signal.SIGINT)
    printed, errors = process.communicate(timeout=60)
    assert process.returncode == 130, printed + errors
    run_id = next(
        line.split()[-1] for line in printed.splitlines() if line.startswith("to go on with it:")
    )
    hold.unlink()
    help_text = run_orchestra("resume", "--help", extra_path=[site], cwd=project).stdout
    assert "The parrot's token. (default" not in " ".join(help_text.split())

    resumed = run_orchestra("resume", run_id, "--json", extra_path=[site], cwd=project, env=env)

    assert resumed.returncode == 0, resumed.stderr
    assert (project / "token.txt").read_text() == secret
    for path in (project / ".orchestra").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
