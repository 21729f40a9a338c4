"""The hook reference says what the code does: docs/hooks.md names every member of every
protocol in orchestra/plugin/protocols.py with its real parameters, in the sections of the hooks
that hand those objects out, and the hookspecs' docstrings do not contradict them.

The convention a page follows, and this test reads: a member is written in backticks as a
Python signature, ``name(param, param)`` for a method (annotations, defaults, ``-> result``
and a ``*`` before keyword-only parameters may follow the names) and ``name: type`` for an
attribute or property. A protocol's members are looked for in the sections (``## ``
headings) that name the protocol in backticks, and every protocol is named in one; a
hook's section names the protocol of what the hook registers and those its methods
return (``Workspace.open`` returns a ``RunWorkspace``).
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import pytest

import orchestra
from orchestra.plugin import hookspecs, protocols

ROOT = Path(__file__).resolve().parents[1]
HOOKS_PAGE = ROOT / "docs" / "hooks.md"
PLUGINS_PAGE = ROOT / "docs" / "plugins.md"

FENCED = re.compile(r"^```.*?^```$", re.M | re.S)
SPAN = re.compile(r"``(.+?)``|`([^`\n]+)`")
WORD = re.compile(r"\b[A-Za-z_]\w*\b")

#: a parameter: its name and how it is passed
Parameter = tuple[str, str]


def code_spans(text: str) -> list[str]:
    """Return the inline code spans of ``text`` (Markdown or reST), outside fenced blocks."""
    return [double or single for double, single in SPAN.findall(FENCED.sub("", text))]


def sections(text: str) -> dict[str, str]:
    """Return each ``## `` section of a page by its heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[index]: parts[index + 1] for index in range(1, len(parts), 2)}


def written_signature(span: str) -> tuple[str, list[Parameter]] | None:
    """Return the name and parameters a span writes as ``name(params) -> result``, if it
    is written so."""
    try:
        (function,) = ast.parse(f"def {span}: ...").body
    except SyntaxError:
        return None
    assert isinstance(function, ast.FunctionDef)
    arguments = function.args
    written = [(argument.arg, "positional") for argument in arguments.posonlyargs]
    written += [(argument.arg, "positional") for argument in arguments.args]
    if arguments.vararg:
        written.append((arguments.vararg.arg, "*"))
    written += [(argument.arg, "keyword") for argument in arguments.kwonlyargs]
    if arguments.kwarg:
        written.append((arguments.kwarg.arg, "**"))
    return function.name, written


def written_attribute(span: str) -> str | None:
    """Return the name a span writes as ``name: type``, if it is written so."""
    try:
        (statement,) = ast.parse(span).body
    except SyntaxError:
        return None
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id
    return None


KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.VAR_POSITIONAL: "*",
    inspect.Parameter.KEYWORD_ONLY: "keyword",
    inspect.Parameter.VAR_KEYWORD: "**",
}


def real_parameters(function: Any, bound: bool) -> list[Parameter]:
    """Return a function's parameters as a page writes them (without ``self``)."""
    parameters = list(inspect.signature(function).parameters.values())
    return [(parameter.name, KINDS[parameter.kind]) for parameter in parameters[bound:]]


def protocol_classes() -> dict[str, type]:
    """Return every Protocol defined in orchestra/plugin/protocols.py, by name."""
    return {
        name: value
        for name, value in vars(protocols).items()
        if isinstance(value, type)
        and value.__module__ == protocols.__name__
        and getattr(value, "_is_protocol", False)
    }


def members(protocol: type) -> dict[str, list[Parameter] | None]:
    """Return a protocol's members: a method's parameters, or None for an attribute."""
    found: dict[str, list[Parameter] | None] = {}
    for base in reversed(protocol.__mro__):
        if base is Protocol or not getattr(base, "_is_protocol", False):
            continue
        for name in inspect.get_annotations(base):
            found[name] = None
        for name, value in base.__dict__.items():
            if name.startswith("_"):
                continue
            if isinstance(value, property):
                found[name] = None
            elif inspect.isfunction(value):
                found[name] = real_parameters(value, bound=True)
    return found


def shown(parameters: list[Parameter]) -> str:
    """Return parameters as Python writes them: ``(argv, *, env, on_line)``."""
    written: list[str] = []
    for name, kind in parameters:
        if kind == "keyword" and not any(item.startswith("*") for item in written):
            written.append("*")
        written.append({"*": f"*{name}", "**": f"**{name}"}.get(kind, name))
    return "(" + ", ".join(written) + ")"


def hookspec_functions() -> dict[str, Any]:
    return {
        name: function
        for name, function in vars(hookspecs).items()
        if name.startswith("orchestra_") and inspect.isfunction(function)
    }


def reached_protocols(annotations: Iterable[str], *, returns_only: bool = False) -> set[str]:
    """Return the protocols named in ``annotations`` and, in turn, in their members'
    annotations (only what they return, with ``returns_only``): the object shapes a hook
    receives, and those the objects hand out or are handed."""
    known = protocol_classes()
    reached: set[str] = set()
    pending = list(annotations)
    while pending:
        for word in WORD.findall(str(pending.pop())):
            if word in known and word not in reached:
                reached.add(word)
                for value in vars(known[word]).values():
                    function = value.fget if isinstance(value, property) else value
                    if inspect.isfunction(function):
                        written = inspect.get_annotations(function)
                        pending += [written.get("return")] if returns_only else written.values()
                if not returns_only:
                    pending += inspect.get_annotations(known[word]).values()
    return reached


def sections_naming(protocol: str, page: dict[str, str]) -> dict[str, str]:
    return {
        heading: body
        for heading, body in page.items()
        if {protocol, f"orchestra.{protocol}"} & set(code_spans(body))
    }


PAGE = sections(HOOKS_PAGE.read_text())


@pytest.mark.parametrize("hook", sorted(hookspec_functions()))
def test_each_hooks_section_names_the_protocols_of_what_it_registers(hook):
    headings = [heading for heading in PAGE if heading.startswith(f"{hook}(")]
    assert headings, f"docs/hooks.md has no section {hook}(...)"  # tests/test_docs.py says more
    heading = headings[0]
    registered = inspect.get_annotations(hookspec_functions()[hook]).values()
    reached = reached_protocols(registered, returns_only=True)
    named = set(code_spans(PAGE[heading]))
    missing = sorted(p for p in reached if p not in named and f"orchestra.{p}" not in named)
    assert not missing, (
        f"docs/hooks.md, section {heading}: name the protocols {missing} in backticks"
    )


@pytest.mark.parametrize("protocol", sorted(protocol_classes()))
def test_each_protocol_member_is_written_with_its_real_parameters(protocol):
    where = sections_naming(protocol, PAGE)
    assert where, f"docs/hooks.md names protocol {protocol} in no section"
    spans = [span for body in where.values() for span in code_spans(body)]
    signatures = [found for found in map(written_signature, spans) if found]
    attributes = {found for found in map(written_attribute, spans) if found}
    problems = []
    for name, parameters in members(protocol_classes()[protocol]).items():
        if parameters is None:
            if name not in attributes:
                problems.append(f"attribute `{name}: ...` is not written")
        elif (name, parameters) not in signatures:
            written = [shown(found) for method, found in signatures if method == name]
            problems.append(
                f"method `{name}{shown(parameters)}` is not written"
                + (f" (written: {', '.join(written)})" if written else "")
            )
    assert not problems, f"docs/hooks.md, {protocol} in {sorted(where)}: " + "; ".join(problems)


@pytest.mark.parametrize("heading", sorted(PAGE))
def test_no_section_writes_a_member_with_other_parameters(heading):
    """A section may mention a member again, but never with parameters it does not have."""
    named = set(code_spans(PAGE[heading]))
    in_section = [
        cls for name, cls in protocol_classes().items() if {name, f"orchestra.{name}"} & named
    ]
    real: dict[str, list[list[Parameter]]] = {}
    for cls in in_section:
        for name, parameters in members(cls).items():
            if parameters is not None:
                real.setdefault(name, []).append(parameters)
    wrong = [
        f"{name}{shown(parameters)}"
        for name, parameters in filter(None, map(written_signature, code_spans(PAGE[heading])))
        if name in real and parameters not in real[name]
    ]
    assert not wrong, f"docs/hooks.md, section {heading}, writes {wrong}: not the code's"


@pytest.mark.parametrize("hook", sorted(hookspec_functions()))
def test_a_hookspecs_docstring_writes_members_with_their_real_parameters(hook):
    function = hookspec_functions()[hook]
    reached = reached_protocols(inspect.get_annotations(function).values())
    real: dict[str, list[list[Parameter]]] = {}
    for name in reached:
        for member, parameters in members(protocol_classes()[name]).items():
            if parameters is not None:
                real.setdefault(member, []).append(parameters)
    wrong = [
        f"{name}{shown(parameters)}"
        for name, parameters in filter(None, map(written_signature, code_spans(function.__doc__)))
        if name in real and parameters not in real[name]
    ]
    assert not wrong, (
        f"orchestra/plugin/hookspecs.py, {hook}'s docstring writes {wrong}: not the code's"
    )


def test_the_plugin_page_lists_every_public_name():
    """docs/plugins.md's table of what ``orchestra`` offers names each of its public names."""
    text = PLUGINS_PAGE.read_text()
    table = re.search(r"^\| name \| what it is \|\n(?:^\|.*\n)+", text, re.M)
    assert table, "docs/plugins.md has no table of orchestra's names"
    listed = set()
    for span in code_spans(table.group(0)):
        written = written_signature(span)
        listed.add(written[0] if written else span)
    missing = sorted(set(orchestra.__all__) - listed)
    assert not missing, f"docs/plugins.md does not list orchestra's public names {missing}"


def test_every_class_the_hook_reference_names_is_public():
    """A model, context or error the page names (``Landing``, ``SpecError`` …) is one a
    plugin can import from ``orchestra``, the only module it may import."""
    from orchestra import errors, models

    classes = {
        name
        for module in (models, errors, protocols)
        for name, value in vars(module).items()
        if isinstance(value, type)
        and value.__module__ == module.__name__
        and not getattr(value, "_is_protocol", False)
        and not name.startswith("_")
    }
    named = {span.removeprefix("orchestra.") for span in code_spans(HOOKS_PAGE.read_text())}
    missing = sorted((named & classes) - set(orchestra.__all__))
    assert not missing, f"docs/hooks.md names {missing}, which orchestra does not export"
