"""``orchestra convert PATH…``: a workstream in any format, written as orchestra's TOML.

Also the options every command that reads a workstream file shares: which format to
read it as, and the loader options.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from orchestra.cli.session import CliSession, pass_session


def loader_options(*, format_flag: bool = True) -> Callable[[Callable], Callable]:
    """Return a decorator adding the options that say how to read the workstream:
    --format/--from NAME, --include-done and --tag (task-master), --id and --title (a
    directory or several files). The command receives them as ``file_format`` and
    ``reading``, the options for the loaders.

    ``orchestra plan`` passes ``format_flag=False``: its --format picks the output, so
    there the input format is --from only.
    """
    names = ("--format", "--from") if format_flag else ("--from",)

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def with_reading(
            *args: Any,
            include_done: bool,
            tag: str | None,
            set_id: str | None,
            set_title: str | None,
            **kwargs: Any,
        ) -> Any:
            reading = {
                "include_done": include_done,
                "tag": tag,
                "workstream_id": set_id,
                "title": set_title,
            }
            return command(*args, reading=reading, **kwargs)

        decorated: Callable = with_reading
        decorated = click.option(
            "--title",
            "set_title",
            metavar="TEXT",
            help="A directory or several files: the workstream's title "
            "(default: the directory's name).",
        )(decorated)
        decorated = click.option(
            "--id",
            "set_id",
            metavar="ID",
            callback=_valid_id,
            help="A directory or several files: the workstream's id "
            "(default: the directory's name).",
        )(decorated)
        decorated = click.option(
            "--tag",
            metavar="NAME",
            help="task-master: the tag whose tasks to load; a pattern such as '*' "
            "loads every tag it matches as one workstream.",
        )(decorated)
        decorated = click.option(
            "--include-done",
            is_flag=True,
            help="task-master: keep the tasks already done (left out by default).",
        )(decorated)
        return click.option(
            *names,
            "file_format",
            metavar="NAME",
            help="The workstream format to read PATH as (toml, uet-bundle, task-master, "
            "or a plugin's); by default it is recognised from each file.",
        )(decorated)

    return decorate


def _valid_id(context: click.Context, parameter: click.Parameter, value: str | None) -> Any:
    from orchestra.spec import ID_PATTERN

    if value is not None and not ID_PATTERN.fullmatch(value):
        raise click.BadParameter(
            f"{value!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return value


def echo_notice(message: str) -> None:
    """Print a loader's notice on stderr."""
    click.echo(f"notice: {message}", err=True)


@click.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=str))
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
@pass_session
def convert(
    session: CliSession,
    paths: tuple[str, ...],
    target: str,
    output: str | None,
    force: bool,
    file_format: str | None,
    reading: dict[str, Any],
) -> None:
    """Write the workstream in PATH as orchestra's TOML, which loads back to the same
    workstream.

    PATH is a file in any format a loader reads (a UET bundle file, task-master's
    tasks.json …), or a directory of such files (or several files) read as one
    workstream, written as one TOML file. It is checked as `orchestra validate` checks
    it, except that the tools it names need not be installed here.
    """
    from orchestra.errors import OrchestraError, SpecError
    from orchestra.loaders import load_source
    from orchestra.loaders.tomlwriter import to_toml

    loaded = load_source(
        paths,
        session.host,
        file_format=file_format,
        options=reading,
        on_notice=echo_notice,
    )
    names = ", ".join(Path(path).name for path in paths)
    how = loaded.format or ", ".join(loaded.formats)
    comment = f"Converted by `orchestra convert` from {names} ({how})."
    try:
        text = to_toml(loaded.workstream, comment=comment)
    except SpecError as error:
        error.file = error.file or paths[0]
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
