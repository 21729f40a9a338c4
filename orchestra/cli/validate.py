"""``orchestra validate FILE…``: check workstream files without running anything."""

from __future__ import annotations

import click

from orchestra.cli.state import CliState, pass_state


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@pass_state
def validate(state: CliState, files: tuple[str, ...]) -> None:
    """Check workstream FILES and report every problem, one line each.

    Checks the TOML, every field's type and value, task ids, dependencies (unknown ones
    and cycles), file scopes, and that every tool and routing strategy named is
    installed. Exits 0 when all files are valid and 2 otherwise.
    """
    from orchestra import graph
    from orchestra.errors import OrchestraError
    from orchestra.planning import load_checked

    project = state.project  # a broken configuration stops here, once
    failed = False
    for file in files:
        try:
            workstream, _ = load_checked(file, project, state.host)
        except OrchestraError as error:
            failed = True
            for line in error.lines():
                click.echo(f"error: {line}", err=True)
            continue
        dependencies = graph.of_tasks(workstream.tasks)
        click.echo(
            f"ok: {file}: {len(workstream.tasks)} tasks, {graph.edge_count(dependencies)} "
            f"dependencies, {len(graph.waves(dependencies))} waves"
        )
    state.warn()
    if failed:
        raise SystemExit(2)
