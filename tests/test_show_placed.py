"""``orchestra show`` says where an attempt ran when its executor recorded it (the event
``attempt.placed``, which the ray executor records for each attempt on a node)."""

from __future__ import annotations

import json

from orchestra.store.database import Store
from orchestra.testing import make_git_repo, run_orchestra


def test_show_prints_the_host_and_node_an_executor_placed_an_attempt_on(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"README.md": "# app\n"})
    (repo / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "here"\ncommand = ["true"]\n'
        '[[tasks]]\nid = "there"\ncommand = ["true"]\n'
    )
    run_id = json.loads(run_orchestra("run", "ws.toml", "--json", cwd=repo).stdout)["run"]
    with Store.open(repo / ".orchestra" / "orchestra.db") as store:
        store.add_event(run_id, "attempt.placed", {"host": "node-b", "node": "ab12"}, "there", 1)

    shown = json.loads(run_orchestra("show", run_id, "--json", cwd=repo).stdout)
    text = run_orchestra("show", run_id, cwd=repo).stdout

    where = {
        step["task"]: [(attempt["host"], attempt["node"]) for attempt in step["attempts"]]
        for step in shown["steps"]
    }
    assert where == {"here": [(None, None)], "there": [("node-b", "ab12")]}
    lines = [line for line in text.splitlines() if line.startswith("  attempt 1")]
    assert len(lines) == 2
    assert not lines[0].endswith("on node-b") and lines[1].endswith("  on node-b")
