"""``orchestra run``, ``resume`` and ``cancel``: driving runs."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestra.cli.convert import echo_notice, loader_options
from orchestra.cli.runs import db_path
from orchestra.cli.session import (
    CliSession,
    pass_session,
    pass_session_collector_paused,
    resume_collector,
)
from orchestra.cli.workspace import say_if_uncommitted

if TYPE_CHECKING:
    from orchestra.config import Settings
    from orchestra.plugin.protocols import EventSink, PluginSetting
    from orchestra.store import RunRecord

#: exit statuses: 0 succeeded, 1 the run failed, 2 bad input, 130 interrupted
EXIT_FOR_STATE = {"succeeded": 0, "failed": 1, "canceled": 130}


#: the signals that cancel a run: Ctrl-C, `kill` or `orchestra cancel`, a closed terminal
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _cancel_on_signals() -> Iterator[tuple[threading.Event, threading.Event]]:
    """Yield (cancel, hurry): the first SIGINT, SIGTERM or SIGHUP sets cancel (running
    attempts get SIGTERM and a grace period); a second sets hurry (SIGKILL at once)."""
    cancel, hurry = threading.Event(), threading.Event()

    def handle(signum: int, frame: object) -> None:
        if cancel.is_set():
            _say("orchestra: stopping now")
            hurry.set()
            return
        cancel.set()
        if signum == signal.SIGINT:
            _say("orchestra: canceling the run (press Ctrl-C again to stop at once)")
        elif signum == signal.SIGHUP:
            _say("orchestra: canceling the run (its terminal went away)")
        else:
            _say("orchestra: canceling the run (asked by a signal)")

    previous = {sig: signal.signal(sig, handle) for sig in CANCEL_SIGNALS}
    try:
        yield cancel, hurry
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(message: str) -> None:
    """Print on stderr from a signal handler: a closed terminal (SIGHUP) must not turn
    the cancel into an exception in whatever the run loop was doing."""
    try:
        click.echo(message, err=True)
    except OSError:
        pass


def _say_if_unconfined(settings) -> None:
    """One line on stderr when the run's attempts will not be sandboxed, saying why; a
    sandbox required (``sandbox = "bwrap"``) and not possible here stops the run first."""
    from orchestra.engine import sandbox

    choice = sandbox.require(settings)
    if not choice.confined:
        click.echo(f"orchestra: {choice.describe()}", err=True)


def _probe_sandbox_early(session: CliSession, flags: dict[str, Any]) -> threading.Thread | None:
    """Start ``sandbox.probe`` on a thread when the run will ask for it, and return the
    thread (None when it will not): the probe runs ``bwrap … true`` and waits for it,
    about 7 ms of every ``orchestra run``, which goes on meanwhile with the engine's
    imports and the workstream's loading (benchmarks/startup.py).

    The run wants the probe when the ``sandbox`` setting is not ``none`` and the local
    executor runs its attempts (``sandbox.choose``): neither setting can come from a
    workstream's [defaults], so the flags, the environment and the configuration say it
    before the workstream is read. A setting that cannot be read starts nothing: loading
    says what is wrong with it, as it would without this.
    """
    from orchestra.config import resolve_settings
    from orchestra.errors import OrchestraError

    try:
        early = resolve_settings(session.project, flags=flags)
    except OrchestraError:
        return None
    if early.sandbox not in ("auto", "bwrap") or early.executor != "local":
        return None
    from orchestra.engine.sandbox import probe

    # a daemon: a run that stops before it asks (a workstream that does not load) does
    # not wait for it; the probe's answer is cached, so the run's own call only reads it
    thread = threading.Thread(target=probe, name="orchestra-sandbox-probe", daemon=True)
    thread.start()
    return thread


def _sinks(
    session: CliSession, settings: Settings, quiet: bool, plain: bool = False
) -> list[EventSink]:
    """The configured sinks; --quiet and --json silence only the console, --plain turns
    its live view into lines."""
    names = [name for name in settings.sinks if not (quiet and name == "console")]
    sinks = [session.host.sinks().get(name) for name in names]
    for sink in sinks:
        if hasattr(sink, "plain"):
            sink.plain = plain
    return sinks


def _duration(seconds: float) -> str:
    from orchestra.durations import clock

    return clock(seconds) if seconds >= 1 else f"{seconds:.1f}s"


def _tail(reason: str, width: int = 160) -> str:
    """The end of a failure's reason, on one line."""
    line = " ".join(reason.split())
    return line if len(line) <= width else "…" + line[-width:]


def _report(outcome, as_json: bool, merged: str | None = None) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run": outcome.run_id,
                    "state": outcome.state,
                    "steps": dict(outcome.counts),
                    "failed": list(outcome.failed),
                    "error": outcome.error,
                    "seconds": round(outcome.seconds, 3),
                    "tokens": outcome.tokens,
                    "cost": outcome.cost,
                    "reasons": dict(outcome.reasons),
                    "notes": list(outcome.notes),
                    "merge": merged,
                }
            )
        )
        return
    counts = ", ".join(f"{n} {state}" for state, n in sorted(outcome.counts.items()))
    click.echo(f"run {outcome.run_id} {outcome.state}: {counts}")
    figures = [f"took {_duration(outcome.seconds)}"]
    if outcome.tokens or outcome.cost:
        figures.append(f"{outcome.tokens:,} tokens, {outcome.cost:.2f} USD")
    click.echo("  " + ", ".join(figures))
    for task, reason in outcome.reasons.items():
        click.echo(f"  {task}: {_tail(reason)}")
    if outcome.error:
        click.echo(f"stopped: {outcome.error}")
    for note in outcome.notes:
        click.echo(note)
    if merged:
        click.echo(merged)
    if outcome.failed:
        click.echo(f"failed: {', '.join(outcome.failed)}  (see: orchestra show {outcome.run_id})")
    if outcome.state == "canceled":
        click.echo(f"to go on with it: orchestra resume {outcome.run_id}")


class TakesPluginSettings(click.Command):
    """A command that takes, beside its own options, one per setting plugins add
    (``orchestra_register_settings``): ``--help`` lists them after the others, and each
    reaches the command as a keyword argument named after its setting (None when not
    given)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        # made once per invocation: click tells parameters apart by identity
        key = f"orchestra.plugin_options.{self.name}"
        if key not in ctx.meta:
            ctx.meta[key] = _plugin_options(ctx, resuming=self.name == "resume")
        added = ctx.meta[key]
        help_option = self.get_help_option(ctx)
        if params and params[-1] is help_option:
            return [*params[:-1], *added, help_option]
        return [*params, *added]


#: the click type and the default metavar of a plugin setting's option, by its type
_OPTION_TYPES: dict[type, tuple[click.ParamType, str]] = {
    str: (click.STRING, "TEXT"),
    int: (click.INT, "N"),
    float: (click.FLOAT, "NUMBER"),
}


def _plugin_options(ctx: click.Context, *, resuming: bool) -> list[click.Option]:
    """The options of the settings the installed plugins add, loading the plugins."""
    import os

    from orchestra.errors import OrchestraError
    from orchestra.plugin.host import PluginHost

    session = ctx.ensure_object(CliSession)
    try:
        registry = session.host.settings()
    except OrchestraError:
        # the configuration cannot be read: the options of the plugins the environment
        # leaves, so that the command gets as far as saying what is wrong with it
        try:
            registry = PluginHost.from_environment(environ=os.environ).settings()
        except OrchestraError:
            return []
    return [_option(item.item, resuming) for item in registry if item.item.option]


def _option(setting: PluginSetting, resuming: bool) -> click.Option:
    """The option ``--<name>`` of a plugin's setting; on ``resume`` it changes the value
    the run started with."""
    from orchestra.secrets import secret_settings

    flag = "--" + setting.name.replace("_", "-")
    help_text = setting.help
    if resuming and not secret_settings([setting]):  # a secret is not recorded: read again
        help_text = f"{help_text.rstrip('.')} (default: as the run started)."
    if setting.type is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", setting.name], default=None, help=help_text)
    kind, metavar = _OPTION_TYPES[setting.type]
    return click.Option(
        [flag, setting.name], type=kind, metavar=setting.metavar or metavar, help=help_text
    )


@click.command(cls=TakesPluginSettings)
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--routing",
    metavar="STRATEGY",
    help="Routing strategy for tasks that pin no tool "
    "(overrides ORCHESTRA_ROUTING, [defaults] and the configuration).",
)
@click.option("--max-parallel", type=click.IntRange(min=1), metavar="N", help="Tasks at once.")
@click.option("--fail-fast", is_flag=True, help="Stop everything when a task fails for good.")
@click.option(
    "--budget-cost",
    type=click.FloatRange(min=0, min_open=True),
    metavar="USD",
    help="Start nothing more once the run's reported cost reaches this.",
)
@click.option(
    "--budget-tokens",
    type=click.IntRange(min=1),
    metavar="N",
    help="Start nothing more once the run has used this many tokens.",
)
@click.option(
    "--sink",
    "sink_names",
    multiple=True,
    metavar="NAME",
    help="Send the run's events to this sink (repeat for several); replaces the sinks setting.",
)
@click.option(
    "--merge-into",
    metavar="BRANCH",
    help="When the run succeeds, bring its branch into BRANCH (fast-forward when it can).",
)
@click.option(
    "--include-uncommitted",
    is_flag=True,
    help="Start the run from your uncommitted changes to tracked files too, not from "
    "your last commit alone (your branch, index and files stay as they are).",
)
@click.option(
    "--log-limit",
    metavar="SIZE",
    callback=lambda context, parameter, value: _size(value),
    help="How much output each attempt's log keeps, such as 10MB (the default).",
)
@click.option("--db", type=click.Path(dir_okay=False), help="The run database to use.")
@click.option(
    "--executor",
    metavar="NAME",
    help="Where attempts run: local (the default) or a plugin's executor.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
@click.option(
    "--plain", is_flag=True, help="One line per change instead of the live view on a terminal."
)
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@loader_options()
@pass_session_collector_paused
def run(
    session: CliSession,
    paths: tuple[str, ...],
    routing: str | None,
    max_parallel: int | None,
    fail_fast: bool,
    budget_cost: float | None,
    budget_tokens: int | None,
    sink_names: tuple[str, ...],
    merge_into: str | None,
    include_uncommitted: bool,
    log_limit: int | None,
    db: str | None,
    executor: str | None,
    quiet: bool,
    plain: bool,
    as_json: bool,
    file_format: str | None,
    reading: dict[str, Any],
    **plugin_flags: Any,
) -> None:
    """Run the workstream in PATH to its end, recording every step in the run database.

    PATH is a workstream file, or a directory of them read as one workstream (several
    files are read as one too).

    Tasks start when their dependencies have succeeded, up to --max-parallel at once.
    A task that fails for good skips its dependents; other branches go on. Ctrl-C
    cancels the run (a second Ctrl-C stops at once); `orchestra resume RUN` continues
    a canceled run, or one whose process died. Exit status: 0 succeeded, 1 failed,
    2 bad input, 75 the disk is full (free space, then resume), 130 canceled or
    interrupted. Installed plugins add options for their settings, listed last.
    """
    flags = {
        "routing": routing,
        "max_parallel": max_parallel,
        "db": db_path(db),
        "budget_cost": budget_cost,
        "budget_tokens": budget_tokens,
        "log_limit": log_limit,
        "sinks": tuple(sink_names) or None,
        "executor": executor,
        "include_uncommitted": include_uncommitted or None,
        **plugin_flags,
    }
    probing = _probe_sandbox_early(session, flags)  # first: it waits while the rest works
    from orchestra.engine.runs import start_run
    from orchestra.planning import load_checked

    resume_collector()  # start-up is over: what follows grows with the workstream
    try:
        workstream, settings = load_checked(
            paths,
            session.project,
            session.host,
            flags,
            file_format=file_format,
            options=reading,
            on_notice=echo_notice,
        )
    finally:
        session.warn()
    if merge_into:
        _check_merge_target(session, merge_into)
    if probing is not None:
        probing.join()
    _say_if_unconfined(settings)
    say_if_uncommitted(session, workstream, settings)
    sinks = _sinks(session, settings, quiet or as_json, plain)
    with _cancel_on_signals() as (cancel, hurry):
        outcome = start_run(
            paths,
            workstream,
            settings,
            session.project,
            session.host,
            sinks=sinks,
            cancel=cancel,
            hurry=hurry,
            fail_fast=fail_fast,
        )
    merged = _merge(session, outcome, merge_into) if merge_into else None
    _report(outcome, as_json, merged)
    sys.exit(EXIT_FOR_STATE.get(outcome.state, 1))


def _size(text: str | None) -> int | None:
    """A --log-limit value in bytes; a size that cannot be read is a usage error."""
    if text is None:
        return None
    from orchestra.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _check_merge_target(session: CliSession, target: str) -> None:
    """Refuse --merge-into a branch that does not exist, before anything runs."""
    from orchestra.errors import OrchestraError
    from orchestra.git import refs

    repo = refs.repository_root(session.project.root)
    if repo is None:
        raise OrchestraError(f"--merge-into: {session.project.root} is not in a git repository")
    if refs.branch_tip(repo, target) is None:
        raise OrchestraError(f"--merge-into: there is no branch {target!r} in {repo}")


def _merge(session: CliSession, outcome, target: str) -> str:
    """Bring a succeeded run's branch into ``target``; say what happened."""
    from orchestra.builtin.workspaces import run_branch
    from orchestra.git import merging, refs
    from orchestra.git.command import GitError

    if outcome.state != "succeeded":
        return f"not merged into {target}: the run {outcome.state}"
    repo = refs.repository_root(session.project.root)
    source = run_branch(outcome.run_id)
    checkpoint = outcome.checkpoints.get("worktree") or {}
    if checkpoint and checkpoint.get("tip") == checkpoint.get("start"):
        return f"nothing to merge into {target}: the run merged no change"
    if repo is None or refs.branch_tip(repo, source) is None:
        return f"not merged into {target}: the run has no branch {source}"
    # the tip the run left its branch at: a branch moved since by another hand is refused
    expected = checkpoint.get("tip")
    try:
        how = merging.merge_into(repo, source, target, expected=expected)
    except GitError as error:
        return f"not merged into {target}: {error}"
    return f"merged {source} into {target} ({how})"


#: settings a resumed run keeps from its start (unless given again on the command line)
RESUMED_SETTINGS = (
    "max_parallel",
    "routing",
    "scheduler",
    "max_attempts",
    "timeout",
    "idle_timeout",
    "log_limit",
    "executor",
    "include_uncommitted",
    "budget_cost",
    "budget_tokens",
)


@click.command(cls=TakesPluginSettings)
@click.argument("run_id", metavar="RUN")
@click.option("--force", is_flag=True, help="Resume even if the workstream file changed.")
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    metavar="N",
    help="Tasks at once (default: as the run started).",
)
@click.option("--fail-fast", is_flag=True, help="Stop everything when a task fails for good.")
@click.option(
    "--budget-cost",
    type=click.FloatRange(min=0, min_open=True),
    metavar="USD",
    help="The run's cost budget from now on (default: as the run started), spent so far included.",
)
@click.option(
    "--budget-tokens",
    type=click.IntRange(min=1),
    metavar="N",
    help="The run's token budget from now on (default: as the run started), used so far included.",
)
@click.option("--db", type=click.Path(dir_okay=False), help="The run database to use.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
@click.option(
    "--plain", is_flag=True, help="One line per change instead of the live view on a terminal."
)
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@pass_session_collector_paused
def resume(
    session: CliSession,
    run_id: str,
    force: bool,
    max_parallel: int | None,
    fail_fast: bool,
    budget_cost: float | None,
    budget_tokens: int | None,
    db: str | None,
    quiet: bool,
    plain: bool,
    as_json: bool,
    **plugin_flags: Any,
) -> None:
    """Continue an interrupted or canceled RUN; what succeeded is not run again.

    Processes the run's dead orchestrator left running are stopped; attempts that were
    running are recorded as interrupted and their tasks tried again. Of a canceled run,
    the canceled tasks and those skipped because of them run again; failed ones stay
    failed. The run keeps --fail-fast and the settings it started with (parallelism,
    timeouts, attempts, routing, scheduler, executor, log limit, budgets, the plugins'
    settings, and the uncommitted changes it may have started from); --max-parallel,
    --fail-fast, the budgets and the plugins' options given here change them. Refuses
    if the workstream file changed since the run started, unless --force.
    """
    from orchestra.config import resolve_settings
    from orchestra.engine.runs import open_existing_store, resume_run
    from orchestra.errors import OrchestraError
    from orchestra.loaders.sets import arguments_of
    from orchestra.planning import load_checked

    settings = resolve_settings(session.project, flags={"db": db_path(db)})
    store = open_existing_store(settings)
    record = store.run(run_id)
    if record.workstream_file is None:  # made with the Store's API, not by `run`
        raise OrchestraError(f"run {run_id} recorded no workstream file: it cannot be resumed")
    _go_to_project_of_run(session, record, store.path, db_path(db))
    from orchestra.secrets import secret_settings

    added = [registration.item for registration in session.host.settings()]
    secret = secret_settings(added)  # not recorded: resolved again, as for a new run
    kept = [*RESUMED_SETTINGS, *(setting.name for setting in added if setting.name not in secret)]
    flags = {name: record.settings.get(name) for name in kept}
    given = {"max_parallel": max_parallel, "budget_cost": budget_cost}
    given["budget_tokens"] = budget_tokens
    flags.update({name: value for name, value in given.items() if value is not None})
    flags.update({name: value for name, value in plugin_flags.items() if value is not None})
    flags["db"] = db_path(db)
    probing = _probe_sandbox_early(session, flags)
    resume_collector()  # start-up is over: what follows grows with the workstream
    try:
        workstream, settings = load_checked(
            arguments_of(record.workstream_file),
            session.project,
            session.host,
            flags,
            file_format=record.settings.get("format"),
            options=record.settings.get("loader_options"),
        )
    finally:
        session.warn()
    if probing is not None:
        probing.join()
    _say_if_unconfined(settings)
    with _cancel_on_signals() as (cancel, hurry):
        outcome = resume_run(
            run_id,
            workstream,
            settings,
            session.project,
            session.host,
            store=store,
            sinks=_sinks(session, settings, quiet or as_json, plain),
            cancel=cancel,
            hurry=hurry,
            force=force,
            fail_fast=fail_fast or bool(record.settings.get("fail_fast")),
        )
    _report(outcome, as_json)
    sys.exit(EXIT_FOR_STATE.get(outcome.state, 1))


def _go_to_project_of_run(
    session: CliSession, record: RunRecord, database: str | Path, db: str | None
) -> None:
    """Make the project the run started in the session's, with its configuration and
    plugins, when resume is asked from another directory (``--db``, ORCHESTRA_DB): the
    run goes on in its own repository, not in the working directory.

    Refuses (one line) a run whose directory is gone, and one whose project would record
    it in another database than ``database``, where it was found (``db``, the --db
    given, names the same for both): a copied or moved project's run belongs to the
    directory it started in."""
    from orchestra.config import resolve_settings
    from orchestra.engine.runs import ResumeRefused, project_of_run
    from orchestra.plugin.host import PluginHost

    project = project_of_run(record, session.project)
    if project is session.project:
        return
    its_database = Path(resolve_settings(project, flags={"db": db}).db)
    if its_database.resolve() != Path(database).resolve():
        raise ResumeRefused(
            f"run {record.id} works in {project.root}, which records its runs in"
            f" {its_database}, not in {database}: resume it from {project.root}"
        )
    session.project = project
    session.host = PluginHost.for_project(project)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--db", type=click.Path(dir_okay=False), help="The run database to use.")
@pass_session
def cancel(session: CliSession, run_id: str, db: str | None) -> None:
    """Cancel RUN from another terminal, as Ctrl-C would in its own.

    The process driving the run stops launching tasks, stops the running ones and
    records them canceled. A run whose process died is canceled directly, after the
    processes it left running are stopped. `orchestra resume RUN` continues a canceled
    run.
    """
    from orchestra.config import resolve_settings
    from orchestra.engine.runs import open_existing_store, request_cancel

    store = open_existing_store(resolve_settings(session.project, flags={"db": db_path(db)}))
    click.echo(request_cancel(store, run_id))
