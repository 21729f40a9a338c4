"""orchestra-ui: watch and steer runs in the browser (the command ``orchestra ui``)."""

from __future__ import annotations

import click

import orchestra


@orchestra.hookimpl
def orchestra_register_commands(cli: click.Group) -> None:
    """Add ``orchestra ui``."""
    from orchestra_ui.command import ui

    cli.add_command(ui)
