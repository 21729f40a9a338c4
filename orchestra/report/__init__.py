"""The run report: the facts of a recorded run, gathered once, rendered as HTML, Markdown or JSON.

``gather(store, run_id)`` reads the run database (and the attempts' logs, and the
workstream file when it is still there); ``render(facts, format)`` writes one format.
"""

from __future__ import annotations

from orchestra.report.facts import RunFacts, gather

FORMATS = ("html", "md", "json")


def render(run: RunFacts, format_name: str) -> str:
    """Return the report of ``run`` in ``format_name``: one of FORMATS."""
    if format_name == "html":
        from orchestra.report.render_html import render_html as renderer
    elif format_name == "md":
        from orchestra.report.render_markdown import render_markdown as renderer
    elif format_name == "json":
        from orchestra.report.render_json import render_json as renderer
    else:
        raise ValueError(f"unknown report format {format_name!r}")
    return renderer(run)


__all__ = ["FORMATS", "RunFacts", "gather", "render"]
