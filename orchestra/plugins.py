"""The one door to the plugin manager: loading plugins and calling their hooks.

Built-ins and third-party plugins arrive the same way, through the ``orchestra``
entry-point group. Nothing else in orchestra calls ``pm.hook``: this module calls each
plugin's hook implementation itself, so it can hand every plugin a ``register`` that
knows the plugin's name, trace each call, and turn a plugin's failure into a message
naming the plugin (and mark it broken) instead of a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

import attrs
import pluggy

from orchestra import classes, hookspecs
from orchestra.errors import PluginError, did_you_mean
from orchestra.registry import Registry

ENTRY_POINT_GROUP = "orchestra"
DISABLE_VARIABLE = "ORCHESTRA_DISABLE_PLUGINS"
TRACE_VARIABLE = "ORCHESTRA_TRACE_PLUGINS"

#: registry kind -> (hook, what one item is called, the protocol in orchestra.protocols)
KINDS: dict[str, tuple[str, str, str]] = {
    "tools": ("orchestra_register_tools", "tool", "ToolAdapter"),
    "routers": ("orchestra_register_routers", "routing strategy", "RoutingStrategy"),
    "schedulers": ("orchestra_register_schedulers", "scheduling strategy", "SchedulingStrategy"),
    "sinks": ("orchestra_register_sinks", "sink", "EventSink"),
    "workspaces": ("orchestra_register_workspaces", "workspace", "Workspace"),
    "executors": ("orchestra_register_executors", "executor", "Executor"),
    "loaders": ("orchestra_register_loaders", "workstream format", "WorkstreamLoader"),
}


@classes.define
class PluginInfo:
    """What ``orchestra plugins`` shows about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = attrs.Factory(list)
    commands: list[str] = attrs.Factory(list)
    status: str = "ok"  # ok | broken | disabled
    reason: str | None = None

    @property
    def origin(self) -> str:
        """The distribution and version, for messages: 'orchestra-aider 0.1.0'."""
        if self.distribution is None:
            return "registered at run time"
        return f"{self.distribution} {self.version or ''}".strip()


def disabled_from_environment(environ: Mapping[str, str]) -> list[str]:
    """Return the plugin names listed in ORCHESTRA_DISABLE_PLUGINS (comma-separated)."""
    return [name.strip() for name in environ.get(DISABLE_VARIABLE, "").split(",") if name.strip()]


class PluginHost:
    """The plugin manager, the plugins it holds, and the registries they filled."""

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        trace: bool = False,
        trace_to: TextIO | None = None,
    ) -> None:
        self._pm = pluggy.PluginManager("orchestra")
        self._pm.add_hookspecs(hookspecs)
        self._disabled = set(disabled)
        self._trace_to = (trace_to or sys.stderr) if trace else None
        self._infos: dict[str, PluginInfo] = {}
        self._registries: dict[str, Registry] = {}

    @classmethod
    def from_environment(
        cls,
        *,
        config_disabled: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> PluginHost:
        """Return a host with every installed plugin loaded, honouring the block lists.

        ``ORCHESTRA_DISABLE_PLUGINS`` and the configuration's ``disable_plugins`` are
        combined; ``ORCHESTRA_TRACE_PLUGINS=1`` traces hook calls to stderr.
        """
        environ = os.environ if environ is None else environ
        host = cls(
            disabled=[*disabled_from_environment(environ), *config_disabled],
            trace=environ.get(TRACE_VARIABLE, "") not in ("", "0"),
        )
        host.load_entry_points()
        return host

    # -- loading ---------------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Load every plugin of the ``orchestra`` entry-point group, noting failures."""
        from orchestra.entry_points import entry_points

        # orchestra's own plugins first, so a third-party plugin can never take a built-in's name
        found = sorted(
            entry_points(group=ENTRY_POINT_GROUP),
            key=lambda entry_point: (
                entry_point.dist is None or entry_point.dist.name != "orchestra"
            ),
        )
        for entry_point in found:
            distribution = entry_point.dist.name if entry_point.dist else None
            version = entry_point.dist.version if entry_point.dist else None
            info = PluginInfo(entry_point.name, distribution, version)
            if entry_point.name in self._infos:
                other = self._infos[entry_point.name]
                info.status, info.reason = (
                    "broken",
                    (f"plugin name {entry_point.name!r} is already taken by {other.origin}"),
                )
                self._infos[f"{entry_point.name} ({distribution})"] = info
                continue
            self._infos[entry_point.name] = info
            if {entry_point.name, distribution} & self._disabled:
                info.status, info.reason = "disabled", "blocked by configuration or environment"
                self._pm.set_blocked(entry_point.name)
                continue
            self._trace(f"loading plugin {entry_point.name!r} from {info.origin}")
            try:
                plugin = entry_point.load()
            except Exception as error:
                info.status = "broken"
                info.reason = f"cannot import {entry_point.value}: {type(error).__name__}: {error}"
                continue
            try:
                self._add(plugin, info)
            except PluginError as error:
                info.status, info.reason = "broken", error.message

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object at run time (tests, embedding); return its name.

        Raises PluginError for an unknown hook or a hook with the wrong arguments.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self._infos:
            raise PluginError(f"a plugin named {name!r} is already registered")
        info = PluginInfo(name)
        self._add(plugin, info)
        self._infos[name] = info
        return name

    def unregister(self, name: str) -> None:
        """Remove a plugin registered at run time, and everything it registered."""
        self._infos.pop(name, None)
        if self._pm.has_plugin(name):
            self._pm.unregister(name=name)
        self._registries.clear()

    def _add(self, plugin: object, info: PluginInfo) -> None:
        if self._pm.is_registered(plugin):
            other = self._pm.get_name(plugin)
            raise PluginError(f"plugin {info.name!r} is the same object as plugin {other!r}")
        try:
            self._pm.register(plugin, name=info.name)
        except (pluggy.PluginValidationError, ValueError) as error:
            one_line = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
            raise PluginError(f"plugin {info.name!r}: {one_line}") from None
        known = [name for name in vars(hookspecs) if name.startswith("orchestra_")]
        unknown = [c.name for c in self._pm.get_hookcallers(plugin) or [] if c.spec is None]
        if unknown:
            self._pm.unregister(plugin)
            hook = unknown[0]
            raise PluginError(
                f"plugin {info.name!r} implements unknown hook {hook!r}{did_you_mean(hook, known)}"
            )
        self._pm.check_pending()
        info.hooks = sorted(c.name for c in self._pm.get_hookcallers(plugin) or [])
        self._registries.clear()

    # -- what is loaded ----------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Return every plugin found, loaded, broken or disabled, after filling registries."""
        self.collect_all()
        return list(self._infos.values())

    def problems(self) -> list[str]:
        """Return one line per broken plugin, for warnings on stderr."""
        return [
            f"plugin {info.name!r} ({info.origin}) is broken: {info.reason}"
            for info in self._infos.values()
            if info.status == "broken"
        ]

    def unknown_disabled(self) -> list[str]:
        """Return the names in the block lists that match no installed plugin or distribution."""
        names = {info.name for info in self._infos.values()}
        names |= {info.distribution for info in self._infos.values() if info.distribution}
        return sorted(self._disabled - names)

    def info(self, name: str) -> PluginInfo | None:
        """Return what is known about the plugin called ``name``."""
        return self._infos.get(name)

    # -- calling hooks -----------------------------------------------------------------

    def registry(self, kind: str) -> Registry:
        """Return the registry of ``kind`` ("tools", "routers" …), filled on first use."""
        if kind not in self._registries:
            from orchestra import protocols  # imported on use: `orchestra --help` needs none

            hook_name, label, protocol_name = KINDS[kind]
            protocol = getattr(protocols, protocol_name)
            registry: Registry = Registry(label, protocol)
            for plugin_name, implementation in self._implementations(hook_name):
                staged: Registry = Registry(label, protocol)
                try:
                    self._call(
                        plugin_name,
                        implementation,
                        hook_name,
                        register=staged.registrar(plugin_name),
                    )
                    for registration in staged:
                        registry.add(registration.item, plugin=plugin_name, name=registration.name)
                except Exception as error:
                    self._mark_broken(plugin_name, hook_name, error)
                    registry.discard_plugin(plugin_name)
            self._registries[kind] = registry
        return self._registries[kind]

    def tools(self) -> Registry:
        return self.registry("tools")

    def routers(self) -> Registry:
        return self.registry("routers")

    def schedulers(self) -> Registry:
        return self.registry("schedulers")

    def sinks(self) -> Registry:
        return self.registry("sinks")

    def workspaces(self) -> Registry:
        return self.registry("workspaces")

    def executors(self) -> Registry:
        return self.registry("executors")

    def loaders(self) -> Registry:
        return self.registry("loaders")

    def collect_all(self) -> None:
        """Fill every registry, so that every plugin's registration problems are known."""
        for kind in KINDS:
            self.registry(kind)

    def register_commands(self, cli: Any, reserved: Iterable[str] = ()) -> None:
        """Let every plugin add its commands to the click group ``cli``.

        A plugin whose command takes a ``reserved`` (built-in) name or one another plugin
        added is broken, and its commands are removed.
        """
        hook_name = "orchestra_register_commands"
        owner = dict.fromkeys(reserved, "orchestra")
        for plugin_name, implementation in self._implementations(hook_name):
            before = dict(cli.commands)
            try:
                self._call(plugin_name, implementation, hook_name, cli=cli)
            except Exception as error:
                self._mark_broken(plugin_name, hook_name, error)
                cli.commands = before
                continue
            added = sorted(
                name for name in cli.commands if cli.commands[name] is not before.get(name)
            )
            taken = [name for name in added if name in owner]
            if taken:
                cli.commands = before
                error = PluginError(
                    f"plugin {plugin_name!r} added command {taken[0]!r}, "
                    f"which {owner[taken[0]]!r} already provides"
                )
                self._mark_broken(plugin_name, hook_name, error)
                continue
            owner.update(dict.fromkeys(added, plugin_name))
            info = self._infos.get(plugin_name)
            if info is not None:
                info.commands = added

    def _implementations(self, hook_name: str) -> Iterator[tuple[str, Any]]:
        for implementation in getattr(self._pm.hook, hook_name).get_hookimpls():
            info = self._infos.get(implementation.plugin_name)
            if info is None or info.status == "ok":
                yield implementation.plugin_name, implementation

    def _call(
        self, plugin_name: str, implementation: Any, hook_name: str, **arguments: Any
    ) -> None:
        self._trace(f"calling {hook_name} of plugin {plugin_name!r}")
        implementation.function(**{name: arguments[name] for name in implementation.argnames})

    def _mark_broken(self, plugin_name: str, hook_name: str, error: Exception) -> None:
        info = self._infos.setdefault(plugin_name, PluginInfo(plugin_name))
        info.status = "broken"
        if isinstance(error, PluginError):
            info.reason = error.message
        else:
            info.reason = f"{hook_name} raised {type(error).__name__}: {error}"
        self._trace(f"plugin {plugin_name!r} is broken: {info.reason}")
        for registry in self._registries.values():
            registry.discard_plugin(plugin_name)

    def _trace(self, line: str) -> None:
        if self._trace_to is not None:
            self._trace_to.write(f"orchestra trace: {line}\n")
            self._trace_to.flush()
