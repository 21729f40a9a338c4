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
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

import attrs
import pluggy

from orchestra import classes
from orchestra.errors import ConfigError, PluginError, did_you_mean
from orchestra.plugin import hookspecs
from orchestra.plugin.registry import Registry

if TYPE_CHECKING:  # imported on use at run time: `orchestra --help` needs none
    import click

    from orchestra.config import Project
    from orchestra.plugin.protocols import (
        EventSink,
        Executor,
        PluginSetting,
        RoutingStrategy,
        SchedulingStrategy,
        ToolAdapter,
        Workspace,
        WorkstreamLoader,
    )

ENTRY_POINT_GROUP = "orchestra"
#: the distribution whose plugins are the built-ins: they keep their names against any plugin
BUILTIN_DISTRIBUTION = "orchestra"
DISABLE_VARIABLE = "ORCHESTRA_DISABLE_PLUGINS"
TRACE_VARIABLE = "ORCHESTRA_TRACE_PLUGINS"

#: registry kind -> (hook, what one item is called, the protocol in orchestra.plugin.protocols)
KINDS: dict[str, tuple[str, str, str]] = {
    "tools": ("orchestra_register_tools", "tool", "ToolAdapter"),
    "routers": ("orchestra_register_routers", "routing strategy", "RoutingStrategy"),
    "schedulers": ("orchestra_register_schedulers", "scheduling strategy", "SchedulingStrategy"),
    "sinks": ("orchestra_register_sinks", "sink", "EventSink"),
    "workspaces": ("orchestra_register_workspaces", "workspace", "Workspace"),
    "executors": ("orchestra_register_executors", "executor", "Executor"),
    "loaders": ("orchestra_register_loaders", "workstream format", "WorkstreamLoader"),
    "settings": ("orchestra_register_settings", "setting", "PluginSetting"),
}

#: built-in plugins no run works without, which cannot be blocked (as pytest's essential
#: plugins cannot): entry-point name -> what would break without it
ESSENTIAL = {
    "shell": "no task's command could run (it registers the shell tool)",
    "toml": "no TOML workstream could be read (it registers the toml loader)",
    "executors": "no attempt could run (it registers the local executor)",
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
    #: registry kind ("tools", "routers" …) -> the names the plugin registered there
    registered: dict[str, list[str]] = attrs.Factory(dict)

    @property
    def builtin(self) -> bool:
        """Whether the plugin is one of orchestra's own (its names win every clash)."""
        return self.distribution == BUILTIN_DISTRIBUTION

    @property
    def origin(self) -> str:
        """The distribution and version, for messages: 'orchestra-aider 0.1.0'."""
        if self.distribution is None:
            return "registered at run time"
        return f"{self.distribution} {self.version or ''}".strip()

    @property
    def label(self) -> str:
        """The plugin's name with its distribution: 'echo (orchestra-echo)', for a name
        that two distributions declare."""
        return f"{self.name} ({self.distribution})"


def disabled_from_environment(environ: Mapping[str, str]) -> list[str]:
    """Return the plugin names listed in ORCHESTRA_DISABLE_PLUGINS (comma-separated)."""
    return [name.strip() for name in environ.get(DISABLE_VARIABLE, "").split(",") if name.strip()]


def refuse_essential(names: Iterable[str], *, file: str, field: str | None = None) -> None:
    """Raise ConfigError if ``names`` (a block list) holds a plugin no run works without,
    or orchestra's own distribution, saying what would break."""
    for name in names:
        if name in ESSENTIAL:
            raise ConfigError(
                f"plugin {name!r} cannot be blocked: {ESSENTIAL[name]}", file=file, field=field
            )
        if name == BUILTIN_DISTRIBUTION:
            raise ConfigError(
                f"distribution {name!r} cannot be blocked: it holds the plugins every run "
                f"needs ({', '.join(ESSENTIAL)}); block its other plugins by name",
                file=file,
                field=field,
            )


#: what pluggy takes for a hook implementation on a module (``_static_hook_attr``)
_HOOKABLE = (types.FunctionType, types.MethodType, staticmethod, classmethod)


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, quicker to look a module plugin over.

    ``register`` asks ``parse_hookimpl_opts`` about every name in the plugin, and pluggy
    looks each up with ``inspect.getattr_static``: 424 names for the 15 built-in plugin
    modules, 13 M instructions (about 2.5 ms) of every command's start. A module's names
    are its own attributes, and only a function (or a method, or a staticmethod or
    classmethod object) there can be a hook implementation, so the imported classes,
    modules and constants are passed over at once, as pytest passes over names that are
    not its hooks'. Everything else, and every plugin that is not a module, pluggy looks
    at as before."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        if isinstance(plugin, types.ModuleType) and not isinstance(
            plugin.__dict__.get(name), _HOOKABLE
        ):
            return None
        return super().parse_hookimpl_opts(plugin, name)


class PluginHost:
    """The plugin manager, the plugins it holds, and the registries they filled."""

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        trace: bool = False,
        trace_to: TextIO | None = None,
    ) -> None:
        self._pm = _PluginManager("orchestra")
        self._pm.add_hookspecs(hookspecs)
        self._disabled = set(disabled)
        self._trace_to = (trace_to or sys.stderr) if trace else None
        self._infos: dict[str, PluginInfo] = {}
        self._registries: dict[str, Registry[Any]] = {}

    @classmethod
    def from_environment(
        cls,
        *,
        config_disabled: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
        config_label: str = "configuration",
    ) -> PluginHost:
        """Return a host with every installed plugin loaded, honouring the block lists.

        ``ORCHESTRA_DISABLE_PLUGINS`` and the configuration's ``disable_plugins`` are
        combined; ``ORCHESTRA_TRACE_PLUGINS=1`` traces hook calls to stderr. A block list
        naming an essential plugin is a ConfigError naming the list (``config_label`` is
        the configuration file's name for messages).
        """
        environ = os.environ if environ is None else environ
        from_environment = disabled_from_environment(environ)
        refuse_essential(from_environment, file=DISABLE_VARIABLE)
        refuse_essential(config_disabled, file=config_label, field="disable_plugins")
        host = cls(
            disabled=[*from_environment, *config_disabled],
            trace=environ.get(TRACE_VARIABLE, "") not in ("", "0"),
        )
        host.load_entry_points()
        return host

    @classmethod
    def for_project(cls, project: Project) -> PluginHost:
        """Return the host of ``project``: every installed plugin, less those its
        configuration's ``disable_plugins`` and ``ORCHESTRA_DISABLE_PLUGINS`` block."""
        return cls.from_environment(
            config_disabled=project.config.disable_plugins,
            environ=os.environ,
            config_label=project.config_label,
        )

    # -- loading ---------------------------------------------------------------------

    def load_entry_points(self, *, builtin_only: bool = False) -> None:
        """Load every plugin of the ``orchestra`` entry-point group, noting failures; only
        orchestra's own with ``builtin_only`` (a test's host, ``orchestra.testing``)."""
        from orchestra.plugin.entry_points import entry_points

        # orchestra's own plugins first: they are listed, and their hooks called, first
        found = sorted(
            entry_points(group=ENTRY_POINT_GROUP),
            key=lambda entry_point: (
                entry_point.dist is None or entry_point.dist.name != BUILTIN_DISTRIBUTION
            ),
        )
        if builtin_only:
            found = [
                point for point in found if point.dist and point.dist.name == BUILTIN_DISTRIBUTION
            ]
        for entry_point in found:
            distribution = entry_point.dist.name if entry_point.dist else None
            version = entry_point.dist.version if entry_point.dist else None
            info = PluginInfo(entry_point.name, distribution, version)
            taken = self._infos.get(entry_point.name)
            # a blocked plugin is not loaded, so it claims no name: blocking either of two
            # distributions that declare one name ends their clash
            if {entry_point.name, distribution} & self._disabled:
                info.status, info.reason = "disabled", "blocked by configuration or environment"
                self._infos[entry_point.name if taken is None else info.label] = info
                if entry_point.name in self._disabled:
                    self._pm.set_blocked(entry_point.name)
                continue
            if taken is not None and taken.status != "disabled":
                info.status, info.reason = (
                    "broken",
                    (f"plugin name {entry_point.name!r} is already taken by {taken.origin}"),
                )
                self._infos[info.label] = info
                continue
            if taken is not None:  # the name's first holder is blocked: this one takes it
                self._infos[taken.label] = self._infos.pop(entry_point.name)
            self._infos[entry_point.name] = info
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

        Raises PluginError for an unknown hook, a hook with the wrong arguments, or a hook
        wrapper.
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
        wrapper = next(
            (
                (caller.name, "wrapper" if implementation.wrapper else "hookwrapper")
                for caller in self._pm.get_hookcallers(plugin) or []
                for implementation in caller.get_hookimpls()
                if implementation.plugin is plugin
                and (implementation.wrapper or implementation.hookwrapper)
            ),
            None,
        )
        if wrapper is not None:
            self._pm.unregister(plugin)
            hook, option = wrapper
            # the host calls each plugin's implementation itself (see the module's
            # docstring), so a wrapper's code around the others would never run
            raise PluginError(
                f"plugin {info.name!r} marks hook {hook!r} {option}=True: orchestra calls "
                f"each plugin's hook on its own, so a wrapper would register nothing"
            )
        self._pm.check_pending()
        info.hooks = sorted(c.name for c in self._pm.get_hookcallers(plugin) or [])
        self._registries.clear()

    # -- what is loaded ----------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Return every plugin found, loaded, broken or disabled, after filling registries,
        each with the names it registered."""
        self.collect_all()
        for info in self._infos.values():
            info.registered = {kind: [] for kind in KINDS}
        for kind, registry in self._registries.items():
            for registration in registry:
                owner = self._infos.get(registration.plugin)
                if owner is not None:
                    owner.registered[kind].append(registration.name)
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

    def registry(self, kind: str) -> Registry[Any]:
        """Return the registry of ``kind`` ("tools", "routers" …), filled on first use;
        ``tools()``, ``routers()`` … give each typed."""
        if kind not in self._registries:
            from orchestra.plugin import protocols  # imported on use: `orchestra --help` needs none

            hook_name, label, protocol_name = KINDS[kind]
            protocol = getattr(protocols, protocol_name)
            registry: Registry[Any] = Registry(label, protocol)
            for plugin_name, implementation in self._implementations(hook_name):
                staged: Registry[Any] = Registry(label, protocol)
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

    def tools(self) -> Registry[ToolAdapter]:
        """Return the registered tool adapters."""
        return self.registry("tools")

    def routers(self) -> Registry[RoutingStrategy]:
        """Return the registered routing strategies."""
        return self.registry("routers")

    def schedulers(self) -> Registry[SchedulingStrategy]:
        """Return the registered scheduling strategies."""
        return self.registry("schedulers")

    def sinks(self) -> Registry[EventSink]:
        """Return the registered event sinks."""
        return self.registry("sinks")

    def workspaces(self) -> Registry[Workspace]:
        """Return the registered workspaces."""
        return self.registry("workspaces")

    def executors(self) -> Registry[Executor]:
        """Return the registered executors."""
        return self.registry("executors")

    def loaders(self) -> Registry[WorkstreamLoader]:
        """Return the registered workstream loaders."""
        return self.registry("loaders")

    def settings(self) -> Registry[PluginSetting]:
        """Return the settings plugins added."""
        return self.registry("settings")

    def collect_all(self) -> None:
        """Fill every registry, so that every plugin's registration problems are known."""
        for kind in KINDS:
            self.registry(kind)

    def register_commands(self, cli: click.Group, reserved: Iterable[str] = ()) -> None:
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
                clash = PluginError(
                    f"plugin {plugin_name!r} added command {taken[0]!r}, "
                    f"which {owner[taken[0]]!r} already provides"
                )
                self._mark_broken(plugin_name, hook_name, clash)
                continue
            owner.update(dict.fromkeys(added, plugin_name))
            info = self._infos.get(plugin_name)
            if info is not None:
                info.commands = added

    def _implementations(self, hook_name: str) -> Iterator[tuple[str, Any]]:
        """Yield (plugin name, implementation) of the working plugins, built-ins first,
        then in the order the plugins were loaded, whatever their tryfirst/trylast: the
        first to register a name keeps it, so no plugin can take a built-in's name."""
        rank = {
            name: (not info.builtin, index)
            for index, (name, info) in enumerate(self._infos.items())
        }
        implementations = sorted(
            getattr(self._pm.hook, hook_name).get_hookimpls(),
            key=lambda implementation: rank.get(implementation.plugin_name, (True, len(rank))),
        )
        for implementation in implementations:
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
