"""A ``review`` field of a JSON workstream format: orchestra's review of each change
when it has that shape, else the task's metadata.

Neither format has a field that asks a tool to review a change. A UET bundle's
``gate`` is the number of approvals people give (an OpenSpec gate), its
``completion_gate`` rules in prose with a ``manual_override``; task-master's status
``review`` marks work waiting for a person. Those stay metadata. A ``review`` key is
read as a TOML file writes it (``review = { tools = ["codex"], … }``, or true or false),
so a plan written for orchestra in either format can ask for one; anything else under
that key (a reviewer's name, a sentence) is kept as metadata, with a notice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from orchestra.loaders.jsonfile import without_nulls
from orchestra.models import Review

#: the keys of orchestra's review table (``models.Review``), as a workstream file spells them
REVIEW_KEYS = frozenset(field.name for field in attrs.fields(Review))
#: the notice of a ``review`` whose value is not orchestra's review
KEPT = (
    "kept as task metadata: 'review' is not a review orchestra runs (that is an object "
    'such as {"max_rounds": 2}, or true or false)'
)


def review_of(
    value: Any, rename: Callable[[str], str] | None = None
) -> dict[str, Any] | bool | None:
    """Return ``value`` as a task table's ``review`` when it has the shape of one: true
    or false, or an object with one of orchestra's review keys (``tools``, ``prompt``,
    ``required``, ``max_rounds`` …). None when it is something else, to keep as metadata.

    An object with one review key is a review even with other keys, so that structuring
    names a misspelled one (``max_round``) rather than the review being dropped in
    silence. ``rename`` maps each name in ``tools`` (a format's names for tools)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, Mapping) or REVIEW_KEYS.isdisjoint(value):
        return None
    review = without_nulls(dict(value))
    tools = review.get("tools")
    if rename is not None and isinstance(tools, list):
        review["tools"] = [rename(tool) if isinstance(tool, str) else tool for tool in tools]
    return review
