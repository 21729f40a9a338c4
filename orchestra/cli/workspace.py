"""``orchestra diff`` and ``orchestra gc``: the changes attempts made, and the worktrees
crashed runs left behind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestra.cli.runs import _store, chosen_attempt, db_option, db_path
from orchestra.cli.session import CliSession, pass_session

if TYPE_CHECKING:
    from orchestra.store import AttemptRecord


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("task_id", metavar="[TASK]", required=False)
@click.option("--attempt", type=click.IntRange(min=1), help="Which attempt (default: the last).")
@db_option
@pass_session
def diff(
    session: CliSession, run_id: str, task_id: str | None, attempt: int | None, db: str | None
) -> None:
    """Print the change of TASK's attempt in RUN as a unified diff; without TASK, the last
    attempt of every task that changed something, in the run's order.

    Every attempt's change is kept, merged or not (a refused or failed attempt's too):
    each says whether it was merged into the run branch, and if not, why.
    """
    from orchestra.errors import OrchestraError

    store = _store(session, db)
    store.run(run_id)  # an unknown run is an error naming it
    if task_id is None:
        if attempt is not None:
            raise OrchestraError("--attempt needs a TASK")
        last: dict[str, AttemptRecord] = {}
        for record in store.attempts(run_id):
            last[record.task_id] = record
        shown = [(record, record.diff) for record in last.values() if record.diff]
        if not shown:
            click.echo(f"(no attempt of run {run_id} changed anything)", err=True)
        for record, change in shown:
            click.echo(
                f"# {record.task_id}, attempt {record.number} ({record.tool}): {_landing(record)}"
            )
            click.echo(change, nl=not change.endswith("\n"))
        return
    chosen = chosen_attempt(store, run_id, task_id, attempt)
    if not chosen.diff:
        click.echo(f"(attempt {chosen.number} of {task_id} changed nothing)", err=True)
        return
    if chosen.outcome != "succeeded":  # on stderr: stdout stays a patch to apply
        click.echo(f"(attempt {chosen.number} of {task_id}: {_landing(chosen)})", err=True)
    click.echo(chosen.diff, nl=not chosen.diff.endswith("\n"))


def _landing(attempt) -> str:
    """Whether an attempt's change was merged into the run branch, and if not, why: only
    a succeeded attempt's change lands (a refused, conflicting or failed one never)."""
    if attempt.outcome == "succeeded":
        return "merged"
    if attempt.outcome is None:
        return "not merged (still running)"
    why = ": ".join(part for part in (attempt.error_class, attempt.message) if part)
    return f"not merged, {attempt.outcome}" + (f": {why}" if why else "")


def _duration(context, parameter, value: str | None) -> float | None:
    """An --older-than value in seconds; one that cannot be read is a usage error."""
    if value is None:
        return None
    from orchestra.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@click.option("--force", is_flag=True, help="Also remove worktrees with uncommitted changes.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, remove nothing.")
@click.option(
    "--branches",
    is_flag=True,
    help="Also remove old run branches (orchestra/RUN): say which with --older-than, --keep.",
)
@click.option(
    "--older-than",
    metavar="AGE",
    callback=_duration,
    help="With --branches: only the branches of runs that ended longer ago than AGE (7d, 12h).",
)
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --branches: keep the branches of the N most recent runs.",
)
@db_option
@pass_session
def gc(
    session: CliSession,
    force: bool,
    dry_run: bool,
    branches: bool,
    older_than: float | None,
    keep: int | None,
    db: str | None,
) -> None:
    """Clean up the repository after runs that no process drives any more: remove
    their worktrees (whole, half-made by an interrupted git, or whose directory is
    gone), their orchestra-tasks/* branches and directories, and the git lock files no
    live process holds.

    A worktree of a live run is never touched, nor a lock a live process may hold. A
    worktree with uncommitted changes (a crashed attempt's half-done work) is kept and
    listed, unless --force. The run branches (orchestra/RUN) hold the runs' results:
    they stay, unless --branches with --older-than, --keep or both says which go. Only
    branches orchestra made go, never one of a run that is running or that resume may
    continue (interrupted, canceled), nor one moved since its run (your commits on
    it). Each thing is reported; one that cannot be removed is reported and the rest
    goes on (exit status 1).
    """
    import time
    from pathlib import Path

    from orchestra.builtin.workspaces import WORKTREES
    from orchestra.config import resolve_settings
    from orchestra.errors import OrchestraError
    from orchestra.git import changes, refs, repair
    from orchestra.git.command import Tree
    from orchestra.store import Store

    if branches and older_than is None and keep is None:
        raise OrchestraError("--branches needs --older-than, --keep or both: which to remove")
    if not branches and (older_than is not None or keep is not None):
        raise OrchestraError("--older-than and --keep choose run branches: add --branches")
    repo = refs.repository_root(session.project.root)
    if repo is None:
        raise OrchestraError(f"{session.project.root} is not in a git repository: nothing to do")
    database = Path(resolve_settings(session.project, flags={"db": db_path(db)}).db)
    store = Store.open(database) if database.exists() else None

    def dead(run_id: str) -> bool:
        return store is None or not store.is_locked(run_id)

    def keep_tree(tree: Tree) -> str | None:
        if changes.has_uncommitted_changes(tree):
            return "it has uncommitted changes (--force removes it)"
        return None

    try:
        done = repair.repair(
            repo,
            database.parent / WORKTREES,
            dead=dead,
            keep=None if force else keep_tree,
            dry_run=dry_run,
            report_live=True,
        )
        done += _sandbox_leftovers(store, dead, dry_run)
        if branches:
            done += _old_run_branches(repo, store, older_than, keep, time.time(), dry_run)
    finally:
        if store is not None:
            store.close()
    counts = {"removed": 0, "would remove": 0, "kept": 0, "failed": 0}
    for item in done:
        click.echo(item.line())
        counts[item.action] += 1
    removed = counts["would remove"] if dry_run else counts["removed"]
    line = f"{'would remove' if dry_run else 'removed'} {removed}, kept {counts['kept']}"
    if counts["failed"]:
        click.echo(f"{line}, could not remove {counts['failed']}")
        raise SystemExit(1)
    click.echo(line)


def _old_run_branches(repo, store, older_than, keep, now: float, dry_run: bool) -> list:
    """The run branches ``--older-than`` and ``--keep`` choose: removed, kept (and why),
    or what would be."""
    from orchestra.engine.run_workspaces import checkpoint_key
    from orchestra.engine.runs import RESUMABLE
    from orchestra.git import prune
    from orchestra.store import UnknownRun
    from orchestra.store.lifecycle import TERMINAL_RUN_STATES

    def known(run_id: str) -> prune.KnownRun | None:
        if store is None:
            return None
        try:
            record = store.run(run_id)
        except UnknownRun:
            return None
        protected = None
        if store.is_locked(run_id):
            protected = f"run {run_id} is running"
        elif record.state not in TERMINAL_RUN_STATES or record.state in RESUMABLE:
            # not ended (its process died: it is as good as interrupted), or resumable
            protected = f"run {run_id} is {record.state.value}: resume may continue it"
        checkpoint = store.get_value(checkpoint_key("worktree", run_id)) or {}
        when = record.ended_at or record.created_at
        return prune.KnownRun(protected, record.created_at, when, checkpoint.get("tip"))

    found = prune.run_branches(repo, known)
    return prune.prune(repo, found, older_than=older_than, keep=keep, now=now, dry_run=dry_run)


#: how many of the uncommitted files the notice at a run's start names
NAMED_FILES = 3


def say_if_uncommitted(session: CliSession, workstream, settings) -> None:
    """One line on stderr when tasks of the run work in worktrees and the user's tracked
    files have uncommitted changes: which (a few, and how many more), and that tasks will
    not see them, or, with ``include_uncommitted``, that the run starts from them."""
    from orchestra.engine.run_workspaces import default_workspace

    names = {task.workspace or settings.workspace for task in workstream.tasks}
    if None in names:
        names.discard(None)
        names.add(default_workspace(session.project.root))
    if "worktree" not in names:
        return  # git's operations not even imported (1 ms of a run in place)
    from orchestra.git import refs

    repo = refs.repository_root(session.project.root)
    if repo is None:
        return
    # only now: git.changes imports shutil and tempfile, 5 ms that a run outside git
    # (or in place) never needs
    from orchestra.git import changes
    from orchestra.git.command import GitError

    try:
        paths = changes.uncommitted_paths(repo)
    except GitError:
        return  # the run says what is wrong with the repository, if anything is
    if not paths:
        return
    count = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
    named = ", ".join(paths[:NAMED_FILES])
    if len(paths) > NAMED_FILES:
        named += f" and {len(paths) - NAMED_FILES} more"
    if settings.include_uncommitted:
        line = f"the run starts from your last commit plus your uncommitted changes to {count}"
        click.echo(f"orchestra: {line} ({named})", err=True)
        return
    verb = "has" if len(paths) == 1 else "have"
    click.echo(
        f"orchestra: {count} {verb} uncommitted changes ({named}); tasks will not see them:"
        " they start from your last commit (--include-uncommitted brings them in)",
        err=True,
    )


def _sandbox_leftovers(store, dead, dry_run: bool) -> list:
    """The private directories (``$TMPDIR/orchestra-<run>-*``) that killed runs'
    sandboxes left, of runs this database knows and no process drives: removed, or what
    would be. The temporary directory is shared: another project's runs, which this
    database does not know, may be running, and their directories stay."""
    from orchestra.engine.sandbox import leftover_labels, leftovers, remove_leftovers
    from orchestra.git.prune import RUN_ID
    from orchestra.git.repair import Repair
    from orchestra.store import UnknownRun

    if store is None:
        return []
    done = []
    for run_id in sorted(label for label in leftover_labels() if RUN_ID.fullmatch(label)):
        try:
            store.run(run_id)
        except UnknownRun:
            continue
        if not dead(run_id):
            continue
        if dry_run:
            done += [Repair("would remove", f"directory {path}") for path in leftovers(run_id)]
            continue
        done += [
            Repair("removed", f"directory {path}", "a killed run's sandbox")
            for path in remove_leftovers(run_id)
        ]
    return done
