"""Pruning the branches of old runs (``orchestra gc --branches``).

A run's branch ``orchestra/<run>`` holds its result until the user merges it; once they
have, it only piles up. This removes the branches of runs older than an age, or beyond
the most recent few, and nothing else: only a branch orchestra made (its name is a run
id whose run the database knows, or whose last commit carries orchestra's trailer for
that run), never a live or resumable run's, never one moved since its run left it (the
user's commits on it), never one checked out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from orchestra import classes
from orchestra.git import refs, worktrees
from orchestra.git.command import GitError
from orchestra.git.repair import RUN_BRANCHES, Repair

#: a run id: the UTC time the run was made, then 4 hex digits (``20261126-031522-ab12``)
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")


@classes.frozen
class KnownRun:
    """What the run database says of a run whose branch may go."""

    #: why its branch must stay whatever its age ("run … is running"), or None
    protected: str | None
    #: when it was made, and when it ended (or was made, if it never ended), UNIX time
    made: float
    when: float
    #: where orchestra last left its branch (the checkpoint's tip), when recorded
    tip: str | None = None


@classes.frozen
class RunBranch:
    """One run branch orchestra made, and what is known of it."""

    name: str
    run_id: str
    commit: str
    #: when its run was made (the order of "most recent") and when it ended
    made: float
    when: float
    protected: str | None = None


def run_branches(repo: Path, known: Callable[[str], KnownRun | None]) -> list[RunBranch]:
    """Return the run branches orchestra made, newest run first, each with when its run
    ended and why it must stay (if it must); ``known(run_id)`` answers from the run
    database (None: the database does not know the run)."""
    found = []
    for name, commit in refs.branches(repo, RUN_BRANCHES).items():
        run_id = name.removeprefix(RUN_BRANCHES)
        if not RUN_ID.fullmatch(run_id):
            continue  # not a name orchestra gives: the user's
        record = known(run_id)
        if record is None:
            if _trailer_run(repo, commit) != run_id:
                continue  # neither recorded nor carrying orchestra's commit: not ours
            committed = refs.commit_time(repo, commit)
            found.append(RunBranch(name, run_id, commit, committed, committed))
            continue
        protected = record.protected
        if protected is None and record.tip is not None and record.tip != commit:
            protected = f"it moved since run {run_id} left it at {record.tip[:12]}"
        found.append(RunBranch(name, run_id, commit, record.made, record.when, protected))
    found.sort(key=lambda branch: (branch.made, branch.run_id), reverse=True)
    return found


def prune(
    repo: Path,
    branches: list[RunBranch],
    *,
    older_than: float | None,
    keep: int | None,
    now: float,
    dry_run: bool = False,
) -> list[Repair]:
    """Remove the run branches (``run_branches``, newest first) of runs that ended more
    than ``older_than`` seconds before ``now`` and are not among the ``keep`` most
    recent; say what was done with each one chosen."""
    checked_out = {tree.branch: tree.path for tree in worktrees.list_worktrees(repo) if tree.branch}
    done = []
    for position, branch in enumerate(branches):
        if keep is not None and position < keep:
            continue
        if older_than is not None and now - branch.when < older_than:
            continue
        what = f"branch {branch.name}"
        if branch.protected:
            done.append(Repair("kept", what, branch.protected))
            continue
        if branch.name in checked_out:
            done.append(Repair("kept", what, f"it is checked out at {checked_out[branch.name]}"))
            continue
        if dry_run:
            done.append(Repair("would remove", what))
            continue
        try:
            worktrees.delete_branch(repo, branch.name, expected=branch.commit)
        except GitError as error:
            done.append(Repair("failed", f"to remove {what}", str(error)))
            continue
        done.append(Repair("removed", what))
    return done


def _trailer_run(repo: Path, commit: str) -> str | None:
    """The run named by the ``Orchestra-Run`` trailer of ``commit``, if it has one."""
    commits = refs.commits_between(repo, None, commit, limit=1)
    return commits[-1][2].get("Orchestra-Run") if commits else None
