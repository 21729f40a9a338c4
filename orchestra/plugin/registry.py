"""The registries handed to ``orchestra_register_*`` hooks.

A registry knows what kind of thing it holds, refuses a name registered twice (naming
both plugins), checks that an object has the attributes of its protocol, and remembers
which plugin registered each name, so that messages can say where a thing came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from orchestra import classes
from orchestra.errors import PluginError, UnknownName, did_you_mean

if TYPE_CHECKING:  # protocols is imported only where a registry is filled
    from orchestra.plugin.protocols import Register

T = TypeVar("T")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


@classes.frozen
class Registration(Generic[T]):
    """One registered object, its name and the plugin that registered it."""

    name: str
    item: T
    plugin: str


class Registry(Generic[T]):
    """Named objects of one kind (tools, routers …) with the plugin behind each."""

    def __init__(self, kind: str, protocol: type | None = None) -> None:
        self.kind = kind
        self.required = protocol_members(protocol) if protocol is not None else ()
        self._entries: dict[str, Registration[T]] = {}

    def registrar(self, plugin: str) -> Register[T]:
        """Return the ``register(item, name=None)`` function handed to ``plugin``'s hook."""

        def register(item: T, name: str | None = None) -> None:
            self.add(item, plugin=plugin, name=name)

        register.__doc__ = f"Register a {self.kind}; its name is ``name`` or ``item.name``."
        return register

    def add(self, item: T, *, plugin: str, name: str | None = None) -> None:
        """Add ``item`` under its name; raise PluginError for a bad or duplicate name."""
        name = name if name is not None else getattr(item, "name", None)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PluginError(
                f"plugin {plugin!r} registered a {self.kind} with invalid name {name!r}"
            )
        missing = [member for member in self.required if not hasattr(item, member)]
        if missing:
            raise PluginError(
                f"plugin {plugin!r} registered {self.kind} {name!r} without {', '.join(missing)}"
            )
        existing = self._entries.get(name)
        if existing is not None:
            raise PluginError(
                f"plugin {plugin!r} registered {self.kind} {name!r}, "
                f"which plugin {existing.plugin!r} already registered"
            )
        self._entries[name] = Registration(name, item, plugin)

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; UnknownName says what exists."""
        return self.registration(name).item

    def registration(self, name: str) -> Registration[T]:
        """Return the registration of ``name`` (object and plugin)."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none installed"
            raise UnknownName(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)} (known: {known})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Return the registered names in registration order."""
        return list(self._entries)

    def discard_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (used when it turns out broken)."""
        self._entries = {n: r for n, r in self._entries.items() if r.plugin != plugin}


def protocol_members(protocol: type) -> tuple[str, ...]:
    """Return the attribute and method names a Protocol class declares."""
    names = set(getattr(protocol, "__annotations__", {}))
    names.update(name for name, value in vars(protocol).items() if callable(value))
    return tuple(sorted(name for name in names if not name.startswith("_")))
