"""The git operations behind the worktree workspace, on real repositories.

Every test runs the real git in a temporary repository. The user's global and system git
configuration is hidden (an empty HOME, GIT_CONFIG_NOSYSTEM) so that no setting of the
person running the tests changes a result, and so that no commit identity is configured
unless a test configures one.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from orchestra.git import refs
from orchestra.git.changes import (
    commit_state,
    commit_tree,
    count_changed_lines,
    diff,
    has_uncommitted_changes,
    paths_between,
    state_tree,
)
from orchestra.git.command import GitError
from orchestra.git.merging import MergeResult, merge_into, rebase_and_advance
from orchestra.git.refs import branch_tip, create_branch, head_commit, repository_root
from orchestra.git.worktrees import (
    Worktree,
    add_worktree,
    delete_branch,
    list_worktrees,
    remove_worktree,
)
from orchestra.testing import make_git_repo


@pytest.fixture(autouse=True)
def no_user_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "XDG_CONFIG_HOME",
        "GIT_CONFIG_GLOBAL",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
    ):
        monkeypatch.delenv(name, raising=False)


def git(cwd: Path, *arguments: str) -> str:
    """Run git the way a user would (with an identity), for setting up and checking."""
    identity = ["-c", "user.name=tester", "-c", "user.email=tester@example.invalid"]
    completed = subprocess.run(
        ["git", *identity, *arguments], cwd=cwd, capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def checked_out(worktree: Path) -> str | None:
    """The branch the work tree at ``worktree`` has checked out, as git says; None when
    detached."""
    completed = subprocess.run(
        ["git", "symbolic-ref", "-q", "--short", "HEAD"],
        cwd=worktree,
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


def commit_work(worktree: Path, message: str) -> str | None:
    """Commit everything in the work tree (but what git ignores) on its branch, the way an
    attempt's change is committed; return the commit, None when nothing changed."""
    branch = checked_out(worktree)
    assert branch is not None
    state = state_tree(worktree)
    return commit_state(worktree, branch, state, head_commit(worktree), message)


def write(directory: Path, relative: str, content: str) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def untouched(repo: Path, head: str) -> bool:
    """Whether the user's work tree is clean, on main, at ``head``."""
    return (
        git(repo, "status", "--porcelain") == ""
        and head_commit(repo) == head
        and checked_out(repo) == "main"
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_git_repo(
        tmp_path / "repo",
        {
            "README.md": "test repository\n",
            "a.txt": "alpha\n",
            "b.txt": "beta\n",
            "shared.txt": "one\ntwo\nthree\n",
        },
    )


def task_worktree(repo: Path, name: str, start: str = "run") -> Path:
    path = repo.parent / "worktrees" / name
    add_worktree(repo, path, f"task/{name}", start)
    return path


# -- the repository --


def test_repository_root_finds_the_top_from_inside_and_from_a_path_not_made_yet(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "src" / "deep").mkdir(parents=True)
    assert repository_root(repo / "src" / "deep") == repo.resolve()
    assert repository_root(repo / "not" / "made" / "yet.txt") == repo.resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    assert repository_root(outside) is None


def test_head_commit_of_a_repository_without_commits_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    with pytest.raises(GitError, match="has no commit yet"):
        head_commit(empty)
    not_a_repository = tmp_path / "plain"
    not_a_repository.mkdir()
    with pytest.raises(GitError, match="not a git repository"):
        head_commit(not_a_repository)


def test_an_enclosing_git_environment_does_not_redirect_the_commands(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_git_repo(tmp_path / "other", {"other.txt": "other\n"})
    expected = git(repo, "rev-parse", "HEAD")
    expected_tree = git(repo, "rev-parse", "HEAD^{tree}")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    assert head_commit(repo) == expected
    assert state_tree(repo) == expected_tree  # the work tree at repo: nothing changed


def test_create_branch_makes_a_missing_branch_and_leaves_an_existing_one(repo: Path) -> None:
    first = head_commit(repo)
    assert branch_tip(repo, "run") is None
    assert create_branch(repo, "run", "main") == first
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    assert create_branch(repo, "run", "main") == first  # not moved to the new main
    assert branch_tip(repo, "run") == first
    with pytest.raises(GitError, match="names no commit"):
        create_branch(repo, "other", "no-such-start")
    with pytest.raises(GitError, match="bad name"):
        create_branch(repo, "bad..name", "main")


def test_create_branch_from_two_threads_gives_both_the_same_branch(repo: Path) -> None:
    git(repo, "branch", "elsewhere")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    starts = {"main": head_commit(repo), "elsewhere": git(repo, "rev-parse", "elsewhere")}
    barrier = threading.Barrier(2)
    tips: dict[str, str] = {}

    def create(start: str) -> None:
        barrier.wait()
        tips[start] = create_branch(repo, "contested", start)

    threads = [threading.Thread(target=create, args=(start,)) for start in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tips["main"] == tips["elsewhere"] == branch_tip(repo, "contested")
    assert tips["main"] in starts.values()


def test_delete_branch_deletes_and_ignores_a_missing_branch(repo: Path) -> None:
    create_branch(repo, "doomed", "main")
    delete_branch(repo, "doomed")
    assert branch_tip(repo, "doomed") is None
    delete_branch(repo, "doomed")


def test_a_git_error_names_the_command_and_gives_git_s_reason_in_one_line(repo: Path) -> None:
    with pytest.raises(GitError) as caught:
        add_worktree(repo, repo.parent / "second-main", "main", "main")  # main is checked out
    message = str(caught.value)
    assert message.startswith("git worktree add ")
    assert "failed in" in message
    assert "main" in message and "fatal:" in message
    assert "\n" not in message
    assert caught.value.returncode == 128


# -- worktrees --


def test_worktrees_are_added_listed_and_removed_even_with_changes(repo: Path) -> None:
    head = head_commit(repo)
    create_branch(repo, "run", "main")
    path = repo.parent / "nested" / "dirs" / "task-1"
    add_worktree(repo, path, "task/one", "run")
    assert (path / "a.txt").read_text() == "alpha\n"
    assert checked_out(path) == "task/one"
    listed = {worktree.path.resolve(): worktree for worktree in list_worktrees(repo)}
    assert listed[repo.resolve()].branch == "main"
    assert listed[path.resolve()] == Worktree(path.resolve(), "task/one", head, False)
    # locked, and marked as orchestra's
    assert f"locked orchestra: {path.absolute()}" in git(repo, "worktree", "list", "--porcelain")

    write(path, "a.txt", "changed\n")
    write(path, "new.txt", "untracked\n")
    git(path, "add", "a.txt")
    write(path, "b.txt", "unstaged\n")
    remove_worktree(repo, path)
    assert not path.exists()
    assert [worktree.path.resolve() for worktree in list_worktrees(repo)] == [repo.resolve()]
    remove_worktree(repo, path)  # already gone: no error
    assert branch_tip(repo, "task/one") == head  # the branch is the caller's to delete
    assert untouched(repo, head)


def test_add_worktree_resets_an_existing_branch_to_start(repo: Path) -> None:
    first = head_commit(repo)
    git(repo, "branch", "task/again")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = head_commit(repo)
    git(repo, "branch", "-f", "task/again", second)
    path = repo.parent / "again"
    add_worktree(repo, path, "task/again", first)
    assert head_commit(path) == first == branch_tip(repo, "task/again")


def test_a_worktree_whose_directory_was_deleted_is_still_removable(repo: Path) -> None:
    create_branch(repo, "run", "main")
    path = task_worktree(repo, "lost")
    shutil.rmtree(path)
    [lost] = [worktree for worktree in list_worktrees(repo) if worktree.path.name == "lost"]
    assert not lost.prunable  # locked: git's prune leaves it; orchestra removes it itself
    remove_worktree(repo, path)
    assert len(list_worktrees(repo)) == 1
    assert not (repo / ".git" / "worktrees").exists() or not any(
        (repo / ".git" / "worktrees").iterdir()
    )


def test_a_detached_worktree_has_no_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    [main] = list_worktrees(repo)
    assert main.branch is None and main.head == head_commit(repo)
    assert checked_out(repo) is None


# -- what changed --


def test_a_work_trees_state_holds_every_kind_of_change_and_no_ignored_file(repo: Path) -> None:
    write(repo, ".gitignore", "*.log\n")
    write(repo, "d.txt", "delta\n")
    write(repo, "e.txt", "echo\n")
    write(repo, "same.txt", "same\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more files")
    base = head_commit(repo)

    write(repo, "a.txt", "alpha, committed\n")
    git(repo, "commit", "-q", "-am", "change a")
    write(repo, "new.txt", "staged\n")
    git(repo, "add", "new.txt")
    write(repo, "b.txt", "beta, not staged\n")
    (repo / "d.txt").unlink()
    git(repo, "mv", "e.txt", "renamed.txt")
    write(repo, "dir/untracked.txt", "untracked\n")
    write(repo, "debug.log", "ignored\n")
    write(repo, "same.txt", "changed\n")
    write(repo, "same.txt", "same\n")  # and back: no difference

    state = state_tree(repo)
    assert paths_between(repo, base, commit_tree(repo, state, base, "state")) == [
        "a.txt",
        "b.txt",
        "d.txt",
        "dir/untracked.txt",
        "e.txt",
        "new.txt",
        "renamed.txt",
    ]


def test_has_uncommitted_changes_sees_staged_unstaged_and_untracked_but_not_ignored(
    repo: Path,
) -> None:
    write(repo, ".gitignore", "*.log\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore logs")
    assert not has_uncommitted_changes(repo)
    write(repo, "debug.log", "ignored\n")
    assert not has_uncommitted_changes(repo)
    write(repo, "untracked.txt", "x\n")
    assert has_uncommitted_changes(repo)
    (repo / "untracked.txt").unlink()
    write(repo, "a.txt", "unstaged\n")
    assert has_uncommitted_changes(repo)
    git(repo, "add", "a.txt")
    assert has_uncommitted_changes(repo)


def test_a_commit_of_the_work_holds_everything_with_the_fallback_identity(repo: Path) -> None:
    before = head_commit(repo)
    assert commit_work(repo, "nothing") is None
    assert head_commit(repo) == before

    write(repo, "a.txt", "changed\n")
    write(repo, "new.txt", "new\n")
    (repo / "b.txt").unlink()
    commit = commit_work(repo, "task one: attempt 1")
    assert commit == head_commit(repo) != before
    assert not has_uncommitted_changes(repo)
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s") == (
        "orchestra <orchestra@localhost>|orchestra <orchestra@localhost>|task one: attempt 1"
    )
    assert git(repo, "config", "--list", "--local").count("user.") == 0  # config not written


def test_a_commit_of_the_work_uses_the_configured_identity_and_runs_no_hook(repo: Path) -> None:
    git(repo, "config", "user.name", "Ada Lovelace")
    git(repo, "config", "user.email", "ada@example.invalid")
    for name in ("pre-commit", "prepare-commit-msg", "commit-msg"):
        hook = repo / ".git" / "hooks" / name
        hook.write_text("#!/bin/sh\necho refused >&2\nexit 1\n")
        hook.chmod(0o755)
    write(repo, "a.txt", "changed\n")
    assert commit_work(repo, "with identity") is not None
    assert git(repo, "log", "-1", "--format=%s") == "with identity"
    assert git(repo, "log", "-1", "--format=%an <%ae>") == "Ada Lovelace <ada@example.invalid>"


def test_diff_shows_text_and_binary_changes_and_is_cut_at_the_limit(repo: Path) -> None:
    base = head_commit(repo)
    write(repo, "a.txt", "alpha\nadded line\n")
    (repo / "image.bin").write_bytes(bytes(range(256)))
    commit_work(repo, "text and binary")
    text = diff(repo, base)
    assert "diff --git a/a.txt b/a.txt" in text
    assert "+added line\n" in text
    assert "Binary files /dev/null and b/image.bin differ" in text
    assert diff(repo, base, base) == ""

    cut = diff(repo, base, limit=40)
    assert cut.startswith(text[:40])
    assert cut.splitlines()[-1] == f"[diff cut at 40 of {len(text):,} characters]"
    assert len(cut) < 40 + 60


def test_count_changed_lines_adds_added_and_deleted_and_counts_binary_as_zero(
    repo: Path,
) -> None:
    base = head_commit(repo)
    write(repo, "shared.txt", "one\nTWO\nthree\n")  # 1 added, 1 deleted
    write(repo, "new.txt", "1\n2\n3\n")  # 3 added
    (repo / "b.txt").unlink()  # 1 deleted
    (repo / "image.bin").write_bytes(bytes(range(256)))  # binary: 0
    commit_work(repo, "changes")
    assert count_changed_lines(repo, base) == 6
    assert count_changed_lines(repo, base, base) == 0


# -- rebase_and_advance --


def test_two_worktrees_editing_different_files_both_land_on_the_run_branch(repo: Path) -> None:
    head = head_commit(repo)
    create_branch(repo, "run", "main")
    first, second = task_worktree(repo, "first"), task_worktree(repo, "second")
    write(first, "a.txt", "alpha from first\n")
    write(second, "b.txt", "beta from second\n")
    first_commit = commit_work(first, "first")
    commit_work(second, "second")

    assert rebase_and_advance(first, "run") == MergeResult(True, first_commit)
    result = rebase_and_advance(second, "run")
    assert result.merged and result.conflicts == ()
    assert result.tip == branch_tip(repo, "run") == head_commit(second)
    assert git(repo, "rev-parse", "run~1") == first_commit
    assert git(repo, "show", "run:a.txt") == "alpha from first"
    assert git(repo, "show", "run:b.txt") == "beta from second"
    assert untouched(repo, head)


def test_two_worktrees_editing_the_same_line_conflict_and_the_second_is_left_as_it_was(
    repo: Path,
) -> None:
    head = head_commit(repo)
    create_branch(repo, "run", "main")
    first, second = task_worktree(repo, "first"), task_worktree(repo, "second")
    write(first, "shared.txt", "one\nfirst\nthree\n")
    write(second, "shared.txt", "one\nsecond\nthree\n")
    commit_work(first, "first")
    second_commit = commit_work(second, "second")
    assert rebase_and_advance(first, "run").merged
    run_tip = branch_tip(repo, "run")

    assert rebase_and_advance(second, "run") == MergeResult(False, None, ("shared.txt",))
    assert head_commit(second) == second_commit
    assert checked_out(second) == "task/second"
    assert not has_uncommitted_changes(second)
    assert (second / "shared.txt").read_text() == "one\nsecond\nthree\n"
    assert branch_tip(repo, "run") == run_tip
    assert untouched(repo, head)


def test_rebase_and_advance_rebases_again_when_the_branch_moves_before_the_swap(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_branch(repo, "run", "main")
    slow, fast = task_worktree(repo, "slow"), task_worktree(repo, "fast")
    write(slow, "a.txt", "alpha from slow\n")
    write(fast, "b.txt", "beta from fast\n")
    commit_work(slow, "slow")
    fast_commit = commit_work(fast, "fast")
    real_swap = refs.move_branch
    swaps: list[tuple[str, str, bool]] = []

    def fast_lands_first(where: Path, branch: str, new: str, old: str, why: str = "") -> bool:
        if not swaps:  # between slow's rebase and its swap, fast's work lands on "run"
            assert fast_commit is not None
            swaps.append((fast_commit, old, real_swap(fast, branch, fast_commit, old)))
        swapped = real_swap(where, branch, new, old)
        swaps.append((new, old, swapped))
        return swapped

    monkeypatch.setattr(refs, "move_branch", fast_lands_first)
    result = rebase_and_advance(slow, "run")
    assert [swapped for _, _, swapped in swaps] == [True, False, True]
    assert result.merged and result.tip == branch_tip(repo, "run")
    assert git(repo, "rev-parse", "run~1") == fast_commit
    assert git(repo, "show", "run:a.txt") == "alpha from slow"
    assert git(repo, "show", "run:b.txt") == "beta from fast"


def test_rebase_and_advance_from_four_threads_lands_every_change(repo: Path) -> None:
    head = head_commit(repo)
    create_branch(repo, "run", "main")
    worktrees = [task_worktree(repo, f"task-{number}") for number in range(4)]
    for number, worktree in enumerate(worktrees):
        write(worktree, f"file-{number}.txt", f"from task {number}\n")
        commit_work(worktree, f"task {number}")
    barrier = threading.Barrier(len(worktrees))
    results: dict[int, MergeResult] = {}

    def advance(number: int) -> None:
        barrier.wait()
        results[number] = rebase_and_advance(worktrees[number], "run")

    threads = [threading.Thread(target=advance, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result.merged for result in results.values()) and len(results) == 4
    assert git(repo, "rev-list", "--count", "main..run") == "4"
    for number in range(4):
        assert git(repo, "show", f"run:file-{number}.txt") == f"from task {number}"
    assert untouched(repo, head)


def test_rebase_and_advance_refuses_a_branch_that_is_checked_out(repo: Path) -> None:
    create_branch(repo, "run", "main")
    worktree = task_worktree(repo, "task")
    write(worktree, "a.txt", "changed\n")
    commit_work(worktree, "change")
    with pytest.raises(GitError, match="'main' is checked out at"):
        rebase_and_advance(worktree, "main")


# -- merge_into --


def feature_branch(repo: Path, name: str, start: str, files: dict[str, str]) -> str:
    """Make branch ``name`` at ``start`` plus one commit writing ``files``; return its tip."""
    path = repo.parent / f"make-{name}"
    add_worktree(repo, path, name, start)
    for relative, content in files.items():
        write(path, relative, content)
    tip = commit_work(path, f"work on {name}")
    remove_worktree(repo, path)
    assert tip is not None
    return tip


def test_merge_into_fast_forwards_the_checked_out_branch_and_its_files(repo: Path) -> None:
    tip = feature_branch(repo, "feature", "main", {"a.txt": "alpha, merged\n"})
    assert merge_into(repo, "feature", "main") == "fast-forward"
    assert head_commit(repo) == tip == branch_tip(repo, "main")
    assert (repo / "a.txt").read_text() == "alpha, merged\n"
    assert git(repo, "status", "--porcelain") == ""


def test_merge_into_refuses_a_checked_out_branch_with_uncommitted_changes(repo: Path) -> None:
    head = head_commit(repo)
    feature_branch(repo, "feature", "main", {"a.txt": "alpha, merged\n"})
    write(repo, "b.txt", "the user's own work\n")
    with pytest.raises(GitError, match="uncommitted changes"):
        merge_into(repo, "feature", "main")
    assert head_commit(repo) == head
    assert (repo / "b.txt").read_text() == "the user's own work\n"


def test_merge_into_a_checked_out_branch_with_a_conflict_names_the_file_and_aborts(
    repo: Path,
) -> None:
    feature_branch(repo, "feature", "main", {"shared.txt": "one\nfeature\nthree\n"})
    write(repo, "shared.txt", "one\nuser\nthree\n")
    git(repo, "commit", "-q", "-am", "the user's change")
    head = head_commit(repo)
    with pytest.raises(GitError, match=r"conflicts in shared\.txt"):
        merge_into(repo, "feature", "main")
    assert untouched(repo, head)


def test_merge_into_a_branch_checked_out_nowhere_merges_in_a_temporary_worktree(
    repo: Path,
) -> None:
    head = head_commit(repo)
    release = feature_branch(repo, "release", "main", {"a.txt": "alpha for release\n"})
    feature = feature_branch(repo, "feature", "main", {"b.txt": "beta from feature\n"})
    assert merge_into(repo, "feature", "release") == "merge"
    tip = branch_tip(repo, "release")
    assert git(repo, "rev-parse", f"{tip}^1", f"{tip}^2").split() == [release, feature]
    assert git(repo, "log", "-1", "--format=%s", "release") == (
        "Merge branch 'feature' into release"
    )
    assert git(repo, "show", "release:a.txt") == "alpha for release"
    assert git(repo, "show", "release:b.txt") == "beta from feature"
    assert len(list_worktrees(repo)) == 1
    assert untouched(repo, head)


def test_merge_into_a_branch_checked_out_nowhere_fast_forwards_the_ref(repo: Path) -> None:
    head = head_commit(repo)
    create_branch(repo, "release", "main")
    feature = feature_branch(repo, "feature", "main", {"b.txt": "beta from feature\n"})
    assert merge_into(repo, "feature", "release") == "fast-forward"
    assert branch_tip(repo, "release") == feature
    assert merge_into(repo, "feature", "release") == "fast-forward"  # nothing more to bring
    assert untouched(repo, head)


def test_merge_into_refuses_a_source_branch_moved_since_its_owner_left_it(repo: Path) -> None:
    head = head_commit(repo)
    left_at = feature_branch(repo, "feature", "main", {"b.txt": "beta from feature\n"})
    moved = feature_branch(repo, "other", "feature", {"secret.txt": "stolen\n"})
    git(repo, "update-ref", "refs/heads/feature", moved)  # another hand moves it
    with pytest.raises(GitError, match="not where the run left it"):
        merge_into(repo, "feature", "main", expected=left_at)
    assert untouched(repo, head)
    assert merge_into(repo, "feature", "main", expected=moved) == "fast-forward"


def test_a_worktrees_state_holds_a_same_size_edit_made_as_soon_as_it_was_made(
    repo: Path,
) -> None:
    # written in the second git wrote the file: only git's racy-file check, which reads
    # the index file's own time, sees the change; a copy of the index must keep that time
    tree = add_worktree(repo, repo.parent / "edit", "task/edit", "main")
    (tree.path / "a.txt").write_text("ALPHA\n")  # as long as "alpha\n"
    (tree.path / "new.txt").write_text("new\n")
    (tree.path / "b.txt").unlink()
    time.sleep(1.1)  # the state is taken in a later second, as after a tool's work

    state = state_tree(tree, ignore=["new.txt"])

    listing = git(repo, "ls-tree", "--name-only", state).split()
    assert listing == ["README.md", "a.txt", "shared.txt"]
    assert git(repo, "show", f"{state}:a.txt") == "ALPHA"
    # the worktree's own index was only read
    assert git(tree.path, "diff", "--cached", "--name-only") == ""
