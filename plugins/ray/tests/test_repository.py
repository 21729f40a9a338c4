"""The git side of a Ray attempt, without Ray: bundles, the node's copy, the patch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestra_ray import repository

from orchestra.testing import make_git_repo


def commit(repo: Path, name: str, content: str) -> str:
    (repo / name).write_text(content)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", name],
        cwd=repo,
        check=True,
    )
    return repository.head(repo)


def test_a_later_base_travels_as_the_commits_since_the_first(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"data.txt": os.urandom(50_000).hex()})
    first = repository.head(repo)
    later = commit(repo, "a.txt", "a\n")
    whole = repository.bundle(repo, "run", first)
    since = repository.bundle(repo, "run", later, since=first)
    copy = tmp_path / "copy.git"

    repository.fetch_bundle(copy, whole)
    repository.fetch_bundle(copy, since)

    assert len(since) < len(whole) / 2
    assert repository.has_commit(copy, first) and repository.has_commit(copy, later)
    assert repository.is_ancestor(repo, first, later)
    refs = subprocess.run(["git", "show-ref"], cwd=repo, capture_output=True, text=True).stdout
    assert "orchestra-ray" not in refs  # the refs that named the commits for bundling


def test_a_change_made_on_a_node_comes_back_as_a_patch_that_applies_here(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n", "old.txt": "old\n"})
    base = repository.head(repo)
    copy = tmp_path / "copy.git"
    repository.fetch_bundle(copy, repository.bundle(repo, "run", base))
    node_tree = tmp_path / "node-tree"
    repository.add_worktree(copy, node_tree, base)
    (node_tree / "new.bin").write_bytes(b"\x00\x01binary\n")
    (node_tree / "old.txt").unlink()
    (node_tree / "README.md").write_text("# app, changed\n")

    patch = repository.patch_since(node_tree, base)
    repository.remove_worktree(copy, node_tree)
    repository.apply_patch(repo, patch)

    assert not node_tree.exists()
    assert (repo / "new.bin").read_bytes() == b"\x00\x01binary\n"
    assert not (repo / "old.txt").exists()
    assert (repo / "README.md").read_text() == "# app, changed\n"
