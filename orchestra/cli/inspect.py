"""``orchestra plugins`` and ``orchestra tools``: what is installed and whether it works."""

from __future__ import annotations

import json

import click

from orchestra.cli.state import CliState, pass_state


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@pass_state
def plugins(state: CliState, as_json: bool) -> None:
    """List installed plugins: name, distribution, version, hooks, commands and status.

    Status is ok, disabled (blocked by ORCHESTRA_DISABLE_PLUGINS or disable_plugins), or
    broken, with the reason (an import error, an unknown hook, a duplicate name …).
    """
    state.plugin_commands  # noqa: B018 - collects which plugin adds which command
    infos = state.host.plugins()
    rows = [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "hooks": info.hooks,
            "commands": info.commands,
            "status": info.status,
            "reason": info.reason,
        }
        for info in infos
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(
        ["plugin", "distribution", "version", "status", "hooks", "commands"],
        [
            [
                row["name"],
                row["distribution"] or "-",
                row["version"] or "-",
                row["status"] + (f": {row['reason']}" if row["reason"] else ""),
                ", ".join(hook.removeprefix("orchestra_") for hook in row["hooks"]) or "-",
                ", ".join(row["commands"]) or "-",
            ]
            for row in rows
        ],
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@pass_state
def tools(state: CliState, as_json: bool) -> None:
    """List tool adapters: capabilities, and whether each tool is installed here.

    Asks each tool for its version (aider --version …), so this shows what a run on
    this machine could use. Capabilities include those set in [tools.NAME].
    """
    from orchestra.engine.router import tool_capabilities

    rows = []
    for registration in state.host.tools():
        profile = state.project.profile(registration.name)
        found = registration.item.available(profile)
        info = state.host.info(registration.plugin)
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
            }
        )
    state.warn()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(
        ["tool", "plugin", "capabilities", "available", "version", "path"],
        [
            [
                row["name"],
                row["plugin"],
                ", ".join(row["capabilities"]),
                ("yes" if row["available"] else f"no: {row['reason']}")
                + ("" if row["enabled"] else " (disabled)"),
                row["version"] or "-",
                row["path"] or "-",
            ]
            for row in rows
        ],
    )


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=False).print(table)
