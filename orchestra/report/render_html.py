"""The run report as one self-contained HTML file: inline CSS and SVG, nothing from the network.

Everything that comes from the database (ids, messages, logs, diffs, paths) is escaped.
"""

from __future__ import annotations

from html import escape

from orchestra import __version__
from orchestra.report.facts import AttemptFacts, RunFacts, TaskFacts
from orchestra.report.formatting import (
    cost_used,
    duration,
    moment,
    outcome_text,
    retries_text,
    review_tokens,
    reviews_text,
    task_seconds,
    tokens_used,
    verdict_text,
)
from orchestra.report.reviews import ReviewFacts
from orchestra.report.svg import graph_svg, timeline_svg

STYLE = """
:root { --ok: #2e9e5b; --bad: #d64545; --slow: #e08a1e; --off: #8a8f98; --lost: #8e6cc9;
  --live: #3b82f6; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 10px; }
h3 { font-size: 15px; margin: 0 0 8px; } code, pre { font-family: ui-monospace, monospace; }
.muted { color: var(--muted); }
.note { background: #fff8c5; padding: 6px 10px; border-radius: 4px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
  font-size: 12px; vertical-align: middle; background: var(--off); }
.state-succeeded .badge, .badge.state-succeeded { background: var(--ok); }
.badge.state-failed, .badge.state-quarantined { background: var(--bad); }
.badge.state-running, .badge.state-retrying { background: var(--live); }
.badge.state-interrupted { background: var(--lost); }
header.run { border-left: 6px solid var(--off); padding: 4px 0 4px 16px; }
header.run.state-succeeded { border-color: var(--ok); }
header.run.state-failed { border-color: var(--bad); }
.figures { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 0; }
.figure { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 140px; }
.figure dt { color: var(--muted); font-size: 12px; } .figure dd { margin: 0; font-size: 18px; }
.figure dd small { font-size: 12px; color: var(--muted); }
.meter { height: 6px; background: var(--soft); border-radius: 3px; margin-top: 4px; }
.meter span { display: block; height: 100%; border-radius: 3px; background: var(--live); }
svg { display: block; } svg.timeline { width: 100%; height: auto; }
.legend svg { display: inline-block; vertical-align: middle; margin-right: 4px; }
.stripe { fill: var(--soft); }
article.task ul { margin: 0; padding-left: 18px; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
.row-label { text-anchor: end; } .tick { stroke: var(--line); } .tick-label { fill: var(--muted); }
.wait { stroke: var(--muted); stroke-width: 1.5; stroke-dasharray: 3 3; }
.bar { fill: var(--off); } .outcome-succeeded { fill: var(--ok); }
.outcome-failed { fill: var(--bad); }
.outcome-timed_out { fill: var(--slow); } .outcome-interrupted { fill: var(--lost); }
.outcome-running { fill: var(--live); }
.legend { display: flex; gap: 14px; color: var(--muted); font-size: 12px; margin-top: 6px; }
.legend i { display: inline-block; width: 12px; height: 10px; margin-right: 4px;
  border-radius: 2px; }
.graph-box { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
.node rect { fill: #fff; stroke: var(--off); stroke-width: 2; }
.node.state-succeeded rect { stroke: var(--ok); fill: #eefbf3; }
.node.state-failed rect, .node.state-quarantined rect { stroke: var(--bad); fill: #fdf0f0; }
.node.state-skipped rect, .node.state-canceled rect { stroke-dasharray: 4 3; }
.edge { fill: none; stroke: #8c959f; stroke-width: 1.5; } .arrowhead { fill: #8c959f; }
article.task { border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px;
  margin: 12px 0; }
article.task dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px;
  margin: 0 0 8px; }
article.task dt { color: var(--muted); } article.task dd { margin: 0; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; text-align: left;
  vertical-align: top; }
td.num, th.num { text-align: right; padding-left: 10px; }
.add { color: var(--ok); } .del { color: var(--bad); }
pre { background: var(--soft); padding: 8px 10px; border-radius: 4px; overflow-x: auto;
  font-size: 12px; margin: 4px 0; white-space: pre-wrap; word-break: break-all; }
details summary { cursor: pointer; color: var(--muted); margin: 4px 0; }
.review { border-left: 4px solid var(--off); padding: 2px 0 2px 12px; margin: 8px 0; }
.review.review-approved { border-color: var(--ok); }
.review.review-rejected, .review.review-failed { border-color: var(--bad); }
.review.review-running { border-color: var(--live); }
.review p { margin: 2px 0; } .review .comments { white-space: pre-wrap; }
.badge.review-approved { background: var(--ok); }
.badge.review-rejected, .badge.review-failed { background: var(--bad); }
.badge.review-running { background: var(--live); }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""
LEGEND = ("succeeded", "failed", "timed_out", "canceled", "interrupted", "running")


def render_html(run: RunFacts) -> str:
    """Return the report of ``run`` as one HTML document that needs nothing else to show."""
    title = f"orchestra run {run.id} — {run.workstream}"
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
            _header(run),
            '<section id="timeline"><h2>Timeline</h2>',
            timeline_svg(run),
            '<div class="legend">',
            *(f'<span><i style="background:{_colour(o)}"></i>{o}</span>' for o in LEGEND),
            '<span><svg width="22" height="10"><line class="wait" x1="0" y1="5" x2="22" y2="5"/>'
            "</svg>waiting (for a slot, or before a retry)</span></div></section>",
            '<section id="graph"><h2>Dependencies</h2>',
            f'<p class="note">{escape(run.graph_note)}</p>' if run.graph_note else "",
            f'<div class="graph-box">{graph_svg(run)}</div></section>',
            '<section id="tasks"><h2>Tasks</h2>',
            *(_task(run, task) for task in run.tasks),
            "</section>",
            f"<footer>Made by orchestra {escape(__version__)} from the run database",
            " and the attempts' logs.</footer></body></html>\n",
        ]
    )


def _header(run: RunFacts) -> str:
    subtitle = f" — {escape(run.title)}" if run.title else ""
    stopped = f'<p class="note">stopped: {escape(run.error)}</p>' if run.error else ""
    return (
        f'<header class="run state-{escape(run.state)}">'
        f'<h1>Run <code>{escape(run.id)}</code> <span class="badge state-{escape(run.state)}">'
        f"{escape(run.state)}</span></h1>"
        f'<p class="muted">workstream <b>{escape(run.workstream)}</b>{subtitle}'
        f" · {escape(run.file or 'no file recorded')} · started {moment(run.started_at)}</p>"
        f'{stopped}<dl class="figures">'
        + _figure("tasks", str(len(run.tasks)), _states_small(run))
        + _figure("wall time", duration(run.wall_seconds))
        + _figure("attempts", retries_text(run))
        + _figure(
            "tokens",
            tokens_used(run.tokens, run.budget_tokens),
            meter=None if not run.budget_tokens else run.tokens / run.budget_tokens,
        )
        + _figure(
            "cost",
            cost_used(run.cost_usd, run.budget_cost),
            meter=None if not run.budget_cost else run.cost_usd / run.budget_cost,
        )
        + (_figure("reviews", reviews_text(run)) if run.reviews else "")
        + "</dl></header>"
    )


def _figure(name: str, value: str, small: str = "", meter: float | None = None) -> str:
    bar = (
        ""
        if meter is None
        else f'<div class="meter"><span style="width:{min(meter, 1) * 100:.1f}%"></span></div>'
    )
    return (
        f'<div class="figure"><dt>{escape(name)}</dt><dd>{escape(value)}'
        f"{' <small>' + small + '</small>' if small else ''}{bar}</dd></div>"
    )


def _states_small(run: RunFacts) -> str:
    return " ".join(
        f'<span class="badge state-{escape(state)}">{count} {escape(state)}</span>'
        for state, count in run.tasks_by_state.items()
    )


def _task(run: RunFacts, task: TaskFacts) -> str:
    title = f' <span class="muted">{escape(task.title)}</span>' if task.title else ""
    facts = [
        ("tool", _tool(task)),
        ("routing", escape(task.route_reason or "-")),
    ]
    if task.reason:
        facts.append(("why " + escape(task.state), escape(task.reason)))
    facts.append(("depends on", escape(", ".join(task.depends_on)) or "-"))
    checks = "".join(f"<li><code>{escape(check)}</code></li>" for check in task.checks)
    if run.graph_source == "workstream":
        facts.append(("checks", f"<ul>{checks}</ul>" if checks else "none"))
    facts.append(("usage", f"{task.tokens:,} tokens, {task.cost_usd:.2f} USD"))
    facts.append(("time", escape(duration(task_seconds(task)))))
    listed = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    return (
        f'<article class="task state-{escape(task.state)}" id="task-{escape(task.id)}">'
        f'<h3><code>{escape(task.id)}</code> <span class="badge state-{escape(task.state)}">'
        f"{escape(task.state)}</span>{title}</h3><dl>{listed}</dl>"
        + _attempts(run, task)
        + _reviews(task)
        + _changes(task)
        + _log_tail(task)
        + "</article>"
    )


def _tool(task: TaskFacts) -> str:
    if not task.attempts:
        return "- (never attempted)"
    last = task.attempts[-1]
    version = f" {escape(last.tool_version)}" if last.tool_version else ""
    return f"<code>{escape(last.tool)}</code>{version}"


def _attempts(run: RunFacts, task: TaskFacts) -> str:
    if not task.attempts:
        return ""
    rows = "".join(_attempt_row(run, attempt) for attempt in task.attempts)
    return (
        "<table><thead><tr><th>#</th><th>tool</th><th>outcome</th><th>started</th>"
        '<th class="num">took</th><th class="num">waited</th><th class="num">tokens</th>'
        '<th class="num">cost</th><th>error</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _attempt_row(run: RunFacts, attempt: AttemptFacts) -> str:
    since = None if run.started_at is None else attempt.started_at - run.started_at
    tokens = (attempt.input_tokens or 0) + (attempt.output_tokens or 0)
    error = ": ".join(part for part in (attempt.error_class, attempt.message) if part)
    outcome = outcome_text(attempt.outcome)
    passed = "".join(
        f'<br><small class="muted">not {escape(entry.tool)}: {escape(entry.why)}</small>'
        for entry in attempt.passed_over
    )
    return (
        f'<tr><td>{attempt.number}</td><td title="{escape(attempt.route_reason or "")}">'
        f"{escape(attempt.tool)}{passed}</td>"
        f'<td><span class="badge state-{escape(outcome)}">{escape(outcome)}</span></td>'
        f'<td>+{duration(since)}</td><td class="num">{duration(attempt.seconds)}</td>'
        f'<td class="num">{duration(attempt.waited)}</td><td class="num">{tokens:,}</td>'
        f'<td class="num">{attempt.cost_usd or 0:.2f}</td><td>{escape(error)}</td></tr>'
    )


def _reviews(task: TaskFacts) -> str:
    reviews = [review for attempt in task.attempts for review in attempt.reviews]
    if not reviews:
        return ""
    return "<h4>Reviews</h4>" + "".join(_review(review) for review in reviews)


def _review(review: ReviewFacts) -> str:
    """One review: who, which round, the verdict, what it took and cost, its comments as
    text, what the reviewer changed (discarded) and why it failed, if it did."""
    state = review.state
    version = f" {escape(review.tool_version)}" if review.tool_version else ""
    figures = [duration(review.seconds), f"{review_tokens(review):,} tokens"]
    figures.append(f"{review.cost_usd or 0:.2f} USD")
    parts = [
        f'<div class="review review-{escape(state)}" data-attempt="{review.attempt}"'
        f' data-verdict="{escape(review.verdict or state)}">',
        f"<p>Attempt {review.attempt}, round {review.round}: reviewed by"
        f' <code>{escape(review.tool)}</code>{version} <span class="badge review-{escape(state)}">'
        f'{escape(verdict_text(review))}</span> <span class="muted">'
        f"{escape(' · '.join(figures))}</span></p>",
    ]
    if review.route_reason:
        parts.append(f'<p class="muted">routing: {escape(review.route_reason)}</p>')
    if review.error_class or review.message:
        error = ": ".join(part for part in (review.error_class, review.message) if part)
        parts.append(f"<p>{escape(error)}</p>")
    if review.comments:
        parts.append(f'<pre class="comments">{escape(review.comments)}</pre>')
    if review.edits_discarded:
        paths = ", ".join(f"<code>{escape(path)}</code>" for path in review.edits_discarded)
        parts.append(f"<p>edits discarded: {paths}</p>")
        if review.edits:
            parts.append(
                "<details><summary>what the reviewer changed (not merged)</summary>"
                f"<pre>{_diff_lines(review.edits)}</pre></details>"
            )
    parts.append("</div>")
    return "".join(parts)


def _changes(task: TaskFacts) -> str:
    if not task.attempts or not task.attempts[-1].diff:
        return ""
    last = task.attempts[-1]
    rows = "".join(
        f"<tr><td><code>{escape(change.path)}</code></td>"
        + (
            '<td class="num" colspan="2">binary</td>'
            if change.binary
            else f'<td class="num add">+{change.added}</td>'
            f'<td class="num del">-{change.deleted}</td>'
        )
        + "</tr>"
        for change in last.files
    )
    return (
        f"<h4>Change of attempt {last.number}: {len(last.files)} file(s)</h4>"
        f"<table><tbody>{rows}</tbody></table>"
        f"<details><summary>the diff</summary><pre>{_diff_lines(last.diff or '')}</pre></details>"
    )


def _diff_lines(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        kind = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        lines.append(f'<span class="{kind}">{escape(line)}</span>' if kind else escape(line))
    return "\n".join(lines)


def _log_tail(task: TaskFacts) -> str:
    if not task.log_tail:
        return ""
    last = task.attempts[-1]
    return (
        f"<h4>Log of attempt {last.number}, last {len(task.log_tail)} line(s)</h4>"
        f'<p class="muted"><code>{escape(last.log_path or "")}</code></p>'
        f"<pre>{escape(chr(10).join(task.log_tail))}</pre>"
    )


def _colour(outcome: str) -> str:
    return {
        "succeeded": "var(--ok)",
        "failed": "var(--bad)",
        "timed_out": "var(--slow)",
        "interrupted": "var(--lost)",
        "running": "var(--live)",
    }.get(outcome, "var(--off)")
