"""``orchestra report``: a recorded run as one HTML page, Markdown tables or a JSON document."""

from __future__ import annotations

from pathlib import Path

import click

from orchestra.cli.runs import _store, db_option
from orchestra.cli.session import CliSession, pass_session


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--format",
    "format_name",
    type=click.Choice(["html", "md", "json"]),
    default="html",
    show_default=True,
    help="html: one self-contained page; md: tables for a pull request; json: the facts.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to write it ('-' for stdout). Default: report-RUN.html in the current"
    " directory for html, stdout for md and json.",
)
@db_option
@pass_session
def report(
    session: CliSession, run_id: str, format_name: str, output: str | None, db: str | None
) -> None:
    """Write a report of RUN: its outcome and figures, a timeline of its attempts, its
    dependency graph, and per task the tool, routing, checks, change, usage and log tail.

    It reads only the run database, the attempts' logs and, when it still exists, the
    workstream file (for the dependencies and checks).
    """
    from orchestra.report import gather, render

    store = _store(session, db)
    text = render(gather(store, run_id, session.host), format_name)
    if output is None and format_name == "html":
        output = f"report-{run_id}.html"
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    from orchestra.cli.output import write_output

    path = Path(output)
    write_output(path, text)
    click.echo(f"wrote {path.resolve()}")
