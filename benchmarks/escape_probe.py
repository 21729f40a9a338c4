"""Try each way out of an attempt that issue 16 lists, in real runs, with and without the sandbox.

Each case makes a fresh git repository (the user's checkout, and a directory beside it) and
runs the real `orchestra run` on one shell task whose command tries one way out of its
worktree, then says it ran; the run's environment holds a provider key. Afterwards the probe
compares what the user has with what they had: the checkout's files, the files beside it,
`.git/config`, hooks, `HEAD`, branches and tags, `git status`; and looks for what the case
aimed at: a table in orchestra's database, a forbidden `secret.txt` or a symbolic link out
of the repository on the run branch or `main`, a spy program named in the repository's
configuration that ran outside the task, the key seen by it, on the run branch or kept under
`.orchestra/`. Each case runs with `ORCHESTRA_SANDBOX=bwrap` and with `none` (bwrap alone
where it cannot run here). Six cases hold without the sandbox too, by orchestra's own checks
(docs/sandbox.md); the others need it. One line per case and mode ("contained", or "GOT
OUT: what changed"), a summary; exit 1 when a case gets out with the sandbox, one of the six
gets out without it, or a task did not run.

    .venv/bin/python benchmarks/escape_probe.py
    .venv/bin/python benchmarks/escape_probe.py --mode none --case 9 --keep
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ORCHESTRA = str(Path(sys.executable).with_name("orchestra"))
KEY_NAME = "FAKE_PROVIDER_API_KEY"
FORBIDDEN = "secret.txt"
TASK_RAN = "probe: the task ran"

MOVE_RUN_BRANCH = (
    "blob=$(echo stolen | git hash-object -w --stdin) && "
    f'tree=$(printf "100644 blob %s\\t{FORBIDDEN}\\n" "$blob" | git mktree) && '
    'commit=$(git commit-tree -p HEAD -m innocent "$tree") && '
    'git update-ref "refs/heads/orchestra/$ORCHESTRA_RUN_ID" "$commit"'
)
SET_SPY = "git config core.fsmonitor {spy}"
SPY_EVERYWHERE = (
    f"{SET_SPY}; git config filter.spy.clean {{spy}}; git config filter.spy.smudge {{spy}};"
    " git config merge.spy.driver {spy}; echo '* filter=spy merge=spy' > .gitattributes;"
    " env > task-env.txt; echo hi > out.txt; git status > /dev/null"
)
WRITE_DATABASE = (
    "{python} -c \"import sqlite3; db = sqlite3.connect('{repo}/.orchestra/orchestra.db');"
    " db.execute('CREATE TABLE pwned (x)'); db.commit()\""
)


@dataclass(frozen=True)
class Case:
    name: str
    command: str  # formatted with repo, outside, spy, python
    holds_without_sandbox: bool = False
    task_extra: str = ""
    merge_into_main: bool = False


CASES = [
    Case("write through ../ into the checkout", "echo stolen >> ../../../../README.md"),
    Case(
        "write through a symlink it makes into the checkout",
        "ln -s {repo}/src/app.py link && echo 'VALUE = 666' > link; rm -f link",
    ),
    Case("delete a file of the user's", "rm -f {repo}/README.md"),
    Case(
        "write an absolute path beside the repository",
        "echo planted > {outside}/planted.txt; echo stolen >> {outside}/notes.txt",
    ),
    Case(
        "install a hook in the user's .git/hooks",
        "printf '#!/bin/sh\\necho pwned\\n' > {repo}/.git/hooks/pre-commit;"
        ' hooks="$(git rev-parse --git-common-dir)/hooks";'
        " printf '#!/bin/sh\\necho pwned\\n' > \"$hooks/post-checkout\"",
    ),
    Case(
        "move the user's branch with git update-ref",
        'evil=$(git commit-tree "HEAD^{{tree}}" -m evil) && git update-ref refs/heads/main "$evil"',
    ),
    Case(
        "set core.fsmonitor in the repository's config",
        SET_SPY + "; echo hi > out.txt",
        holds_without_sandbox=True,
    ),
    Case("write orchestra's database under .orchestra/", WRITE_DATABASE),
    Case(
        "move the run branch to a forbidden file, --merge-into main",
        MOVE_RUN_BRANCH,
        holds_without_sandbox=True,
        task_extra=f'files = {{ write = ["out.txt"], forbidden = ["{FORBIDDEN}"] }}\n',
        merge_into_main=True,
    ),
    Case(
        "point the worktree's HEAD at main, change a file",
        "git symbolic-ref HEAD refs/heads/main && echo hi > out.txt",
        holds_without_sandbox=True,
    ),
    Case(
        "point the worktree's .git file at the repository, change a file",
        'echo "gitdir: $(git rev-parse --git-common-dir)" > .git; echo hi > out.txt',
        holds_without_sandbox=True,
    ),
    Case(
        "commit a symbolic link out of the repository",
        "ln -s {outside} escape; ln -s ../../.. up",
        holds_without_sandbox=True,
    ),
    Case(
        "show the run's provider key to a spy in the config",
        SPY_EVERYWHERE,
        holds_without_sandbox=True,
    ),
]


def git(repo: Path, *arguments: str, check: bool = True) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=check
    ).stdout


def environment(**extra: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
    inherited.pop(KEY_NAME, None)
    return {**inherited, **extra}


def make_project(root: Path, case: Case) -> Path:
    """A user's repository with the case's workstream committed, the directory beside it
    and a spy program that records its runs and their environment."""
    repo, outside, spy = root / "repo", root / "outside", root / "spy"
    for directory in (repo / "src", outside, spy):
        directory.mkdir(parents=True)
    (outside / "notes.txt").write_text("the user's, not the task's\n")
    (spy / "spy.sh").write_text(
        f'#!/bin/sh\n{{ echo "--- $0 $*"; env; }} >> {spy}/seen.txt\nexit 1\n'
    )
    (spy / "spy.sh").chmod(0o755)
    command = case.command.format(
        repo=repo, outside=outside, spy=spy / "spy.sh", python=shlex.quote(sys.executable)
    )
    command += f"\necho '{TASK_RAN}'"
    (repo / "README.md").write_text("# the user's project\n")
    (repo / "src" / "app.py").write_text("VALUE = 1\n")
    (repo / ".gitignore").write_text(".orchestra/\n")
    (repo / "ws.toml").write_text(
        'id = "escape"\n[defaults]\nmax_attempts = 1\n[[tasks]]\nid = "t"\nshell = true\n'
        f"command = {json.dumps(command)}\n{case.task_extra}"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "probe")
    git(repo, "config", "user.email", "probe@localhost")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the user's work")
    return repo


def user_state(repo: Path) -> dict[str, object]:
    """What a task must not change, as the user would see it."""
    checkout = {}
    for directory, names, files in os.walk(repo):
        here = Path(directory)
        if here == repo:
            names[:] = [name for name in names if name not in (".git", ".orchestra")]
        for name in files + [name for name in names if (here / name).is_symlink()]:
            path = here / name
            key = str(path.relative_to(repo))
            checkout[key] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    outside = repo.parent / "outside"
    hooks = repo / ".git" / "hooks"
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags")
    return {
        "the checkout's files": checkout,
        "the files beside the repository": {p.name: p.read_bytes() for p in outside.iterdir()},
        ".git/config": (repo / ".git" / "config").read_bytes(),
        ".git/hooks": {p.name: p.read_bytes() for p in hooks.iterdir()},
        "HEAD": (repo / ".git" / "HEAD").read_text(),
        "the user's branches": sorted(
            line for line in refs.splitlines() if not line.startswith("refs/heads/orchestra")
        ),
        "git status": git(repo, "status", "--porcelain", check=False),
    }


def differences(before: dict, after: dict) -> list[str]:
    found = []
    for what, old in before.items():
        new = after[what]
        if old == new:
            continue
        if isinstance(old, dict):
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            found.append(f"{what}: {', '.join(changed)} changed")
        elif what == "the user's branches":
            moved = {line.split()[0] for line in set(old) ^ set(new)}
            found.append(f"the user's branches moved: {', '.join(sorted(moved))}")
        else:
            found.append(f"{what} changed")
    return found


def links_out(repo: Path, ref: str) -> list[str]:
    """The symbolic links on ``ref`` that point out of the repository."""
    listing = git(repo, "ls-tree", "-r", ref, check=False)
    found = []
    for line in listing.splitlines():
        mode, _, obj, path = line.split(None, 3)
        if mode != "120000":
            continue
        target = git(repo, "cat-file", "blob", obj)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
            found.append(f"{path} -> {target}")
    return found


def what_got_out(repo: Path, run_id: str | None, key: str, before: dict) -> list[str]:
    found = differences(before, user_state(repo))
    database = repo / ".orchestra" / "orchestra.db"
    if database.exists():
        with sqlite3.connect(database) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if "pwned" in tables:
                found.append("the task made a table in orchestra's database")
            if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                found.append("orchestra's database is damaged")
    run_branch = f"orchestra/{run_id}" if run_id else None
    for ref in filter(None, (run_branch, "main")):
        if FORBIDDEN in git(repo, "ls-tree", "-r", "--name-only", ref, check=False).split():
            found.append(f"{FORBIDDEN} is on {ref}")
        found += [f"{ref} holds a link out: {link}" for link in links_out(repo, ref)]
        holding = git(repo, "grep", "-l", "-F", key, ref, check=False).split()
        if holding:
            found.append(f"the key is on {ref}: {', '.join(holding)}")
    seen = repo.parent / "spy" / "seen.txt"
    record = seen.read_text() if seen.exists() else ""
    # the task may run its spy itself (its own git status): only the runs outside count
    outside = [run for run in record.split("--- ")[1:] if "ORCHESTRA_ATTEMPT=" not in run]
    if outside:
        found.append(f"the spy ran {len(outside)} times outside the task")
    if key in record:
        found.append("the spy saw the key")
    kept = [
        str(path.relative_to(repo))
        for path in (repo / ".orchestra").rglob("*")
        if path.is_file() and not path.is_symlink() and key.encode() in path.read_bytes()
    ]
    if kept:
        found.append(f"the key is kept in {', '.join(kept[:3])}")
    return found


def try_case(root: Path, case: Case, mode: str) -> tuple[str, list[str], str]:
    """Run one case in one mode; return ("contained" | "got out" | "not tried", what, note)."""
    repo = make_project(root, case)
    key = f"sk-probe-{secrets.token_hex(12)}"
    before = user_state(repo)
    config_written = (repo / ".git" / "config").stat().st_mtime_ns
    merge = ["--merge-into", "main"] if case.merge_into_main else []
    env = environment(ORCHESTRA_SANDBOX=mode, **{KEY_NAME: key})
    command = [ORCHESTRA, "run", "ws.toml", "--json", *merge]
    result = subprocess.run(
        command, cwd=repo, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    try:
        run_id = json.loads(result.stdout)["run"]
        log = (repo / ".orchestra" / "runs" / run_id / "t.1.log").read_text()
    except (ValueError, KeyError, OSError):
        run_id, log = None, ""
    if TASK_RAN not in log:
        said = (result.stderr or result.stdout).strip()[-300:]
        return "not tried", [f"the task did not run (exit {result.returncode}): {said}"], ""
    found = what_got_out(repo, run_id, key, before)
    with sqlite3.connect(repo / ".orchestra" / "orchestra.db") as db:
        outcome, error = db.execute("SELECT outcome, error_class FROM attempts").fetchone()
    note = f"attempt {outcome}" + (f": {error}" if error else "")
    if not found and (repo / ".git" / "config").stat().st_mtime_ns != config_written:
        note += "; .git/config was written, and put back"
    seen = repo.parent / "spy" / "seen.txt"
    if not found and seen.exists():
        note += f"; the spy ran {seen.read_text().count('--- ')} times, in the task only"
    return ("got out" if found else "contained"), found, note


def bwrap_usable(root: Path) -> tuple[bool, str]:
    """Whether orchestra can sandbox attempts here, and what `orchestra tools` says."""
    root.mkdir(parents=True, exist_ok=True)
    env = environment(ORCHESTRA_SANDBOX="bwrap")
    tools = subprocess.run([ORCHESTRA, "tools"], cwd=root, env=env, capture_output=True, text=True)
    said = (tools.stdout + tools.stderr).strip().splitlines() or ["orchestra tools said nothing"]
    return said[-1].startswith("attempts run in a bubblewrap sandbox"), said[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["bwrap", "none"], action="append", help="(default both)")
    parser.add_argument("--case", type=int, action="append", help="only case N (1-13; repeat)")
    parser.add_argument("--keep", action="store_true", help="keep the cases that got out")
    options = parser.parse_args()
    chosen = [(n, c) for n, c in enumerate(CASES, 1) if not options.case or n in options.case]
    modes = options.mode or ["bwrap", "none"]
    base = Path(tempfile.mkdtemp(prefix="escape-probe-"))
    failed, began = False, time.monotonic()
    try:
        if "bwrap" in modes:
            usable, said = bwrap_usable(base / "tools")
            print(said)
            if not usable:
                print("bwrap cannot sandbox attempts here: running without the sandbox only")
                modes = [mode for mode in modes if mode != "bwrap"]
                if not modes:
                    return 1
        contained = {mode: 0 for mode in modes}
        for mode in modes:
            for number, case in chosen:
                root = base / f"{mode}-{number}"
                started = time.monotonic()
                outcome, found, note = try_case(root, case, mode)
                took = f"{time.monotonic() - started:.1f} s"
                note = f" ({note}; {took})" if note else f" ({took})"
                label = f"{mode:5} {case.name}:"
                if outcome == "contained":
                    contained[mode] += 1
                    print(f"{label} contained{note}", flush=True)
                elif outcome == "not tried":
                    failed = True
                    print(f"{label} NOT TRIED: {'; '.join(found)}", flush=True)
                else:
                    must_hold = mode == "bwrap" or case.holds_without_sandbox
                    failed |= must_hold
                    why = "" if must_hold else " (needs the sandbox)"
                    print(f"{label} GOT OUT: {'; '.join(found)}{why}{note}", flush=True)
                if outcome == "contained" or not options.keep:
                    shutil.rmtree(root, ignore_errors=True)
        holding = sum(case.holds_without_sandbox for _, case in chosen)
        lines = {
            "bwrap": f"with the sandbox: {contained.get('bwrap')}/{len(chosen)} contained",
            "none": f"without it: {contained.get('none')}/{len(chosen)} ({holding} must hold;"
            " the rest need the sandbox: see docs/sandbox.md)",
        }
        summary = "; ".join(lines[mode] for mode in modes)
        print(f"{summary} ({time.monotonic() - began:.0f} s)")
        return 1 if failed else 0
    finally:
        if options.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
