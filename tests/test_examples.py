"""The workstreams in examples/ run green from a fresh clone of the repository.

"A fresh clone" here is the repository as it would be cloned if its working tree were
committed: every file git tracks or would track (new files too, ignored ones not: no
.orchestra/, no build/, no .venv/), committed in a new repository, then `git clone`d.
So the test checks the examples as they are being edited, and a clone holds nothing a
developer's earlier runs left behind. Each example runs with the real `orchestra run`, in
a clone of its own, with the default workspace (a git worktree per attempt that declares
writes, one shared by the commands that declare none) and the default sandbox.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestra.spec import load_workstream
from orchestra.testing import run_orchestra

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPOSITORY / "examples").glob("*/workstream.toml"))


def needs_a_model(path: Path) -> bool:
    """Whether a workstream has prompt tasks, which only an AI tool with a model can run."""
    return any(task.prompt is not None for task in load_workstream(path).tasks)


RUNNABLE = [path for path in EXAMPLES if not needs_a_model(path)]


def label(path: Path) -> str:
    return str(path.relative_to(REPOSITORY))


@pytest.fixture(scope="module")
def committed_tree(tmp_path_factory) -> Path:
    """A repository holding the working tree's files as a commit would."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        check=True,
        capture_output=True,
    ).stdout.decode()
    tree = tmp_path_factory.mktemp("committed") / "orchestra"
    tree.mkdir()
    for name in filter(None, listed.split("\0")):
        source = REPOSITORY / name
        if not source.is_file() and not source.is_symlink():
            continue  # deleted in the working tree, or a submodule
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    identity = ["-c", "user.name=orchestra tests", "-c", "user.email=tests@orchestra.invalid"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], [*identity, "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=tree, check=True, capture_output=True)
    return tree


@pytest.fixture
def fresh_clone(committed_tree: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "orchestra"
    subprocess.run(
        ["git", "clone", "-q", str(committed_tree), str(clone)], check=True, capture_output=True
    )
    return clone


def test_the_examples_that_need_no_model_are_found():
    assert {label(path) for path in RUNNABLE} >= {
        "examples/demo/workstream.toml",
        "examples/hello/workstream.toml",
    }
    assert "examples/ai/workstream.toml" not in {label(path) for path in RUNNABLE}


@pytest.mark.parametrize("example", RUNNABLE, ids=label)
def test_an_example_runs_green_from_a_fresh_clone(fresh_clone, example):
    assert not (fresh_clone / ".orchestra").exists()

    result = run_orchestra("run", label(example), "--plain", cwd=fresh_clone)

    assert result.returncode == 0, result.stdout + result.stderr
    assert " succeeded: " in result.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=label)
def test_every_example_is_valid_in_a_fresh_clone(fresh_clone, example):
    result = run_orchestra("validate", label(example), cwd=fresh_clone)

    assert result.returncode == 0, result.stdout + result.stderr
