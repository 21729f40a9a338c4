"""orchestra's modules import one another without a cycle, module by module and package by
package.

The import graph is read from the source with ``ast`` (nothing is imported). What counts as
an import of module A by module B:

- ``import orchestra.a``, ``from orchestra.a import x`` and ``from . import x`` (an edge to
  the submodule ``x`` when there is one, else to ``orchestra.a``), wherever they stand in
  B: at the top, under ``try``/``if``, or **inside a function**. An import kept inside a
  function (so that ``orchestra --help`` stays fast) still makes B need A whenever that
  function runs; putting it there only hides a cycle from the interpreter, not from the
  reader, so it counts (``spec`` and ``config`` importing each other inside functions was
  such a cycle).
- Not the imports under ``if TYPE_CHECKING:``: they never run, and an annotation may name
  any module.
- Not the names looked up by string (the root's ``_PUBLIC`` table behind
  ``orchestra.__getattr__``, the CLI's ``BUILTIN_COMMANDS``, entry points): those are the
  doors in from outside. So that no module inside orchestra walks in through one of them,
  ``test_no_module_imports_the_root_s_public_names`` keeps every import of a name going to
  the module that defines it.

Two graphs are checked: the modules' own, and the packages' (each subpackage, e.g.
``orchestra.engine``, and each module at the root, e.g. ``orchestra.spec``, as one node),
where ``state`` needing ``engine.states`` while ``engine.runs`` needs ``state`` is a cycle
although no two modules import each other. A failure names each cycle and the lines that
make it.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "orchestra"

#: module -> {imported module: ["file:line", …]}
Graph = Mapping[str, Mapping[str, list[str]]]


def modules_of(package: Path) -> dict[str, tuple[Path, bool]]:
    """Return {dotted name: (file, is a package)} for every module under ``package``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _guarded_by_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Yield every import statement in or under ``nodes`` but those under
    ``if TYPE_CHECKING:`` (its ``else:`` runs, and counts)."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _guarded_by_type_checking(node):
            yield from _imports(node.orelse)
        else:
            yield from _imports(ast.iter_child_nodes(node))


def import_graph(package: Path) -> dict[str, dict[str, list[str]]]:
    """Return the graph of imports among the modules of ``package`` (see the module's
    docstring for what counts)."""
    modules = modules_of(package)
    graph: dict[str, dict[str, list[str]]] = {}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        edges = graph.setdefault(name, {})
        for node in _imports([ast.parse(path.read_text(encoding="utf-8"), str(path))]):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name in modules]
            else:
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                ]
                targets = [target for target in targets if target in modules]
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            for target in dict.fromkeys(targets):
                if target != name:
                    edges.setdefault(target, []).append(where)
    return graph


def package_graph(graph: Graph) -> dict[str, dict[str, list[str]]]:
    """Return ``graph`` with each subpackage and each root module as one node."""

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    parts: dict[str, dict[str, list[str]]] = {}
    for module, edges in graph.items():
        node = parts.setdefault(part(module), {})
        for target, lines in edges.items():
            if part(target) != part(module):
                node.setdefault(part(target), []).extend(lines)
    return parts


def cycles(graph: Graph) -> list[str]:
    """Return one line per strongly connected group of ``graph`` with more than one node:
    its shortest cycle through its first node, and the lines that make each step."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm (the graph is a few hundred nodes)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_describe(graph, _shortest_cycle(graph, group)) for group in sorted(groups)]


def _shortest_cycle(graph: Graph, group: list[str]) -> list[str]:
    start, members = group[0], set(group)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target in members and target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError(f"no cycle through {start} in {group}")  # a bug of this test


def _describe(graph: Graph, path: list[str]) -> str:
    steps = [
        f"{source} -> {target} ({', '.join(graph[source][target])})"
        for source, target in itertools.pairwise(path)
    ]
    return " -> ".join(path) + ":\n    " + "\n    ".join(steps)


def test_no_two_modules_of_orchestra_import_each_other_even_through_others():
    found = cycles(import_graph(PACKAGE))

    assert not found, "import cycles between modules:\n" + "\n".join(found)


def test_no_two_packages_of_orchestra_import_each_other_even_through_others():
    found = cycles(package_graph(import_graph(PACKAGE)))

    assert not found, "import cycles between packages:\n" + "\n".join(found)


def test_no_module_imports_the_root_s_public_names():
    public = {
        name
        for node in ast.walk(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8")))
        if isinstance(node, ast.Assign)
        and any(isinstance(target, ast.Name) and target.id == "_PUBLIC" for target in node.targets)
        for name in ast.literal_eval(node.value)
    }
    assert "Task" in public  # the table was found
    through_the_root = [
        f"{path.relative_to(ROOT)}:{node.lineno}: from orchestra import {alias.name}"
        for name, (path, _) in modules_of(PACKAGE).items()
        if name != "orchestra"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "orchestra"
        for alias in node.names
        if alias.name in public
    ]

    assert not through_the_root, "import these from their own modules:\n" + "\n".join(
        through_the_root
    )


def write_package(top: Path, files: Mapping[str, str]) -> Path:
    """Write a throwaway package ``top`` with ``files`` ({relative path: source})."""
    for relative, source in {"__init__.py": "", **files}.items():
        path = top / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return top


def test_a_cycle_hidden_in_a_function_is_found_and_named_with_its_lines(tmp_path):
    package = write_package(
        tmp_path / "pkg",
        {
            "a.py": "import os\n\n\ndef later():\n    from pkg.b import thing\n",
            "b.py": "from . import a\n\nthing = 1\n",
            "c.py": "from pkg import d\n",
            "d.py": "import pkg.e as e\n",
            "e.py": "try:\n    from .c import x\nexcept ImportError:\n    pass\n",
        },
    )

    found = cycles(import_graph(package))

    assert found == [
        "pkg.a -> pkg.b -> pkg.a:\n    pkg.a -> pkg.b (pkg/a.py:5)\n    pkg.b -> pkg.a (pkg/b.py:1)",
        "pkg.c -> pkg.d -> pkg.e -> pkg.c:\n"
        "    pkg.c -> pkg.d (pkg/c.py:1)\n"
        "    pkg.d -> pkg.e (pkg/d.py:1)\n"
        "    pkg.e -> pkg.c (pkg/e.py:2)",
    ]


def test_imports_for_type_checking_only_make_no_cycle(tmp_path):
    package = write_package(
        tmp_path / "pkg",
        {
            "a.py": "from pkg.b import B\n",
            "b.py": (
                "import typing\n\nif typing.TYPE_CHECKING:\n    from pkg.a import A\n"
                "else:\n    import json\n\nB = 1\n"
            ),
        },
    )

    assert cycles(import_graph(package)) == []


def test_packages_that_need_each_other_are_a_cycle_though_their_modules_are_not(tmp_path):
    package = write_package(
        tmp_path / "pkg",
        {
            "state/__init__.py": "",
            "state/store.py": "from pkg.engine.states import RunState\n",
            "engine/__init__.py": "",
            "engine/states.py": "RunState = 1\n",
            "engine/runs.py": "from pkg.state import store\n",
        },
    )
    graph = import_graph(package)

    assert cycles(graph) == []
    assert cycles(package_graph(graph)) == [
        "pkg.engine -> pkg.state -> pkg.engine:\n"
        "    pkg.engine -> pkg.state (pkg/engine/runs.py:1)\n"
        "    pkg.state -> pkg.engine (pkg/state/store.py:1)"
    ]
