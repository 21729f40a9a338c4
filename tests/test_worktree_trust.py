"""The worktree workspace keeps its promises to the user's repository (docs/workspaces.md):
no link the run adds leads out of the repository, and orchestra's own ``copy`` writes
through none; what lands is the change that was scope-checked; a run whose database lost
its branch's start (a power cut) lands nothing twice; and no file of orchestra's stays in
the user's ``.git``.

Real ``orchestra run`` and ``resume`` processes on real git repositories and SQLite.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from orchestra.builtin.workspaces import _start_below
from orchestra.git.links import MAX_HOPS, Links
from orchestra.testing import (
    kill_like_a_power_cut,
    make_git_repo,
    run_orchestra,
    start_orchestra,
    wait_for,
)

NO_SANDBOX = {"ORCHESTRA_SANDBOX": "none"}


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def project(tmp_path: Path) -> Path:
    return make_git_repo(
        tmp_path / "repo",
        {"README.md": "# app\n", ".gitignore": ".orchestra/\n", "docs/a.md": "doc\n"},
    )


def run(repo: Path, workstream: Path, env: dict[str, str] | None = None) -> dict:
    result = run_orchestra("run", str(workstream), "--json", cwd=repo, env=env or {})
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def landed_files(repo: Path, summary: dict) -> list[str]:
    """The files on the run's branch (none when the run left no branch)."""
    branch = f"orchestra/{summary['run']}"
    if not git(repo, "branch", "--list", branch).strip():
        return []
    return git(repo, "ls-tree", "-r", "--name-only", branch).split()


def tasks(*entries: str) -> str:
    return 'id = "w"\n[defaults]\nmax_attempts = 1\n' + "".join(entries)


def task(name: str, command: str, files: str = "", after: str = "") -> str:
    text = f'[[tasks]]\nid = "{name}"\nshell = true\ncommand = {json.dumps(command)}\n'
    if files:
        text += f"files = {{ {files} }}\n"
    if after:
        text += f'depends_on = ["{after}"]\n'
    return text


# -- links: judged by where they lead ------------------------------------------------------


def test_following_links_finds_where_a_link_really_leads() -> None:
    deep = "/".join(f"d{i}" for i in range(1, 5))
    found = Links(
        {
            f"{deep}/up": "../../../..",  # the top: inside
            "config": f"{deep}/up/../../../../victim",  # reads as d1/victim; is ../victim
            "in": "d1/../README.md",
            "absolute": "/etc/passwd",
            "dotgit": "d1/../.git/config",
            "loop": "loop",
            "dangling": "build/out/bin",
        }
    )
    outward = {path for path in found.targets if found.leads_out(path)}
    assert outward == {"config", "absolute", "dotgit", "loop"}
    chain = {f"l{n}": f"l{n + 1}" for n in range(MAX_HOPS + 1)}
    assert Links({**chain, f"l{MAX_HOPS + 1}": "README.md"}).leads_out("l0")


def test_a_link_out_of_the_repository_through_another_link_is_refused(tmp_path):
    """``up -> ../..`` (the top) and ``config -> …/up/../../<victim>``, which reads as a
    path inside: refused as leading out, so no later worktree holds it (where the
    ``copy`` step would write the user's file)."""
    repo = project(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (repo / "config").mkdir()
    (repo / "config" / "local.env").write_text("API_KEY=sk-user-secret-1234\n")
    (repo / ".git" / "info" / "exclude").write_text("config/\norchestra.toml\n")
    (repo / "orchestra.toml").write_text('[workspace]\ncopy = ["config/local.env"]\n')
    deep = "/".join(f"d{i}" for i in range(1, 21))
    ups = "/".join([".."] * 20)
    plant = (
        f"mkdir -p {deep} && ln -s {ups} {deep}/up && rm -rf config"
        f" && ln -s {deep}/up/{ups}{victim} config"
    )
    workstream = tmp_path / "ws.toml"
    workstream.write_text(
        tasks(
            task("first", "echo b > docs/b.md", 'create = ["docs/b.md"]'),
            task("plant", plant, 'create = ["d1/", "config"]', after="first"),
        )
    )

    summary = run(repo, workstream)

    assert list(victim.iterdir()) == [], "orchestra copied the user's .env outside the repo"
    assert summary["failed"] == ["plant"], summary
    assert "made config a symbolic link" in summary["reasons"]["plant"]
    assert "outside the repository" in summary["reasons"]["plant"]
    landed = landed_files(repo, summary)
    assert "docs/b.md" in landed and "config" not in landed


def test_a_change_that_turns_an_existing_link_outward_is_refused(tmp_path):
    """``x -> a/b/../../README.md`` leads inside while ``a/b`` is a directory. A later
    change that makes ``a/b`` a link to ``..`` (the top, inside itself) sends ``x`` out
    of the repository: that change is refused, naming ``x``."""
    repo = project(tmp_path)
    workstream = tmp_path / "ws.toml"
    workstream.write_text(
        tasks(
            task(
                "link",
                "mkdir -p a/b && echo f > a/b/f && ln -s a/b/../../README.md x",
                'create = ["a/", "x"]',
            ),
            task("swap", "rm -r a/b && ln -s .. a/b", 'write = ["a/"]', after="link"),
        )
    )

    summary = run(repo, workstream, NO_SANDBOX)

    assert summary["failed"] == ["swap"], summary
    assert "made x a symbolic link to a/b/../../README.md" in summary["reasons"]["swap"]
    landed = landed_files(repo, summary)
    assert "x" in landed and "a/b/f" in landed


def test_copy_writes_nothing_through_a_link_in_the_worktree(tmp_path):
    """A link the run branch holds (here one the user committed, then replaced by a
    directory in their checkout) on the way of a ``copy`` file: the attempt fails with
    ``setup_failed``, and nothing is written where the link points."""
    repo = project(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, repo / "config")
    git(repo, "add", "config")
    git(repo, "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "link")
    (repo / "config").unlink()
    (repo / "config").mkdir()
    (repo / "config" / "local.env").write_text("API_KEY=sk-user-secret-1234\n")
    (repo / ".git" / "info" / "exclude").write_text("orchestra.toml\n")
    (repo / "orchestra.toml").write_text('[workspace]\ncopy = ["config/local.env"]\n')
    workstream = tmp_path / "ws.toml"
    workstream.write_text(tasks(task("t", "echo b > docs/b.md", 'create = ["docs/b.md"]')))

    summary = run(repo, workstream)

    assert list(victim.iterdir()) == []
    assert summary["failed"] == ["t"], summary
    assert "config in the worktree is a symbolic link" in summary["reasons"]["t"]


def test_copy_still_copies_files_and_directories(tmp_path):
    """The ``copy`` files reach the worktree, in directories made for them, a directory
    with what it holds (a link in it copied as a link)."""
    repo = project(tmp_path)
    (repo / "config" / "keys").mkdir(parents=True)
    (repo / "config" / "local.env").write_text("KEY=1\n")
    (repo / "config" / "keys" / "one").write_text("one\n")
    os.symlink("one", repo / "config" / "keys" / "alias")
    (repo / ".git" / "info" / "exclude").write_text("config/\norchestra.toml\n")
    (repo / "orchestra.toml").write_text(
        '[workspace]\ncopy = ["config/local.env", "config/keys"]\n'
    )
    check = "cat config/local.env config/keys/alias > docs/seen.md"
    workstream = tmp_path / "ws.toml"
    workstream.write_text(tasks(task("t", check, 'create = ["docs/seen.md"]')))

    summary = run(repo, workstream)

    assert summary["state"] == "succeeded", summary
    branch = f"orchestra/{summary['run']}"
    assert git(repo, "show", f"{branch}:docs/seen.md") == "KEY=1\none\n"
    assert "config/local.env" not in landed_files(repo, summary)


# -- what lands is what was checked --------------------------------------------------------

SWAP = """#!/bin/sh
# another attempt of the run (no sandbox): while task b's change is committed and
# scope-checked (b's worktree index held, so that its reset waits), point b's branch at
# a commit of its own that adds evil.txt
set -e
tip=$(git rev-parse "refs/heads/orchestra/$ORCHESTRA_RUN_ID")
index="$SWAP_INDEX"  # in the test's own directory
GIT_INDEX_FILE="$index" git read-tree "$tip"
blob=$(echo 'outside b scope' | git hash-object -w --stdin)
GIT_INDEX_FILE="$index" git update-index --add --cacheinfo "100644,$blob,evil.txt"
tree=$(GIT_INDEX_FILE="$index" git write-tree)
evil=$(git -c user.name=x -c user.email=x@x commit-tree "$tree" -p "$tip" -m 'b work')
ref="refs/heads/orchestra-tasks/$ORCHESTRA_RUN_ID/b.1"
gd="$(git rev-parse --git-common-dir)/worktrees/b.1"
while [ ! -f "$STARTED" ]; do sleep 0.05; done
exec 9>"$gd/index.lock"
touch "$READY"
end=$(( $(date +%s) + 30 ))
while [ "$(date +%s)" -lt "$end" ]; do
  cur=$(git rev-parse -q --verify "$ref" || true)
  if [ -n "$cur" ] && [ "$cur" != "$tip" ]; then
    git update-ref "$ref" "$evil" "$cur"
    touch "$SWAPPED"
    break
  fi
  sleep 0.01
done
rm -f "$gd/index.lock"
exec 9>&-
"""


def test_what_lands_is_the_change_that_was_scope_checked(tmp_path):
    """Another attempt (no sandbox) points task b's branch at a commit of its own between
    b's scope check and its landing: b's checked change lands, evil.txt does not."""
    repo = project(tmp_path)
    ready, started, swapped = tmp_path / "ready", tmp_path / "started", tmp_path / "swapped"
    swap = tmp_path / "swap.sh"
    swap.write_text(SWAP)
    swap.chmod(0o755)
    b = f"touch {started}; while [ ! -f {ready} ]; do sleep 0.05; done; echo b > docs/b.md"
    flags = ", ".join(
        f"{name} = {json.dumps(str(path))}"
        for name, path in (
            ("READY", ready),
            ("STARTED", started),
            ("SWAPPED", swapped),
            ("SWAP_INDEX", tmp_path / "swap-index"),
        )
    )
    workstream = tmp_path / "ws.toml"
    workstream.write_text(
        tasks(
            task("b", b, 'create = ["docs/b.md"]'),
            f'[[tasks]]\nid = "swap"\ncommand = [{json.dumps(str(swap))}]\nenv = {{ {flags} }}\n',
        )
    )

    summary = run(repo, workstream, NO_SANDBOX)

    assert swapped.exists(), "the other attempt did not get to move b's branch"
    landed = landed_files(repo, summary)
    assert "evil.txt" not in landed, f"a change outside b's scope landed: {summary}"
    assert "docs/b.md" in landed, summary


# -- a power cut before the run branch's start was recorded --------------------------------


def rows(database: Path, query: str) -> list[tuple]:
    db = sqlite3.connect(database, timeout=10)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def wal_prefixes(database: Path, scratch: Path):
    """Yield, longest first, copies of what a power cut may leave of ``database``: its
    write-ahead log cut after each frame (SQLite reads the transactions before the cut)."""
    data = Path(f"{database}-wal").read_bytes()
    page = int.from_bytes(data[8:12], "big")
    frames = (len(data) - 32) // (24 + page)
    scratch.mkdir()
    for kept in range(frames, -1, -1):
        copy = scratch / f"{kept}.db"
        shutil.copy(database, copy)
        Path(f"{copy}-wal").write_bytes(data[: 32 + kept * (24 + page)])
        yield copy


def test_a_power_cut_before_the_run_branchs_start_was_recorded_lands_nothing_twice(tmp_path):
    """The database keeps the run and its steps but not the workspace's checkpoint (where
    the run branch started), while the branch holds three landings: resume finds the
    start below them, recognises them, and lands none again."""
    repo = make_git_repo(tmp_path / "repo", {"README.md": "x\n", ".gitignore": ".orchestra/\n"})
    flags = tmp_path / "flags"
    flags.mkdir()
    chain = "".join(
        task(f"t{n}", f"echo t{n} >> t{n}.txt", f'create = ["t{n}.txt"]', f"t{n - 1}" if n else "")
        for n in range(3)
    )
    hang = f"touch {flags}/hang; while [ ! -f {flags}/go ]; do sleep 0.05; done"
    (repo / "ws.toml").write_text(tasks(chain, task("hang", hang, after="t2")))
    database = repo / ".orchestra" / "orchestra.db"
    running = start_orchestra(
        "run", "ws.toml", "--quiet", cwd=repo, env=NO_SANDBOX, new_session=True
    )
    wait_for(lambda: (flags / "hang").exists(), what="the three landings")
    (lock,) = (repo / ".orchestra" / "locks").iterdir()
    run_id = lock.name.removesuffix(".lock")
    kill_like_a_power_cut(run_id, running)
    for earlier in wal_prefixes(database, tmp_path / "prefixes"):
        try:
            runs = rows(earlier, "SELECT count(*) FROM runs")[0][0]
            kept = rows(earlier, "SELECT count(*) FROM kv WHERE key LIKE 'workspace.%'")[0][0]
        except sqlite3.Error:
            continue  # the cut came before the schema
        if runs and not kept:
            break
    else:
        raise AssertionError("no moment with the run recorded and no checkpoint yet")
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(earlier, database)
    (flags / "go").touch()

    resumed = run_orchestra("resume", run_id, "--quiet", cwd=repo, env=NO_SANDBOX)

    assert "Traceback" not in resumed.stderr
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    for n in range(3):
        assert git(repo, "show", f"orchestra/{run_id}:t{n}.txt") == f"t{n}\n"
    assert git(repo, "rev-list", "--count", f"main..orchestra/{run_id}").strip() == "3"


def test_the_start_of_a_run_branch_is_found_below_the_runs_landings(tmp_path):
    """Below the run's landings (``Orchestra-Run`` and ``Orchestra-Task``) is its start:
    the user's commit, or the run's snapshot of uncommitted changes."""
    repo = make_git_repo(tmp_path / "repo", {"README.md": "x\n"})
    head = git(repo, "rev-parse", "HEAD").strip()

    def commit(message: str) -> str:
        git(repo, "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-q", "--allow-empty",
            "-m", message)  # fmt: skip
        return git(repo, "rev-parse", "HEAD").strip()

    snapshot = commit("Uncommitted\n\nOrchestra-Run: r1\nOrchestra-Snapshot: uncommitted")
    commit("a\n\nOrchestra-Run: r1\nOrchestra-Task: a\nOrchestra-Attempt: 1")
    tip = commit("b\n\nOrchestra-Run: r1\nOrchestra-Task: b\nOrchestra-Attempt: 2")

    assert _start_below(repo, tip, "r1") == snapshot
    assert _start_below(repo, tip, "r2") == tip
    assert _start_below(repo, head, "r1") == head
    assert _start_below(repo, None, "r1") is None


# -- the worktrees lock leaves no file behind ----------------------------------------------


def test_a_run_leaves_no_file_of_its_own_in_the_users_git_directory(tmp_path):
    repo = project(tmp_path)
    before = set(os.listdir(repo / ".git"))
    workstream = tmp_path / "ws.toml"
    workstream.write_text(tasks(task("t", "echo b > docs/b.md", 'create = ["docs/b.md"]')))

    summary = run(repo, workstream)

    assert summary["state"] == "succeeded", summary
    new = set(os.listdir(repo / ".git")) - before
    assert new <= {"ORIG_HEAD", "FETCH_HEAD"}, f"left in the user's .git: {sorted(new)}"


CONTEND = """
import os, sys
from pathlib import Path
from orchestra.git.worktrees import worktrees_locked
repo, marker = Path(sys.argv[1]), Path(sys.argv[2])
for _ in range(int(sys.argv[3])):
    with worktrees_locked(repo):
        # another holder at the same time would find the marker, or lose it
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        os.unlink(marker)
"""


def test_the_worktrees_lock_removed_after_each_use_still_excludes(tmp_path):
    """Its holder removes the lock file before letting go; processes that waited on the
    removed file must not then hold the lock beside one that made a new file."""
    repo = make_git_repo(tmp_path / "repo", {"README.md": "x\n"})
    marker = tmp_path / "held"
    contenders = [
        subprocess.Popen(
            [sys.executable, "-c", CONTEND, str(repo), str(marker), "300"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=120)[1] for process in contenders]

    assert [process.returncode for process in contenders] == [0, 0, 0, 0], errors
    assert not (repo / ".git" / "orchestra-worktrees.lock").exists()


def test_a_git_without_merge_tree_lands_the_checked_commit_by_rebasing_it(tmp_path, monkeypatch):
    """git before 2.38 has no ``merge-tree --write-tree``: the checked commit itself,
    named by its id, is rebased in the attempt's worktree, whatever its branch holds."""
    from orchestra.git import merging

    monkeypatch.setattr(merging, "_merge_tree_known", False)
    repo = make_git_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "branch", "run", base)
    git(repo, "worktree", "add", "-q", "-b", "task", str(tmp_path / "tree"), base)
    tree = tmp_path / "tree"
    (tree / "checked.txt").write_text("checked\n")
    git(tree, "add", "checked.txt")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "checked")
    checked = git(tree, "rev-parse", "HEAD").strip()
    (tree / "later.txt").write_text("not checked\n")  # the branch moved on since
    git(tree, "add", "later.txt")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "later")
    (repo / "other.txt").write_text("other\n")  # the run branch moved on too
    git(repo, "checkout", "-q", "run")
    git(repo, "add", "other.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "other")
    tip = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "--detach")

    result = merging.land_change(repo, checked, "run", expected=tip, worktree=tree)

    assert result.merged
    assert git(repo, "rev-parse", "run").strip() == result.tip != tip
    files = git(repo, "ls-tree", "-r", "--name-only", "run").split()
    assert "checked.txt" in files and "other.txt" in files and "later.txt" not in files
    assert git(repo, "log", "-1", "--format=%s", "run").strip() == "checked"
