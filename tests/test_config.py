"""Configuration discovery, tool profiles, and the precedence of settings."""

import textwrap

import pytest

from orchestra.config import find_project, resolve_settings
from orchestra.errors import ConfigError, OrchestraError
from orchestra.spec import load_workstream


def test_orchestra_toml_is_found_by_walking_up(tmp_path):
    (tmp_path / "orchestra.toml").write_text('routing = "fixed"\nmax_parallel = 2\n')
    nested = tmp_path / "src" / "deep"
    nested.mkdir(parents=True)
    project = find_project(nested)
    assert project.root == tmp_path
    assert project.config.routing == "fixed" and project.config.max_parallel == 2


def test_tool_orchestra_in_pyproject_is_used_and_nearest_file_wins(tmp_path):
    (tmp_path / "orchestra.toml").write_text('routing = "auto"\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.orchestra]\nrouting = "round_robin"\n'
    )
    project = find_project(inner)
    assert project.root == inner and project.config.routing == "round_robin"
    assert project.config_label == f"{inner / 'pyproject.toml'} [tool.orchestra]"


def test_pyproject_without_tool_orchestra_is_skipped(tmp_path):
    (tmp_path / "orchestra.toml").write_text("max_parallel = 3\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_project(inner).root == tmp_path


def test_no_configuration_means_the_start_directory_and_built_in_defaults(tmp_path):
    project = find_project(tmp_path)
    assert project.config_file is None and project.root == tmp_path
    settings = resolve_settings(project, environ={})
    assert settings.routing == "auto" and settings.source("routing") == "built-in default"
    assert settings.db == str(tmp_path / ".orchestra" / "orchestra.db")


def test_tool_profiles_keep_known_keys_and_pass_others_as_options(tmp_path):
    (tmp_path / "orchestra.toml").write_text(
        textwrap.dedent(
            """
            [tools.aider]
            model = "openai/gpt-4.1"
            args = ["--edit-format", "diff"]
            capabilities = ["prompt", "edit", "python"]
            max_concurrency = 2
            pass_env = ["OPENAI_API_KEY"]
            edit_format = "diff"

            [tools.codex]
            enabled = false
            """
        )
    )
    project = find_project(tmp_path)
    aider = project.profile("aider")
    assert aider.model == "openai/gpt-4.1" and aider.args == ("--edit-format", "diff")
    assert aider.capabilities == ("prompt", "edit", "python") and aider.max_concurrency == 2
    assert aider.pass_env == ("OPENAI_API_KEY",) and aider.options == {"edit_format": "diff"}
    assert project.profile("codex").enabled is False
    assert project.profile("unknown").name == "unknown"


def test_configuration_mistakes_are_all_reported(tmp_path):
    (tmp_path / "orchestra.toml").write_text(
        'max_paralel = 2\nrouting = 5\n[tools.aider]\nmax_concurrency = 0\n[tools.codex]\nargs = "x"\n'
    )
    with pytest.raises(OrchestraError) as caught:
        find_project(tmp_path)
    joined = "\n".join(caught.value.lines())
    assert "field 'routing': expected a string, got an integer (5)" in joined
    assert "field 'tools.codex.args': expected an array" in joined
    # a key orchestra does not know may be a plugin's: refused once the plugins are known
    (tmp_path / "orchestra.toml").write_text("max_paralel = 2\n")
    project = find_project(tmp_path)
    with pytest.raises(OrchestraError) as caught:
        resolve_settings(project, declared=[])
    assert caught.value.lines() == [
        f"{tmp_path / 'orchestra.toml'}: field 'max_paralel': unknown key 'max_paralel' (did you mean 'max_parallel'?)"
    ]
    # range checks run once the types are right
    (tmp_path / "orchestra.toml").write_text("[tools.aider]\nmax_concurrency = 0\n")
    with pytest.raises(OrchestraError) as caught:
        find_project(tmp_path)
    assert caught.value.lines() == [
        f"{tmp_path / 'orchestra.toml'}: field 'tools.aider.max_concurrency': must be at least 1"
    ]


def test_malformed_configuration_file_is_a_one_line_error(tmp_path):
    (tmp_path / "orchestra.toml").write_text("routing = \n")
    with pytest.raises(ConfigError, match=r"orchestra\.toml: invalid TOML"):
        find_project(tmp_path)


def test_precedence_flag_over_environment_over_defaults_over_config_over_builtin(tmp_path):
    (tmp_path / "orchestra.toml").write_text(
        'routing = "round_robin"\nmax_attempts = 5\ntimeout = "20m"\n'
    )
    (tmp_path / "ws.toml").write_text(
        'id = "w"\n[defaults]\nrouting = "fixed"\nmax_attempts = 4\n[[tasks]]\nid = "a"\nprompt = "x"\n'
    )
    project = find_project(tmp_path)
    defaults = load_workstream(tmp_path / "ws.toml").defaults

    def resolved(name, flags=None, environ=None, with_defaults=True):
        settings = resolve_settings(
            project,
            flags=flags,
            defaults=defaults if with_defaults else None,
            environ=environ or {},
        )
        return settings.values[name].value, settings.source(name)

    assert resolved("routing", with_defaults=False) == (
        "round_robin",
        str(tmp_path / "orchestra.toml"),
    )
    assert resolved("routing") == ("fixed", "workstream [defaults]")
    assert resolved("routing", environ={"ORCHESTRA_ROUTING": "auto"}) == (
        "auto",
        "environment (ORCHESTRA_ROUTING)",
    )
    assert resolved(
        "routing", flags={"routing": "cheapest"}, environ={"ORCHESTRA_ROUTING": "auto"}
    ) == ("cheapest", "command line (--routing)")
    assert resolved("timeout") == (1200.0, str(tmp_path / "orchestra.toml"))
    assert resolved("timeout", environ={"ORCHESTRA_TIMEOUT": "90s"})[0] == 90.0
    assert resolved("max_parallel") == (4, "built-in default")
    # settings a workstream cannot set skip the [defaults] layer
    assert resolved("max_parallel", environ={"ORCHESTRA_MAX_PARALLEL": "8"})[0] == 8
    assert resolved("sinks", environ={"ORCHESTRA_SINKS": "console, jsonl"})[0] == (
        "console",
        "jsonl",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRA_MAX_PARALLEL", "many"),
        ("ORCHESTRA_MAX_PARALLEL", "0"),
        ("ORCHESTRA_TIMEOUT", "soon"),
    ],
)
def test_bad_environment_values_name_the_variable(tmp_path, variable, value):
    with pytest.raises(ConfigError, match=f"environment variable {variable}={value!r}"):
        resolve_settings(find_project(tmp_path), environ={variable: value})


def test_timeouts_in_configuration_must_be_above_zero(tmp_path):
    (tmp_path / "orchestra.toml").write_text('timeout = "0s"\nidle_timeout = -5\n')
    with pytest.raises(OrchestraError) as caught:
        find_project(tmp_path)
    assert [line.split(": ", 1)[1] for line in caught.value.lines()] == [
        "field 'timeout': must be longer than zero",
        "field 'idle_timeout': must be longer than zero",
    ]
    with pytest.raises(ConfigError, match="ORCHESTRA_TIMEOUT='0s': must be longer than zero"):
        resolve_settings(find_project(tmp_path.parent), environ={"ORCHESTRA_TIMEOUT": "0s"})
