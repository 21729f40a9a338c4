"""Plugins import only orchestra's public face, `orchestra` and `orchestra.testing`, and the
host's code names none of the plugins that ship with it."""

import ast
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what a plugin (its package and its tests) may import of orchestra
PUBLIC = {"orchestra", "orchestra.testing"}
#: the plugins that ship with orchestra, which the host must not know by name
BUNDLED = re.compile(r"\b(aider|codex|claude|gemini|ray)\b", re.IGNORECASE)


def orchestra_submodules() -> set[str]:
    """The names x for which `orchestra.x` is a module or a package."""
    return {module.name for module in pkgutil.iter_modules([str(ROOT / "orchestra")])}


def private_imports(source: str, submodules: set[str]) -> list[str]:
    """Each import in ``source`` of a module of orchestra other than the public ones:
    `import orchestra.x`, `from orchestra.x import y`, `from orchestra import x` (x a
    submodule)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.startswith("orchestra.") and alias.name not in PUBLIC
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("orchestra.") and node.module not in PUBLIC:
                found.append(f"line {node.lineno}: from {node.module} import …")
            elif node.module == "orchestra":
                found += [
                    f"line {node.lineno}: from orchestra import {alias.name}"
                    for alias in node.names
                    if alias.name in submodules and f"orchestra.{alias.name}" not in PUBLIC
                ]
    return found


def plugin_files() -> list[Path]:
    files = [
        path
        for top in (ROOT / "plugins", ROOT / "examples" / "plugins")
        for path in sorted(top.rglob("*.py"))
        if "__pycache__" not in path.parts
    ]
    assert len(files) > 30  # every plugin's package and tests, not an empty glob
    return files


def test_every_plugin_file_imports_only_orchestra_and_orchestra_testing():
    submodules = orchestra_submodules()
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in plugin_files()
        if (found := private_imports(path.read_text(), submodules))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "private"),
    [
        ("import orchestra.engine.process", True),
        ("import orchestra.testing, orchestra.models", True),
        ("from orchestra.engine.attempts import execute_attempt", True),
        ("from orchestra import engine", True),
        ("from orchestra import models as m", True),
        ("def f():\n    from orchestra.plugin.host import PluginHost\n", True),
        ("import orchestra", False),
        ("import orchestra.testing", False),
        ("from orchestra import StepResult, LocalContext", False),
        ("from orchestra import testing", False),
        ("from orchestra.testing import make_git_repo", False),
        ("from orchestra_ray import repository", False),
        ("from . import repository", False),
    ],
)
def test_the_check_sees_each_way_of_importing_a_private_module(source, private):
    assert bool(private_imports(source, orchestra_submodules())) is private


def _code_words(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every identifier and every string of ``tree`` but its docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    # a workstream format's own names for tools (the UET bundle's "claude-code") are that
    # format's vocabulary, mapped to the names plugins register: data, not a dependency
    aliases = {
        id(constant)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(
            isinstance(target, ast.Name) and target.id == "TOOL_NAMES" for target in node.targets
        )
        for constant in ast.walk(node.value)
    }
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and id(node) not in aliases:
                words.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            words.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            words.append((node.lineno, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words.append((node.lineno, node.name))
        elif isinstance(node, ast.arg):
            words.append((node.lineno, node.arg))
        elif isinstance(node, ast.alias):
            words.append((node.lineno, node.name))
    return words


def test_the_hosts_code_names_no_bundled_plugin():
    """Adding a tool plugin needs no change to the host: nothing in orchestra/ but its
    comments, docstrings and a format's table of its own names for tools (``TOOL_NAMES``)
    names aider, codex, claude, gemini or ray (their settings, options and tool names come
    from the plugins themselves)."""
    named = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sorted((ROOT / "orchestra").rglob("*.py"))
        for line, text in _code_words(ast.parse(path.read_text()))
        if BUNDLED.search(text)
    ]
    assert named == []
