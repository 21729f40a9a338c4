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
    """Remove the worktrees and branches that runs no process drives any more left behind.

    A worktree of a live run is never touched. One with uncommitted changes (a crashed
    attempt's half-done work) is kept and listed, unless --force. The run branches
    (orchestra/RUN) stay: they hold the runs' results.
    """
    from pathlib import Path

    from orchestra.builtin.workspaces import WORKTREES
    from orchestra.config import resolve_settings
    from orchestra.errors import OrchestraError
    from orchestra.state import Store
    from orchestra.workspace import git

    repo = git.repository_root(state.project.root)
    if repo is None:
        raise OrchestraError(f"{state.project.root} is not in a git repository: nothing to do")
    database = Path(resolve_settings(state.project, flags={"db": db_path(db)}).db)
    root = (database.parent / WORKTREES).resolve()
    store = Store.open(database) if database.exists() else None
    removed = kept = 0
    try:
        for tree in git.list_worktrees(repo):
            path = Path(tree.path)
            if root not in path.parents:
                continue
            run_id = path.parent.name
            if store is not None and store.is_locked(run_id):
                click.echo(f"kept {path}: run {run_id} is running")
                kept += 1
                continue
            if not force and path.exists() and git.has_uncommitted_changes(path):
                click.echo(f"kept {path}: it has uncommitted changes (--force removes it)")
                kept += 1
                continue
            click.echo(f"{'would remove' if dry_run else 'removed'} {path}")
            removed += 1
            if not dry_run:
                git.remove_worktree(repo, path)
                if tree.branch:
                    git.delete_branch(repo, tree.branch)
        if not dry_run:
            git.prune_worktrees(repo)
    finally:
        if store is not None:
            store.close()
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {removed} worktree(s), kept {kept}")
