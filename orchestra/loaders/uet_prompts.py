"""The prompts of a UET bundle's tasks: the bundle's title and description, numbered
instructions, a step's details and the acceptance criteria that read as prose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: what a step of the later shape says besides its action, put in its prompt
DETAILS = (
    "method",
    "file",
    "code_change",
    "expected_change",
    "pseudocode",
    "expected_output",
    "validation",
)


def _details(step: Mapping[str, Any]) -> str:
    """The prompt lines of a step's details (``method``, ``file``, ``expected_output`` …)."""
    lines = []
    for key in DETAILS:
        value = step.get(key)
        if isinstance(value, str) and value.strip():
            lines.append(f"{key.replace('_', ' ').capitalize()}: {value.strip()}")
    return "\n".join(lines)


def _context(bundle_id: Any, title: str | None, description: str | None) -> str:
    """What every step's prompt starts with: the bundle it is part of."""
    lines = [f"Part of {title.strip() if title else bundle_id}."] if title or bundle_id else []
    if description and description.strip():
        lines.append(description.strip())
    return "\n".join(lines)


def _numbered(instructions: list[str]) -> str:
    return "\n".join(f"{n}. {text.strip()}" for n, text in enumerate(instructions, 1))


def _criteria(criteria: list[str]) -> str:
    return "Acceptance criteria:\n" + "\n".join(f"- {text}" for text in criteria)


def _prompt(
    title: str | None, description: str | None, instructions: list[str], criteria: list[str]
) -> str:
    parts = [text.strip() for text in (title, description) if text and text.strip()]
    if instructions:
        parts.append(_numbered(instructions))
    if criteria:
        parts.append(_criteria(criteria))
    return "\n\n".join(parts)
