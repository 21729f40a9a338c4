"""Keys reach only aider: no command the model can have run sees one, no file keeps one.

Aider runs no command the model asks for (``--no-suggest-shell-commands``, and
``--yes-always`` still says no to a shell command). But after an edit it lints the
edited files with ``python -m flake8`` in the repository, where a ``flake8.py`` the model
wrote would run instead, and a repository's ``.aider.conf.yml`` or ``.env`` can name lint
and test commands; each would run with aider's environment, key included, and its output
would go back to the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_openai import API_KEY, error_reply, whole_edit

import orchestra

pytestmark = pytest.mark.slow  # the real aider: seconds per test

WORLD = 'def greet():\n    return "hello, world"\n'
#: prints aider's environment, and keeps a copy in the repository
SPY = (
    "import os, sys\n"
    "text = '\\n'.join(f'{k}={v}' for k, v in os.environ.items())\n"
    "open('seen-env.txt', 'w').write(text)\n"
    "print(text)\n"
    "sys.exit(1)\n"
)


def files_holding_key(root: Path) -> list[str]:
    """Return the files under ``root`` whose bytes hold the key."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink() and API_KEY.encode() in path.read_bytes():
                found.append(str(path.relative_to(root)))
    return found


def assert_key_not_sent_nor_kept(llm, attempt, tmp_path: Path) -> None:
    assert [i for i, request in enumerate(llm.requests) if API_KEY in request.all_text] == []
    assert files_holding_key(tmp_path) == []
    assert attempt.scratch_with_key == []


def test_a_python_module_the_model_writes_is_not_run_by_aiders_linter(
    run_attempt, repo, llm, tmp_path
):
    # one answer creates flake8.py beside the edit; aider then lints hello.py
    edits = whole_edit("flake8.py", SPY) + "\n" + whole_edit("hello.py", WORLD, intro="And:")
    llm.script(edits, "Nothing more to do.")

    attempt = run_attempt()

    assert attempt.result.outcome == "succeeded", attempt.log
    assert (repo / "hello.py").read_text() == WORLD
    assert not (repo / "seen-env.txt").exists()
    assert_key_not_sent_nor_kept(llm, attempt, tmp_path)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        (".aider.conf.yml", "auto-test: true\ntest-cmd: env > seen-env.txt\n"),
        (".env", "AIDER_AUTO_TEST=true\nAIDER_TEST_CMD='env > seen-env.txt'\n"),
        (".env", "AIDER_LINT_CMD='python: env > seen-env.txt'\n"),
        (".env", "AIDER_NOTIFICATIONS=true\nAIDER_NOTIFICATIONS_COMMAND='env > seen-env.txt'\n"),
    ],
    ids=["conf-test", "dotenv-test", "dotenv-lint", "dotenv-notify"],
)
def test_commands_the_repository_names_do_not_run_after_an_edit(
    run_attempt, repo, llm, tmp_path, name, settings
):
    # a settings file an earlier task's model could have written into the repository
    (repo / name).write_text(settings)
    # no files: aider's command line then ends with no "--" that would turn an appended
    # setting (lint-cmd) into a file name; aider adds the file the model names, asks again
    llm.script(whole_edit("hello.py", WORLD), whole_edit("hello.py", WORLD), "Done.")

    attempt = run_attempt(files=orchestra.FileScope())

    assert attempt.result.outcome == "succeeded", attempt.log
    assert not (repo / "seen-env.txt").exists()
    assert_key_not_sent_nor_kept(llm, attempt, tmp_path)


@pytest.mark.parametrize("args", [(), ("--suggest-shell-commands",)], ids=["default", "asked"])
def test_a_shell_command_the_model_suggests_never_runs(run_attempt, repo, llm, tmp_path, args):
    suggestion = "Run this first:\n\n```bash\nenv > seen-env.txt\n```\n\n"
    llm.script(suggestion + whole_edit("hello.py", WORLD))

    attempt = run_attempt(args=args)

    assert attempt.result.outcome == "succeeded", attempt.log
    assert not (repo / "seen-env.txt").exists()
    assert_key_not_sent_nor_kept(llm, attempt, tmp_path)


def test_a_provider_that_echoes_the_key_leaves_it_in_no_file(run_attempt, llm, tmp_path):
    llm.script(error_reply(401, f"Incorrect API key provided: {API_KEY}"))

    attempt = run_attempt()

    assert attempt.result.error_class == "auth"
    assert API_KEY not in attempt.log
    assert_key_not_sent_nor_kept(llm, attempt, tmp_path)
