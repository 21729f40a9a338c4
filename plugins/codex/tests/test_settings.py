"""[tools.codex] options, the config.toml written from them, and the prompt codex gets."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from orchestra_codex import command_line
from orchestra_codex.prompt import MAX_FEEDBACK, build_prompt
from orchestra_codex.settings import CodexSettings, SettingsError, config_toml, write_config

import orchestra


def test_defaults_keep_codex_quiet_bounded_and_offline() -> None:
    config = tomllib.loads(config_toml(CodexSettings()))

    assert config == {
        "approval_policy": "never",
        "check_for_update_on_startup": False,
        "allow_login_shell": False,
        "analytics": {"enabled": False},
        "feedback": {"enabled": False},
        "features": {
            "plugins": False,
            "shell_snapshot": False,
            "unbounded_connection_retries": False,
        },
        "history": {"persistence": "none"},
        "sandbox_workspace_write": {"network_access": False},
        "shell_environment_policy": {
            "inherit": "all",
            "ignore_default_excludes": False,
            "exclude": ["*PASSWORD*", "*PASSWD*"],
            "set": {"SHLVL": "1"},
        },
    }


def test_the_models_commands_lose_the_keys_variable_and_the_declared_secrets() -> None:
    settings = CodexSettings.from_options({"env_key": "LLM_CREDENTIALS"})

    config = tomllib.loads(config_toml(settings, secrets=("DEPLOY_PHRASE", "LLM_CREDENTIALS")))

    policy = config["shell_environment_policy"]
    assert policy["exclude"] == ["*PASSWORD*", "*PASSWD*", "LLM_CREDENTIALS", "DEPLOY_PHRASE"]
    assert policy["ignore_default_excludes"] is False  # codex's own *KEY*, *SECRET*, *TOKEN*


def test_a_base_url_and_key_name_define_the_provider() -> None:
    settings = CodexSettings.from_options(
        {
            "base_url": 'http://127.0.0.1:8/v1?q="x"',
            "env_key": "MY_KEY",
            "request_max_retries": 0,
            "network_access": True,
            "model_catalog": "~/catalog.json",
            "cost_per_task": 0.25,  # another plugin's key: left alone
        }
    )

    config = tomllib.loads(config_toml(settings))

    assert config["model_provider"] == "orchestra"
    assert config["model_providers"]["orchestra"] == {
        "name": "orchestra",
        "base_url": 'http://127.0.0.1:8/v1?q="x"',
        "env_key": "MY_KEY",
        "wire_api": "responses",
        "request_max_retries": 0,
        "stream_max_retries": 2,
    }
    assert config["sandbox_workspace_write"] == {"network_access": True}
    assert config["model_catalog_json"] == str(Path("~/catalog.json").expanduser())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sandbox": "off"}, "[tools.codex] sandbox must be one of read-only, workspace-write,"),
        ({"network_access": "yes"}, "[tools.codex] network_access must be true or false"),
        ({"request_max_retries": 1.5}, "[tools.codex] request_max_retries must be an integer"),
        ({"request_max_retries": True}, "[tools.codex] request_max_retries must be an integer"),
        ({"input_cost_per_token": "cheap"}, "[tools.codex] input_cost_per_token must be a number"),
        ({"rate_limit_wait": -1}, "[tools.codex] rate_limit_wait must not be negative"),
        ({"base_url": ""}, "[tools.codex] base_url must not be empty"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        CodexSettings.from_options(options)
    assert str(raised.value).startswith(message)


def test_integer_prices_are_numbers() -> None:
    assert CodexSettings.from_options({"output_cost_per_token": 1}).output_cost_per_token == 1.0


def test_config_is_written_once_and_replaced_whole(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write_config(home, "a = 1\n")
    first = path.stat().st_ino

    assert write_config(home, "a = 1\n").stat().st_ino == first  # unchanged: not rewritten
    assert write_config(home, "a = 2\n").read_text() == "a = 2\n"
    assert path.stat().st_ino != first
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]
    assert home.stat().st_mode & 0o777 == 0o700


def request(task: orchestra.Task, **profile: object) -> orchestra.ExecutionRequest:
    return orchestra.ExecutionRequest(
        run_id="r",
        task=task,
        attempt=1,
        workdir="/repo",
        profile=orchestra.ToolProfile("codex", **profile),  # type: ignore[arg-type]
    )


def test_the_command_line_takes_the_model_sandbox_and_args() -> None:
    task = orchestra.Task(id="t", prompt="--help is not a flag here")
    settings = CodexSettings(sandbox="read-only")

    argv = command_line("/bin/codex", request(task, model="o4", args=("-c", "x=1")), settings)

    assert argv == [
        "/bin/codex",
        "exec",
        "--json",
        "--color",
        "never",
        "--sandbox",
        "read-only",
        "--ephemeral",
        "--model",
        "o4",
        "-c",
        "x=1",
        "--",
        "--help is not a flag here",
    ]
    assert "--ephemeral" not in command_line(
        "codex", request(task), CodexSettings(keep_sessions=True)
    )


def test_the_prompt_carries_the_file_scope_and_the_failed_check() -> None:
    files = orchestra.FileScope(write=("src/*.py",), forbidden=("secrets/**",))
    task = orchestra.Task(id="t", prompt="  Add a greeting.\n", files=files)

    prompt = build_prompt(
        task, feedback="E   assert 'hi' == 'hello'\n", start="Your change is in the tree."
    )

    assert prompt == (
        "Add a greeting.\n\n"
        "Files (patterns relative to the repository root):\n"
        "You may change: src/*.py.\n"
        "Do not read or change: secrets/**.\n\n"
        "An earlier attempt at this task did not succeed. What went wrong:\n\n"
        "E   assert 'hi' == 'hello'\n\n"
        "Your change is in the tree."
    )
    assert build_prompt(orchestra.Task(id="t", prompt="Go.")) == "Go."


def test_long_feedback_keeps_its_end() -> None:
    feedback = "start\n" + "x" * MAX_FEEDBACK + "\nthe error"

    prompt = build_prompt(orchestra.Task(id="t", prompt="Go."), feedback)

    assert "start" not in prompt
    assert prompt.endswith("\nthe error")
    assert "[… earlier output cut …]" in prompt
