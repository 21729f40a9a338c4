"""What the commands of one ``orchestra`` invocation share: the project and the plugins."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from orchestra.config import Project
    from orchestra.plugin.host import PluginHost


class CliSession:
    """Loads the project and the plugins once, on first use, for every command."""

    def __init__(self, host: PluginHost | None = None) -> None:
        self.warn_about_plugins = True
        if host is not None:
            self.host = host  # tests hand in a host with throwaway plugins

    @functools.cached_property
    def project(self) -> Project:
        from orchestra.config import find_project

        return find_project()

    @functools.cached_property
    def host(self) -> PluginHost:
        from orchestra.plugin.host import PluginHost

        return PluginHost.for_project(self.project)

    @functools.cached_property
    def plugin_commands(self) -> dict[str, click.Command]:
        """Return the commands plugins add, collected on a scratch group so that the
        module-level ``cli`` group is never changed by one invocation's plugins."""
        from orchestra.cli.commands import BUILTIN_COMMANDS

        scratch = click.Group()
        self.host.register_commands(scratch, reserved=BUILTIN_COMMANDS)
        return dict(scratch.commands)

    def warn(self) -> None:
        """Print one warning line per broken plugin or unknown name in a block list."""
        if not self.warn_about_plugins:
            return
        self.warn_about_plugins = False
        self.host.collect_all()
        for problem in self.host.problems():
            click.echo(f"warning: {problem} (see 'orchestra plugins')", err=True)
        for name in self.host.unknown_disabled():
            click.echo(
                f"warning: no installed plugin is called {name!r}; nothing to disable", err=True
            )


pass_session = click.make_pass_decorator(CliSession, ensure=True)
