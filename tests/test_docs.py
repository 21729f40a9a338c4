"""The documentation keeps up with the code: every hook documented with its arguments."""

import inspect
import re
from pathlib import Path

from orchestra.plugin import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"
HEADING = re.compile(r"^## (orchestra_\w+)\((.*)\)$", re.MULTILINE)


def documented_hooks() -> dict[str, list[str]]:
    text = (DOCS / "hooks.md").read_text()
    found: dict[str, list[str]] = {}
    for name, arguments in HEADING.findall(text):
        assert name not in found, f"{name} is documented twice in docs/hooks.md"
        found[name] = [argument.strip() for argument in arguments.split(",") if argument.strip()]
    return found


def specified_hooks() -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(function).parameters)
        for name, function in vars(hookspecs).items()
        if name.startswith("orchestra_") and callable(function)
    }


def test_every_hook_has_a_heading_with_its_exact_arguments():
    assert documented_hooks() == specified_hooks()


def test_every_hook_has_a_docstring_saying_what_it_is_for():
    for name, function in vars(hookspecs).items():
        if name.startswith("orchestra_"):
            assert function.__doc__ and function.__doc__.strip(), name


def test_the_docs_pages_exist_and_link_each_other():
    index = (DOCS / "index.md").read_text()
    for page in ("workstreams.md", "configuration.md", "plugins.md", "hooks.md", "architecture.md"):
        assert (DOCS / page).is_file(), page
        assert page in index, f"docs/index.md does not link {page}"


def test_the_workstream_reference_names_every_field():
    import attrs

    from orchestra.models import (
        Backoff,
        Budget,
        Check,
        Defaults,
        FileScope,
        Review,
        Task,
        Workstream,
    )

    text = (DOCS / "workstreams.md").read_text()
    for model in (Workstream, Defaults, Task, FileScope, Check, Backoff, Budget, Review):
        for field in attrs.fields(model):
            if not field.metadata.get("internal"):  # set by loaders, never read from a file
                assert f"`{field.name}`" in text, f"{model.__name__}.{field.name} is not documented"


def test_the_configuration_page_names_every_setting_and_variable():
    from orchestra.config import SETTINGS

    text = (DOCS / "configuration.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text and setting.variable in text, setting.name
    for variable in ("ORCHESTRA_DISABLE_PLUGINS", "ORCHESTRA_TRACE_PLUGINS"):
        assert variable in text


def test_the_command_line_page_shows_every_commands_current_help():
    from orchestra.cli import BUILTIN_COMMANDS
    from orchestra.testing import run_orchestra

    text = (DOCS / "cli.md").read_text()
    environment = {"COLUMNS": "80"}
    for words in [[], *([name] for name in sorted(BUILTIN_COMMANDS)), ["tools", "reset"]]:
        shown = run_orchestra(*words, "--help", env=environment).stdout
        assert shown and shown in text, (
            f"docs/cli.md lacks the current `orchestra {' '.join(words)} --help`"
        )


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a page's headings (lowercase, punctuation dropped,
    spaces to hyphens, a repeated one numbered), outside code blocks."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"^#{1,6} (.*)$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_link_to_a_heading_lands_on_one():
    import os

    pages = {path.relative_to(DOCS).as_posix(): path.read_text() for path in DOCS.rglob("*.md")}
    for name, text in pages.items():
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md|)#([\w-]+)\)", text):
            page = os.path.normpath(os.path.join(os.path.dirname(name), target or name))
            page = name if not target else page
            assert page in pages, f"docs/{name} links to a missing page {target}"
            assert anchor in heading_anchors(pages[page]), f"docs/{name}: no #{anchor} in {page}"
