"""``orchestra diff`` and ``orchestra gc``: the changes attempts made, and the worktrees
crashed runs left behind."""

from __future__ import annotations

import click

from orchestra.cli.runs import _store, chosen_attempt, db_option, db_path
from orchestra.cli.state import CliState, pass_state


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("task_id", metavar="[TASK]", required=False)
@click.option("--attempt", type=click.IntRange(min=1), help="Which attempt (default: the last).")
@db_option
@pass_state
def diff(
    state: CliState, run_id: str, task_id: str | None, attempt: int | None, db: str | None
) -> None:
    """Print the change of TASK's attempt in RUN as a unified diff; without TASK, the last
    attempt of every task that changed something, in the run's order.

    Every attempt's change is kept, merged or not (a refused or failed attempt's too).
    """
    from orchestra.errors import OrchestraError

    store = _store(state, db)
    store.run(run_id)  # an unknown run is an error naming it
    if task_id is None:
        if attempt is not None:
            raise OrchestraError("--attempt needs a TASK")
        last: dict[str, object] = {}
        for record in store.attempts(run_id):
            last[record.task_id] = record
        shown = [record for record in last.values() if record.diff]
        if not shown:
            click.echo(f"(no attempt of run {run_id} changed anything)", err=True)
        for record in shown:
            click.echo(f"# {record.task_id}, attempt {record.number} ({record.tool})")
            click.echo(record.diff, nl=not record.diff.endswith("\n"))
        return
    chosen = chosen_attempt(store, run_id, task_id, attempt)
    if not chosen.diff:
        click.echo(f"(attempt {chosen.number} of {task_id} changed nothing)", err=True)
        return
    click.echo(chosen.diff, nl=not chosen.diff.endswith("\n"))


@click.command()
@click.option("--force", is_flag=True, help="Also remove worktrees with uncommitted changes.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, remove nothing.")
@db_option
@pass_state
def gc(state: CliState, force: bool, dry_run: bool, db: str | None) -> None:
    """Remove what runs no process drives any more left in the repository: worktrees
    (whole, half-made by an interrupted git, or whose directory is gone), their
    orchestra-tasks/* branches and directories, and git lock files no live process holds.

    A worktree of a live run is never touched, nor a lock a live process may hold. A
    worktree with uncommitted changes (a crashed attempt's half-done work) is kept and
    listed, unless --force. The run branches (orchestra/RUN) stay: they hold the runs'
    results. Each thing is reported; one that cannot be removed is reported and the rest
    goes on (exit status 1).
    """
    from pathlib import Path

    from orchestra.builtin.workspaces import WORKTREES
    from orchestra.config import resolve_settings
    from orchestra.errors import OrchestraError
    from orchestra.state import Store
    from orchestra.workspace import git, repair

    repo = git.repository_root(state.project.root)
    if repo is None:
        raise OrchestraError(f"{state.project.root} is not in a git repository: nothing to do")
    database = Path(resolve_settings(state.project, flags={"db": db_path(db)}).db)
    store = Store.open(database) if database.exists() else None

    def dead(run_id: str) -> bool:
        return store is None or not store.is_locked(run_id)

    def keep(tree: git.Tree) -> str | None:
        if git.has_uncommitted_changes(tree):
            return "it has uncommitted changes (--force removes it)"
        return None

    try:
        done = repair.repair(
            repo,
            database.parent / WORKTREES,
            dead=dead,
            keep=None if force else keep,
            dry_run=dry_run,
            report_live=True,
        )
        done += _sandbox_leftovers(dead, dry_run)
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


def _sandbox_leftovers(dead, dry_run: bool) -> list:
    """The private directories (``$TMPDIR/orchestra-<run>-*``) that killed runs'
    sandboxes left, for runs no process drives: removed, or what would be."""
    import glob
    import re
    import tempfile

    from orchestra.engine.sandbox import remove_leftovers
    from orchestra.workspace.repair import Repair

    # orchestra-<run id>-<random>
    leftover = re.compile(r"/orchestra-(\d{8}-\d{6}-[0-9a-f]{4})-[^/]+$")
    done = []
    found = glob.glob(f"{tempfile.gettempdir()}/orchestra-*-*")
    runs = {match.group(1) for path in found if (match := leftover.search(path))}
    for run_id in sorted(runs):
        if not dead(run_id):
            continue
        if dry_run:
            pattern = f"{tempfile.gettempdir()}/orchestra-{glob.escape(run_id)}-*"
            done += [Repair("would remove", f"directory {path}") for path in glob.glob(pattern)]
            continue
        done += [
            Repair("removed", f"directory {path}", "a killed run's sandbox")
            for path in remove_leftovers(run_id)
        ]
    return done
