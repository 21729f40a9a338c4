"""`orchestra ui` in a real browser: headless Chromium (Debian's) drives the page served by
the real command, over projects with real runs, as a person would: loading, clicking,
watching a run go by, cancelling it. What the tests wait on is the page's promise: after
each render ``document.body.dataset.view`` names the view (runs, run, task) and
``document.body.dataset.rendered`` grows by one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cdp import Page, PageError
from ui_helpers import Ui, running_ui, sleeper, stop_marked

from orchestra.testing import wait_for

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "examples" / "demo" / "workstream.toml"
DOCS_SCREENSHOT = REPO / "docs" / "images" / "ui-run.png"

# -- driving the page ----------------------------------------------------------------------


def rendered(page: Page) -> int:
    return int(page.evaluate("Number(document.body.dataset.rendered || 0)"))


def wait_view(page: Page, view: str, after: int = 0, timeout: float = 10) -> int:
    """Wait until the page rendered ``view`` after render number ``after``; return the
    render's number."""
    return int(
        page.wait_for(
            f"document.body.dataset.view === {json.dumps(view)}"
            f" && Number(document.body.dataset.rendered) > {after}"
            " && Number(document.body.dataset.rendered)",
            timeout,
        )
    )


def open_page(page: Page, ui: Ui, route: str = "") -> None:
    """Load the page from the link ``orchestra ui`` printed (which signs the page in),
    at a route such as ``#/runs/ID``."""
    page.goto(ui.url + route)


def text(page: Page, selector: str) -> str | None:
    return page.evaluate(
        f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent ?? null"
    )


def count(page: Page, state: str) -> int:
    """The number ``#counts`` shows for ``state`` (0 when it shows none)."""
    shown = text(page, f'#counts [data-count="{state}"]')
    return int(shown) if shown else 0


def node_states(page: Page) -> dict[str, str]:
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#graph g.node')]"
        ".map(node => [node.dataset.taskId, node.dataset.state]))"
    )


def shown(page: Page, selector: str) -> bool:
    """Whether the element is on the page and displayed (not hidden, not display: none)."""
    return bool(
        page.evaluate(
            f"(() => {{ const element = document.querySelector({json.dumps(selector)});"
            " return !!element && !element.hidden && element.getClientRects().length > 0; })()"
        )
    )


# -- a finished run ------------------------------------------------------------------------


def test_the_runs_page_lists_a_finished_run(page, ui, recorded):
    _, run_id = recorded
    open_page(page, ui)
    wait_view(page, "runs")
    row = f'#runs tr[data-run-id="{run_id}"]'
    assert text(page, f"{row} .state") == "succeeded"
    assert text(page, f"{row} .workstream").startswith("small")
    assert text(page, f"{row} .progress") == "2/2"
    # the link's token went into a cookie, not the address bar or the history
    assert page.evaluate("location.search") == ""


def test_clicking_a_task_shows_its_log_and_its_diff(page, ui, recorded):
    _, run_id = recorded
    open_page(page, ui)
    shown_runs = wait_view(page, "runs")
    page.click(f'#runs tr[data-run-id="{run_id}"]')
    shown_run = wait_view(page, "run", shown_runs)
    assert node_states(page) == {"write-notes": "succeeded", "check-notes": "succeeded"}

    page.click('#graph g.node[data-task-id="write-notes"]')
    wait_view(page, "task", shown_run)
    assert page.evaluate("location.hash") == f"#/runs/{run_id}/tasks/write-notes"
    assert "Write the notes" in text(page, "#task-title")
    page.wait_for(
        "document.querySelector('pre#log')?.textContent.includes('notes-are-being-written')"
    )
    added = page.evaluate(
        "[...document.querySelectorAll('pre.diff span.add')].map(line => line.textContent)"
    )
    assert "+    return 42" in added
    assert "notes.py" in text(page, '#attempts section.attempt[data-attempt="1"] .files')
    assert text(page, '#attempts section.attempt[data-attempt="1"] .landed').startswith("merged")

    # back to the run, and this time through the tasks table
    shown_task = rendered(page)
    page.evaluate("history.back()")
    shown_run = wait_view(page, "run", shown_task)
    page.click('#tasks tr[data-task-id="check-notes"] a')
    wait_view(page, "task", shown_run)
    page.wait_for("document.querySelector('pre#log')?.textContent.includes('the-notes-are-there')")


# -- a live run ----------------------------------------------------------------------------


def live_workstream(gate: Path) -> str:
    """12 command tasks in 3 waves of 4, each taking 0.3 s; the first wave waits (30 s at
    most) until ``gate`` exists, so a test can look at the run before anything ends."""
    wait = f"for i in $(seq 600); do [ -e {gate} ] && break; sleep 0.05; done; "
    tasks = []
    for wave, letter in enumerate("abc"):
        for number in range(1, 5):
            needs = [f"{'abc'[wave - 1]}{other}" for other in range(1, 5)] if wave else []
            command = (wait if not wave else "") + f"sleep 0.3; echo {letter}{number}-done"
            tasks.append(
                f'[[tasks]]\nid = "{letter}{number}"\ndepends_on = {json.dumps(needs)}\n'
                f"shell = true\ncommand = {json.dumps(command)}\n"
            )
    return 'id = "live"\ntitle = "Three waves"\n\n' + "\n".join(tasks)


@contextlib.contextmanager
def live_run(project, gate: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``live_workstream`` held at ``gate``; yield its process and run id; at the
    end release the gate and make sure the process is gone."""
    project.write("live.toml", live_workstream(gate))
    known = project.run_ids()
    process = project.start("live.toml", "--max-parallel", "4")
    try:
        yield process, project.new_run(process, known)
    finally:
        gate.touch()
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.slow
def test_a_task_page_follows_its_task_through_the_runs_events(page, ui, recorded, tmp_path):
    project, _ = recorded
    gate = tmp_path / "gate"
    with live_run(project, gate) as (process, run_id):
        open_page(page, ui, f"#/runs/{run_id}/tasks/c1")
        wait_view(page, "task")
        page.evaluate("window.__sameDocument = 'yes'")
        assert "succeeded" not in text(page, "#task-state")
        assert page.evaluate("document.querySelectorAll('#attempts section.attempt').length") == 0

        gate.touch()  # the last wave's c1 becomes ready, runs, succeeds
        page.wait_for(
            "document.querySelector('#task-state')?.textContent.includes('succeeded')"
            " && document.querySelector('pre#log')?.textContent.includes('c1-done')",
            timeout=30,
        )
        assert page.evaluate("window.__sameDocument") == "yes"  # never reloaded
        outcome = text(page, '#attempts section.attempt[data-attempt="1"] .outcome')
        assert outcome is not None and "succeeded" in outcome
        assert process.wait(timeout=30) == 0


@pytest.mark.slow
def test_a_live_run_changes_the_graph_and_the_counts_without_a_reload(page, ui, recorded, tmp_path):
    project, _ = recorded
    gate = tmp_path / "gate"
    open_page(page, ui)
    shown_runs = wait_view(page, "runs")
    page.evaluate("window.__sameDocument = 'yes'")

    with live_run(project, gate) as (process, run_id):
        # the runs page finds the new run by itself; a click opens it
        page.wait_for(f"document.querySelector('#runs tr[data-run-id=\"{run_id}\"]')")
        page.click(f'#runs tr[data-run-id="{run_id}"]')
        wait_view(page, "run", shown_runs)
        page.wait_for("document.querySelectorAll('#graph g.node').length === 12")
        page.wait_for("document.querySelector('#run-state')?.textContent.includes('running')")
        # each node's states in the order it showed them, sampled every 20 ms from here on
        page.evaluate(
            """window.__seen = {};
            window.__sample = () => document.querySelectorAll('#graph g.node').forEach(node => {
                const seen = window.__seen[node.dataset.taskId] ||= [];
                if (seen[seen.length - 1] !== node.dataset.state) seen.push(node.dataset.state);
            });
            setInterval(window.__sample, 20)"""
        )
        before = node_states(page)
        assert "succeeded" not in before.values(), before
        assert count(page, "succeeded") == 0

        gate.touch()
        page.wait_for(
            "document.querySelector('#counts [data-count=\"succeeded\"]')?.textContent === '12'"
            " && document.querySelector('#run-state').textContent.includes('succeeded')",
            timeout=30,
        )
        assert page.evaluate("window.__sameDocument") == "yes"  # never reloaded
        assert node_states(page) == {task: "succeeded" for task in before}
        assert count(page, "running") == count(page, "pending") == 0
        seen = page.evaluate("window.__sample(), window.__seen")  # a last sample: now
        # the last wave was seen waiting, then succeeded: the graph changed as it ran; and
        # no node went back from succeeded (a stale fetch undoing a newer event)
        for task in ("c1", "c2", "c3", "c4"):
            assert seen[task][-1] == "succeeded" and len(seen[task]) > 1, (task, seen[task])
        for task, states in seen.items():
            assert states.count("succeeded") == 1, (task, states)
        assert process.wait(timeout=30) == 0


def test_cancel_from_the_page_cancels_the_run(page, ui, recorded):
    project, _ = recorded
    command, marker = sleeper()
    project.write(
        "long.toml",
        f'id = "long"\n\n[[tasks]]\nid = "nap"\nshell = true\ncommand = "{command}"\n',
    )
    known = project.run_ids()
    process = project.start("long.toml")
    try:
        run_id = project.new_run(process, known)
        wait_for(lambda: project.run_state(run_id) == "running", what="the run running")
        open_page(page, ui, f"#/runs/{run_id}")
        wait_view(page, "run")
        page.wait_for("document.querySelector('#graph g.node[data-state=\"running\"]')")
        assert shown(page, "#cancel") and not shown(page, "#resume")

        page.click("#cancel")
        page.wait_for("document.querySelector('#action-result')?.textContent")
        wait_for(lambda: project.run_state(run_id) == "canceled", what="orchestra runs: canceled")
        assert process.wait(timeout=30) == 130  # `orchestra run`'s status when canceled
        page.wait_for(
            "document.querySelector('#run-state').textContent.includes('canceled')", timeout=10
        )
        page.wait_for(
            "!document.querySelector('#cancel') || document.querySelector('#cancel').hidden"
            " || document.querySelector('#cancel').getClientRects().length === 0"
        )
        assert shown(page, "#resume")
    finally:
        stop_marked(marker)
        if process.poll() is None:
            process.kill()
        process.communicate()


# -- values that look like markup ------------------------------------------------------------

SCRIPT = "<script>window.__xss=1</script>"
IMAGE = '"><img src=x onerror="window.__xss=1">'


def markup_workstream(flag: Path) -> str:
    """A workstream with markup in every value a page shows: titles, commands, their
    output, file names and contents, check output (the feedback of a second attempt,
    which ``flag`` lets pass) and a failure."""
    return f"""\
id = "markup"
title = '''{SCRIPT} {IMAGE}'''

[[tasks]]
id = "writes-markup"
title = '''{SCRIPT} {IMAGE}'''
metadata = {{ prompt = '''{SCRIPT} {IMAGE}''' }}
shell = true
max_attempts = 2
command = '''
echo '{SCRIPT}'
echo '{IMAGE}'
mkdir -p 'a<script>window.__xss=1<'
echo '{SCRIPT}' > 'a{SCRIPT}'
echo '{IMAGE}' > '{IMAGE}'
'''
files = {{ create = ["*"] }}
checks = [{{ shell = true, command = '''test -e {flag} || {{ touch {flag}; echo '{SCRIPT}'; echo '{IMAGE}'; exit 1; }}''' }}]

[[tasks]]
id = "fails-with-markup"
title = '''{IMAGE}'''
max_attempts = 1
shell = true
command = '''echo '{SCRIPT}'; echo '{IMAGE}' >&2; exit 3'''
"""


def assert_nothing_ran(page: Page, shows_markup: bool = True) -> None:
    """Fail if markup from the data became elements or ran; when ``shows_markup``, fail
    unless the page shows it as text."""
    found = page.evaluate(
        """({xss: typeof window.__xss,
             images: document.querySelectorAll('img[onerror], [onerror]').length,
             scripts: [...document.scripts].map(script => script.getAttribute('src')),
             text: document.body.innerText})"""
    )
    assert found["xss"] == "undefined"
    assert found["images"] == 0
    assert found["scripts"] == ["/static/main.js"]
    assert not page.dialogs
    if shows_markup:
        assert "<script>" in found["text"]


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_markup_in_titles_output_and_file_names_is_shown_never_run(page, new_project, tmp_path):
    project = new_project("markup")
    project.write("markup.toml", markup_workstream(tmp_path / "checked-once"))
    run_id = project.run("markup.toml")
    assert project.run_state(run_id) == "failed"  # fails-with-markup fails

    with running_ui(project.path) as ui:
        open_page(page, ui)
        shown_runs = wait_view(page, "runs")
        assert_nothing_ran(page, shows_markup=False)  # the runs page shows ids, not titles

        page.click(f'#runs tr[data-run-id="{run_id}"]')
        shown_run = wait_view(page, "run", shown_runs)
        assert_nothing_ran(page)

        page.click('#tasks tr[data-task-id="writes-markup"] a')
        wait_view(page, "task", shown_run)
        page.wait_for("document.querySelector('pre#log')?.textContent.includes('<script>')")
        page.wait_for("document.querySelector('pre.diff')")
        assert_nothing_ran(page)
        files = text(page, '#attempts section.attempt[data-attempt="2"] .files')
        assert IMAGE in files and f"a{SCRIPT}" in files
        diff = text(page, '#attempts section.attempt[data-attempt="2"] pre.diff')
        assert f"+{SCRIPT}" in diff and f"+{IMAGE}" in diff
        feedback = text(page, '#attempts section.attempt[data-attempt="1"] .feedback')
        assert SCRIPT in feedback and IMAGE in feedback

        shown_task = rendered(page)
        page.evaluate(f"location.hash = '#/runs/{run_id}/tasks/fails-with-markup'")
        wait_view(page, "task", shown_task)
        page.wait_for("document.querySelector('pre#log')?.textContent.includes('<img')")
        assert_nothing_ran(page)

        # markup in the address itself: ids of no run and no task, encoded as links are
        for route, view in ((f"#/runs/{run_id}/tasks/", "task"), ("#/runs/", "run")):
            shown_before = rendered(page)
            address = f"{json.dumps(route)} + encodeURIComponent({json.dumps(SCRIPT + IMAGE)})"
            page.evaluate(f"location.hash = {address}")
            wait_view(page, view, shown_before)
            assert_nothing_ran(page, shows_markup=False)

        # the server's answers to those two, as the page asked: no such task, no such run
        def not_found() -> list[PageError]:
            return [error for error in page.errors if "404" in error.text and "xss" in error.url]

        wait_for(lambda: len(not_found()) == 2, timeout=10, what="the two 404s in the page's log")
        page.errors[:] = [error for error in page.errors if error not in not_found()]


# -- a screenshot --------------------------------------------------------------------------


def png_pixels(path: Path) -> tuple[int, int, set[bytes]]:
    """Return the width, the height and the distinct colours of an 8-bit, non-interlaced
    RGB or RGBA PNG (what Chromium writes), decoded here: no imaging library needed."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    position, compressed, header = 8, [], ()
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG {header}"
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(b"".join(compressed))
    colours: set[bytes] = set()
    above = bytes(stride)
    for row in range(height):  # undo each row's filter (PNG specification, section 9)
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 255
        elif kind == 2:  # Up
            line = bytearray((value + up) & 255 for value, up in zip(line, above, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + (left + above[i]) // 2) & 255
        elif kind == 4:  # Paeth
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                up, corner = above[i], above[i - channels] if i >= channels else 0
                guess = left + up - corner
                far_left, far_up = abs(guess - left), abs(guess - up)
                far_corner = abs(guess - corner)
                if far_left <= far_up and far_left <= far_corner:
                    nearest = left
                else:
                    nearest = up if far_up <= far_corner else corner
                line[i] = (line[i] + nearest) & 255
        above = bytes(line)
        colours.update(above[i : i + channels] for i in range(0, stride, channels))
    return width, height, colours


def css_rgb(css: str) -> bytes:
    """bytes([r, g, b]) of a computed colour such as ``rgb(22, 163, 74)``."""
    inside = css[css.index("(") + 1 : css.index(")")].replace(",", " ").split()
    return bytes(int(float(part)) for part in inside[:3])


@pytest.mark.slow
def test_a_screenshot_of_the_run_page_after_the_demo_run(page, new_project, tmp_path):
    project = new_project("demo", git=False)  # the demo makes its own repository
    shutil.copy(DEMO, project.path / "workstream.toml")
    run_id = project.run("workstream.toml")
    assert project.run_state(run_id) == "succeeded"

    with running_ui(project.path) as ui:
        open_page(page, ui, f"#/runs/{run_id}")
        wait_view(page, "run")
        page.wait_for(
            "document.querySelectorAll('#graph g.node[data-state=\"succeeded\"]').length === 5"
        )
        page.wait_for("document.fonts.status === 'loaded'")
        badge = css_rgb(
            page.evaluate("getComputedStyle(document.querySelector('#run-state')).backgroundColor")
        )
        screenshot = page.screenshot(tmp_path / "ui-run.png")

    width, height, colours = png_pixels(screenshot)
    assert (width, height) == tuple(page.evaluate("[innerWidth, innerHeight]"))
    assert len(colours) > 50, f"{screenshot} looks blank: {len(colours)} colours"
    # the succeeded badge's green is in the picture: the page was drawn, not only its frame
    assert any(colour[:3] == badge for colour in colours), f"no pixel of {badge.hex()}"
    if os.environ.get("ORCHESTRA_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, DOCS_SCREENSHOT)
