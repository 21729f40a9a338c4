"""``orchestra init``: start a project with a configuration and an example workstream."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from orchestra.cli.session import CliSession, pass_session
from orchestra.errors import OrchestraError

EXAMPLE_FILE = Path("workstreams") / "example.toml"


@click.command()
@click.option(
    "--directory",
    "-C",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The project directory to set up.",
)
@pass_session
def init(session: CliSession, directory: Path) -> None:
    """Set up orchestra in a project directory.

    Writes orchestra.toml, listing the AI tools found installed on this machine, and an
    example workstream in workstreams/example.toml. An existing file is never
    overwritten: it is kept and reported.
    """
    from orchestra.config import find_project

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OrchestraError(
            f"cannot create the directory: {error.strerror}", file=str(directory)
        ) from None
    project = find_project(directory)  # profiles of the project being set up, not the cwd's
    found = []
    for registration in session.host.tools():
        availability = registration.item.available(project.profile(registration.name))
        if availability.available and "prompt" in registration.item.capabilities:
            found.append((registration.name, availability.version))
    session.warn()
    _write_new(directory / "orchestra.toml", config_text(found))
    _write_new(directory / EXAMPLE_FILE, example_text([name for name, _ in found]))
    click.echo(f"next: orchestra plan {directory / EXAMPLE_FILE}")


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it exists; never leaves a half-written file."""
    if path.exists():
        click.echo(f"kept {path} (already exists)")
        return
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise OrchestraError(f"cannot write: {error.strerror}", file=str(path)) from None
    try:
        # os.link fails if the target appeared meanwhile, so an existing file is never replaced
        os.link(partial, path)
    except FileExistsError:
        click.echo(f"kept {path} (already exists)")
        return
    except OSError as error:
        raise OrchestraError(f"cannot write: {error.strerror}", file=str(path)) from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    click.echo(f"wrote {path}")


def config_text(found: list[tuple[str, str | None]]) -> str:
    """Return an orchestra.toml that lists the AI tools found installed."""
    lines = [
        "# orchestra configuration. Settings here apply to every workstream of this project;",
        "# a workstream's [defaults], ORCHESTRA_* variables and command-line flags override them.",
        "",
        '# db = ".orchestra/orchestra.db"',
        "# max_parallel = 4",
        '# routing = "auto"            # fixed | round_robin | auto | a plugin\'s strategy',
        "# disable_plugins = []",
        "",
    ]
    if not found:
        lines += [
            "# No AI coding tool was found on PATH. Install one and the orchestra plugin that",
            "# drives it ('orchestra tools' lists them), then add a [tools.NAME] table for it.",
        ]
    for name, version in found:
        lines += [
            f"[tools.{name}]   # found: {name} {version or ''}".rstrip(),
            '# model = "..."',
            "# max_concurrency = 2",
            "# pass_env = []          # environment variables the tool may see, e.g. its API key",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def example_text(ai_tools: list[str]) -> str:
    """Return an example workstream: shell tasks, plus an AI task when a tool was found."""
    text = """# An example workstream: tasks, their dependencies, and what each runs.
# Check it with `orchestra validate` and see the plan with `orchestra plan`.
id = "example"
title = "A first workstream"

[defaults]
max_attempts = 2
timeout = "5m"

[[tasks]]
id = "inventory"
title = "List the project's Python files"
command = ["git", "ls-files", "*.py"]

[[tasks]]
id = "tests"
title = "Run the tests"
depends_on = ["inventory"]
command = ["python", "-m", "pytest", "-q"]
"""
    if ai_tools:
        tools = ", ".join(f'"{name}"' for name in ai_tools)
        text += f"""
[[tasks]]
id = "docstrings"
title = "Add missing docstrings"
depends_on = ["tests"]
tools = [{tools}]
prompt = "Add a one-line docstring to every public function that has none."
files = {{ write = ["**/*.py"] }}
checks = ["python -m pytest -q"]
"""
    return text
