"""Routing and resilience through real `orchestra run` processes and scripted tools: retries
and backoff, re-routing, circuit breakers across runs, the FIX loop, the loop breaker,
round_robin's memory, auto's preference, budgets."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from orchestra.testing import run_orchestra, scripted_tools_env, tool_calls, write_tool_script


def rows(project: Path, query: str, *args):
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def attempts_of(project: Path, task: str):
    return rows(project, "SELECT * FROM attempts WHERE task_id = ? ORDER BY number", task)


def run(project: Path, *arguments: str, **scripts):
    return run_orchestra(
        "run", "ws.toml", "--quiet", *arguments, cwd=project, env=scripted_tools_env(**scripts)
    )


def workstream(project: Path, text: str) -> None:
    (project / "ws.toml").write_text('id = "w"\n' + text)


def test_a_rate_limit_waits_for_retry_after_and_auth_is_never_retried(tmp_path):
    limited = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "rate_limit", "retry_after": 1.0}, {}]
    )
    denied = write_tool_script(tmp_path / "beta.toml", [{"action": "fail", "error_class": "auth"}])
    workstream(
        tmp_path,
        """
[defaults]
backoff = { initial = "0.05s", jitter = false }
[[tasks]]
id = "limited"
prompt = "p"
tool = "alpha"
[[tasks]]
id = "denied"
prompt = "p"
tool = "beta"
""",
    )

    result = run(tmp_path, alpha=limited, beta=denied)

    assert result.returncode == 1, result.stderr
    first, second = attempts_of(tmp_path, "limited")
    assert (first["error_class"], first["retry_after"]) == ("rate_limited", 1.0)
    assert second["outcome"] == "succeeded"
    assert second["started_at"] - first["ended_at"] >= 0.95  # retry_after, not the backoff
    (only,) = attempts_of(tmp_path, "denied")
    assert only["error_class"] == "auth"
    assert rows(tmp_path, "SELECT state FROM steps WHERE task_id = 'denied'")[0][0] == "failed"


def test_a_failed_check_is_fed_back_and_the_next_attempt_fixes_it(tmp_path):
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [
            {"action": "succeed", "edit": {"path": "value.txt", "content": "wrong\n"}},
            {"action": "succeed", "edit": {"path": "value.txt", "content": "right\n"}},
        ],
    )
    workstream(
        tmp_path,
        """
[[tasks]]
id = "fix"
prompt = "make value.txt right"
tool = "alpha"
backoff = { initial = "0.5s", jitter = false }
checks = [{ command = "echo found: $(cat value.txt); test \\"$(cat value.txt)\\" = right", shell = true, name = "value" }]
""",
    )

    result = run(tmp_path, alpha=tool)

    assert result.returncode == 0, result.stderr
    first, second = attempts_of(tmp_path, "fix")
    assert first["error_class"] == "check_failed" and "found: wrong" in first["feedback"]
    assert second["started_at"] - first["ended_at"] >= 0.5  # the backoff's initial wait
    calls = tool_calls(tool)
    assert calls[0]["feedback"] is None
    assert "The check `value` exited 1" in calls[1]["feedback"]
    assert "found: wrong" in calls[1]["feedback"]
    assert "found: wrong" in calls[1]["prompt"]


def test_the_same_failure_twice_quarantines_the_task_and_skips_its_dependents(tmp_path):
    tool = write_tool_script(
        tmp_path / "alpha.toml",
        [{"action": "succeed", "edit": {"path": "value.txt", "content": "wrong\n"}}],
    )
    workstream(
        tmp_path,
        """
[[tasks]]
id = "stuck"
prompt = "p"
tool = "alpha"
max_attempts = 5
backoff = { initial = "0.01s", jitter = false }
checks = [{ command = "cat value.txt; false", shell = true }]
[[tasks]]
id = "after"
command = ["true"]
depends_on = ["stuck"]
""",
    )

    result = run(tmp_path, alpha=tool)

    assert result.returncode == 1
    states = {row["task_id"]: row for row in rows(tmp_path, "SELECT * FROM steps")}
    assert states["stuck"]["state"] == "quarantined"
    assert states["stuck"]["reason"].startswith("the same failure 2 times in a row: check")
    assert (states["after"]["state"], states["after"]["reason"]) == (
        "skipped",
        "dependency stuck quarantined",
    )
    assert len(attempts_of(tmp_path, "stuck")) == 2


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_a_breaker_opens_after_three_faults_and_a_later_run_recovers_through_a_trial(tmp_path):
    (tmp_path / "orchestra.toml").write_text("[tools.alpha]\nbreaker_cooldown = 1.5\n")
    failing = write_tool_script(
        tmp_path / "failing.toml", [{"action": "fail", "error_class": "provider_error"}]
    )
    workstream(
        tmp_path,
        "".join(
            f'[[tasks]]\nid = "t{i}"\nprompt = "p"\ntool = "alpha"\nmax_attempts = 1\n'
            for i in range(4)
        ),
    )

    first = run(tmp_path, "--max-parallel", "1", alpha=failing)

    assert first.returncode == 1
    tried = rows(tmp_path, "SELECT * FROM attempts ORDER BY id")
    assert [row["task_id"] for row in tried] == ["t0", "t1", "t2", "t3"]
    opened = [
        json.loads(row["payload"])
        for row in rows(tmp_path, "SELECT * FROM events WHERE type = 'breaker.opened'")
    ]
    # three faults open it; t3 waits out the cool-down (it does not fail for want of a
    # tool), is the half-open trial, fails, and opens it again
    assert [event["failures"] for event in opened] == [3, 4]
    assert tried[3]["started_at"] >= opened[0]["until"] - 0.01
    assert tried[3]["started_at"] - tried[2]["ended_at"] >= 1.4
    tools = json.loads(
        run_orchestra("tools", "--json", cwd=tmp_path, env=scripted_tools_env(alpha=failing)).stdout
    )
    breaker = next(row for row in tools if row["name"] == "alpha")["breaker"]
    assert breaker["state"] in ("open", "half_open")

    # a second process: the breaker holds until its cool-down, then one trial closes it
    working = write_tool_script(tmp_path / "working.toml", [{}])
    workstream(tmp_path, '[[tasks]]\nid = "later"\nprompt = "p"\ntool = "alpha"\n')
    second = run(tmp_path, alpha=working)

    assert second.returncode == 0, second.stderr
    (attempt,) = attempts_of(tmp_path, "later")
    assert attempt["outcome"] == "succeeded"
    state = rows(tmp_path, "SELECT * FROM breakers WHERE tool = 'alpha'")[0]
    assert state["state"] == "closed" and state["failures"] == 0
    kinds = [row["type"] for row in rows(tmp_path, "SELECT type FROM events ORDER BY at, seq")]
    assert kinds.index("breaker.half_open") < kinds.index("breaker.closed")


def test_tools_reset_closes_an_open_breaker(tmp_path):
    failing = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "rate_limit", "retry_after": 600}]
    )
    workstream(tmp_path, '[[tasks]]\nid = "t"\nprompt = "p"\ntool = "alpha"\nmax_attempts = 1\n')
    run(tmp_path, alpha=failing)
    env = scripted_tools_env(alpha=failing)
    assert "open until" in run_orchestra("tools", cwd=tmp_path, env=env).stdout

    reset = run_orchestra("tools", "reset", "alpha", cwd=tmp_path, env=env)

    assert reset.returncode == 0 and "breaker closed (was open)" in reset.stdout
    assert "open until" not in run_orchestra("tools", cwd=tmp_path, env=env).stdout
    saved = rows(tmp_path, "SELECT * FROM breakers WHERE tool = 'alpha'")[0]
    assert (saved["state"], saved["failures"], saved["open_until"]) == ("closed", 0, None)
    assert saved["last_error_class"] is None  # a fresh start: nothing of the failures kept
    again = run_orchestra("tools", "reset", "alpha", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "alpha: breaker already closed" in again.stdout
    unknown = run_orchestra("tools", "reset", "nope", cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "no tool named 'nope'" in unknown.stderr


def test_retry_with_other_tool_routes_the_retry_elsewhere(tmp_path):
    alpha = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "fail", "error_class": "invalid_output"}]
    )
    beta = write_tool_script(tmp_path / "beta.toml", [{}])
    workstream(
        tmp_path,
        """
[[tasks]]
id = "t"
prompt = "p"
tools = ["alpha", "beta"]
routing = "fixed"
retry_with_other_tool = true
backoff = { initial = "0.01s", jitter = false }
""",
    )

    result = run(tmp_path, alpha=alpha, beta=beta)

    assert result.returncode == 0, result.stderr
    assert [row["tool"] for row in attempts_of(tmp_path, "t")] == ["alpha", "beta"]
    assert "retry_with_other_tool" not in attempts_of(tmp_path, "t")[1]["route_reason"]


def test_round_robin_continues_where_the_last_run_stopped(tmp_path):
    alpha = write_tool_script(tmp_path / "alpha.toml", [{}])
    beta = write_tool_script(tmp_path / "beta.toml", [{}])
    workstream(
        tmp_path,
        '[[tasks]]\nid = "t"\nprompt = "p"\ntools = ["alpha", "beta"]\nrouting = "round_robin"\n',
    )

    for _ in range(3):
        assert run(tmp_path, alpha=alpha, beta=beta).returncode == 0

    used = [row["tool"] for row in rows(tmp_path, "SELECT tool FROM attempts ORDER BY id")]
    assert used == ["alpha", "beta", "alpha"]


def test_auto_tries_each_tool_then_prefers_the_one_that_succeeds(tmp_path):
    alpha = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "fail", "error_class": "invalid_output"}]
    )
    beta = write_tool_script(tmp_path / "beta.toml", [{}])
    workstream(
        tmp_path,
        '[defaults]\ntools = ["alpha", "beta"]\nrouting = "auto"\nmax_attempts = 1\n'
        + "".join(f'[[tasks]]\nid = "t{i}"\nprompt = "p"\n' for i in range(6)),
    )

    run(tmp_path, "--max-parallel", "1", alpha=alpha, beta=beta)

    used = [row["tool"] for row in rows(tmp_path, "SELECT tool FROM attempts ORDER BY id")]
    assert used[:2] == ["alpha", "beta"]  # each untried tool gets tried
    assert used[2:] == ["beta"] * 4
    reason = rows(tmp_path, "SELECT route_reason FROM attempts ORDER BY id")[-1][0]
    assert reason.startswith("auto: beta ") and "alpha 0/1" in reason
    shown = run_orchestra(
        "show",
        rows(tmp_path, "SELECT id FROM runs")[0][0],
        cwd=tmp_path,
        env=scripted_tools_env(alpha=alpha, beta=beta),
    )
    assert "routed: auto: beta" in shown.stdout


def test_a_run_budget_stops_new_work_and_a_task_budget_stops_retries(tmp_path):
    paid = write_tool_script(
        tmp_path / "alpha.toml", [{"usage": {"input_tokens": 1000, "cost_usd": 0.4}}]
    )
    workstream(
        tmp_path,
        "".join(f'[[tasks]]\nid = "t{i}"\nprompt = "p"\ntool = "alpha"\n' for i in range(5)),
    )

    result = run(tmp_path, "--max-parallel", "1", "--budget-cost", "1.0", alpha=paid)

    assert result.returncode == 1
    states = {row["task_id"]: row for row in rows(tmp_path, "SELECT * FROM steps")}
    assert [states[f"t{i}"]["state"] for i in range(5)] == ["succeeded"] * 3 + ["skipped"] * 2
    assert states["t4"]["reason"] == "budget_exhausted: the run cost 1.20 of its 1.00"
    run_row = rows(tmp_path, "SELECT * FROM runs")[0]
    assert run_row["state"] == "failed" and run_row["error"].startswith("budget_exhausted")
    shown = run_orchestra("show", run_row["id"], cwd=tmp_path, env=scripted_tools_env(alpha=paid))
    assert "usage 3,000 tokens, 1.20 USD of 1.00" in shown.stdout

    # a task's own budget: no retry once its attempts have cost that much
    costly = write_tool_script(
        tmp_path / "beta.toml",
        [{"action": "fail", "error_class": "invalid_output", "usage": {"cost_usd": 0.3}}],
    )
    workstream(
        tmp_path,
        """
[[tasks]]
id = "capped"
prompt = "p"
tool = "beta"
max_attempts = 5
same_failure_limit = 1
budget = { cost = 0.5 }
backoff = { initial = "0.01s", jitter = false }
""",
    )
    assert run(tmp_path, beta=costly).returncode == 1
    assert len(attempts_of(tmp_path, "capped")) == 2
    reason = rows(tmp_path, "SELECT reason FROM steps WHERE task_id = 'capped'")[0][0]
    assert reason == "budget_exhausted: the task cost 0.60 of its 0.50"


def test_a_pytest_check_that_collects_nothing_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    workstream(
        tmp_path,
        f"""
[[tasks]]
id = "t"
command = ["true"]
max_attempts = 1
checks = [{{ command = ["{sys.executable}", "-m", "pytest", "-q", "-p", "no:cacheprovider", "empty"], name = "pytest" }}]
""",
    )

    result = run_orchestra("run", "ws.toml", "--quiet", cwd=tmp_path)

    assert result.returncode == 1
    (attempt,) = attempts_of(tmp_path, "t")
    assert attempt["message"] == (
        "check 'pytest' collected no tests (exit 5): a check that runs nothing fails"
    )


@pytest.mark.parametrize(
    ("given", "t4"),
    [((), "skipped"), (("--budget-cost", "2"), "succeeded")],
    ids=["kept", "changed"],
)
def test_a_resumed_run_keeps_its_budget_unless_resume_gives_another(tmp_path, given, t4):
    # a budget given to `run` is money the user set aside: a cancel (or a crash) and a
    # resume must not lift it; resume's own --budget-cost replaces it, and what was spent
    # before still counts
    from orchestra.testing import start_orchestra, wait_for

    paid = write_tool_script(
        tmp_path / "alpha.toml", [{"usage": {"input_tokens": 1000, "cost_usd": 0.4}}]
    )
    env = scripted_tools_env(alpha=paid)
    paid_task = 'prompt = "p"\ntool = "alpha"\n'
    workstream(
        tmp_path,
        f'[[tasks]]\nid = "t0"\n{paid_task}'
        f'[[tasks]]\nid = "t1"\ndepends_on = ["t0"]\n{paid_task}'
        '[[tasks]]\nid = "gate"\ndepends_on = ["t1"]\nshell = true\n'
        'command = "while [ ! -e go ]; do sleep 0.05; done"\n'
        f'[[tasks]]\nid = "t3"\ndepends_on = ["gate"]\n{paid_task}'
        f'[[tasks]]\nid = "t4"\ndepends_on = ["t3"]\n{paid_task}',
    )
    process = start_orchestra(
        "run", "ws.toml", "--quiet", "--budget-cost", "1.0", cwd=tmp_path, env=env
    )
    try:
        wait_for(lambda: len(attempts_of_safe(tmp_path, "gate")) == 1)
        (run_id,) = [row["id"] for row in rows(tmp_path, "SELECT id FROM runs")]
        assert run_orchestra("cancel", run_id, cwd=tmp_path, env=env).returncode == 0
        process.wait(timeout=30)
    finally:
        process.kill()
    (tmp_path / "go").write_text("")

    resumed = run_orchestra("resume", run_id, "--quiet", *given, cwd=tmp_path, env=env)

    states = {row["task_id"]: row for row in rows(tmp_path, "SELECT * FROM steps")}
    assert states["t3"]["state"] == "succeeded"
    assert states["t4"]["state"] == t4, resumed.stdout + resumed.stderr
    if t4 == "skipped":
        assert resumed.returncode == 1
        assert states["t4"]["reason"] == "budget_exhausted: the run cost 1.20 of its 1.00"
    else:
        assert resumed.returncode == 0


def attempts_of_safe(project: Path, task: str):
    """The task's attempts, or none while the run database is not there yet."""
    if not (project / ".orchestra" / "orchestra.db").exists():
        return []  # (connecting would make it)
    try:
        return attempts_of(project, task)
    except sqlite3.OperationalError:  # its tables not made yet
        return []
