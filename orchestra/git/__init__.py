"""Where tasks run: the git operations behind the workspace plugins."""

from __future__ import annotations

import os
from pathlib import Path


def has_git_marker(directory: Path) -> bool:
    """Whether ``directory`` or one of its parents holds a ``.git`` entry.

    Without one, git (which orchestra runs with GIT_DIR and GIT_WORK_TREE removed) finds
    no work tree there, so nobody need import ``git.py`` or start git to learn it.
    """
    return any(os.path.lexists(place / ".git") for place in (directory, *directory.parents))
