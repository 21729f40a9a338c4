"""``orchestra runs``, ``show``, ``logs`` and ``status``: reading the run database."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from orchestra.cli.session import CliSession, pass_session

db_option = click.option("--db", type=click.Path(dir_okay=False), help="The run database to read.")
RUN_STATES = ("pending", "running", "succeeded", "failed", "canceled", "interrupted")
#: ``show`` prints the end of a longer line of a log
SHOWN_LINE_WIDTH = 300


def db_path(db: str | None) -> str | None:
    """Return a --db value as an absolute path: relative to where the command was run."""
    import os

    return None if db is None else os.path.abspath(db)


def _store(session: CliSession, db: str | None):
    """The run database to read: ``Store.open_existing``, which is all that
    ``engine.runs.open_existing_store`` does, called here directly. Importing the engine
    for it (about 100 modules) was a third of the instructions of ``orchestra runs`` and
    ``status`` (553 M of valgrind's count; 378 M without), benchmarks/startup.py."""
    from orchestra.config import resolve_settings
    from orchestra.store import Store

    return Store.open_existing(resolve_settings(session.project, flags={"db": db_path(db)}).db)


def _store_if_any(session: CliSession, db: str | None):
    """The run database, or None when there is none yet (a listing then lists nothing:
    the database is never made just to be read)."""
    from orchestra.config import resolve_settings

    settings = resolve_settings(session.project, flags={"db": db_path(db)})
    if not Path(settings.db).exists():
        return None
    return _store(session, db)


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


def _took(start: float | None, end: float | None) -> str:
    if start is None:
        return "-"
    return f"{(end or time.time()) - start:.1f}s"


def _usage(store, run_id: str, settings) -> dict:
    """The run's reported usage, and its budget as recorded with its settings."""
    used = store.usage_by_task(run_id).values()
    budget = {
        name: settings.get(f"budget_{name}")
        for name in ("cost", "tokens")
        if settings.get(f"budget_{name}") is not None
    }
    return {
        "tokens": sum(tokens for tokens, _ in used),
        "cost": round(sum(cost for _, cost in used), 6),
        "budget": budget,
    }


def _usage_text(usage: dict) -> str:
    budget = usage["budget"]
    tokens = f"{usage['tokens']:,} tokens"
    if "tokens" in budget:
        tokens += f" of {budget['tokens']:,}"
    cost = f"{usage['cost']:.2f} USD"
    if "cost" in budget:
        cost += f" of {budget['cost']:.2f}"
    return f"{tokens}, {cost}"


def _metadata(session: CliSession, record) -> dict[str, dict]:
    """Each task's metadata, read from the run's workstream file when it is still the
    file the run started with (the database does not keep it); empty otherwise."""
    from pathlib import Path

    from orchestra.loaders.sets import arguments_of

    file = record.workstream_file
    paths = arguments_of(file) if file else []
    if not paths or not all(Path(path).exists() for path in paths):
        return {}
    from orchestra.errors import OrchestraError
    from orchestra.loaders import load_source, source_digest

    try:
        if source_digest(paths, session.host) != record.content_hash:
            return {}
        loaded = load_source(
            paths,
            session.host,
            file_format=record.settings.get("format"),
            options=record.settings.get("loader_options"),
        )
    except OrchestraError:
        return {}
    return {task.id: dict(task.metadata) for task in loaded.workstream.tasks if task.metadata}


def _metadata_text(metadata: dict, width: int = 120) -> str:
    parts = []
    for key, value in metadata.items():
        shown = value if isinstance(value, (str, int, float)) else json.dumps(value)
        parts.append(f"{key}={shown}")
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def _run_end(store, record) -> float | None:
    """When the run ended; for an interrupted run, its last recorded moment (so its
    duration does not keep growing while nothing drives it)."""
    if record.ended_at is None and record.state.value == "interrupted":
        return store.last_event_at(record.id)
    return record.ended_at


def _tail(path: str | None, lines: int = 5) -> tuple[str, ...]:
    """The end of an attempt's log for ``show``: a few lines, read from the file's end."""
    from orchestra.logtail import tail_lines

    return tail_lines(path, lines, width=SHOWN_LINE_WIDTH)


@click.command()
@click.option(
    "--state", "state_filter", type=click.Choice(RUN_STATES), help="Only runs in this state."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    metavar="N",
    help="List at most N runs (the newest).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@db_option
@pass_session
def runs(
    session: CliSession, state_filter: str | None, limit: int, as_json: bool, db: str | None
) -> None:
    """List recorded runs, newest first."""
    store = _store_if_any(session, db)
    records = [] if store is None else store.runs(state=state_filter, limit=limit)
    rows = []
    for record in records:
        counts: dict[str, int] = {}
        for step in store.steps(record.id):
            counts[step.state.value] = counts.get(step.state.value, 0) + 1
        rows.append(
            {
                "id": record.id,
                "workstream": record.workstream_id,
                "state": record.state.value,
                "created_at": record.created_at,
                "started_at": record.started_at,
                "ended_at": record.ended_at,
                "steps": counts,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not records:
        which = f"{state_filter} runs" if state_filter else "runs"
        click.echo(f"(no {which} recorded yet)", err=True)
    for record, row in zip(records, rows, strict=True):
        steps = ", ".join(f"{n} {s}" for s, n in sorted(row["steps"].items()))
        click.echo(
            f"{row['id']}  {row['state']:<11}  {row['workstream']}  {_when(row['created_at'])}"
            f"  {_took(row['started_at'], _run_end(store, record))}  {steps}"
        )


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("task_id", metavar="[TASK]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@db_option
@pass_session
def show(
    session: CliSession, run_id: str, task_id: str | None, as_json: bool, db: str | None
) -> None:
    """Show RUN: its steps, their attempts and reviews, durations and errors with the
    log's tail. With TASK, only that task, its reviews' comments whole."""
    from orchestra.cli.review_lines import (
        RUN_COMMENT_LINES,
        TASK_COMMENT_LINES,
        review_lines,
        review_row,
    )
    from orchestra.report.reviews import reviews_by_attempt

    store = _store(session, db)
    record = store.run(run_id)
    if task_id is not None:
        store.step(run_id, task_id)  # an unknown task is an error naming it
    attempts_of: dict[str, list] = {}
    for attempt in store.attempts(run_id, task_id):
        attempts_of.setdefault(attempt.task_id, []).append(attempt)
    # the second tool's review of each attempt's change, when its task has one
    reviews = reviews_by_attempt(store, record)
    # where an executor that runs attempts elsewhere (ray) says each one ran
    placed = {
        (event.task_id, event.attempt): event.payload
        for event in store.events(run_id, types=("attempt.placed",))
    }
    # the tools routing passed over for each attempt, and why (its step.running event)
    passed_over = {
        (event.task_id, event.payload.get("attempt")): event.payload["passed_over"]
        for event in store.events(run_id, types=("step.running",))
        if event.payload.get("passed_over")
    }
    steps = []
    for step in store.steps(run_id):
        if task_id is not None and step.task_id != task_id:
            continue
        steps.append(
            {
                "task": step.task_id,
                "state": step.state.value,
                "reason": step.reason,
                "attempts": [
                    {
                        "number": a.number,
                        "tool": a.tool,
                        "tool_version": a.tool_version,
                        "host": placed.get((a.task_id, a.number), {}).get("host"),
                        "node": placed.get((a.task_id, a.number), {}).get("node"),
                        "outcome": a.outcome,
                        "error_class": a.error_class,
                        "message": a.message,
                        "exit_code": a.exit_code,
                        "started_at": a.started_at,
                        "ended_at": a.ended_at,
                        "log": a.log_path,
                        "routing": a.route_reason,
                        "passed_over": passed_over.get((a.task_id, a.number), []),
                        "input_tokens": a.input_tokens,
                        "output_tokens": a.output_tokens,
                        "cost_usd": a.cost_usd,
                        "reviews": [
                            review_row(review) for review in reviews.get((a.task_id, a.number), ())
                        ],
                    }
                    for a in attempts_of.get(step.task_id, [])
                ],
            }
        )
    usage = _usage(store, run_id, record.settings)
    metadata = _metadata(session, record)
    for step in steps:
        step["metadata"] = metadata.get(step["task"], {})
    if as_json:
        document = {
            "id": record.id,
            "workstream": record.workstream_id,
            "file": record.workstream_file,
            "state": record.state.value,
            "created_at": record.created_at,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "error": record.error,
            "format": record.settings.get("format"),
            "usage": usage,
            "steps": steps,
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"run {record.id}  {record.state.value}  workstream {record.workstream_id}")
    click.echo(f"  file {record.workstream_file}")
    click.echo(
        f"  started {_when(record.started_at)},"
        f" took {_took(record.started_at, _run_end(store, record))}"
    )
    if record.settings.get("format") not in (None, "toml"):
        click.echo(f"  format {record.settings['format']}")
    if record.error:
        click.echo(f"  stopped: {record.error}")
    if usage["tokens"] or usage["cost"] or usage["budget"]:
        click.echo(f"  usage {_usage_text(usage)}")
    for step in steps:
        reason = f"  — {step['reason']}" if step["reason"] else ""
        click.echo(f"\n{step['task']}  {step['state']}{reason}")
        if step["metadata"]:
            click.echo(f"  metadata: {_metadata_text(step['metadata'])}")
        for attempt in step["attempts"]:
            took = _took(attempt["started_at"], attempt["ended_at"])
            error = (
                f"  {attempt['error_class']}: {attempt['message']}"
                if attempt["error_class"]
                else ""
            )
            outcome = attempt["outcome"] or "running"
            where = f"  on {attempt['host']}" if attempt["host"] else ""
            click.echo(
                f"  attempt {attempt['number']}  {attempt['tool']}  {outcome}  {took}{where}{error}"
            )
            if attempt["routing"]:
                click.echo(f"    routed: {attempt['routing']}")
            # a change the reviewer turned down, or could not judge, worked: its review
            # (and the reviewer's log) says more than the tool's output
            reviewed = attempt["error_class"] in ("review_rejected", "review_failed")
            if attempt["outcome"] not in (None, "succeeded") and not reviewed:
                for line in _tail(attempt["log"]):
                    click.echo(f"    | {line}")
            for review in reviews.get((step["task"], attempt["number"]), ()):
                lines = review_lines(
                    review,
                    comment_lines=RUN_COMMENT_LINES if task_id is None else TASK_COMMENT_LINES,
                    hint=f"orchestra show {record.id} {step['task']}"
                    if task_id is None
                    else "orchestra show --json has them all",
                )
                for line in lines:
                    click.echo(line)
                if review.state == "failed":
                    for line in _tail(review.log_path):
                        click.echo(f"      | {line}")


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("task_id", metavar="TASK")
@click.option("--attempt", type=click.IntRange(min=1), help="Which attempt (default: the last).")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing as the log grows, until the attempt ends."
)
@click.option(
    "--tail",
    "-n",
    "tail",
    type=click.IntRange(min=1),
    metavar="LINES",
    help="Start at the last LINES lines (read from the end of the log).",
)
@db_option
@pass_session
def logs(
    session: CliSession,
    run_id: str,
    task_id: str,
    attempt: int | None,
    follow: bool,
    tail: int | None,
    db: str | None,
) -> None:
    """Print the log of TASK's attempt in RUN (secrets already masked)."""
    import codecs

    from orchestra.logtail import BLOCK, tail_start

    store = _store(session, db)
    chosen = chosen_attempt(store, run_id, task_id, attempt)
    path = Path(chosen.log_path or "")
    while not path.exists():  # made at the attempt's first output or failure
        if not follow or _ended(store, run_id, task_id, chosen.number):
            if chosen.command:
                click.echo(f"$ {chosen.command}")
            click.echo(f"(attempt {chosen.number} printed nothing)", err=True)
            return
        time.sleep(0.2)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with open(path, "rb") as log:
        if tail is not None:
            log.seek(tail_start(path, tail))
        while True:  # a block at a time: a huge log is never held whole
            block = log.read(BLOCK)
            if block:
                click.echo(decoder.decode(block), nl=False)
                continue
            if not follow or _ended(store, run_id, task_id, chosen.number):
                while block := log.read(BLOCK):  # what came before the end was recorded
                    click.echo(decoder.decode(block), nl=False)
                click.echo(decoder.decode(b"", final=True), nl=False)
                return
            time.sleep(0.2)


def chosen_attempt(store, run_id: str, task_id: str, number: int | None):
    """Return attempt ``number`` of a task (its last when None), or raise an error that
    says what there is."""
    from orchestra.errors import OrchestraError

    attempts = store.attempts(run_id, task_id)
    if not attempts:
        store.step(run_id, task_id)  # an unknown task is an error naming it
        raise OrchestraError(f"task {task_id!r} of run {run_id} has not been attempted yet")
    if number is None:
        return attempts[-1]
    for record in attempts:
        if record.number == number:
            return record
    raise OrchestraError(
        f"task {task_id!r} of run {run_id} has no attempt {number} (it has {len(attempts)})"
    )


def _ended(store, run_id: str, task_id: str, number: int) -> bool:
    attempt = next(a for a in store.attempts(run_id, task_id) if a.number == number)
    return attempt.ended_at is not None


@click.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option(
    "--watch", "-w", is_flag=True, help="Keep showing the run, live, until it ends (Ctrl-C stops)."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="How often --watch reads the database.",
)
@click.option("--json", "as_json", is_flag=True, help="Print where the run stands as JSON.")
@db_option
@pass_session
def status(
    session: CliSession,
    run_id: str | None,
    watch: bool,
    interval: float,
    as_json: bool,
    db: str | None,
) -> None:
    """Show where RUN (default: the newest run) stands: steps by state, running tasks.

    With --watch, the live view `orchestra run` shows on a terminal, read from the run
    database, so it works from another terminal (or for a run driven elsewhere that
    shares the database) and ends when the run does.
    """
    from orchestra.errors import OrchestraError

    if watch and as_json:
        raise OrchestraError("--watch and --json do not go together: --json prints once")
    store = _store(session, db)
    if run_id is None:
        newest = store.runs(limit=1)
        if not newest:
            raise OrchestraError("no runs recorded yet")
        run_id = newest[0].id
    if watch:
        _watch(store, run_id, interval)
    record = store.run(run_id)
    steps = store.steps(run_id)
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.state.value] = counts.get(step.state.value, 0) + 1
    done = sum(
        counts.get(s, 0) for s in ("succeeded", "failed", "skipped", "canceled", "quarantined")
    )
    running = [step for step in steps if step.state.value == "running"]
    if as_json:
        document = {
            "id": record.id,
            "workstream": record.workstream_id,
            "state": record.state.value,
            "done": done,
            "total": len(steps),
            "steps": dict(sorted(counts.items())),
            "running": [{"task": step.task_id, "attempt": step.attempts} for step in running],
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(
        f"run {record.id}  {record.state.value}  {done}/{len(steps)} done  "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    for step in running:
        click.echo(f"  running {step.task_id} (attempt {step.attempts})")


def _watch(store, run_id: str, interval: float) -> None:
    """Show the run live until it is no longer running (or pending)."""
    import sys

    from orchestra import progress

    def snapshot():
        store.mark_interrupted_if_orphaned(run_id)  # a driver that died ends the watch
        return progress.from_store(store, run_id)

    current = snapshot()
    if not sys.stdout.isatty():
        seen = None
        while True:
            line = progress.plain_line(current)
            if line != seen:
                click.echo(f"{time.strftime('%H:%M:%S')}  run {run_id}  {current.state}  {line}")
                seen = line
            if current.state not in ("running", "pending"):
                return
            time.sleep(interval)
            current = snapshot()
    from rich.live import Live

    try:
        with Live(progress.render(current), refresh_per_second=4, transient=True) as live:
            while current.state in ("running", "pending"):
                time.sleep(interval)
                current = snapshot()
                live.update(progress.render(current))
    except KeyboardInterrupt:
        return
