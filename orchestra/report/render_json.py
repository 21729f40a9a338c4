"""The run report as one JSON document: the gathered facts, as they are."""

from __future__ import annotations

import json
from typing import Any

import cattrs

from orchestra.report.facts import RunFacts


def report_document(run: RunFacts) -> dict[str, Any]:
    """Return the facts of ``run`` as plain JSON values, with the graph's edges spelled out."""
    document = cattrs.Converter().unstructure(run)
    document["edges"] = [list(edge) for edge in run.edges]
    for task_document, task in zip(document["tasks"], run.tasks, strict=True):
        task_document["tool"] = task.tool
        task_document["route_reason"] = task.route_reason
    return document


def render_json(run: RunFacts) -> str:
    """Return the report of ``run`` as an indented JSON document."""
    return json.dumps(report_document(run), indent=2) + "\n"
