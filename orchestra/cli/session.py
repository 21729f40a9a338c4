"""What the commands of one ``orchestra`` invocation share: the project and the plugins."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

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


F = TypeVar("F", bound=Callable[..., Any])

#: whether ``orchestra.cli.main`` turned the cyclic garbage collector off for start-up
_collector_paused = False


def pause_collector() -> None:
    """Turn the cyclic garbage collector off until a command's own work begins
    (``resume_collector``); the ``orchestra`` console script's start-up only.

    Start-up builds hundreds of modules and classes (imports, attrs classes, plugins, the
    command line): objects that live as long as the process, next to no cyclic garbage.
    The collector walked them about 40 times for nothing before ``orchestra run`` of one
    task reached its workstream: about 12 ms of its CPU time (benchmarks/startup.py's
    project, medians of 21 runs with and without). Reference counting frees everything
    as usual meanwhile.
    """
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True


def resume_collector() -> None:
    """Turn the collector back on if ``pause_collector`` turned it off: a command's
    work may run for hours (a run, a plugin's server) and make cyclic garbage.

    What start-up built is frozen first (``gc.freeze``): left in the youngest generation,
    all of it would be walked by the collection that follows at once, which took back
    more than the pause had saved. Start-up's objects (modules, classes, plugins) last
    as long as the process does; the little cyclic garbage among them is never freed.
    """
    global _collector_paused
    if _collector_paused:
        _collector_paused = False
        gc.freeze()
        gc.enable()


_pass_session = click.make_pass_decorator(CliSession, ensure=True)


def pass_session(command: F) -> F:
    """Hand the command the invocation's ``CliSession`` as its first argument (click's
    ``make_pass_decorator``), once the collector is back on (``resume_collector``)."""

    @functools.wraps(command)
    def with_collector(*args: Any, **kwargs: Any) -> Any:
        resume_collector()
        return command(*args, **kwargs)

    return _pass_session(with_collector)  # type: ignore[return-value]


#: ``pass_session`` for a command that turns the collector back on itself
#: (``resume_collector``) after more start-up of its own (``run`` and ``resume``: the
#: engine's imports), before work that grows with its input or lasts: what is built
#: before is frozen, cyclic garbage among it never freed. (A short command may also
#: leave it off to its end.)
pass_session_collector_paused = _pass_session
