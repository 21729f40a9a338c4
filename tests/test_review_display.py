"""Reviews shown wherever a run is shown: ``orchestra show`` (a run, one task, --json),
``orchestra report`` (HTML, Markdown, JSON), the console sink's lines and live view, and
``status --watch``'s snapshot of a task under review.

The run databases are real, written through the Store API as the run loop writes them
(attempts, then the review of each attempt's change with ``record_review``); the
commands are the real ``orchestra`` in a subprocess."""

from __future__ import annotations

import json
import time
from io import StringIO
from pathlib import Path

import pytest

from orchestra.models import ReviewResult, Usage
from orchestra.store import Store
from orchestra.testing import make_git_repo, run_orchestra, scripted_tools_env, write_tool_script

SCRIPT = "<script>alert('review')</script>"
#: the first review's comments: long enough to be wrapped, and bounded by ``show RUN``
FIRST_COMMENTS = (
    "The parser does not handle empty input: parse('') raises IndexError.\n"
    f"Also the docstring shows {SCRIPT} where an example should be.\n"
    + "\n".join(f"point {n}: " + "a rather long remark about the change " * 4 for n in range(1, 7))
)
EDITS = (
    "diff --git a/src/parser.py b/src/parser.py\n--- a/src/parser.py\n+++ b/src/parser.py\n"
    "@@ -1 +1 @@\n-x = 1\n+x = 2\n"
)
CHANGE = "diff --git a/src/parser.py b/src/parser.py\n--- a/src/parser.py\n+++ b/src/parser.py\n"
CHANGE += "@@ -1 +1,2 @@\n x = 1\n+y = 2\n"


def project(tmp_path: Path) -> Path:
    return make_git_repo(tmp_path / "app", {"README.md": "# app\n", "orchestra.toml": ""})


def database(root: Path) -> Path:
    return root / ".orchestra" / "orchestra.db"


def log(root: Path, name: str, text: str) -> str:
    path = root / ".orchestra" / "logs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def review(round_number: int, verdict: str | None, **fields) -> ReviewResult:
    now = time.time()
    values = {
        "tool": "codex",
        "round": round_number,
        "outcome": "succeeded" if verdict else "failed",
        "verdict": verdict,
        "started_at": now - 3.0,
        "ended_at": now,
    }
    values.update(fields)
    return ReviewResult(**values)


def attempt(store, run_id, task, current, tool="aider", *, root, **finish) -> int:
    """Record one attempt of ``task`` from step state ``current`` and its end."""
    number = store.begin_attempt(
        run_id,
        task,
        current,
        tool,
        log_path=log(root, f"{task}.log", f"{tool} says: working on {task}\n"),
        route_reason=f"{tool} is the only tool that can run it",
    )
    store.finish_attempt(run_id, task, number, **finish)
    return number


def reviewed_run(root: Path) -> str:
    """A finished run with every kind of review:

    - add-parser: codex asks for changes (round 1), the second attempt is approved;
    - lenient: a review that is not required, rejected on its last round: landed anyway;
    - shaky: the reviewer gave no verdict (and edited a file, discarded);
    - plain: no review at all."""
    with Store.open(database(root)) as store:
        run_id = store.create_run(
            "reviewed", None, None, ["add-parser", "lenient", "shaky", "plain"], claim=True
        )
        store.set_run_state(run_id, "running")
        for task in ("add-parser", "lenient", "shaky", "plain"):
            store.set_step_state(run_id, task, "ready")

        first = attempt(
            store,
            run_id,
            "add-parser",
            "ready",
            root=root,
            outcome="failed",
            error_class="review_rejected",
            message="codex requested changes",
            usage=Usage(input_tokens=5000, output_tokens=1000, cost_usd=0.10),
            diff=CHANGE,
        )
        store.record_review(
            run_id,
            "add-parser",
            first,
            review(
                1,
                "request_changes",
                comments=FIRST_COMMENTS,
                edits=EDITS,
                usage=Usage(input_tokens=1200, output_tokens=300, cost_usd=0.02),
            ),
            tool_version="0.50.0",
            route_reason="codex reviews: it did not make the change",
        )
        store.set_step_state(run_id, "add-parser", "retrying")
        second = attempt(
            store,
            run_id,
            "add-parser",
            "retrying",
            root=root,
            outcome="succeeded",
            usage=Usage(input_tokens=4000, output_tokens=800, cost_usd=0.08),
            diff=CHANGE,
        )
        store.record_review(
            run_id,
            "add-parser",
            second,
            review(
                2,
                "approve",
                comments="Looks good now.",
                landed=True,
                usage=Usage(input_tokens=800, output_tokens=100, cost_usd=0.01),
            ),
        )
        store.set_step_state(run_id, "add-parser", "succeeded")

        number = attempt(store, run_id, "lenient", "ready", root=root, outcome="succeeded")
        store.record_review(
            run_id,
            "lenient",
            number,
            review(1, "request_changes", comments="Name the constant.", landed=True),
        )
        store.set_step_state(run_id, "lenient", "succeeded")

        number = attempt(
            store,
            run_id,
            "shaky",
            "ready",
            root=root,
            outcome="failed",
            error_class="review_failed",
            message="the review gave no verdict",
        )
        reviewer_log = log(root, "shaky.review.log", "codex: thinking\ncodex: I am not sure\n")
        store.record_review(
            run_id,
            "shaky",
            number,
            review(
                1,
                None,
                error_class="invalid_output",
                message="no verdict in the answer",
                log_path=reviewer_log,
                edits=EDITS,
            ),
        )
        store.set_step_state(run_id, "shaky", "failed", reason="the review gave no verdict")

        attempt(store, run_id, "plain", "ready", "shell", root=root, outcome="succeeded")
        store.set_step_state(run_id, "plain", "succeeded")
        store.set_run_state(run_id, "failed", error="1 task failed")
    return run_id


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, str]:
    root = project(tmp_path_factory.mktemp("reviews"))
    return root, reviewed_run(root)


def orchestra(root: Path, *arguments: str) -> str:
    done = run_orchestra(*arguments, cwd=root)
    assert done.returncode == 0, done.stderr
    return done.stdout


def section(text: str, task: str) -> list[str]:
    """The lines ``show`` prints for ``task``: from its heading to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split("  ")[0] == task)
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def quoted(lines: list[str]) -> list[str]:
    """The lines of comments at the start of ``lines`` (``      > …``)."""
    found = []
    for line in lines:
        if not line.startswith("      > "):
            break
        found.append(line)
    return found


# -- orchestra show -------------------------------------------------------------------------


def test_show_lists_each_attempts_review_under_it(recorded):
    root, run_id = recorded
    shown = orchestra(root, "show", run_id)

    add_parser = section(shown, "add-parser")
    assert add_parser[1].startswith("  attempt 1  aider  failed")
    assert add_parser[1].endswith("review_rejected: codex requested changes")
    first = add_parser.index(
        "    review by codex (round 1)  requested changes  3.0s  1,500 tokens, 0.02 USD"
    )
    comments = quoted(add_parser[first + 1 :])
    assert comments[0] == (
        "      > The parser does not handle empty input: parse('') raises IndexError."
    )
    assert f"      > Also the docstring shows {SCRIPT} where an example should be." in comments
    assert len(comments) == 8 and all(len(line) <= 100 for line in comments)  # wrapped, bounded
    assert any(
        line.startswith("      … ") and f"(orchestra show {run_id} add-parser)" in line
        for line in add_parser
    )
    assert "      edits discarded: src/parser.py" in add_parser
    # the log of an attempt the reviewer turned down is not what explains it
    assert not any(line.startswith("    | ") for line in add_parser)
    approved = add_parser.index(
        "    review by codex (round 2)  approved  3.0s  900 tokens, 0.01 USD"
    )
    assert add_parser[approved + 1] == "      > Looks good now."

    lenient = section(shown, "lenient")
    landed = "    review by codex (round 1)  requested changes, landed despite the rejection"
    assert landed + "  3.0s" in lenient
    shaky = section(shown, "shaky")
    assert (
        "    review by codex (round 1)  failed (no verdict)  3.0s"
        "  invalid_output: no verdict in the answer" in shaky
    )
    assert shaky[-2:] == ["      | codex: thinking", "      | codex: I am not sure"]
    assert "      edits discarded: src/parser.py" in shaky
    assert not any("review" in line for line in section(shown, "plain"))


def test_show_totals_count_the_reviews_usage(recorded):
    root, run_id = recorded
    shown = orchestra(root, "show", run_id)
    # attempts 6,000 + 4,800 tokens, 0.18 USD; reviews 1,500 + 900 tokens, 0.03 USD
    assert "  usage 13,200 tokens, 0.21 USD" in shown.splitlines()
    document = json.loads(orchestra(root, "show", run_id, "--json"))
    assert document["usage"]["tokens"] == 13200
    assert document["usage"]["cost"] == pytest.approx(0.21)


def test_show_of_one_task_prints_its_reviews_comments_whole(recorded):
    root, run_id = recorded
    shown = orchestra(root, "show", run_id, "add-parser")
    assert "\nlenient" not in shown and "\nplain" not in shown
    comments = [line for line in shown.splitlines() if line.startswith("      > ")]
    assert len(comments) > 8 and not any(line.startswith("      … ") for line in shown.splitlines())
    assert any(line.startswith("      > point 6: a rather long remark") for line in comments)

    missing = run_orchestra("show", run_id, "no-such-task", cwd=root)
    assert missing.returncode == 2
    assert "no-such-task" in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_show_json_carries_a_reviews_list_per_attempt(recorded):
    root, run_id = recorded
    document = json.loads(orchestra(root, "show", run_id, "--json"))
    steps = {step["task"]: step for step in document["steps"]}
    first, second = steps["add-parser"]["attempts"]
    (rejected,) = first["reviews"]
    assert rejected["verdict"] == "request_changes" and rejected["round"] == 1
    assert rejected["comments"] == FIRST_COMMENTS
    assert rejected["tool"] == "codex" and rejected["tool_version"] == "0.50.0"
    assert rejected["routing"] == "codex reviews: it did not make the change"
    assert rejected["edits_discarded"] == ["src/parser.py"] and rejected["landed"] is False
    assert (rejected["input_tokens"], rejected["output_tokens"]) == (1200, 300)
    assert second["reviews"][0]["verdict"] == "approve" and second["reviews"][0]["landed"]
    assert steps["plain"]["attempts"][0]["reviews"] == []
    (failed,) = steps["shaky"]["attempts"][0]["reviews"]
    assert failed["verdict"] is None and failed["error_class"] == "invalid_output"
    one = json.loads(orchestra(root, "show", run_id, "shaky", "--json"))
    assert [step["task"] for step in one["steps"]] == ["shaky"]


# -- orchestra report -----------------------------------------------------------------------


def test_the_json_report_has_a_reviews_array_per_attempt(recorded):
    root, run_id = recorded
    document = json.loads(orchestra(root, "report", run_id, "--format", "json"))
    tasks = {task["id"]: task for task in document["tasks"]}
    first, second = tasks["add-parser"]["attempts"]
    (rejected,) = first["reviews"]
    assert rejected["attempt"] == 1 and rejected["round"] == 1
    assert rejected["verdict"] == "request_changes" and rejected["comments"] == FIRST_COMMENTS
    assert rejected["edits_discarded"] == ["src/parser.py"] and rejected["edits"] == EDITS
    assert rejected["seconds"] == pytest.approx(3.0)
    assert second["reviews"][0]["landed"] is True
    assert tasks["plain"]["attempts"][0]["reviews"] == []
    assert document["reviews_by_verdict"] == {"approved": 1, "rejected": 2, "failed": 1}
    # the task's and the run's usage count the reviews'
    assert tasks["add-parser"]["tokens"] == 6000 + 4800 + 1500 + 900
    assert document["tokens"] == 13200 and document["cost_usd"] == pytest.approx(0.21)


def test_the_markdown_report_has_a_table_of_reviews_and_their_comments_as_text(recorded):
    root, run_id = recorded
    markdown = orchestra(root, "report", run_id, "--format", "md")
    lines = markdown.splitlines()
    assert "| reviews | 4: 1 approved, 2 rejected, 1 failed |" in lines
    assert "Reviews of `add-parser`:" in lines
    assert (
        "| 1 | 1 | codex 0.50.0 | requested changes | 3.0s | 1,500 | 0.02 | src/parser.py |  |"
        in lines
    )
    assert "| 2 | 2 | codex | approved | 3.0s | 900 | 0.01 |  |  |" in lines
    assert (
        "| 1 | 1 | codex | requested changes, landed despite the rejection | 3.0s | 0 | 0.00 |  |  |"
        in lines
    )
    assert any(
        line.startswith("| 1 | 1 | codex | failed (no verdict) |")
        and line.endswith("| invalid_output: no verdict in the answer |")
        for line in lines
    )
    # the comments whole, in a fenced block: the markup in them is text, not HTML
    start = lines.index("Comments of codex on attempt 1 (round 1):")
    assert lines[start + 2] == "```text"
    end = lines.index("```", start + 3)
    assert "\n".join(lines[start + 3 : end]) == FIRST_COMMENTS
    assert "Reviews of `plain`" not in markdown


def test_the_html_report_shows_each_review_escaped(recorded, tmp_path):
    root, run_id = recorded
    out = tmp_path / "report.html"
    orchestra(root, "report", run_id, "-o", str(out))
    page = out.read_text()
    assert SCRIPT not in page  # the comments are escaped …
    assert "&lt;script&gt;alert(&#x27;review&#x27;)&lt;/script&gt;" in page  # … and shown
    assert page.count('<div class="review ') == 4
    rejected = (
        '<div class="review review-rejected" data-attempt="1" data-verdict="request_changes">'
    )
    assert rejected in page
    assert "requested changes, landed despite the rejection" in page
    assert "edits discarded: <code>src/parser.py</code>" in page
    assert "invalid_output: no verdict in the answer" in page
    assert "<dt>reviews</dt><dd>4: 1 approved, 2 rejected, 1 failed" in page


def test_a_real_run_reviewed_by_a_second_tool_is_shown_as_it_goes_and_afterwards(tmp_path):
    # the real run loop with scripted tools: alpha writes, beta turns the first change
    # down (and edits a file, discarded), then approves the second
    repo = make_git_repo(tmp_path / "repo", {"app.py": "VALUE = 0\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[defaults]\nreview = { tools = ["beta"] }\nbackoff = { initial = "0s" }\n'
        '[[tasks]]\nid = "t"\nprompt = "Set VALUE to 2"\ntool = "alpha"\n'
    )
    alpha = write_tool_script(
        tmp_path / "alpha.toml",
        [
            {"edit": {"path": "app.py", "content": "VALUE = 1\n"}},
            {"edit": {"path": "app.py", "content": "VALUE = 2\n"}},
        ],
    )
    verdicts = [
        {"verdict": "request_changes", "comments": f"VALUE must be 2.\nNot {SCRIPT}."},
        {"verdict": "approve", "comments": "Does what the task asks."},
    ]
    beta = write_tool_script(
        tmp_path / "beta.toml",
        [{}],
        reviews=[
            {"answer": json.dumps(verdicts[0]), "edit": {"path": "app.py", "content": "X\n"}},
            {"answer": json.dumps(verdicts[1])},
        ],
    )
    ran = run_orchestra(
        "run", "ws.toml", "--plain", cwd=repo, env=scripted_tools_env(alpha=alpha, beta=beta)
    )
    assert ran.returncode == 0, ran.stderr
    said = [line[10:] for line in ran.stdout.splitlines()]  # without the time
    reviewing = "t  reviewing with beta (round 1)  — beta is the only tool that may review it"
    rejected = "t  review by beta (round 1): requests changes — VALUE must be 2."
    rejected += " (edits discarded: app.py)"
    approved = "t  review by beta (round 2): approved"
    order = [said.index(line) for line in (reviewing, rejected, approved)]
    assert order == sorted(order) and order[-1] < said.index("t  succeeded  with alpha")

    run_id = json.loads(orchestra(repo, "runs", "--json"))[0]["id"]
    shown = section(orchestra(repo, "show", run_id), "t")
    rejected = next(
        number
        for number, line in enumerate(shown)
        if line.startswith("    review by beta (round 1)  requested changes  ")
    )
    assert shown[rejected + 1 : rejected + 4] == [
        "      > VALUE must be 2.",
        f"      > Not {SCRIPT}.",
        "      edits discarded: app.py",
    ]
    assert any(line.startswith("    review by beta (round 2)  approved  ") for line in shown)
    document = json.loads(orchestra(repo, "report", run_id, "--format", "json"))
    first, second = document["tasks"][0]["attempts"]
    assert [review["verdict"] for review in first["reviews"] + second["reviews"]] == [
        "request_changes",
        "approve",
    ]
    assert first["reviews"][0]["edits_discarded"] == ["app.py"]


# -- a review going on ----------------------------------------------------------------------


def test_a_task_under_review_is_shown_as_such_while_the_run_goes_on(tmp_path):
    from rich.console import Console

    from orchestra import progress

    root = project(tmp_path)
    reviewer_log = log(root, "live.review.log", "codex: reading the diff\n")
    with Store.open(database(root)) as store:  # holds the run, as its driver does
        run_id = store.create_run("live", None, None, ["live-task"], claim=True)
        store.set_run_state(run_id, "running")
        store.set_step_state(run_id, "live-task", "ready")
        number = attempt(store, run_id, "live-task", "ready", root=root, outcome="succeeded")
        payload = {"tool": "codex", "round": 1, "why": "codex reviews", "log_path": reviewer_log}
        store.add_event(run_id, "review.started", payload, "live-task", number)

        snapshot = progress.from_store(store, run_id)
        (running,) = snapshot.running
        assert (running.tool, running.reviewer, running.review_round) == ("aider", "codex", 1)
        assert running.last_line == "codex: reading the diff"
        assert progress.plain_line(snapshot) == "0/1 done, 0 failed, reviewing live-task with codex"
        out = StringIO()
        Console(file=out, width=140, color_system=None).print(progress.render(snapshot))
        assert "reviewing with codex (round 1) — codex: reading the diff" in out.getvalue()

        shown = orchestra(root, "show", run_id)
        assert "    review by codex (round 1)  reviewing" in shown.splitlines()
        document = json.loads(orchestra(root, "show", run_id, "--json"))
        (under_review,) = document["steps"][0]["attempts"][0]["reviews"]
        assert under_review["outcome"] == "running" and under_review["verdict"] is None

        store.record_review(run_id, "live-task", number, review(1, "approve", landed=True))
        snapshot = progress.from_store(store, run_id)
        assert snapshot.running[0].reviewer is None
        assert progress.plain_line(snapshot) == "0/1 done, 0 failed, running live-task"


# -- the console sink -----------------------------------------------------------------------


def event(kind: str, payload: dict, task: str = "add-parser") -> dict:
    at = time.mktime((2026, 11, 26, 16, 3, 21, 0, 0, -1))
    return {"run": "r1", "type": kind, "task": task, "at": at, "payload": payload}


def test_the_console_prints_a_line_for_each_review_event():
    from orchestra.builtin.sinks.console import ConsoleSink

    stream = StringIO()
    sink = ConsoleSink(stream)
    sink.plain = True
    sink.open(type("Context", (), {"steps": {}, "run_id": "r1"})())
    comments = f"First: {SCRIPT}\nSecond line, not shown"
    for kind, payload in [
        ("review.started", {"tool": "codex", "round": 1, "why": "codex did not write it"}),
        (
            "review.rejected",
            {"tool": "codex", "round": 1, "verdict": "request_changes", "comments": comments},
        ),
        ("review.approved", {"tool": "codex", "round": 2, "verdict": "approve", "landed": True}),
        (
            "review.rejected",
            {"tool": "codex", "round": 2, "comments": "\n\nStill no test", "landed": True},
        ),
        (
            "review.failed",
            {
                "tool": "claude",
                "round": 1,
                "error_class": "invalid_output",
                "message": "no verdict in the answer",
                "edits_discarded": ["a.py", "b.py"],
            },
        ),
    ]:
        sink.emit(event(kind, payload))
    sink.close()
    assert stream.getvalue().splitlines() == [
        "16:03:21  add-parser  reviewing with codex (round 1)  — codex did not write it",
        f"16:03:21  add-parser  review by codex (round 1): requests changes — First: {SCRIPT}",
        "16:03:21  add-parser  review by codex (round 2): approved",
        "16:03:21  add-parser  review by codex (round 2): requests changes — Still no test"
        " (landed despite the rejection)",
        "16:03:21  add-parser  review by claude (round 1): failed — invalid_output: no verdict"
        " in the answer (edits discarded: a.py, b.py)",
    ]


def test_the_live_view_shows_a_task_under_review():
    from rich.console import Console

    from orchestra.builtin.sinks.console import NOTEWORTHY, ConsoleSink

    sink = ConsoleSink(StringIO())  # not a terminal: the view is still built on demand
    context = type(
        "Context",
        (),
        {"steps": {"add-parser": "ready"}, "run_id": "r1", "parallel": 1},
    )()
    context.last_line = lambda task: "aider: wrote src/parser.py"
    sink.open(context)
    sink._follow(event("step.running", {"tool": "aider", "attempt": 1}))
    sink._follow(event("review.started", {"tool": "codex", "round": 1}))

    def view() -> str:
        out = StringIO()
        Console(file=out, width=140, color_system=None).print(sink._view())
        return out.getvalue()

    assert "reviewing with codex (round 1)" in view()
    assert "aider: wrote src/parser.py" not in view()  # the author's line is not the review's
    sink._follow(event("review.approved", {"tool": "codex", "round": 1}))
    assert "reviewing" not in view() and "aider: wrote src/parser.py" in view()
    assert {"review.rejected", "review.failed"} <= NOTEWORTHY  # kept in the scrollback
