"""The workstream format "toml": orchestra's own files (docs/workstreams.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from orchestra.plugin.markers import hookimpl
from orchestra.spec import read_toml, structure_workstream

if TYPE_CHECKING:
    from orchestra.models import Workstream
    from orchestra.plugin.protocols import LoadContext

#: a line that only a TOML workstream starts with: a task table, or its top-level id
TOML_SHAPE = re.compile(rb'^[ \t]*(\[\[tasks\]\]|id[ \t]*=[ \t]*["\'])', re.MULTILINE)


class TomlLoader:
    """Loads orchestra's TOML workstream files: any *.toml file, or a file shaped like one."""

    name = "toml"
    patterns = ("*.toml",)

    def sniff(self, path: Path, head: bytes) -> bool:
        return path.suffix == ".toml" or TOML_SHAPE.search(head) is not None

    def load(self, path: Path, context: LoadContext) -> Workstream:
        in_set = getattr(context, "in_set", False)
        return structure_workstream(read_toml(path), file=str(path), graph=not in_set)


@hookimpl
def orchestra_register_loaders(register) -> None:
    register(TomlLoader())
