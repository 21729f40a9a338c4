"""Kill `orchestra run` at random moments in a git repository, then resume it, many times.

Each round makes a git repository and a workstream of command tasks that each append one
line to a file of their own (so a change merged twice shows as a doubled line; each
declares that file in ``files.create``, so that it gets a worktree of its own whose
change lands), with
chains of dependencies so that landings on the run branch are frequent and come while
other tasks still run. It starts `orchestra run` in a process group of its own, sends
SIGKILL to the whole group at a random moment (as a cancelled CI job, a killed container
or a power cut would), does the same to one or two `orchestra resume` calls, and then
runs `orchestra resume` alone to the end. A round is clean when, with no hand-made repair:

- that last resume exits 0 and the run is `succeeded`;
- every task's file holds its line exactly once, and the run branch has exactly one
  landing commit per task (orchestra's trailers), none merged twice;
- no task that had succeeded was run again;
- `git fsck` is clean, the user's own `git branch` and `git status` work, the user's
  branch and working tree are as they were;
- no `orchestra-tasks/*` branch, no worktree and no worktree directory is left.

It prints one line per round and a summary (clean rounds out of rounds run), and exits 1
unless every round was clean.

    .venv/bin/python benchmarks/crash_probe.py                      # 20 rounds, 200 tasks
    .venv/bin/python benchmarks/crash_probe.py --rounds 5 --tasks 60 --seed 7
    .venv/bin/python benchmarks/crash_probe.py --keep               # keep failed rounds' dirs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORCHESTRA = str(Path(sys.executable).with_name("orchestra"))


def git(repo: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=check
    )


def make_project(root: Path, tasks: int, width: int) -> Path:
    """A git repository with one commit and a workstream of ``tasks`` command tasks: task
    i depends on task i - width, so ``width`` chains run side by side."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "probe")
    git(repo, "config", "user.email", "probe@localhost")
    (repo / "README.md").write_text("# probe\n")
    (repo / ".gitignore").write_text(".orchestra/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    lines = ['id = "probe"', "[defaults]", "max_attempts = 5", 'backoff = { initial = "0s" }']
    for number in range(tasks):
        task = f"t{number:03d}"
        lines += ["[[tasks]]", f'id = "{task}"']
        if number >= width:
            lines.append(f'depends_on = ["t{number - width:03d}"]')
        script = f"mkdir -p files && echo {task} >> files/{task}.txt"
        lines.append(f"command = {json.dumps(['sh', '-c', script])}")
        lines.append(f'files = {{ create = ["files/{task}.txt"] }}')
    (repo / "ws.toml").write_text("\n".join(lines) + "\n")
    git(repo, "add", "ws.toml")
    git(repo, "commit", "-q", "-m", "workstream")
    return repo


def environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("ORCHESTRA_")}


def start(repo: Path, *arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [ORCHESTRA, *arguments],
        cwd=repo,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own: killed whole, as a CI job is
    )


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_id(repo: Path) -> str | None:
    database = repo / ".orchestra" / "orchestra.db"
    if not database.exists():
        return None
    try:
        with sqlite3.connect(database, timeout=10) as db:
            row = db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def run_state(repo: Path, identifier: str) -> str:
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db", timeout=10) as db:
        return db.execute("SELECT state FROM runs WHERE id = ?", (identifier,)).fetchone()[0]


def one_round(root: Path, rng: random.Random, tasks: int, width: int, span: float) -> list[str]:
    """Run one round; return its problems (empty when clean)."""
    repo = make_project(root, tasks, width)
    user_head = git(repo, "rev-parse", "HEAD").stdout.strip()
    kills = rng.randint(1, 3)
    identifier = None
    for _ in range(kills):
        if identifier is None:
            process = start(repo, "run", "ws.toml", "--max-parallel", "4", "--quiet")
        else:
            process = start(repo, "resume", identifier, "--quiet")
        time.sleep(rng.uniform(0.02, span))
        kill_group(process)
        identifier = identifier or run_id(repo)
    if identifier is None:  # killed before the run was recorded: start it afresh
        last = subprocess.run(
            [ORCHESTRA, "run", "ws.toml", "--max-parallel", "4", "--quiet"],
            cwd=repo,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        identifier = run_id(repo)
    elif run_state(repo, identifier) in ("succeeded", "failed", "canceled"):
        last = None  # the last kill came after the run had ended
    else:
        last = subprocess.run(
            [ORCHESTRA, "resume", identifier, "--quiet"],
            cwd=repo,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    problems = []
    if last is not None and last.returncode != 0:
        problems.append(f"last command exited {last.returncode}: {last.stderr.strip()[-300:]}")
    problems += check(repo, identifier, tasks, user_head)
    return problems


def check(repo: Path, identifier: str | None, tasks: int, user_head: str) -> list[str]:
    problems = []
    if identifier is None:
        return ["no run was recorded"]
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        state = db.execute("SELECT state FROM runs WHERE id = ?", (identifier,)).fetchone()[0]
        attempts = db.execute(
            "SELECT task_id, number, outcome, started_at FROM attempts WHERE run_id = ?"
            " ORDER BY task_id, number",
            (identifier,),
        ).fetchall()
    if state != "succeeded":
        problems.append(f"run is {state}")
    succeeded: dict[str, int] = {}
    for task_id, number, outcome, _ in attempts:
        if task_id in succeeded:
            problems.append(
                f"{task_id} ran again (attempt {number}) after attempt "
                f"{succeeded[task_id]} succeeded"
            )
        if outcome == "succeeded":
            succeeded.setdefault(task_id, number)
    branch = f"orchestra/{identifier}"
    listed = git(
        repo,
        "log",
        "--format=%(trailers:key=Orchestra-Task,valueonly)",
        branch,
        "^main",
        check=False,
    )
    landings: dict[str, int] = {}
    for line in listed.stdout.split():
        landings[line] = landings.get(line, 0) + 1
    twice = sorted(task for task, count in landings.items() if count > 1)
    if twice:
        problems.append(f"merged more than once: {', '.join(twice[:5])}")
    tree = git(repo, "ls-tree", "-r", "--name-only", branch, "--", "files/", check=False)
    present = set(tree.stdout.split())
    doubled = []
    for number in range(tasks):
        task = f"t{number:03d}"
        if f"files/{task}.txt" not in present:
            problems.append(f"{task}'s change is not on the run branch")
            continue
        content = git(repo, "show", f"{branch}:files/{task}.txt").stdout
        if content != f"{task}\n":
            doubled.append(task)
    if doubled:
        problems.append(f"files changed more than once: {', '.join(doubled[:5])}")
    fsck = git(repo, "fsck", "--no-progress", check=False)
    if fsck.returncode != 0 or "error" in fsck.stderr.lower():
        problems.append(f"git fsck: {(fsck.stderr or fsck.stdout).strip()[:300]}")
    branches = git(repo, "branch", "--list", "--all", check=False)
    if branches.returncode != 0:
        problems.append(f"git branch fails: {branches.stderr.strip()[:300]}")
    left = [line.strip() for line in branches.stdout.splitlines() if "orchestra-tasks/" in line]
    if left:
        problems.append(f"{len(left)} orchestra-tasks branches left, e.g. {left[0]}")
    status = git(repo, "status", "--porcelain", check=False)
    if status.returncode != 0 or status.stdout.strip():
        problems.append(f"git status: {(status.stderr or status.stdout).strip()[:200]}")
    if git(repo, "rev-parse", "main").stdout.strip() != user_head:
        problems.append("the user's branch moved")
    if git(repo, "branch", "--show-current").stdout.strip() != "main":
        problems.append("the user's checkout is not on its branch any more")
    worktrees = git(repo, "worktree", "list", "--porcelain", check=False).stdout
    count = sum(line.startswith("worktree ") for line in worktrees.splitlines())
    if count != 1:
        problems.append(f"{count - 1} worktrees left")
    admin = repo / ".git" / "worktrees"
    if admin.exists() and any(admin.iterdir()):
        problems.append(f"{len(list(admin.iterdir()))} entries left in .git/worktrees")
    directories = repo / ".orchestra" / "worktrees"
    if directories.exists() and any(directories.rglob("*")):
        problems.append("worktree directories left under .orchestra/worktrees")
    locks = [
        str(path.relative_to(repo))
        for path in (repo / ".git").rglob("*.lock")
        if path.name != "orchestra-worktrees.lock"
    ]
    if locks:
        problems.append(f"lock files left: {', '.join(locks[:3])}")
    return problems


def calibrate(root: Path, tasks: int, width: int) -> float:
    """Time one undisturbed run: kills are spread over that span."""
    repo = make_project(root, tasks, width)
    began = time.monotonic()
    subprocess.run(
        [ORCHESTRA, "run", "ws.toml", "--max-parallel", "4", "--quiet"],
        cwd=repo,
        env=environment(),
        capture_output=True,
        check=True,
        timeout=600,
    )
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--width", type=int, default=8, help="chains run side by side")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--keep", action="store_true", help="keep the directories of rounds that fail"
    )
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="crash-probe-"))
    try:
        span = calibrate(base / "calibration", options.tasks, options.width)
        print(f"seed {seed}; an undisturbed run of {options.tasks} tasks takes {span:.1f} s")
        clean = 0
        for number in range(1, options.rounds + 1):
            root = base / f"round-{number}"
            problems = one_round(root, rng, options.tasks, options.width, span)
            if problems:
                print(f"round {number}: NOT CLEAN: " + "; ".join(problems), flush=True)
                if not options.keep:
                    shutil.rmtree(root, ignore_errors=True)
            else:
                clean += 1
                print(f"round {number}: clean", flush=True)
                shutil.rmtree(root, ignore_errors=True)
        print(f"{clean}/{options.rounds} rounds clean (seed {seed})")
        return 0 if clean == options.rounds else 1
    finally:
        if not options.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")


if __name__ == "__main__":
    sys.exit(main())
