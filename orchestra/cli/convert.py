"""``orchestra convert FILE``: a workstream in any format, written as orchestra's TOML.

Also the options every command that reads a workstream file shares: which format to
read it as, and the loader options.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from orchestra.cli.state import CliState, pass_state


def loader_options(*, format_flag: bool = True) -> Callable[[Callable], Callable]:
    """Return a decorator adding --format/--from NAME, --include-done and --tag to a command.

    ``orchestra plan`` passes ``format_flag=False``: its --format picks the output, so
    there the input format is --from only.
    """
    names = ("--format", "--from") if format_flag else ("--from",)

    def decorate(command: Callable) -> Callable:
        command = click.option(
            "--tag", metavar="NAME", help="task-master: the tag whose tasks to load."
        )(command)
        command = click.option(
            "--include-done",
            is_flag=True,
            help="task-master: keep the tasks already done (left out by default).",
        )(command)
        return click.option(
            *names,
            "file_format",
            metavar="NAME",
            help="The workstream format to read FILE as (toml, uet-bundle, task-master, "
            "or a plugin's); by default it is recognised from the file.",
        )(command)

    return decorate


def options_of(include_done: bool, tag: str | None) -> dict[str, Any]:
    """Return the loader options the command line gave."""
    return {"include_done": include_done, "tag": tag}


def echo_notice(message: str) -> None:
    """Print a loader's notice on stderr."""
    click.echo(f"notice: {message}", err=True)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--to",
    "target",
    type=click.Choice(["toml"]),
    default="toml",
    show_default=True,
    help="The format to write.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write to this file instead of standard output.",
)
@click.option("--force", is_flag=True, help="Overwrite the --output file if it exists.")
@loader_options()
@pass_state
def convert(
    state: CliState,
    file: str,
    target: str,
    output: str | None,
    force: bool,
    file_format: str | None,
    include_done: bool,
    tag: str | None,
) -> None:
    """Write workstream FILE as orchestra's TOML, which loads back to the same workstream.

    FILE may be in any format a loader reads (a UET bundle file, task-master's
    tasks.json …). The file is checked as `orchestra validate` checks it, except that
    the tools it names need not be installed here.
    """
    from orchestra.errors import OrchestraError, SpecError
    from orchestra.loaders import load
    from orchestra.loaders.tomlwriter import to_toml

    loaded = load(
        file,
        state.host,
        file_format=file_format,
        options=options_of(include_done, tag),
        on_notice=echo_notice,
    )
    comment = f"Converted by `orchestra convert` from {Path(file).name} ({loaded.format})."
    try:
        text = to_toml(loaded.workstream, comment=comment)
    except SpecError as error:
        error.file = error.file or file
        raise
    if output is None:
        click.echo(text, nl=False)
        return
    destination = Path(output)
    if destination.exists() and not force:
        raise OrchestraError("already exists; use --force to overwrite it", file=output)
    from orchestra.cli.output import write_output

    write_output(destination, text)
    click.echo(f"wrote {output}: {len(loaded.workstream.tasks)} tasks", err=True)
