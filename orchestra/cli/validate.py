"""``orchestra validate FILE…``: check workstream files without running anything."""

from __future__ import annotations

import click

from orchestra.cli.convert import echo_notice, loader_options, options_of
from orchestra.cli.state import CliState, pass_state


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@loader_options()
@pass_state
def validate(
    state: CliState,
    files: tuple[str, ...],
    file_format: str | None,
    include_done: bool,
    tag: str | None,
) -> None:
    """Check workstream FILES and report every problem, one line each.

    Checks the file (TOML, or another format a loader reads), every field's type and
    value, task ids, dependencies (unknown ones and cycles), file scopes, and that every
    tool and routing strategy named is installed. Exits 0 when all files are valid and 2
    otherwise.
    """
    from orchestra import graph
    from orchestra.errors import OrchestraError
    from orchestra.planning import configuration_warnings, load_checked

    project = state.project  # a broken configuration stops here, once
    failed = False
    for file in files:
        try:
            workstream, settings = load_checked(
                file,
                project,
                state.host,
                file_format=file_format,
                options=options_of(include_done, tag),
                on_notice=echo_notice,
            )
        except OrchestraError as error:
            failed = True
            for line in error.lines():
                click.echo(f"error: {line}", err=True)
            continue
        dependencies = graph.of_tasks(workstream.tasks)
        click.echo(
            f"ok: {file}: {_count(len(workstream.tasks), 'task')}, "
            f"{_count(graph.edge_count(dependencies), 'dependency', 'dependencies')}, "
            f"{_count(len(graph.waves(dependencies)), 'wave')}"
        )
        for line in configuration_warnings(workstream, state.host, project, settings):
            click.echo(f"warning: {file}: {line}", err=True)
    state.warn()
    if failed:
        raise SystemExit(2)


def _count(number: int, one: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``: a count with its noun in the right number."""
    return f"{number:,} {one if number == 1 else many or one + 's'}"
