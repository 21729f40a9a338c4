"""The installed plugins: the entry points of one group, found without importlib.metadata.

Every command that loads plugins needs this list, and importing ``importlib.metadata``
(email, zipfile, csv …) and parsing each distribution's METADATA with the email parser
cost more than a tenth of orchestra's start-up. What is read here is what
importlib.metadata reads for the same question: each directory on ``sys.path``, its
``*.dist-info`` and ``*.egg-info`` directories (in the order the directory lists them),
their ``entry_points.txt``, and the ``Name`` and ``Version`` lines of their METADATA or
PKG-INFO; a distribution found twice counts where it is found first. Where ``sys.path``
holds something else (a zip file, an egg file or directory), importlib.metadata answers
instead.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

#: ``module``, ``module:attr`` or ``module:attr.attr``, extras ignored, as importlib reads it
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?(\[.*\]\s*)?$")
_INFO_SUFFIXES = (".dist-info", ".egg-info")


class Distribution:
    """The name and version of an installed distribution."""

    __slots__ = ("name", "version")

    def __init__(self, name: str, version: str | None) -> None:
        self.name = name
        self.version = version


class EntryPoint:
    """One entry point: ``name = value`` in its group, and the distribution declaring it."""

    __slots__ = ("dist", "name", "value")

    def __init__(self, name: str, value: str, dist: Distribution | None) -> None:
        self.name = name
        self.value = value
        self.dist = dist

    def load(self) -> Any:
        """Import the module the value names and return the object it names in it."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"not an entry point: {self.value!r}")
        found: Any = importlib.import_module(match.group("module"))
        attributes = match.group("attr")
        for attribute in attributes.split(".") if attributes else ():
            found = getattr(found, attribute)
        return found


def entry_points(group: str, path: Sequence[str] | None = None) -> list[EntryPoint]:
    """Return the entry points of ``group`` of the distributions on ``path`` (sys.path)."""
    entries = sys.path if path is None else path
    if any(entry and (entry.endswith(".egg") or os.path.isfile(entry)) for entry in entries):
        return _from_importlib(group)  # a zip or an egg on the path: importlib reads those
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for directory in entries:
        for info in _info_directories(directory or "."):
            # known by its directory's name (name-version.dist-info), as importlib does:
            # the METADATA is read only for the distributions that have plugins
            key = _normalize(os.path.basename(info).partition("-")[0].rsplit(".", 1)[0])
            if key in seen:
                continue
            seen.add(key)
            declared = _group_of(info, group)
            if declared:
                dist = _distribution(info)
                found += [EntryPoint(name, value, dist) for name, value in declared]
    return found


def _info_directories(directory: str) -> Iterable[str]:
    try:
        # sorted: the file system's order (importlib.metadata's) differs from one machine
        # to the next, and with it which of two plugins would get a name both register
        names = sorted(os.listdir(directory))
    except OSError:  # missing, unreadable, not a directory
        return []
    # dist-info before egg-info, as importlib.metadata has them
    listed = [name for name in names if name.endswith(_INFO_SUFFIXES[0])]
    listed += [name for name in names if name.endswith(_INFO_SUFFIXES[1])]
    return [os.path.join(directory, name) for name in listed]


def _distribution(info: str) -> Distribution:
    """The Name and Version of the METADATA (or PKG-INFO) in ``info``; from the
    directory's name (``name-version.dist-info``) where they are missing."""
    name = version = None
    for file_name in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(info, file_name), encoding="utf-8", errors="replace") as file:
                for line in file:
                    if not line.strip():
                        break  # the headers end at the first blank line
                    key, _, value = line.partition(":")
                    if key == "Name" and name is None:
                        name = value.strip()
                    elif key == "Version" and version is None:
                        version = value.strip()
            break
        except OSError:
            continue
    if name is None:
        stem = os.path.basename(info).rsplit(".", 1)[0]
        name, _, from_directory = stem.partition("-")
        version = version or from_directory or None
    return Distribution(name, version)


def _group_of(info: str, group: str) -> list[tuple[str, str]]:
    """(name, value) of the entry points of ``group`` in ``info``'s entry_points.txt (an
    INI file)."""
    try:
        # undecodable bytes read as U+FFFD: a broken file of some other package must not
        # stop every command (a damaged orchestra entry then fails to load, by name)
        with open(
            os.path.join(info, "entry_points.txt"), encoding="utf-8", errors="replace"
        ) as file:
            text = file.read()
    except OSError:
        return []
    if f"[{group}]" not in text.replace(" ", ""):
        return []
    found = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == group and "=" in line:
            name, _, value = line.partition("=")
            found.append((name.strip(), value.strip()))
    return found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _from_importlib(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points as installed

    return [
        EntryPoint(
            point.name,
            point.value,
            Distribution(point.dist.name, point.dist.version) if point.dist else None,
        )
        for point in installed(group=group)
    ]
