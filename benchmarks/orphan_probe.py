"""Leave processes behind from a task, each way issue 16 lists, and count what outlives orchestra.

Each case runs the real `orchestra run` in a fresh directory (not a git repository: tasks
run in place) on tasks that start a `sleep` that tries to outlive them: a double-fork
daemon, a child in a new process group or session, one that also clears its environment
(`env -i`), a daemon of an attempt that reaches its timeout; then orchestra itself is
stopped while its task has a daemon, by Ctrl-C (SIGINT), by SIGHUP (a closed terminal), and
by SIGKILL to its whole process group followed by `orchestra cancel RUN`; and the `command`
sink's command is still running when the run ends. Each left-behind `sleep` has a number no
other process has as its argument (`sleep 600.<12 digits>`), by which the probe finds it in
/proc once orchestra's command has returned (allowing 2 s for signals to land), and kills
it afterwards, whatever happens.

orchestra holds an attempt's processes in a cgroup where it can make one (root, cgroup v1
`pids`), and as their subreaper elsewhere; `ORCHESTRA_CGROUPS=0` chooses the subreaper. The
probe runs every case both ways where a cgroup works here (it asks a task which cgroup it
is in), the subreaper way alone elsewhere. One line per case and way ("0 left" or "N LEFT:
pids") and a summary; exit 1 unless no process was left and every case's children started.

    .venv/bin/python benchmarks/orphan_probe.py
    .venv/bin/python benchmarks/orphan_probe.py --way subreaper --case 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ORCHESTRA = str(Path(sys.executable).with_name("orchestra"))
PYTHON = shlex.quote(sys.executable)

# Run by a task: start `sleep MARKER` so that it leaves the task in way HOW, and return
# once it runs (it writes MARKER.pid first).
LEAVE = """
import os, subprocess, sys, time
how, marker = sys.argv[1:3]
record = f"echo $$ > {marker}.pid; exec sleep {marker}"
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if how == "daemon":  # double fork: a session of its own, its parent gone, output closed
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execvp("sh", ["sh", "-c", record])
        os._exit(0)
    os.wait()
elif how == "setpgrp":
    subprocess.Popen(["sh", "-c", record], preexec_fn=os.setpgrp, **quiet)
elif how == "setsid":
    subprocess.Popen(["sh", "-c", record], start_new_session=True, **quiet)
elif how == "cleared":  # no variable of orchestra's, and a session of its own
    subprocess.Popen(["env", "-i", "setsid", "sh", "-c", record], **quiet)
deadline = time.monotonic() + 30
while not os.path.exists(f"{marker}.pid") and time.monotonic() < deadline:
    time.sleep(0.02)
print(f"left sleep {marker} ({how})", flush=True)
"""

made: list[str] = []  # every marker of this probe: whatever carries one is killed at the end


def marker() -> str:
    made.append(f"600.{random.randrange(10**11, 10**12)}")
    return made[-1]


def marked(*markers: str) -> list[int]:
    """The running processes (not zombies) with one of ``markers`` in their command line."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            arguments = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] in "ZX":
            continue
        if any(m.encode() in argument for argument in arguments for m in markers):
            found.append(int(entry))
    return found


def kill_marked(*markers: str) -> None:
    for pid in marked(*markers):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(condition: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def still_running(markers: list[str], grace: float) -> list[int]:
    """The processes with ``markers`` still there after at most ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        found = marked(*markers)
        if not found:  # look twice: a process in the middle of an exec has no command line
            time.sleep(0.2)
            found = marked(*markers)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def environment(extra: dict[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
    return {**inherited, **extra}


def project(root: Path, tasks: list[tuple[str, str]], config: str = "") -> Path:
    """A directory with leave.py, orchestra.toml and a workstream of shell tasks, each given
    as its command and more TOML lines of its table."""
    root.mkdir(parents=True)
    (root / "leave.py").write_text(LEAVE)
    (root / "orchestra.toml").write_text(config)
    text = 'id = "orphans"\n[defaults]\nmax_attempts = 1\n'
    for number, (command, more) in enumerate(tasks):
        text += (
            f'[[tasks]]\nid = "t{number}"\nshell = true\ncommand = {json.dumps(command)}\n{more}'
        )
    (root / "ws.toml").write_text(text)
    return root


def leave(how: str, mark: str) -> str:
    return f"{PYTHON} leave.py {how} {mark}"


def run_state(root: Path) -> tuple[str, str] | None:
    """The run's id and state, None when none was recorded."""
    try:
        with sqlite3.connect(root / ".orchestra" / "orchestra.db") as db:
            return db.execute("SELECT id, state FROM runs").fetchone()
    except (sqlite3.Error, TypeError):
        return None


def finished(root: Path, env: dict[str, str], *arguments: str) -> str:
    """Run ``orchestra run ws.toml`` to its end; say how it ended."""
    command = [ORCHESTRA, "run", "ws.toml", "--quiet", *arguments]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    row = run_state(root)
    return f"exit {done.returncode}, run {row[1] if row else 'not recorded'}"


def left_behind(how: str) -> Callable:
    def case(root: Path, env: dict[str, str]) -> tuple[list[str], str, str]:
        child = marker()
        project(root, [(leave(how, child), "")])
        said = finished(root, env)
        started = (root / f"{child}.pid").exists()
        return [child], said, "" if started else "the child never started"

    return case


def past_timeout(root: Path, env: dict[str, str]) -> tuple[list[str], str, str]:
    daemon, leader = marker(), marker()
    project(root, [(f"{leave('daemon', daemon)} && exec sleep {leader}", 'timeout = "1s"\n')])
    said = finished(root, env)
    started = (root / f"{daemon}.pid").exists()
    return [daemon, leader], said, "" if started else "the daemon never started"


def stopped_by(number: signal.Signals, cancel: bool = False) -> Callable:
    """orchestra run, its task holding a daemon, is sent ``number`` (to its whole group, as
    a terminal does); then, with ``cancel``, `orchestra cancel RUN`."""

    def case(root: Path, env: dict[str, str]) -> tuple[list[str], str, str]:
        daemon, leader = marker(), marker()
        project(root, [(f"{leave('daemon', daemon)} && exec sleep {leader}", "")])
        process = subprocess.Popen(
            [ORCHESTRA, "run", "ws.toml", "--quiet"],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a group of its own, as a terminal's foreground job
        )
        try:
            if not wait_until(lambda: marked(daemon) and marked(leader), 30):
                return [daemon, leader], "", "the task's daemon never started"
            os.killpg(process.pid, number)
            process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        said = f"orchestra exited {process.returncode}"
        row = run_state(root)
        if cancel and row:
            said += f", {len(marked(daemon, leader))} of the task's processes running just after"
            canceled = subprocess.run(
                [ORCHESTRA, "cancel", row[0]], cwd=root, env=env, capture_output=True, text=True
            )
            said += f", cancel exited {canceled.returncode}"
            row = run_state(root)
        return [daemon, leader], f"{said}, run {row[1] if row else 'not recorded'}", ""

    return case


def sink_command(root: Path, env: dict[str, str]) -> tuple[list[str], str, str]:
    # a command per event, each taking its whole timeout: the run ends with one under way
    command = marker()
    config = (
        "[sink.command]\nshell = true\n"
        f'command = "echo $$ >> sink-started; exec sleep {command}"\nkinds = ["*"]\ntimeout = 1\n'
    )
    project(root, [("true", ""), ("true", ""), ("true", "")], config)
    said = finished(root, env, "--sink", "command")
    started = (root / "sink-started").exists()
    return [command], said, "" if started else "the sink's command never started"


CASES = [
    ("a double-fork daemon (setsid)", left_behind("daemon")),
    ("a child in a new process group (setpgrp)", left_behind("setpgrp")),
    ("a child in a new session (setsid)", left_behind("setsid")),
    ("a child that clears its environment and leaves its session", left_behind("cleared")),
    ("a daemon of an attempt that reaches its timeout", past_timeout),
    ("Ctrl-C (SIGINT) to orchestra, its task with a daemon", stopped_by(signal.SIGINT)),
    ("SIGHUP to orchestra (a closed terminal)", stopped_by(signal.SIGHUP)),
    ("SIGKILL to orchestra's group, then orchestra cancel", stopped_by(signal.SIGKILL, True)),
    ("the command sink's command running at the run's end", sink_command),
]


def cgroup_of_a_task(root: Path, env: dict[str, str]) -> str:
    """The pids cgroup a task runs in, as it reads it."""
    project(root, [("cat /proc/self/cgroup > held.txt", "")])
    finished(root, env)
    lines = (root / "held.txt").read_text().splitlines() if (root / "held.txt").exists() else []
    return next((line.split(":", 2)[2] for line in lines if ":pids:" in line), "none")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--way", choices=["cgroup", "subreaper"], action="append")
    parser.add_argument("--case", type=int, action="append", help="only case N (1-9; repeat)")
    options = parser.parse_args()
    chosen = [(n, c) for n, c in enumerate(CASES, 1) if not options.case or n in options.case]
    base = Path(tempfile.mkdtemp(prefix="orphan-probe-"))
    began, failed, orphans = time.monotonic(), False, 0
    try:
        tools = subprocess.run(
            [ORCHESTRA, "tools"], cwd=base, env=environment({}), capture_output=True, text=True
        )
        print((tools.stdout.strip().splitlines() or ["orchestra tools said nothing"])[-1])
        ways = {"cgroup": {}, "subreaper": {"ORCHESTRA_CGROUPS": "0"}}
        for way, extra in list(ways.items()):
            held = cgroup_of_a_task(base / f"held-{way}", environment(extra))
            print(f"{way}: a task's pids cgroup is {held}")
            if way == "cgroup" and "/orchestra-" not in held:
                print("no cgroup for attempts here: the subreaper way only")
                del ways[way]
        ways = {way: extra for way, extra in ways.items() if way in (options.way or ways)}
        for way, extra in ways.items():
            for number, (name, case) in chosen:
                started = time.monotonic()
                try:
                    markers, said, problem = case(base / f"{way}-{number}", environment(extra))
                    left = still_running(markers, grace=2)
                finally:
                    kill_marked(*made)
                took = f"{time.monotonic() - started:.1f} s"
                label = f"{way:9} {name}:"
                if problem:
                    failed = True
                    print(f"{label} NOT RUN: {problem} ({said}; {took})", flush=True)
                elif left:
                    failed, orphans = True, orphans + len(left)
                    pids = ", ".join(map(str, left))
                    print(f"{label} {len(left)} LEFT: {pids} ({said}; {took})", flush=True)
                else:
                    print(f"{label} 0 left ({said}; {took})", flush=True)
        print(
            f"orphans left: {orphans} in {len(chosen)} cases, each run {' and '.join(ways)}"
            f" ({time.monotonic() - began:.0f} s)"
        )
        return 1 if failed else 0
    finally:
        kill_marked(*made)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
