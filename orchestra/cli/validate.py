"""``orchestra validate PATH…``: check workstream files without running anything."""

from __future__ import annotations

from typing import Any

import click

from orchestra.cli.convert import echo_notice, loader_options
from orchestra.cli.session import CliSession, pass_session_collector_paused


@click.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--together",
    is_flag=True,
    help="Read all the PATHs as one workstream (as plan and run read several), "
    "instead of each on its own.",
)
@loader_options()
# The cyclic collector stays off for the whole command (orchestra.cli.main turns it back
# on and freezes what is left as the process ends): the command builds a large workstream,
# none of it cyclic garbage, and ends. Turned on after loading 100,000 tasks,
# the collector walked them all again as the command went on: 1.5 % of validate's
# instructions (valgrind), about 0.03 s.
@pass_session_collector_paused
def validate(
    session: CliSession,
    paths: tuple[str, ...],
    together: bool,
    file_format: str | None,
    reading: dict[str, Any],
) -> None:
    """Check the workstream in each PATH and report every problem, one line each.

    PATH is a workstream file, or a directory whose workstream files (a set of UET
    bundles that depend on each other …) make one workstream. Checks each file (TOML,
    or another format a loader reads), every field's type and value, task ids,
    dependencies (unknown ones and cycles, across the files of a set), file scopes, and
    that every tool and routing strategy named is installed. Exits 0 when all are valid
    and 2 otherwise.
    """
    from orchestra import graph
    from orchestra.errors import OrchestraError
    from orchestra.planning import configuration_warnings, load_checked

    project = session.project  # a broken configuration stops here, once
    failed = False
    for file in [paths] if together else [(path,) for path in paths]:
        label = ", ".join(file)
        try:
            workstream, settings = load_checked(
                file,
                project,
                session.host,
                file_format=file_format,
                options=reading,
                on_notice=echo_notice,
            )
        except OrchestraError as error:
            failed = True
            for line in error.lines():
                click.echo(f"error: {line}", err=True)
            continue
        dependencies = graph.of_tasks(workstream.tasks)
        waves = max(graph.levels(dependencies).values(), default=-1) + 1
        click.echo(
            f"ok: {label}: {count(len(workstream.tasks), 'task')}, "
            f"{count(graph.edge_count(dependencies), 'dependency', 'dependencies')}, "
            f"{count(waves, 'wave')}"
        )
        for line in configuration_warnings(workstream, session.host, project, settings):
            click.echo(f"warning: {label}: {line}", err=True)
    session.warn()
    if failed:
        raise SystemExit(2)


def count(number: int, one: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``: a count with its noun in the right number."""
    return f"{number:,} {one if number == 1 else many or one + 's'}"
