"""`orchestra report` of real runs: the Markdown and JSON reports against the run database,
and the HTML report rendered by headless Chromium (a screenshot, and the DOM it built)."""

import html
import json
import re
import shutil
import sqlite3
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchestra.testing import make_git_repo, run_orchestra

CHROMIUM_TIMEOUT = 60

WORKSTREAM = """
id = "report-demo"
title = "A run with <everything> in it"

[[tasks]]
id = "prepare"
command = "echo preparing"
shell = true

[[tasks]]
id = "flaky"
depends_on = ["prepare"]
command = "test -f flag || { touch flag; echo 'first try fails'; exit 3; }"
shell = true
max_attempts = 2
backoff = { initial = "0.1s", jitter = false }
checks = ["true"]

[[tasks]]
id = "broken"
command = "echo '<script>alert(1)</script> a|b'; exit 1"
shell = true
max_attempts = 1

[[tasks]]
id = "after-broken"
depends_on = ["broken"]
command = ["true"]

[[tasks]]
id = "final"
depends_on = ["flaky"]
command = ["true"]
"""

GIT_WORKSTREAM = """
id = "edits"

[[tasks]]
id = "rewrite"
command = "printf 'VALUE = 1\\nNAME = \\"<b>\\"\\n' > app.py"
shell = true
files = { write = ["app.py"] }

[[tasks]]
id = "notes"
depends_on = ["rewrite"]
command = "printf 'one\\ntwo\\nthree\\n' > notes.txt"
shell = true
files = { create = ["notes.txt"] }
"""


def query(project: Path, sql: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, args).fetchall()


def make_run(project: Path, workstream: str, expected_status: int) -> str:
    (project / "ws.toml").write_text(workstream)
    result = run_orchestra("run", "ws.toml", "--quiet", cwd=project)
    assert result.returncode == expected_status, result.stdout + result.stderr
    (run_id,) = [row["id"] for row in query(project, "SELECT id FROM runs")]
    return run_id


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> tuple[Path, str]:
    """A run in a directory that is not a git repository: successes, a retry, a failure
    and a skip."""
    project = tmp_path_factory.mktemp("plain")
    return project, make_run(project, WORKSTREAM, expected_status=1)


@pytest.fixture(scope="module")
def git_run(tmp_path_factory) -> tuple[Path, str]:
    """A run in a git repository whose tasks change files (and declare them, so that each
    has a worktree of its own), so every attempt has a diff."""
    project = make_git_repo(tmp_path_factory.mktemp("git") / "repo", {"app.py": "VALUE = 0\n"})
    return project, make_run(project, GIT_WORKSTREAM, expected_status=0)


def report(project: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    result = run_orchestra("report", *arguments, cwd=project)
    assert result.returncode == 0, result.stderr
    return result


# -- Markdown ---------------------------------------------------------------------------


def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """Return the tables of a Markdown report by the heading above each: the header row,
    then the body rows, each a list of cells."""
    tables: dict[str, list[list[str]]] = {}
    heading, in_table = "", False
    for line in text.splitlines():
        if line.startswith("#"):
            heading, in_table = html.unescape(line.lstrip("#").strip()), False
        elif line.startswith("|---"):
            continue
        elif line.startswith("|"):
            tables.setdefault(heading, []).append(cells(line))
            assert in_table or len(tables[heading]) == 1, f"two tables under {heading!r}"
            in_table = True
        else:
            in_table = False
    return tables


def records(table: list[list[str]]) -> list[dict[str, str]]:
    header, *rows = table
    return [dict(zip(header, row, strict=True)) for row in rows]


def cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip()[1:-1])
    return [html.unescape(part.strip().replace("\\|", "|")) for part in parts]


def diff_counts(diff: str) -> tuple[int, int]:
    """Return (added, deleted) lines of a unified diff, counted here independently."""
    lines = diff.splitlines()
    added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    deleted = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    return added, deleted


def test_the_markdown_tables_match_the_database(plain_run):
    project, run_id = plain_run
    tables = markdown_tables(report(project, run_id, "--format", "md").stdout)

    (run,) = query(project, "SELECT * FROM runs")
    header, *rows = tables[f"orchestra run {run_id}: failed"]
    assert header == ["", ""]
    summary = dict(rows)
    states = dict(query(project, "SELECT state, COUNT(*) FROM steps GROUP BY state ORDER BY state"))
    attempts = query(project, "SELECT * FROM attempts ORDER BY id")
    assert summary["run"] == run_id and summary["outcome"] == run["state"] == "failed"
    assert summary["workstream"] == "report-demo — A run with <everything> in it"
    assert summary["file"] == run["workstream_file"]
    counted = dict(
        (state, int(count))
        for count, state in (
            part.split(" ") for part in summary["tasks"].split(": ")[1].split(", ")
        )
    )
    assert counted == states == {"failed": 1, "skipped": 1, "succeeded": 3}
    assert summary["attempts"] == f"{len(attempts)} (1 retry)" == "5 (1 retry)"
    assert summary["wall time"] == f"{run['ended_at'] - run['started_at']:.1f}s"

    task_rows = records(tables["Tasks of `report-demo` — A run with <everything> in it"])
    steps = query(project, "SELECT * FROM steps ORDER BY position")
    assert [row["task"] for row in task_rows] == [step["task_id"] for step in steps]
    for row, step in zip(task_rows, steps, strict=True):
        tried = [a for a in attempts if a["task_id"] == step["task_id"]]
        assert row["state"] == step["state"]
        assert int(row["attempts"]) == step["attempts"] == len(tried)
        assert row["tool"] == (tried[-1]["tool"] if tried else "-")
        assert row["reason"] == (step["reason"] or "")
        assert (row["files"], row["+"], row["-"]) == ("0", "0", "0")  # not a git repository
    assert next(r for r in task_rows if r["task"] == "after-broken")["reason"] == (
        "dependency broken failed"
    )

    for step in steps:
        tried = [a for a in attempts if a["task_id"] == step["task_id"]]
        if not tried:
            assert step["task_id"] not in tables
            continue
        rows = records(tables[step["task_id"]])
        assert [
            (int(r["#"]), r["tool"], r["outcome"], r["exit"], r["error"], r["routing"])
            for r in rows
        ] == [
            (
                a["number"],
                a["tool"],
                a["outcome"],
                str(a["exit_code"]),
                ": ".join(part for part in (a["error_class"], a["message"]) if part),
                a["route_reason"],
            )
            for a in tried
        ]
        for row, attempt in zip(rows, tried, strict=True):
            assert row["took"] == f"{attempt['ended_at'] - attempt['started_at']:.1f}s"
    assert [r["outcome"] for r in records(tables["flaky"])] == ["failed", "succeeded"]
    assert records(tables["broken"])[0]["error"] == "exit_status: command exited with status 1"


def test_the_markdown_change_columns_match_the_stored_diffs(git_run):
    project, run_id = git_run
    tables = markdown_tables(report(project, run_id, "--format", "md").stdout)
    task_rows = {row["task"]: row for row in records(tables["Tasks of `edits`"])}
    for attempt in query(project, "SELECT * FROM attempts"):
        assert attempt["diff"], attempt["task_id"]
        added, deleted = diff_counts(attempt["diff"])
        row = task_rows[attempt["task_id"]]
        assert (int(row["+"]), int(row["-"])) == (added, deleted)
    assert (task_rows["rewrite"]["+"], task_rows["rewrite"]["-"]) == ("2", "1")
    assert records(tables["notes"])[0]["files"] == "notes.txt +3 -0"


# -- JSON -------------------------------------------------------------------------------


def test_the_json_report_matches_the_database(plain_run):
    project, run_id = plain_run
    document = json.loads(report(project, run_id, "--format", "json").stdout)

    (run,) = query(project, "SELECT * FROM runs")
    for field in ("id", "state", "created_at", "started_at", "ended_at", "error"):
        assert document[field] == run[field], field
    assert document["workstream"] == run["workstream_id"]
    assert document["file"] == run["workstream_file"]
    assert document["wall_seconds"] == run["ended_at"] - run["started_at"]
    attempts = query(project, "SELECT * FROM attempts ORDER BY task_id, number")
    assert document["attempts"] == len(attempts) and document["retries"] == 1
    steps = query(project, "SELECT * FROM steps ORDER BY position")
    assert [(t["id"], t["state"], t["reason"]) for t in document["tasks"]] == [
        (s["task_id"], s["state"], s["reason"]) for s in steps
    ]
    fields = ("number", "tool", "outcome", "error_class", "message", "exit_code")
    fields += ("started_at", "ended_at", "route_reason", "log_path", "diff")
    reported = [
        (task["id"], *(attempt[f] for f in fields))
        for task in sorted(document["tasks"], key=lambda task: task["id"])
        for attempt in task["attempts"]
    ]
    assert reported == [(a["task_id"], *(a[f] for f in fields)) for a in attempts]
    # the graph comes from the workstream file, which is still there
    assert document["graph_source"] == "workstream" and document["graph_note"] is None
    assert sorted(map(tuple, document["edges"])) == [
        ("broken", "after-broken"),
        ("flaky", "final"),
        ("prepare", "flaky"),
    ]
    assert document["waves"] == [["prepare", "broken"], ["flaky", "after-broken"], ["final"]]
    flaky = next(task for task in document["tasks"] if task["id"] == "flaky")
    assert flaky["checks"] == ["true"]
    broken = next(task for task in document["tasks"] if task["id"] == "broken")
    assert "<script>alert(1)</script> a|b" in broken["log_tail"]


def test_without_the_workstream_file_the_graph_is_what_the_database_knows(plain_run, tmp_path):
    project, run_id = plain_run
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    (copy / "ws.toml").unlink()
    database = copy / ".orchestra" / "orchestra.db"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE runs SET workstream_file = ?", (str(copy / "ws.toml"),))
    document = json.loads(report(copy, run_id, "--format", "json", "--db", str(database)).stdout)
    assert document["graph_source"] == "database"
    assert "no longer exists" in document["graph_note"]
    assert document["edges"] == [["broken", "after-broken"]]  # from the skip's reason
    assert all(task["checks"] == [] for task in document["tasks"])
    markdown = report(copy, run_id, "--format", "md", "--db", str(database)).stdout
    assert "no longer exists" in markdown


# -- HTML in Chromium -------------------------------------------------------------------


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess[str]:
    program = shutil.which("chromium")
    assert program, (
        "chromium is not on PATH: run scripts/install-tools (it installs Debian's chromium)"
    )
    return subprocess.run(
        [
            program,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT,
        check=True,
    )


class TimelineReader(HTMLParser):
    """Collects the timeline's rows (data-task) and each row's bars (data-attempt)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[int]] = {}
        self.scripts = 0
        self.open_rows: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "g":
            task = attributes.get("data-task")
            self.open_rows.append(task)
            if task is not None:
                assert task not in self.rows, f"two timeline rows for {task}"
                self.rows[task] = []
        if "data-attempt" in attributes:
            assert self.open_rows and self.open_rows[-1] is not None, "a bar outside a row"
            self.rows[self.open_rows[-1]].append(int(attributes["data-attempt"]))

    def handle_endtag(self, tag):
        if tag == "g":
            self.open_rows.pop()


def png_pixels(path: Path) -> tuple[int, int, int, list[bytes]]:
    """Return (width, height, bytes per pixel, rows of pixel bytes) of an 8-bit RGB(A) PNG,
    decoded with zlib and the PNG chunk layout alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, compressed, header = 8, b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(compressed)
    stride = width * step
    rows, previous = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(step, stride):
                line[i] = (line[i] + line[i - step]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - step] if i >= step else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - step] if i >= step else 0
                b, c = previous[i], previous[i - step] if i >= step else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                guess = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + guess) & 255
        rows.append(bytes(line))
        previous = rows[-1]
    return width, height, step, rows


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_the_html_report_renders_in_headless_chromium(plain_run, tmp_path):
    project, run_id = plain_run
    written = report(project, run_id)  # html by default, into the current directory
    page = project / f"report-{run_id}.html"
    assert written.stdout.strip() == f"wrote {page}"
    text = page.read_text()
    # self-contained and escaped: nothing fetched, nothing from the database runs
    assert "<script" not in text and "<link" not in text and "://" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a|b" in text

    screenshot = tmp_path / "out.png"
    chromium(
        f"--screenshot={screenshot}",
        "--window-size=1280,2000",
        page.as_uri(),
        profile=tmp_path / "p1",
    )
    width, height, step, rows = png_pixels(screenshot)
    assert (width, height) == (1280, 2000)
    colours = {row[i : i + 3] for row in rows for i in range(0, len(row), step)}
    assert len(colours) > 10, "the screenshot is (nearly) one colour"
    # the timeline's bars were painted: the succeeded green and the failed red of the CSS
    assert bytes.fromhex("2e9e5b") in colours and bytes.fromhex("d64545") in colours

    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p2").stdout
    reader = TimelineReader()
    reader.feed(dom)
    attempts: dict[str, list[int]] = {}
    for row in query(project, "SELECT task_id, number FROM attempts ORDER BY number"):
        attempts.setdefault(row["task_id"], []).append(row["number"])
    steps = [
        row["task_id"] for row in query(project, "SELECT task_id FROM steps ORDER BY position")
    ]
    assert list(reader.rows) == steps
    assert reader.rows == {task: attempts.get(task, []) for task in steps}
    assert reader.rows["flaky"] == [1, 2] and reader.rows["after-broken"] == []
    assert reader.scripts == 0
    assert dom.count("data-task=") == len(steps)


def test_the_html_report_of_a_git_run_shows_each_change(git_run, tmp_path):
    project, run_id = git_run
    page = tmp_path / "report.html"
    report(project, run_id, "-o", str(page))
    text = page.read_text()
    for attempt in query(project, "SELECT * FROM attempts"):
        assert html.escape(attempt["diff"], quote=False).splitlines()[0] in text
    assert text.count("<details>") == 2
    assert 'NAME = "&lt;b&gt;"' in text.replace("&quot;", '"')
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    reader = TimelineReader()
    reader.feed(dom)
    assert reader.rows == {"rewrite": [1], "notes": [1]}


def test_an_unknown_run_is_a_one_line_error(plain_run):
    project, _ = plain_run
    result = run_orchestra("report", "20260101-000000-abcd", "--format", "md", cwd=project)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and "no run '20260101-000000-abcd'" in result.stderr


def test_the_docs_show_the_current_help_and_are_linked():
    docs = Path(__file__).resolve().parents[1] / "docs"
    help_text = run_orchestra("report", "--help", env={"COLUMNS": "80"}).stdout
    assert f"## orchestra report\n\n```\n{help_text}```\n" in (docs / "cli.md").read_text()
    assert "(report.md)" in (docs / "index.md").read_text()


def test_an_output_file_that_cannot_be_written_is_one_line_exit_2(tmp_path):
    (tmp_path / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\ncommand = ["true"]\n')
    ran = run_orchestra("run", "ws.toml", "--json", cwd=tmp_path)
    run_id = json.loads(ran.stdout)["run"]

    refused = run_orchestra("report", run_id, "-o", str(tmp_path / "no" / "r.html"), cwd=tmp_path)

    assert refused.returncode == 2
    assert refused.stderr.startswith("error: cannot write ") and "Traceback" not in refused.stderr
