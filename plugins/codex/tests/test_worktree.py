"""Fingerprints of the working tree: what counts as a change codex made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from orchestra_codex import worktree


def changes(repo: Path, act, excluded=()) -> list[str]:
    before = worktree.fingerprint(repo, excluded)
    act()
    return worktree.changed_paths(before, worktree.fingerprint(repo, excluded))


def test_edits_new_files_deletions_and_mode_changes_count(git_repo: Path) -> None:
    (git_repo / "doomed.txt").write_text("bye\n")

    def act() -> None:
        (git_repo / "README.md").write_text("changed\n")
        (git_repo / "src").mkdir()
        (git_repo / "src" / "new.py").write_text("x = 1\n")
        (git_repo / "doomed.txt").unlink()

    assert changes(git_repo, act) == ["README.md", "doomed.txt", "src/new.py"]
    assert changes(git_repo, lambda: (git_repo / "README.md").chmod(0o755)) == ["README.md"]


def test_a_tree_dirty_before_the_attempt_is_no_change_by_itself(git_repo: Path) -> None:
    (git_repo / "README.md").write_text("left by the previous attempt\n")
    (git_repo / "untracked.txt").write_text("also\n")

    assert changes(git_repo, lambda: None) == []
    assert changes(git_repo, lambda: (git_repo / "README.md").write_text("again\n")) == [
        "README.md"
    ]


def test_writing_the_same_content_again_is_no_change(git_repo: Path) -> None:
    (git_repo / "README.md").write_text("edited\n")

    assert changes(git_repo, lambda: (git_repo / "README.md").write_text("edited\n")) == []


def test_orchestras_own_directory_is_left_out(git_repo: Path) -> None:
    own = git_repo / ".orchestra"

    def act() -> None:
        (own / "runs").mkdir(parents=True)
        (own / "runs" / "t.1.log").write_text("log\n")

    assert changes(git_repo, act, excluded=[own, Path("/elsewhere")]) == []


def test_a_directory_outside_git_is_refused(tmp_path: Path) -> None:
    with pytest.raises(worktree.NotAGitTree, match="not a git repository"):
        worktree.toplevel(tmp_path)


def test_the_toplevel_of_a_subdirectory_is_the_repository(git_repo: Path) -> None:
    (git_repo / "sub").mkdir()

    assert worktree.toplevel(git_repo / "sub") == Path(os.path.realpath(git_repo))
