"""Reviews in `orchestra ui`: the JSON of a task carries each attempt's review (verdict,
comments, reviewer, usage, discarded edits), the run's JSON marks the reviewed tasks and
attempts, and the task page shows a review's comments as text, never as markup.

The run database is real, written through the Store API as the run loop writes it (an
attempt, then the review of its change); the server is the real `orchestra ui`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which puts no test directory on sys.path
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_helpers import database, make_project, start_ui, stop_ui

import orchestra

SCRIPT = "<script>window.__xss=1</script>"
IMAGE = "<img src=x onerror=window.__xss=2>"
COMMENTS = f"Please handle empty input.\nThe docstring says {SCRIPT} and {IMAGE}."
EDITS = (
    "diff --git a/src/parser.py b/src/parser.py\n--- a/src/parser.py\n+++ b/src/parser.py\n"
    f"@@ -1 +1 @@\n-x = 1\n+x = '{SCRIPT}'\n"
)


def review(round_number: int, verdict: str, **fields) -> orchestra.ReviewResult:
    now = time.time()
    return orchestra.ReviewResult(
        tool="codex",
        round=round_number,
        outcome="succeeded",
        verdict=verdict,
        started_at=now - 2.0,
        ended_at=now,
        **fields,
    )


def reviewed_run(project: Path) -> str:
    """A finished run: task `parser`'s first change is turned down by codex (with markup
    in the comments, and an edit of its own, discarded), its second approved; task
    `plain` has no review."""
    with orchestra.Store.open(database(project)) as store:
        run_id = store.create_run("reviewed", None, None, ["parser", "plain"], claim=True)
        store.set_run_state(run_id, "running")
        for task in ("parser", "plain"):
            store.set_step_state(run_id, task, "ready")
        first = store.begin_attempt(run_id, "parser", "ready", "aider")
        store.finish_attempt(
            run_id,
            "parser",
            first,
            outcome="failed",
            error_class="review_rejected",
            message="codex requested changes",
        )
        usage = orchestra.Usage(input_tokens=1200, output_tokens=300, cost_usd=0.02)
        rejected = review(1, "request_changes", comments=COMMENTS, edits=EDITS, usage=usage)
        store.record_review(run_id, "parser", first, rejected, tool_version="0.50.0")
        store.set_step_state(run_id, "parser", "retrying")
        second = store.begin_attempt(run_id, "parser", "retrying", "aider")
        store.finish_attempt(run_id, "parser", second, outcome="succeeded")
        store.record_review(run_id, "parser", second, review(2, "approve", landed=True))
        store.set_step_state(run_id, "parser", "succeeded")
        number = store.begin_attempt(run_id, "plain", "ready", "shell")
        store.finish_attempt(run_id, "plain", number, outcome="succeeded")
        store.set_step_state(run_id, "plain", "succeeded")
        store.set_run_state(run_id, "succeeded")
    return run_id


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("reviewed"), 'id = "reviewed"\n')
    run_id = reviewed_run(project)
    ui = start_ui(project)
    yield project, run_id, ui
    assert stop_ui(ui) == 0


def test_the_task_json_carries_each_attempts_review(served):
    _, run_id, ui = served
    first, second = ui.get(f"/api/runs/{run_id}/tasks/parser").json()["attempts"]
    (rejected,) = first["reviews"]
    assert rejected["state"] == "rejected" and rejected["verdict"] == "request_changes"
    assert rejected["comments"] == COMMENTS  # as the reviewer wrote it: the page makes it text
    assert (rejected["tool"], rejected["tool_version"], rejected["round"]) == ("codex", "0.50.0", 1)
    assert (rejected["input_tokens"], rejected["output_tokens"]) == (1200, 300)
    assert rejected["cost_usd"] == pytest.approx(0.02)
    assert rejected["seconds"] == pytest.approx(2.0)
    assert rejected["edits_discarded"] == ["src/parser.py"] and rejected["edits"] == EDITS
    assert rejected["landed"] is False
    (approved,) = second["reviews"]
    assert approved["state"] == "approved" and approved["landed"] is True
    (plain,) = ui.get(f"/api/runs/{run_id}/tasks/plain").json()["attempts"]
    assert plain["reviews"] == []


def test_the_run_json_marks_reviewed_tasks_and_attempts(served):
    _, run_id, ui = served
    view = ui.get(f"/api/runs/{run_id}").json()
    assert {task["id"]: task["review"] for task in view["tasks"]} == {
        "parser": "approved",
        "plain": None,
    }
    bars = {(bar["task"], bar["number"]): bar["review"] for bar in view["attempts"]}
    assert bars == {("parser", 1): "rejected", ("parser", 2): "approved", ("plain", 1): None}
    # the review's tokens and cost count in the run's and the task's totals
    assert view["run"]["tokens"] == 1500 and view["run"]["cost_usd"] == pytest.approx(0.02)


def test_the_task_page_shows_a_reviews_comments_as_text(served, page):
    _, run_id, ui = served
    page.goto(ui.url + f"#/runs/{run_id}/tasks/parser")
    page.wait_for(
        "document.body.dataset.view === 'task'"
        " && document.querySelectorAll('#attempts .review').length === 2"
    )
    found = page.evaluate(
        """(() => {
          const review = document.querySelector('#attempts section.attempt[data-attempt="1"] .review');
          return {
            state: review.dataset.reviewState,
            heading: review.querySelector('h4').textContent,
            verdict: review.querySelector('.badge').textContent,
            comments: review.querySelector('pre.review-comments').textContent,
            reviewer: review.querySelector('dd.reviewer').textContent,
            usage: review.querySelector('dd.usage').textContent,
            edits: review.querySelector('dd.edits-discarded').textContent,
            discarded: review.querySelector('details pre.diff').textContent,
            xss: typeof window.__xss,
            handlers: document.querySelectorAll('[onerror]').length,
            scripts: [...document.scripts].map((script) => script.getAttribute('src')),
          };
        })()"""
    )
    assert found["state"] == "rejected"
    assert found["heading"] == "Review by codex (round 1)"
    assert found["verdict"] == "requested changes"
    assert found["comments"] == COMMENTS  # the markup is there, as text …
    assert found["xss"] == "undefined" and found["handlers"] == 0  # … and nothing ran
    assert found["scripts"] == ["/static/main.js"]
    assert found["reviewer"] == "codex 0.50.0"
    assert found["usage"] == "1,200 in · 300 out · $0.0200"
    assert found["edits"] == "src/parser.py"
    assert SCRIPT in found["discarded"]
    second = page.evaluate(
        "document.querySelector('#attempts section.attempt[data-attempt=\"2\"] .review .badge')"
        ".textContent"
    )
    assert second == "approved"
    assert json.dumps(page.evaluate("window.__xss ?? null")) == "null"


def test_the_run_page_marks_the_reviewed_tasks(served, page):
    _, run_id, ui = served
    page.goto(ui.url + f"#/runs/{run_id}")
    page.wait_for("document.body.dataset.view === 'run'")
    assert page.evaluate(
        "document.querySelector('#totals [data-total=\"attempts\"]').textContent"
    ) == ("3 · 2 reviewed")
    marks = page.evaluate(
        "[...document.querySelectorAll('#tasks tr[data-task-id]')]"
        ".map((row) => [row.dataset.taskId, row.querySelector('.review-mark')?.textContent ?? null])"
    )
    assert marks == [["parser", " · review approved"], ["plain", None]]
