"""The executor ``ray`` against a real Ray cluster of two nodes on this machine: the same
results as the local executor, attempts only on nodes with their tool, and a node that
dies mid-attempt."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from orchestra import processes_of_run, stop_process_groups
from orchestra.testing import (
    make_git_repo,
    orchestra_program,
    run_orchestra,
    scripted_tools_env,
    tool_calls,
    write_tool_script,
)

from .conftest import NODE_SECRET, NODE_TMPDIR, node_environment, start_cluster

pytestmark = pytest.mark.slow  # a real two-node Ray cluster

WORKSTREAM = """\
id = "w"
[defaults]
backoff = { initial = 0.1, jitter = false }
[[tasks]]
id = "a"
prompt = "write a"
tool = "scripted"
files = { create = ["a.txt"] }
checks = ["test -f a.txt"]
[[tasks]]
id = "b"
prompt = "write b, after one failed try"
tool = "scripted"
files = { create = ["b.bin"] }
[[tasks]]
id = "c"
prompt = "write c.txt, then add to it once the check failed"
tool = "scripted"
files = { create = ["c.txt"] }
checks = ["grep -q two c.txt"]
[[tasks]]
id = "both"
command = ["sh", "-c", "cat a.txt > both.txt && wc -c < b.bin >> both.txt"]
files = { create = ["both.txt"] }
depends_on = ["a", "b"]
[[tasks]]
id = "listing"
command = ["sh", "-c", "ls > listing.txt"]
files = { create = ["listing.txt"] }
depends_on = ["both", "c"]
"""


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def rows(project: Path, query: str, *args) -> list[sqlite3.Row]:
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def project(tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    repo = make_git_repo(tmp_path / name, {"README.md": "# app\n"})
    (repo / "ws.toml").write_text(WORKSTREAM)
    script = write_tool_script(
        tmp_path / f"{name}-scripted.toml",
        [{}],
        tasks={
            "a": [{"action": "succeed", "edit": {"path": "a.txt", "content": "alpha\n"}}],
            "b": [
                {"action": "fail", "error_class": "exit_status", "message": "not yet"},
                {"action": "succeed", "edit": {"path": "b.bin", "content": "b\x00\x01\n"}},
            ],
            # the retry after the failed check goes on from attempt 1's change (c.txt)
            "c": [
                {"action": "succeed", "edit": {"path": "c.txt", "content": "one\n"}},
                {"action": "succeed", "edit": {"path": "c.txt", "content": "one\ntwo\n"}},
            ],
        },
    )
    return repo, scripted_tools_env(scripted=script)


def outcome(repo: Path, run_id: str) -> dict:
    """What a run came to, whatever ran it: states, attempts and the run branch's tree."""
    return {
        "steps": [
            tuple(r) for r in rows(repo, "SELECT task_id, state FROM steps ORDER BY task_id")
        ],
        "attempts": [
            tuple(r)
            for r in rows(
                repo,
                "SELECT task_id, number, outcome, error_class, tool, diff FROM attempts"
                " ORDER BY task_id, number",
            )
        ],
        "tree": git(repo, "rev-parse", f"orchestra/{run_id}^{{tree}}"),
    }


@pytest.fixture(scope="module")
def both_runs(ray_cluster, tmp_path_factory):
    """The same workstream in two identical repositories, run by each executor."""
    tmp_path = tmp_path_factory.mktemp("runs")
    results = {}
    for executor in ("local", "ray"):
        repo, env = project(tmp_path, executor)
        arguments = ["--executor", executor, "--ray-address", ray_cluster.address]
        finished = run_orchestra(
            "run", "ws.toml", "--json", *arguments, cwd=repo, env=ray_cluster.env(**env)
        )
        assert finished.returncode == 0, finished.stderr
        results[executor] = (repo, json.loads(finished.stdout)["run"])
    return results


def test_a_run_on_ray_comes_to_what_the_local_executor_makes(both_runs):
    local, ray = (outcome(*both_runs[name]) for name in ("local", "ray"))

    assert ray == local
    assert ray["steps"] == [
        ("a", "succeeded"),
        ("b", "succeeded"),
        ("both", "succeeded"),
        ("c", "succeeded"),
        ("listing", "succeeded"),
    ]
    assert [(task, n, result) for task, n, result, *_ in ray["attempts"]] == [
        ("a", 1, "succeeded"),
        ("b", 1, "failed"),
        ("b", 2, "succeeded"),
        ("both", 1, "succeeded"),
        ("c", 1, "failed"),
        ("c", 2, "succeeded"),
        ("listing", 1, "succeeded"),
    ]
    repo, run_id = both_runs["ray"]
    assert git(repo, "show", f"orchestra/{run_id}:both.txt") == "alpha\n4"
    # on a node too, the retry after a failed check went on from attempt 1's change
    assert git(repo, "show", f"orchestra/{run_id}:c.txt") == "one\ntwo"
    # the log of an attempt on a node (the tool's output, then its check) is here
    log = (repo / ".orchestra" / "runs" / run_id / "a.1.log").read_text()
    assert "ORCHESTRA-SCRIPTED-RESULT" in log and "test -f a.txt" in log


def test_attempts_run_only_on_nodes_that_advertise_their_tool(both_runs, ray_cluster):
    repo, run_id = both_runs["ray"]
    ended = rows(
        repo,
        "SELECT task_id, attempt, payload FROM events WHERE run_id = ? AND type = 'ray.ended'"
        " ORDER BY task_id, attempt",
        run_id,
    )
    nodes = {(r["task_id"], r["attempt"]): json.loads(r["payload"])["node"] for r in ended}
    scripted = ray_cluster.node_id
    assert nodes == {
        ("a", 1): scripted,
        ("b", 1): scripted,
        ("b", 2): scripted,
        ("c", 1): scripted,
        ("c", 2): scripted,
        ("both", 1): ray_cluster.head_id,
        ("listing", 1): ray_cluster.head_id,
    }
    submitted = rows(
        repo, "SELECT payload FROM events WHERE run_id = ? AND type = 'ray.submitted'", run_id
    )
    assert len(submitted) == 7
    payload = json.loads(submitted[0]["payload"])
    assert set(payload) == {"task", "object", "job", "resource"}


def test_show_says_on_which_node_and_host_each_attempt_ran(both_runs, ray_cluster):
    repo, run_id = both_runs["ray"]

    shown = run_orchestra("show", run_id, "--json", cwd=repo)
    text = run_orchestra("show", run_id, cwd=repo).stdout

    assert shown.returncode == 0, shown.stderr
    placed = {
        (step["task"], attempt["number"]): (attempt["node"], attempt["host"])
        for step in json.loads(shown.stdout)["steps"]
        for attempt in step["attempts"]
    }
    here, scripted, head = socket.gethostname(), ray_cluster.node_id, ray_cluster.head_id
    assert placed == {
        ("a", 1): (scripted, here),
        ("b", 1): (scripted, here),
        ("b", 2): (scripted, here),
        ("c", 1): (scripted, here),
        ("c", 2): (scripted, here),
        ("both", 1): (head, here),
        ("listing", 1): (head, here),
    }
    assert text.count(f"  on {here}") == 7
    # the local executor's attempts ran here, where orchestra is: no place is claimed
    local_repo, local_run = both_runs["local"]
    local = json.loads(run_orchestra("show", local_run, "--json", cwd=local_repo).stdout)
    assert {a["host"] for step in local["steps"] for a in step["attempts"]} == {None}


def test_a_finished_run_leaves_nothing_in_the_nodes_temporary_directory(both_runs):
    # a node keeps a run's repository copy and worktrees under $TMPDIR/orchestra-ray/runs
    # while the run lasts (a tool's own directory, which none of these tools use, stays)
    assert not (Path(NODE_TMPDIR) / "orchestra-ray").exists()


def test_a_node_that_dies_mid_attempt_gets_the_attempt_retried_elsewhere(tmp_path):
    local = start_cluster({"tool:shell": 1}, {"tool:scripted": 1})
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[defaults]\nbackoff = { initial = 0.1, jitter = false }\n'
        '[[tasks]]\nid = "slow"\nprompt = "p"\ntool = "scripted"\n'
        'files = { create = ["slow.txt"] }\n'
    )
    script = write_tool_script(
        tmp_path / "scripted.toml",
        [
            {"action": "succeed", "seconds": 20, "edit": {"path": "slow.txt", "content": "1\n"}},
            {"action": "succeed", "edit": {"path": "slow.txt", "content": "2\n"}},
        ],
    )
    env = {**local.env(**scripted_tools_env(scripted=script))}
    argv = ["run", "ws.toml", "--json", "--executor", "ray", "--ray-address", local.address]
    process = subprocess.Popen(
        [orchestra_program(), *argv],
        cwd=repo,
        env={**_inherited(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = None
    try:
        _wait_for(lambda: len(tool_calls(script)) == 1, "the first attempt to start")
        run_id = tool_calls(script)[0]["run"]
        with node_environment():
            spare = local.cluster.add_node(num_cpus=1, resources={"tool:scripted": 1})
        local.cluster.remove_node(local.node, allow_graceful=False)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        if run_id is not None:  # the dead node's tool, orphaned
            stop_process_groups(processes_of_run(run_id).values(), grace=0.5)
        local.shutdown()

    assert process.returncode == 0, stderr
    attempts = rows(
        repo, "SELECT number, outcome, error_class, message FROM attempts ORDER BY number"
    )
    assert [(a["number"], a["outcome"], a["error_class"]) for a in attempts] == [
        (1, "crashed", "crashed"),
        (2, "succeeded", None),
    ]
    assert "Ray node running the attempt was lost" in attempts[0]["message"]
    ended = rows(
        repo, "SELECT attempt, payload FROM events WHERE type = 'ray.ended' ORDER BY attempt"
    )
    assert json.loads(ended[1]["payload"])["node"] == spare.node_id
    assert git(repo, "show", f"orchestra/{json.loads(stdout)['run']}:slow.txt") == "2"
    # Ray's news of the dead node reach a piped stderr as plain text, not colour codes
    assert "\x1b[" not in stderr


def _inherited() -> dict[str, str]:
    import os

    return {name: value for name, value in os.environ.items() if not name.startswith("ORCHESTRA_")}


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_resume_cancels_what_a_dead_orchestrator_left_on_the_cluster(tmp_path, ray_cluster):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "slow"\nprompt = "p"\ntool = "scripted"\n'
        'files = { create = ["slow.txt"] }\n'
    )
    script = write_tool_script(
        tmp_path / "scripted.toml",
        [
            {"action": "succeed", "seconds": 30, "edit": {"path": "slow.txt", "content": "1\n"}},
            {"action": "succeed", "edit": {"path": "slow.txt", "content": "2\n"}},
        ],
    )
    env = {**_inherited(), **ray_cluster.env(**scripted_tools_env(scripted=script))}
    argv = ["run", "ws.toml", "--json", "--executor", "ray", "--ray-address", ray_cluster.address]
    process = subprocess.Popen(
        [orchestra_program(), *argv],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: len(tool_calls(script)) == 1, "the first attempt to start")
    finally:
        process.kill()  # the orchestrator dies; its attempt's tool goes on, on the node
        process.wait()
    run_id = tool_calls(script)[0]["run"]

    resumed = run_orchestra(
        "resume", run_id, "--json", "--ray-address", ray_cluster.address, cwd=repo, env=env
    )

    assert resumed.returncode == 0, resumed.stderr
    attempts = rows(repo, "SELECT number, outcome FROM attempts ORDER BY number")
    assert [tuple(a) for a in attempts] == [(1, "interrupted"), (2, "succeeded")]
    canceled = rows(repo, "SELECT task_id, attempt FROM events WHERE type = 'ray.canceled'")
    assert [tuple(c) for c in canceled] == [("slow", 1)]
    assert not processes_of_run(run_id)  # nothing of the dead attempt runs on
    assert git(repo, "show", f"orchestra/{run_id}:slow.txt") == "2"
    assert [call["attempt"] for call in tool_calls(script)] == [1, 2]


def test_ctrl_c_stops_the_attempt_on_its_node(tmp_path, ray_cluster):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "hang"\nprompt = "p"\ntool = "scripted"\n'
    )
    script = write_tool_script(tmp_path / "scripted.toml", [{"action": "hang", "seconds": 60}])
    env = {**_inherited(), **ray_cluster.env(**scripted_tools_env(scripted=script))}
    argv = ["run", "ws.toml", "--json", "--executor", "ray", "--ray-address", ray_cluster.address]
    process = subprocess.Popen(
        [orchestra_program(), *argv], cwd=repo, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        _wait_for(lambda: len(tool_calls(script)) == 1, "the attempt to start")
        run_id = tool_calls(script)[0]["run"]
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130
    assert json.loads(stdout)["state"] == "canceled"
    (attempt,) = rows(repo, "SELECT outcome FROM attempts")
    assert attempt["outcome"] == "canceled"
    _wait_for(lambda: not processes_of_run(run_id), "the tool on the node to be stopped", 20)


def test_an_address_nothing_answers_on_is_refused_at_once_and_resume_goes_elsewhere(
    tmp_path, ray_cluster
):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "t"\ncommand = ["sh", "-c", "echo t > t.txt"]\n'
        'files = { create = ["t.txt"] }\n'
    )
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"

    started = time.monotonic()
    finished = run_orchestra(
        "run", "ws.toml", "--executor", "ray", "--ray-address", address, cwd=repo
    )

    assert finished.returncode == 2
    assert f"error: executor 'ray': no Ray cluster answers at {address}" in finished.stderr
    assert time.monotonic() - started < 30
    (run,) = rows(repo, "SELECT id FROM runs")
    resumed = run_orchestra(
        *("resume", run["id"], "--json", "--ray-address", ray_cluster.address),
        cwd=repo,
        env=ray_cluster.env(),
    )
    assert resumed.returncode == 0, resumed.stderr
    assert git(repo, "show", f"orchestra/{run['id']}:t.txt") == "t"


def test_secrets_come_from_the_nodes_environment_not_the_orchestrators(tmp_path, ray_cluster):
    name, on_the_node = NODE_SECRET
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    (repo / "orchestra.toml").write_text(f'[tools.shell]\npass_env = ["{name}"]\n')
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "secret"\n'
        f'command = ["sh", "-c", "test \\"${name}\\" = {on_the_node} && echo seen"]\n'
    )
    env = ray_cluster.env(**{name: "the-orchestrators-token"})
    argv = ["run", "ws.toml", "--json", "--executor", "ray", "--ray-address", ray_cluster.address]

    finished = run_orchestra(*argv, cwd=repo, env=env)

    assert finished.returncode == 0, finished.stdout + finished.stderr
    run_id = json.loads(finished.stdout)["run"]
    log = (repo / ".orchestra" / "runs" / run_id / "secret.1.log").read_text()
    assert "seen" in log and on_the_node not in log  # and redacted on the node
