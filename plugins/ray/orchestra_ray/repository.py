"""The git work of a Ray attempt: a bundle of its base commit, the node's cached copy of
the repository, and the change carried back as a patch. Plain git, no orchestra state."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the refs that name the bundled base commits, in the orchestrator's repository
#: (for the moment of bundling) and in each node's copy (so git keeps the objects)
REF_PREFIX = "refs/orchestra-ray"
#: where a node keeps its copies and attempts, under its temporary directory
NODE_ROOT = "orchestra-ray"


def git(directory: str | os.PathLike, *arguments: str, stdin: bytes | None = None) -> bytes:
    """Run git in ``directory`` and return its output; raise RuntimeError with git's words.

    git runs as orchestra runs it (``orchestra.git_invocation``): without this process's
    secrets in its environment, and with the programs a repository's configuration can
    name (hooks, ``core.fsmonitor``, filters) turned off. An attempt on a node could write
    the configuration of the node's copy, which later attempts use."""
    import orchestra

    command, env = orchestra.git_invocation(Path(directory), *arguments)
    finished = subprocess.run(
        command,
        cwd=directory,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
    )
    if finished.returncode != 0:
        words = finished.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git {' '.join(arguments[:2])} failed in {directory}: {words}")
    return finished.stdout


def head(directory: str | os.PathLike) -> str:
    """The commit checked out in ``directory``."""
    return git(directory, "rev-parse", "HEAD").decode().strip()


def top_level(directory: str | os.PathLike) -> Path:
    """The root of the worktree ``directory`` is in."""
    return Path(git(directory, "rev-parse", "--show-toplevel").decode().strip())


def bundle(
    directory: str | os.PathLike, run_id: str, commit: str, since: str | None = None
) -> bytes:
    """Return a git bundle holding ``commit`` and its history, or only the commits after
    ``since`` (an ancestor the receiver has). git bundles refs, not bare commits, so a ref
    names ``commit`` for the moment of bundling."""
    ref = f"{REF_PREFIX}/{run_id}/{commit}"
    git(directory, "update-ref", ref, commit)
    try:
        with tempfile.TemporaryDirectory(prefix="orchestra-ray-") as scratch:
            path = Path(scratch) / "base.bundle"
            excluded = () if since is None else (f"^{since}",)
            git(directory, "bundle", "create", "--quiet", str(path), ref, *excluded)
            return path.read_bytes()
    finally:
        git(directory, "update-ref", "-d", ref)


def is_ancestor(directory: str | os.PathLike, ancestor: str, commit: str) -> bool:
    try:
        git(directory, "merge-base", "--is-ancestor", ancestor, commit)
    except RuntimeError:  # not an ancestor (exit 1), or not there at all
        return False
    return True


def node_directory(run_id: str) -> Path:
    """This node's directory for one run: the repository copy and the attempts' trees."""
    return Path(tempfile.gettempdir()) / NODE_ROOT / "runs" / run_id


def tool_directory(tool: str) -> Path:
    """This node's directory for one tool, kept across attempts and runs (its state)."""
    return Path(tempfile.gettempdir()) / NODE_ROOT / "tools" / tool


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (the attempts of one node share its copy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def has_commit(repository: Path, commit: str) -> bool:
    if not (repository / "HEAD").exists():
        return False
    try:
        git(repository, "cat-file", "-e", f"{commit}^{{commit}}")
    except RuntimeError:
        return False
    return True


def fetch_bundle(repository: Path, data: bytes) -> None:
    """Add a bundle's commits to the node's copy (a bare repository, made on first use)."""
    if not (repository / "HEAD").exists():
        repository.mkdir(parents=True, exist_ok=True)
        git(repository, "init", "--quiet", "--bare")
    with tempfile.NamedTemporaryFile(suffix=".bundle", dir=repository) as file:
        file.write(data)
        file.flush()
        git(repository, "fetch", "--quiet", file.name, f"+{REF_PREFIX}/*:{REF_PREFIX}/*")


def add_worktree(repository: Path, path: Path, commit: str) -> None:
    if path.exists():  # a leftover of an attempt with this number: start afresh
        remove_worktree(repository, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    git(repository, "worktree", "add", "--quiet", "--detach", "--force", str(path), commit)


def remove_worktree(repository: Path, path: Path) -> None:
    try:
        git(repository, "worktree", "remove", "--force", str(path))
    except RuntimeError:
        pass  # gone already, or broken: removed by hand below
    if path.exists():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        try:
            git(repository, "worktree", "prune")
        except RuntimeError:
            pass


def patch_since(worktree: Path, base: str) -> bytes:
    """Everything changed in ``worktree`` since ``base`` (committed or not, new files
    included), as a binary patch; empty when nothing changed."""
    git(worktree, "add", "-A", "--", ":/")
    return git(
        worktree,
        *("diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "--no-textconv"),
        *("--no-renames", "--src-prefix=a/", "--dst-prefix=b/", base),
    )


def carried_change(worktree: Path) -> bytes:
    """What the worktree holds beyond its HEAD, as a binary patch (a retry's worktree
    starts with the previous attempt's change in it, uncommitted: orchestra marks its new
    files intent-to-add, so they are in it); empty when nothing."""
    return git(
        worktree,
        *("diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames"),
        *("--src-prefix=a/", "--dst-prefix=b/", "HEAD", "--"),
    )


def undo_change(worktree: Path, patch: bytes) -> None:
    """Take ``patch`` (what ``carried_change`` gave) out of the worktree again, leaving it
    as its HEAD: the node's patch, which holds it, is made from there."""
    if patch:
        git(worktree, "reset", "--quiet")  # the intent-to-add entries
        git(worktree, "apply", "-R", "--binary", "--whitespace=nowarn", "-", stdin=patch)


def apply_patch(worktree: Path, patch: bytes) -> None:
    """Make the change ``patch`` describes in ``worktree`` (checked out at its base)."""
    if patch:
        git(worktree, "apply", "--binary", "--whitespace=nowarn", "-", stdin=patch)
