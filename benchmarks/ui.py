"""What ``orchestra ui`` costs and how fast it shows things, in headless Chromium.

Three measurements, each against the real ``orchestra ui`` and real ``orchestra run``
processes (``sandbox = "none"``, ``--max-parallel 2``, commands ``/bin/true``):

1. **A big run's page.** A finished run of 10,000 tasks (layers of 500, each task after
   the first layer depending on two of the layer before), its run page opened in headless
   Chromium (Debian's, driven through plugins/ui/tests/cdp.py): the time from the start of
   the navigation to the first frame drawn after the page says it rendered the run
   (``document.body.dataset.rendered``), read from the page's own clock
   (``performance.now()``). The first load (the server still has to read the run) is
   shown apart; the figure judged is the median of the next loads. Target: under 1 s.
2. **Update latency.** A run page open on a live run of ``--latency-tasks`` tasks (held
   at a gate until the page follows it): for every event the page receives, the page
   notes ``Date.now()/1000 - event.at`` (``window.orchestraLatencies``), the time from the
   event's row being written to its arrival in the page. Median, p95 and max. Target: the
   p95 under 0.5 s.
3. **50 pages.** A run of ``--follow-tasks`` tasks, timed from the release of its gate
   to the end of its process, alone and while 50 clients (one other Python process, one
   socket each) follow its event stream as pages do, taken in turn ``--runs`` times; and
   the server's peak RSS (``VmHWM``). Targets: the run's median with followers at most 5 %
   slower than alone; the server under 100 MB. The clients stand in for browsers, which
   are elsewhere (a laptop, through an SSH tunnel) or at least not the server's cost: they
   run at ``--followers-nice`` (19 by default: only on CPU the run leaves idle; they still
   read every byte, or the server's writes would stall). The CPU seconds the server and
   the clients used during each followed run are printed; ``--followers-nice 0`` measures
   the clients competing with the run as equals.

Run with the project's virtualenv (orchestra and orchestra-ui installed)::

    .venv/bin/python benchmarks/ui.py [--tasks 10000] [--latency-tasks 1000]
        [--follow-tasks 2000] [--clients 50] [--followers-nice 19] [--runs 3] [--record]

``--record`` appends the figures to benchmarks/RESULTS.md. Standard library only (and
Chromium at /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins" / "ui" / "tests"))

import plan_scale
from cdp import Browser, Page, chromium_available

import orchestra

ORCHESTRA = plan_scale.ORCHESTRA
MAX_PARALLEL = 2
LAYER_WIDTH = 500
PAGE_LOADS = 3
MAX_PAGE_SECONDS = 1.0
MAX_LATENCY_SECONDS = 0.5
MAX_SERVER_MB = 100.0
MAX_SLOWDOWN = 0.05
SERVING = re.compile(r"^orchestra ui: serving .+ at (?P<url>http://127\.0\.0\.1:(?P<port>\d+)/\?token=(?P<token>\S+)) \(Ctrl-C to stop\)$")  # fmt: skip
ENDED_RUN = ("run.succeeded", "run.failed", "run.canceled", "run.interrupted")


@dataclass(frozen=True)
class Figure:
    """One judged line of the results: what, the figure, the target, whether it is met."""

    what: str
    figure: str
    target: str
    passed: bool


# -- projects, runs and the server -----------------------------------------------------------


def write_workstream(path: Path, tasks: int, width: int, gate: Path | None = None) -> None:
    """Write ``tasks`` tasks of ``/bin/true`` in layers of ``width``, each after the first
    layer depending on two tasks of the layer before; with ``gate``, a first task waits
    (a minute at most) until that file exists and the first layer waits for it."""
    lines = ['id = "ui-bench"', f'title = "{tasks} tasks of /bin/true"']
    if gate is not None:
        wait = f"for i in $(seq 6000); do [ -e {gate} ] && exit 0; sleep 0.01; done; exit 1"
        lines += ["", "[[tasks]]", 'id = "gate"', "shell = true", f"command = {json.dumps(wait)}"]
    for number in range(tasks):
        layer, position = divmod(number, width)
        lines += ["", "[[tasks]]", f'id = "t{number:05d}"', 'command = ["/bin/true"]']
        if layer:
            before = (layer - 1) * width
            offset = 1 + layer % max(1, width - 1)  # two distinct tasks when width > 1
            needs = dict.fromkeys([before + position, before + (position + offset) % width])
            lines.append(f"depends_on = {json.dumps([f't{need:05d}' for need in needs])}")
        elif gate is not None:
            lines.append('depends_on = ["gate"]')
    path.write_text("\n".join(lines) + "\n")


def make_project(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "orchestra.toml").write_text('sandbox = "none"\n')
    return directory


def run_ids(project: Path) -> set[str]:
    database = project / ".orchestra" / "orchestra.db"
    if not database.exists():
        return set()
    with orchestra.open_run_database(database) as store:
        return {run.id for run in store.runs()}


def start_run(project: Path, workstream: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``orchestra run`` and return it with its run's id, once that is recorded."""
    known = run_ids(project)
    argv = [str(ORCHESTRA), "run", "--max-parallel", str(MAX_PARALLEL), "--quiet", str(workstream)]
    process = subprocess.Popen(
        argv,
        cwd=project,
        env=plan_scale.child_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (new := run_ids(project) - known):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"FAILED: {' '.join(argv)} recorded no run (exit {process.poll()})")
        time.sleep(0.02)
    return process, new.pop()


def finish(process: subprocess.Popen[bytes], timeout: float = 600) -> None:
    # wait() with a timeout polls, at up to 50 ms a sleep, which would round every time
    # measured up to the next poll; a blocking wait sees the exit at once (and a timer
    # kills a run that hangs)
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    try:
        status = process.wait()
    finally:
        killer.cancel()
    if status != 0:
        raise SystemExit(f"FAILED: orchestra run exited with {status}")


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    port: int
    token: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def cpu_seconds(self) -> float:
        """The CPU time (user and system) the server has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (VmHWM), in MB of 1,000,000 bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
        raise SystemExit("FAILED: no VmHWM in /proc/PID/status")


@contextlib.contextmanager
def serving(project: Path) -> Iterator[Server]:
    """Run ``orchestra ui --port 0`` in ``project``; stop it with SIGTERM afterwards."""
    process = subprocess.Popen(
        [str(ORCHESTRA), "ui", "--port", "0"],
        cwd=project,
        env=plan_scale.child_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline().strip() if ready else ""
        found = SERVING.match(line)
        if found is None:
            raise SystemExit(f"FAILED: orchestra ui printed {line!r}")
        yield Server(process, found["url"], int(found["port"]), found["token"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- 1. the page of a big finished run -------------------------------------------------------

#: installed in every document before its own script: the page's clock when it first says
#: it rendered a run, and when the frame after that was drawn
RENDER_CLOCK = """
new MutationObserver(() => {
  const body = document.body;
  if (window.__renderedAt || !body || body.dataset.view !== 'run' || !body.dataset.rendered) return;
  window.__renderedAt = performance.now();
  requestAnimationFrame(() => setTimeout(() => { window.__paintedAt = performance.now(); }, 0));
}).observe(document, {attributes: true, subtree: true, attributeFilter: ['data-rendered']});
"""


def page_load(page: Page, server: Server, run_id: str) -> tuple[float, float]:
    """Load the run page anew; return the seconds from the navigation's start to the
    page's render signal and to the frame drawn after it."""
    page.goto("about:blank")
    page.goto(f"{server.base}#/runs/{run_id}")
    painted = page.wait_for("window.__paintedAt", timeout=120)
    rendered = page.evaluate("window.__renderedAt")
    return rendered / 1000, painted / 1000


def big_run_page(
    browser: Browser, server: Server, run_id: str, tasks: int
) -> tuple[list[float], list[float]]:
    """Load the run page ``PAGE_LOADS + 1`` times; return the render and paint times."""
    page = browser.new_page()
    page.goto(server.url)  # signs in: the link's token becomes a cookie
    page.send("Page.addScriptToEvaluateOnNewDocument", {"source": RENDER_CLOCK})
    rendered, painted = [], []
    for number in range(PAGE_LOADS + 1):
        until_rendered, until_painted = page_load(page, server, run_id)
        shown = page.evaluate(
            "document.querySelector('#counts [data-count=\"succeeded\"]')?.textContent"
        )
        if shown != str(tasks):
            raise SystemExit(f"FAILED: the page shows {shown!r} tasks succeeded, not {tasks}")
        label = "first load" if number == 0 else f"load {number}/{PAGE_LOADS}"
        print(f"  {label}: rendered at {until_rendered:.3f} s, drawn at {until_painted:.3f} s")
        rendered.append(until_rendered)
        painted.append(until_painted)
    if page_problems := [str(error) for error in page.errors]:
        raise SystemExit("FAILED: errors in the page: " + "; ".join(page_problems))
    page.close()
    return rendered, painted


# -- 2. update latency -----------------------------------------------------------------------


def update_latency(browser: Browser, server: Server, project: Path, tasks: int) -> list[float]:
    """Follow a gated run of ``tasks`` tasks in a page; return every event's latency."""
    gate = project / "latency.gate"
    workstream = project / "latency.toml"
    write_workstream(workstream, tasks, max(1, tasks // 10), gate)
    process, run_id = start_run(project, workstream)
    try:
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for("document.body.dataset.view === 'runs'")
        page.evaluate(f"location.hash = '#/runs/{run_id}'")
        page.wait_for("document.body.dataset.view === 'run' && document.body.dataset.rendered")
        page.wait_for("document.getElementById('live')?.dataset.state === 'live'", timeout=20)
        page.evaluate("window.orchestraLatencies = []")
        gate.touch()
        finish(process)
        page.wait_for(
            "document.querySelector('#run-state')?.textContent.includes('succeeded')", timeout=60
        )
        time.sleep(0.5)  # the last events' arrival
        latencies = page.evaluate("window.orchestraLatencies")
        page.close()
    finally:
        gate.touch()
        if process.poll() is None:
            process.kill()
    if not latencies:
        raise SystemExit("FAILED: the page recorded no event (window.orchestraLatencies is empty)")
    return [float(latency) for latency in latencies]


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# -- 3. fifty followers ----------------------------------------------------------------------

#: the followers: one process, one socket per page, reading the run's event stream as an
#: EventSource does until the run's end event; it prints "connected" once every stream
#: answered 200, then "done" with what they read
FOLLOWERS = r"""
import selectors, socket, sys, time
port, token, run, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ends = (b"run.succeeded", b"run.failed", b"run.canceled", b"run.interrupted")
request = (f"GET /api/runs/{run}/events?after=0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"X-Orchestra-Token: {token}\r\nAccept: text/event-stream\r\n\r\n").encode()
selector = selectors.DefaultSelector()
state = {}
for _ in range(count):
    sock = socket.create_connection(("127.0.0.1", int(port)))
    sock.sendall(request)
    sock.setblocking(False)
    state[sock] = {"head": b"", "answered": False, "tail": b"", "bytes": 0}
    selector.register(sock, selectors.EVENT_READ)
answered = 0
deadline = time.monotonic() + 600
while state and time.monotonic() < deadline:
    for key, _ in selector.select(1):
        sock, seen = key.fileobj, state[key.fileobj]
        chunk = sock.recv(1 << 18)
        seen["bytes"] += len(chunk)
        if not seen["answered"]:
            seen["head"] += chunk
            if b"\r\n" in seen["head"]:
                if b" 200 " not in seen["head"].split(b"\r\n")[0]:
                    sys.exit(f"a stream answered {seen['head'][:80]!r}")
                seen["answered"] = True
                answered += 1
                if answered == count:
                    print("connected", flush=True)
        window = seen["tail"] + chunk
        # one scan a chunk: the harness stands in for pages elsewhere, its CPU is no one's
        ended = b'"type":"run.' in window and any(end in window for end in ends)
        if not chunk or ended:
            selector.unregister(sock)
            sock.close()
            del state[sock]
            continue
        seen["tail"] = window[-40:]
print("done", count - len(state), round(time.process_time(), 3), flush=True)
"""


@dataclass(frozen=True)
class Following:
    alone: list[float]
    followed: list[float]
    server_mb: float
    server_mb_alone: float

    @property
    def slowdown(self) -> float:
        return statistics.median(self.followed) / statistics.median(self.alone) - 1


def one_timed_run(
    project: Path, workstream: Path, gate: Path, server: Server | None, clients: int
) -> float:
    """Run the gated workstream, with ``clients`` followers connected before the gate
    opens (none for 0); return the seconds from the gate to the run's exit."""
    gate.unlink(missing_ok=True)
    process, run_id = start_run(project, workstream)
    followers = None
    try:
        if clients and server is not None:
            followers = subprocess.Popen(
                [
                    *(["nice", "-n", str(FOLLOWERS_NICE)] if FOLLOWERS_NICE else []),
                    sys.executable,
                    "-c",
                    FOLLOWERS,
                    str(server.port),
                    server.token,
                    run_id,
                    str(clients),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert followers.stdout is not None
            said = followers.stdout.readline().strip()
            if said != "connected":
                raise SystemExit(f"FAILED: the followers said {said!r}")
        cpu_before = server.cpu_seconds() if server is not None else 0.0
        started = time.perf_counter()
        gate.touch()
        finish(process)
        seconds = time.perf_counter() - started
        if followers is not None and server is not None:
            out, _ = followers.communicate(timeout=60)
            said = out.split()
            if said[:2] != ["done", str(clients)]:
                raise SystemExit(f"FAILED: the followers ended with {out!r}")
            print(
                f"    the server used {server.cpu_seconds() - cpu_before:.2f} s of CPU during"
                f" the run, the {clients} followers {float(said[2]):.2f} s"
            )
        return seconds
    finally:
        gate.touch()
        for child in (process, followers):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()


#: the niceness of the followers' process (--followers-nice)
FOLLOWERS_NICE = 19


def fifty_pages(project: Path, tasks: int, clients: int, runs: int) -> Following:
    gate = project / "follow.gate"
    workstream = project / "follow.toml"
    write_workstream(workstream, tasks, LAYER_WIDTH, gate)
    # untimed: makes the database (the server needs one) and warms the caches
    one_timed_run(project, workstream, gate, None, 0)
    with serving(project) as server:
        one_timed_run(project, workstream, gate, server, 0)  # untimed too: the server's
        alone_mb = server.peak_rss_mb()
        alone, followed = [], []
        for number in range(runs):  # in turn, so that load hits both alike
            alone.append(one_timed_run(project, workstream, gate, server, 0))
            followed.append(one_timed_run(project, workstream, gate, server, clients))
            print(
                f"  run {number + 1}/{runs}: alone {alone[-1]:.2f} s, "
                f"with {clients} followers {followed[-1]:.2f} s"
            )
        return Following(alone, followed, server.peak_rss_mb(), alone_mb)


# -- reporting -------------------------------------------------------------------------------


def markdown_table(figures: Sequence[Figure]) -> str:
    header = ("measure", "figure", "target", "result")
    cells = [header] + [
        (found.what, found.figure, found.target, "PASS" if found.passed else "FAIL")
        for found in figures
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])


def record(figures: Sequence[Figure], details: Sequence[str], options: argparse.Namespace) -> None:
    """Append a dated section with the table to RESULTS.md."""
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    chromium = subprocess.run(
        ["/usr/bin/chromium", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    section = [
        f"## {stamp} — the web UI (benchmarks/ui.py)",
        "",
        *(f"- {name}: {value}" for name, value in plan_scale.machine_description().items()),
        f"- browser: {chromium or 'chromium'}, headless, driven through its DevTools pipe",
        f'- runs: `orchestra run --max-parallel {MAX_PARALLEL} --quiet`, `sandbox = "none"`, '
        "tasks of `/bin/true`",
        f"- big run: {options.tasks:,} tasks in layers of {LAYER_WIDTH}; the run page loaded "
        f"{PAGE_LOADS + 1} times, the first apart",
        f"- latency: a run of {options.latency_tasks:,} tasks followed by one page",
        f"- followers: a run of {options.follow_tasks:,} tasks, {options.runs} times alone and "
        f"{options.runs} times with {options.clients} event-stream clients, interleaved; the"
        f" clients' process at niceness {options.followers_nice}",
        "",
        markdown_table(figures),
        "",
        *details,
        "",
    ]
    plan_scale.append_results(section)


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks of the big run")
    parser.add_argument("--latency-tasks", type=int, default=1_000, help="tasks of the live run")
    parser.add_argument("--follow-tasks", type=int, default=2_000, help="tasks of the followed run")
    parser.add_argument("--clients", type=int, default=50, help="event-stream followers")
    parser.add_argument(
        "--followers-nice",
        type=int,
        default=19,
        help="the niceness of the followers' process (0: as the run's)",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs, alone and followed")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    options = parser.parse_args(argv)
    global FOLLOWERS_NICE
    FOLLOWERS_NICE = options.followers_nice
    if min(options.tasks, options.latency_tasks, options.follow_tasks, options.runs) < 1:
        parser.error("every count must be at least 1")
    if not chromium_available():
        parser.error("no Chromium at /usr/bin/chromium (scripts/install-tools installs it)")
    figures: list[Figure] = []
    details: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix="orchestra-ui-bench-"))
    try:
        project = make_project(scratch / "project")
        workstream = project / "big.toml"
        write_workstream(workstream, options.tasks, LAYER_WIDTH)
        print(f"1. a finished run of {options.tasks:,} tasks; its run page")
        started = time.perf_counter()
        process, big_run = start_run(project, workstream)
        finish(process)
        print(f"  the run took {time.perf_counter() - started:.1f} s")
        with serving(project) as server, Browser.start(scratch) as browser:
            rendered, painted = big_run_page(browser, server, big_run, options.tasks)
            page_seconds = statistics.median(painted[1:])
            figures.append(
                Figure(
                    f"run page of {options.tasks:,} tasks, drawn (median of {PAGE_LOADS})",
                    f"{page_seconds:.3f} s",
                    f"< {MAX_PAGE_SECONDS:g} s",
                    page_seconds < MAX_PAGE_SECONDS,
                )
            )
            details.append(
                f"Run page of {options.tasks:,} tasks: first load (the server reads the run) "
                f"rendered at {rendered[0]:.3f} s, drawn at {painted[0]:.3f} s; the next "
                f"{PAGE_LOADS} rendered at {', '.join(f'{s:.3f}' for s in rendered[1:])} s "
                f"and drawn at {', '.join(f'{s:.3f}' for s in painted[1:])} s, from the "
                "start of the navigation."
            )

            print(f"2. update latency: a page following a run of {options.latency_tasks:,} tasks")
            latencies = update_latency(browser, server, project, options.latency_tasks)
            p95 = percentile(latencies, 0.95)
            print(
                f"  {len(latencies):,} events: median {statistics.median(latencies):.3f} s, "
                f"p95 {p95:.3f} s, max {max(latencies):.3f} s"
            )
            figures.append(
                Figure(
                    f"event to page, p95 of {len(latencies):,} events",
                    f"{p95:.3f} s (median {statistics.median(latencies):.3f}, "
                    f"max {max(latencies):.3f})",
                    f"< {MAX_LATENCY_SECONDS:g} s",
                    p95 < MAX_LATENCY_SECONDS,
                )
            )

        print(
            f"3. a run of {options.follow_tasks:,} tasks alone and with {options.clients} followers"
        )
        following = fifty_pages(
            make_project(scratch / "followed"), options.follow_tasks, options.clients, options.runs
        )
        figures.append(
            Figure(
                f"run with {options.clients} followers against alone (medians of {options.runs})",
                f"{following.slowdown * 100:+.1f} % ({statistics.median(following.followed):.2f} s "
                f"against {statistics.median(following.alone):.2f} s)",
                f"< +{MAX_SLOWDOWN * 100:g} %",
                following.slowdown < MAX_SLOWDOWN,
            )
        )
        figures.append(
            Figure(
                f"server peak RSS with {options.clients} followers",
                f"{following.server_mb:.0f} MB ({following.server_mb_alone:.0f} MB before them)",
                f"< {MAX_SERVER_MB:g} MB",
                following.server_mb < MAX_SERVER_MB,
            )
        )
        details.append(
            f"Followed run, seconds from its gate to its exit: alone "
            f"{', '.join(f'{s:.2f}' for s in following.alone)}; with {options.clients} "
            f"followers {', '.join(f'{s:.2f}' for s in following.followed)}. The followers "
            "are one Python process on the same two cores."
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(markdown_table(figures))
    print("\n".join(details))
    if options.record:
        record(figures, details, options)
    return 0 if all(found.passed for found in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
