"""Where tasks run: the git operations behind the workspace plugins.

The operations, one function each, running the real ``git``, live in one module per job:
``refs`` (branches, refs and commits), ``worktrees`` (adding, listing and removing
worktrees, under the lock that guards them), ``changes`` (what a work tree holds, and the
commits and diffs made of it), ``merging`` (bringing one branch's work onto another),
``links`` (where a commit's symbolic links really lead) and ``copy_in`` (the user's
untracked files copied into a worktree, never through a link).
Callers import the one they need (``from orchestra.git import worktrees``); this module
imports none of them, so that code asking only ``has_git_marker`` starts no git and
loads none of its operations.

Every command goes through ``orchestra.git.command.run_git``: an argument list, no
stdin but what orchestra gives it, an allow-listed environment without orchestra's
secrets, the programs a repository's configuration can name neutralised, and git's lock
files waited for (or removed, when a killed git left them). A failing command raises
``GitError`` naming it.

The functions may be called from several threads at once on different worktrees of one
repository: git's own locks guard the repository, and the one ref two calls may race on
(the branch results are merged into) is moved with compare-and-swap.

Paths of files are returned relative to the repository root, POSIX style, sorted.
"""

from __future__ import annotations

import os
from pathlib import Path


def has_git_marker(directory: Path) -> bool:
    """Whether ``directory`` or one of its parents holds a ``.git`` entry.

    Without one, git (which orchestra runs with GIT_DIR and GIT_WORK_TREE removed) finds
    no work tree there, so nobody need import git's operations (``refs`` and the others)
    or start git to learn it.
    """
    return any(os.path.lexists(place / ".git") for place in (directory, *directory.parents))
