"""Codex with no key, no login or no model: ``plan`` and ``validate`` warn (codex itself asks
no person: without a key its turn fails, see test_execute.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from orchestra_codex import configured

import orchestra
from orchestra.testing import make_git_repo, run_orchestra

CODEX_TASK = 'id = "w"\n[[tasks]]\nid = "t"\nprompt = "Say hello"\ntool = "codex"\n'


@pytest.mark.parametrize(
    ("profile", "environ", "problems"),
    [
        ({}, {}, ["no API key and no login configured"]),
        ({}, {"OPENAI_API_KEY": "k"}, ["no API key and no login configured"]),  # not read
        ({}, {"CODEX_API_KEY": "k"}, []),
        ({"options": {"env_key": "OPENAI_API_KEY"}}, {}, ["does not reach codex"]),
        (
            {"options": {"env_key": "OPENAI_API_KEY"}, "pass_env": ("OPENAI_API_KEY",)},
            {},
            ["is in pass_env in [tools.codex] but not set here"],
        ),
        ({"options": {"env_key": "K"}}, {"K": "k"}, []),
        (
            {"options": {"base_url": "http://127.0.0.1:9/v1", "env_key": "K"}},
            {"K": "k"},
            ["no model set: codex would ask http://127.0.0.1:9/v1"],
        ),
        ({"options": {"base_url": "http://127.0.0.1:9/v1"}, "model": "m"}, {}, []),
        ({"options": {"sandbox": "none"}}, {}, ["sandbox must be one of"]),
    ],
)
def test_the_configuration_check_names_what_is_missing(tmp_path, profile, environ, problems):
    setup = orchestra.ToolSetup(environ=environ, root=tmp_path, state_dir=tmp_path / "codex")

    found = configured.problems(orchestra.ToolProfile("codex", **profile), setup)

    assert len(found) == len(problems)
    for sentence, problem in zip(found, problems, strict=True):
        assert problem in sentence and "[tools.codex]" in sentence


def test_a_login_in_orchestras_codex_home_is_a_key(tmp_path):
    setup = orchestra.ToolSetup(environ={}, root=tmp_path, state_dir=tmp_path / "codex")
    (tmp_path / "codex" / "home").mkdir(parents=True)
    (tmp_path / "codex" / "home" / "auth.json").write_text("{}")

    assert configured.problems(orchestra.ToolProfile("codex"), setup) == []


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_plan_and_validate_warn_once_about_a_codex_without_key(real_codex, tmp_path, command):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    (repo / "ws.toml").write_text(CODEX_TASK)
    path = f"{real_codex.parent}{os.pathsep}{os.environ['PATH']}"

    warned = run_orchestra(command, "ws.toml", cwd=repo, env={"PATH": path})
    keyed = run_orchestra(command, "ws.toml", cwd=repo, env={"PATH": path, "CODEX_API_KEY": "k"})
    (repo / "orchestra.toml").write_text('[tools.codex]\npass_env = ["CODEX_API_KEY"]\n')
    passed = run_orchestra(command, "ws.toml", cwd=repo, env={"PATH": path, "CODEX_API_KEY": "k"})

    assert warned.returncode == 0, warned.stderr
    [warning] = warned.stderr.splitlines()
    home = Path(repo, ".orchestra", "tools", "codex", "home")
    assert warning.startswith("warning: ") and "tool codex: no API key and no login" in warning
    assert f"CODEX_HOME={home} codex login" in warning
    # a key in orchestra's environment reaches codex only through pass_env
    assert "tool codex: no API key" in keyed.stderr
    assert passed.returncode == 0 and passed.stderr == ""
