"""``orchestra plugins`` and ``orchestra tools``: what is installed and whether it works."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from orchestra.cli.session import CliSession, pass_session

if TYPE_CHECKING:
    from orchestra.engine.sandbox import SandboxChoice
    from orchestra.store import BreakerRecord, Store


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@pass_session
def plugins(session: CliSession, as_json: bool) -> None:
    """List installed plugins: name, distribution, version, status, and what each
    registered (tools, routers, schedulers, sinks, workspaces, executors, loaders,
    commands).

    Status is ok, disabled (blocked by ORCHESTRA_DISABLE_PLUGINS or disable_plugins), or
    broken, with the reason (an import error, an unknown hook, a duplicate name …).
    """
    from orchestra.plugin.host import KINDS

    session.plugin_commands  # noqa: B018 - collects which plugin adds which command
    infos = session.host.plugins()
    rows: list[dict[str, Any]] = [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "status": info.status,
            "reason": info.reason,
            "hooks": info.hooks,
            **{kind: info.registered.get(kind, []) for kind in KINDS},
            "commands": info.commands,
        }
        for info in infos
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(
        ["plugin", "distribution", "version", "status", "registered"],
        [
            [
                row["name"],
                row["distribution"] or "-",
                row["version"] or "-",
                row["status"] + (f": {row['reason']}" if row["reason"] else ""),
                _registered_text(row, [*KINDS, "commands"]),
            ]
            for row in rows
        ],
    )


def _registered_text(row: dict[str, Any], kinds: list[str]) -> str:
    """What a plugin registered, kind by kind: 'tools: shell; commands: hello', or '-'."""
    parts = [f"{kind}: {', '.join(row[kind])}" for kind in kinds if row[kind]]
    return "; ".join(parts) or "-"


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--db", type=click.Path(dir_okay=False), help="The run database to read.")
@click.pass_context
def tools(context: click.Context, as_json: bool, db: str | None) -> None:
    """List tool adapters: capabilities, whether each tool is installed here, and its
    circuit breaker; then whether attempts run in a sandbox here, and if not, why.

    Asks each tool for its version (aider --version …), so this shows what a run on
    this machine could use; the answer is kept (in ~/.cache/orchestra) until the
    program file changes. Capabilities include those set in [tools.NAME]. A breaker
    is closed, open (the tool is left out of routing until the time shown) or
    half_open (the next attempt is a trial); `orchestra tools reset NAME` closes one.
    """
    if context.invoked_subcommand is not None:
        return
    from orchestra.engine.router import tool_capabilities

    session: CliSession = context.ensure_object(CliSession)
    breakers = {record.tool: record for record in _breakers(session, db)}
    rows: list[dict[str, Any]] = []
    for registration in session.host.tools():
        profile = session.project.profile(registration.name)
        found = registration.item.available(profile)
        info = session.host.info(registration.plugin)
        breaker = breakers.get(registration.name)
        rows.append(
            {
                "name": registration.name,
                "plugin": registration.plugin,
                "distribution": info.distribution if info else None,
                "capabilities": sorted(tool_capabilities(registration.item, profile)),
                "enabled": profile.enabled,
                "available": found.available,
                "version": found.version,
                "path": found.path,
                "reason": found.reason,
                "breaker": (
                    _breaker_row(breaker)
                    if getattr(registration.item, "circuit_breaker", True)
                    else "none"
                ),
            }
        )
    session.warn()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    sandboxing = _sandboxing(session)
    _print_table(
        ["tool", "plugin", "capabilities", "available", "version", "breaker", "path"],
        [
            [
                row["name"],
                row["plugin"],
                ", ".join(row["capabilities"]),
                ("yes" if row["available"] else f"no: {row['reason']}")
                + ("" if row["enabled"] else " (disabled)"),
                row["version"] or "-",
                _breaker_text(row["breaker"]),
                row["path"] or "-",
            ]
            for row in rows
        ],
    )
    click.echo(f"\n{sandboxing.describe()}")


def _sandboxing(session: CliSession) -> SandboxChoice:
    """Whether a run's attempts would be sandboxed here (engine/sandbox.py)."""
    from orchestra.config import resolve_settings
    from orchestra.engine import sandbox

    return sandbox.choose(resolve_settings(session.project))


@tools.command()
@click.argument("name")
@click.option("--db", type=click.Path(dir_okay=False), help="The run database to change.")
@pass_session
def reset(session: CliSession, name: str, db: str | None) -> None:
    """Close tool NAME's circuit breaker, so routing uses the tool again at once."""
    from orchestra.engine.resilience import Breakers
    from orchestra.errors import OrchestraError

    if name not in session.host.tools():
        known = ", ".join(registration.name for registration in session.host.tools())
        raise OrchestraError(f"no tool named {name!r} (installed: {known})")
    store = _open(session, db)
    if store is None:
        click.echo(f"{name}: no breaker recorded (no run database yet)")
        return
    with store:
        # no run is going on to hear of it: the breaker's saved row is the whole change
        breakers = Breakers(store, session.project.profile, on_event=lambda kind, payload: None)
        was = breakers.reset(name)
    if was == "closed":
        click.echo(f"{name}: breaker already closed")
    else:
        click.echo(f"{name}: breaker closed (was {was})")


def _open(session: CliSession, db: str | None) -> Store | None:
    """The run database if there is one (never made just to read breakers)."""
    from pathlib import Path

    from orchestra.cli.runs import db_path
    from orchestra.config import resolve_settings
    from orchestra.store import Store

    path = resolve_settings(session.project, flags={"db": db_path(db)}).db
    return Store.open(path) if Path(path).exists() else None


def _breakers(session: CliSession, db: str | None) -> list[BreakerRecord]:
    store = _open(session, db)
    if store is None:
        return []
    with store:
        return store.breakers()


def _breaker_row(record: BreakerRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "state": record.state,
        "failures": record.failures,
        "last_error_class": record.last_error_class,
        "open_until": record.open_until,
    }


def _breaker_text(breaker: dict[str, Any] | str | None) -> str:
    if isinstance(breaker, str):  # "none": the tool has no breaker
        return "-"
    if breaker is None or breaker["state"] == "closed":
        return "closed"
    if breaker["state"] == "open" and breaker["open_until"]:
        import time

        until = time.strftime("%H:%M:%S", time.localtime(breaker["open_until"]))
        return f"open until {until} ({breaker['failures']} × {breaker['last_error_class']})"
    return breaker["state"]


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print a table: fitted to the terminal's width on one, else a line per row, never
    wrapped or cut (a pipe, a file and ``grep`` see whole paths)."""
    import sys

    if not sys.stdout.isatty():
        for line in plain_table(headers, rows):
            click.echo(line)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=False).print(table)


def plain_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Return the lines of a table in columns two spaces apart, as wide as their widest
    cell (counted in terminal cells), without trailing spaces."""
    from rich.cells import cell_len

    widths = [max(cell_len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(
            cell + " " * (width - cell_len(cell)) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in [headers, *rows]
    ]
