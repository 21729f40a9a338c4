"""Failover through real `orchestra run` processes and scripted tools: a task that lists
several tools goes on with another one when the tool fails in a way that says the tool is
the problem, by default, and every attempt records truthfully why it got its tool."""

import json
import sqlite3
from pathlib import Path

from orchestra.testing import run_orchestra, scripted_tools_env, write_tool_script

OK = {}
AUTH = {"action": "fail", "error_class": "auth", "message": "401 Unauthorized: key refused"}


def rows(project: Path, query: str, *args):
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def attempts_of(project: Path, task: str):
    return rows(project, "SELECT * FROM attempts WHERE task_id = ? ORDER BY number", task)


def tools_of(project: Path, task: str) -> list[str]:
    return [row["tool"] for row in attempts_of(project, task)]


def state_of(project: Path, task: str):
    return rows(project, "SELECT state, reason FROM steps WHERE task_id = ?", task)[0]


def running_events(project: Path, task: str) -> list[dict]:
    found = rows(
        project,
        "SELECT payload FROM events WHERE type = 'step.running' AND task_id = ? ORDER BY seq",
        task,
    )
    return [json.loads(row["payload"]) for row in found]


def run(project: Path, *arguments: str, **scripts):
    return run_orchestra(
        "run", "ws.toml", "--quiet", *arguments, cwd=project, env=scripted_tools_env(**scripts)
    )


def workstream(project: Path, text: str) -> None:
    (project / "ws.toml").write_text('id = "w"\n' + text)


def test_a_refused_key_sends_the_task_to_the_other_tool_with_no_setting_but_tools(tmp_path):
    alpha = write_tool_script(tmp_path / "alpha.toml", [AUTH])
    beta = write_tool_script(tmp_path / "beta.toml", [OK])
    workstream(
        tmp_path,
        '[defaults]\ntools = ["alpha", "beta"]\n[[tasks]]\nid = "t"\nprompt = "Add a feature"\n',
    )

    result = run(tmp_path, alpha=alpha, beta=beta)

    assert result.returncode == 0, result.stderr
    first, second = attempts_of(tmp_path, "t")
    assert (first["tool"], first["error_class"]) == ("alpha", "auth")
    assert (second["tool"], second["outcome"]) == ("beta", "succeeded")
    why = "beta is the only tool left (passed over alpha: failed the last attempt with auth)"
    assert second["route_reason"] == why
    started = running_events(tmp_path, "t")
    assert "passed_over" not in started[0]
    assert started[1]["why"] == why
    assert started[1]["passed_over"] == [
        {"tool": "alpha", "kind": "failed", "why": "failed the last attempt with auth"}
    ]
    retrying = rows(tmp_path, "SELECT payload FROM events WHERE type = 'step.retrying'")
    assert json.loads(retrying[0]["payload"])["passing_over"] == "alpha"

    run_id = rows(tmp_path, "SELECT id FROM runs")[0][0]
    env = scripted_tools_env(alpha=alpha, beta=beta)
    shown = run_orchestra("show", run_id, cwd=tmp_path, env=env).stdout
    assert f"routed: {why}" in shown
    document = json.loads(run_orchestra("show", run_id, "--json", cwd=tmp_path, env=env).stdout)
    attempts = document["steps"][0]["attempts"]
    assert attempts[0]["passed_over"] == []
    assert attempts[1]["passed_over"][0]["tool"] == "alpha"


def test_every_row_of_the_table_in_one_run(tmp_path):
    # alpha fails each task its own way; beta succeeds at whatever it is given
    (tmp_path / "orchestra.toml").write_text("[tools.alpha]\nbreaker_failures = 100\n")
    fail = lambda name: {"action": "fail", "error_class": name}  # noqa: E731
    wrong = {"action": "succeed", "edit": {"path": "value.txt", "content": "wrong\n"}}
    right = {"action": "succeed", "edit": {"path": "value.txt", "content": "right\n"}}
    alpha = write_tool_script(
        tmp_path / "alpha.toml",
        [OK],
        tasks={
            "missing": [fail("tool_missing")],
            "provider": [fail("provider_error")],
            "slow": [fail("timeout"), fail("timeout")],
            "check": [wrong, right],
            "output": [fail("invalid_output"), OK],
            "scope": [fail("scope_violation")],
            "question": [fail("needs_input")],
            "pinned": [AUTH],
            "overridden": [AUTH],
            "fails-checks": [wrong],
            "context": [fail("context_overflow")],
            "listed": [fail("provider_error")],
        },
    )
    beta = write_tool_script(tmp_path / "beta.toml", [right])
    check = 'checks = ["test \\"$(cat value.txt)\\" = right"]\n'
    tasks = {
        "missing": "",
        "provider": "",
        "slow": "",
        "check": check,
        "output": "",
        "scope": "",
        "question": "",
        "pinned": 'tools = ["alpha"]\n',
        "overridden": 'on_failure = { auth = "stop" }\n',
        "fails-checks": check + 'on_failure = { check_failed = "other" }\n',
        "context": "",
        "listed": 'non_retryable = ["provider_error"]\n',
    }
    workstream(
        tmp_path,
        '[defaults]\ntools = ["alpha", "beta"]\nrouting = "fixed"\nmax_attempts = 3\n'
        'backoff = { initial = "0.01s", jitter = false }\n'
        'on_failure = { context_overflow = "other" }\n'
        + "".join(
            f'[[tasks]]\nid = "{name}"\nprompt = "p"\n{more}' for name, more in tasks.items()
        ),
    )

    result = run(tmp_path, "--max-parallel", "2", alpha=alpha, beta=beta)

    assert result.returncode == 1  # scope, question, pinned, overridden and listed stop
    used = {name: tools_of(tmp_path, name) for name in tasks}
    assert used == {
        # the tool is the problem: the next attempt goes to the other tool
        "missing": ["alpha", "beta"],
        "provider": ["alpha", "beta"],
        "slow": ["alpha", "alpha", "beta"],  # one timeout may be the task's; two are not
        # the task is the problem: the same tool again, told what went wrong
        "check": ["alpha", "alpha"],
        "output": ["alpha", "alpha"],
        # not retried
        "scope": ["alpha"],
        "question": ["alpha"],
        "pinned": ["alpha"],  # auth, and no other tool may run it
        # rows overridden by the task and by [defaults], and the old non_retryable
        "overridden": ["alpha"],
        "fails-checks": ["alpha", "beta"],
        "context": ["alpha", "beta"],
        "listed": ["alpha"],
    }
    assert state_of(tmp_path, "pinned")["reason"] == (
        "401 Unauthorized: key refused (the task allows no other tool)"
    )
    assert attempts_of(tmp_path, "slow")[2]["route_reason"] == (
        "beta is the only tool left (passed over alpha: failed the last attempt with timeout,"
        " twice in a row)"
    )
    # a retry that keeps its tool does not claim the reason of the first attempt's choice
    assert (
        attempts_of(tmp_path, "check")[1]["route_reason"]
        == "alpha again, as for the attempt before (routed then: fixed: first allowed candidate"
        " alpha)"
    )


def test_an_open_breaker_sends_the_next_task_to_the_other_tool(tmp_path):
    # alpha is rate limited for an hour: its breaker opens until then, the task goes to
    # beta at once (no hour's wait), and so does the task after it
    alpha = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "rate_limit", "retry_after": 3600}]
    )
    beta = write_tool_script(tmp_path / "beta.toml", [OK])
    workstream(
        tmp_path,
        '[defaults]\ntools = ["alpha", "beta"]\nrouting = "fixed"\n'
        'backoff = { initial = "0.01s", jitter = false }\n'
        '[[tasks]]\nid = "first"\nprompt = "p"\n'
        '[[tasks]]\nid = "second"\nprompt = "p"\ndepends_on = ["first"]\n',
    )

    result = run(tmp_path, alpha=alpha, beta=beta)

    assert result.returncode == 0, result.stderr
    assert tools_of(tmp_path, "first") == ["alpha", "beta"]
    assert tools_of(tmp_path, "second") == ["beta"]
    first_retry = attempts_of(tmp_path, "first")[1]["route_reason"]
    assert first_retry.startswith(
        "beta is the only tool left (passed over alpha: breaker open until"
    )
    assert first_retry.endswith(
        "and it failed the last attempt with rate_limited (asked to wait 3600s))"
    )
    (second,) = attempts_of(tmp_path, "second")
    assert second["route_reason"].startswith(
        "beta is the only tool left (passed over alpha: breaker open until"
    )
    (passed,) = running_events(tmp_path, "second")[0]["passed_over"]
    opened = rows(tmp_path, "SELECT payload FROM events WHERE type = 'breaker.opened'")
    assert passed["kind"] == "breaker"
    assert passed["until"] == json.loads(opened[0]["payload"])["until"]


def test_a_short_rate_limit_is_waited_out_with_the_same_tool(tmp_path):
    alpha = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "rate_limit", "retry_after": 0.2}, OK]
    )
    beta = write_tool_script(tmp_path / "beta.toml", [OK])
    workstream(
        tmp_path,
        '[[tasks]]\nid = "t"\nprompt = "p"\ntools = ["alpha", "beta"]\nrouting = "fixed"\n',
    )

    assert run(tmp_path, alpha=alpha, beta=beta).returncode == 0
    assert tools_of(tmp_path, "t") == ["alpha", "alpha"]


def test_max_attempts_counts_every_tools_attempts(tmp_path):
    alpha = write_tool_script(tmp_path / "alpha.toml", [AUTH])
    gamma = write_tool_script(tmp_path / "gamma.toml", [{"action": "fail", "error_class": "auth"}])
    beta = write_tool_script(tmp_path / "beta.toml", [OK])
    workstream(
        tmp_path,
        '[defaults]\ntools = ["alpha", "gamma", "beta"]\nrouting = "fixed"\nmax_attempts = 2\n'
        'backoff = { initial = "0.01s", jitter = false }\n'
        '[[tasks]]\nid = "t"\nprompt = "p"\n',
    )

    result = run(tmp_path, alpha=alpha, beta=beta, gamma=gamma)

    assert result.returncode == 1
    assert tools_of(tmp_path, "t") == ["alpha", "gamma"]  # beta would have worked: no budget
    assert attempts_of(tmp_path, "t")[1]["route_reason"] == (
        "fixed: first allowed candidate gamma (passed over alpha: failed the last attempt"
        " with auth)"
    )
    assert state_of(tmp_path, "t")["state"] == "failed"


def test_plan_shows_the_fallback_order_and_marks_an_open_breaker(tmp_path):
    limited = write_tool_script(
        tmp_path / "alpha.toml", [{"action": "rate_limit", "retry_after": 3600}]
    )
    beta = write_tool_script(tmp_path / "beta.toml", [OK])
    gamma = write_tool_script(tmp_path / "gamma.toml", [OK])
    env = scripted_tools_env(alpha=limited, beta=beta, gamma=gamma)
    (tmp_path / "first.toml").write_text(
        'id = "first"\n[[tasks]]\nid = "t"\nprompt = "p"\ntool = "alpha"\nmax_attempts = 1\n'
    )
    assert run_orchestra("run", "first.toml", "--quiet", cwd=tmp_path, env=env).returncode == 1
    workstream(
        tmp_path,
        '[defaults]\ntools = ["beta", "alpha", "gamma"]\nrouting = "fixed"\n'
        '[[tasks]]\nid = "many"\nprompt = "p"\n'
        '[[tasks]]\nid = "one"\nprompt = "p"\ntools = ["gamma"]\n',
    )

    text = run_orchestra("plan", "ws.toml", cwd=tmp_path, env=env).stdout
    document = json.loads(
        run_orchestra("plan", "ws.toml", "--format", "json", cwd=tmp_path, env=env).stdout
    )

    lines = text.splitlines()
    many = next(number for number, line in enumerate(lines) if line.startswith("  many "))
    assert lines[many].startswith(
        "  many  beta   fixed: first allowed candidate beta (passed over alpha: breaker open"
    )
    assert lines[many + 1].startswith("        fallback: alpha (breaker open until ")
    assert lines[many + 1].endswith(", gamma")
    assert lines[many + 2].startswith("  one ")  # a task with one tool has no fallback
    by_id = {task["id"]: task for task in document["tasks"]}
    assert [entry["tool"] for entry in by_id["many"]["fallback"]] == ["alpha", "gamma"]
    assert by_id["many"]["fallback"][0]["breaker"].startswith("breaker open until")
    assert by_id["many"]["fallback"][1]["breaker"] is None
    assert by_id["many"]["passed_over"][0]["kind"] == "breaker"
    assert by_id["one"]["fallback"] == []


def test_the_report_and_the_live_view_say_what_was_passed_over(tmp_path):
    from io import StringIO

    from rich.console import Console

    from orchestra.progress import RunningTask, Snapshot, render, routed_note

    alpha = write_tool_script(tmp_path / "alpha.toml", [AUTH])
    beta = write_tool_script(tmp_path / "beta.toml", [OK])
    env = scripted_tools_env(alpha=alpha, beta=beta)
    workstream(
        tmp_path,
        '[defaults]\ntools = ["alpha", "beta"]\nbackoff = { initial = "0.01s" }\n'
        '[[tasks]]\nid = "t"\nprompt = "p"\n',
    )
    assert run(tmp_path, alpha=alpha, beta=beta).returncode == 0
    run_id = rows(tmp_path, "SELECT id FROM runs")[0][0]
    why = "beta is the only tool left (passed over alpha: failed the last attempt with auth)"

    document = json.loads(
        run_orchestra("report", run_id, "--format", "json", cwd=tmp_path, env=env).stdout
    )
    (task,) = document["tasks"]
    assert task["route_reason"] == why
    assert [attempt["passed_over"] for attempt in task["attempts"]] == [
        [],
        [
            {
                "tool": "alpha",
                "kind": "failed",
                "why": "failed the last attempt with auth",
                "until": None,
            }
        ],
    ]
    markdown = run_orchestra("report", run_id, "--format", "md", cwd=tmp_path, env=env).stdout
    assert why in markdown
    page = tmp_path / "report.html"
    run_orchestra("report", run_id, "-o", str(page), cwd=tmp_path, env=env)
    assert "not alpha: failed the last attempt with auth" in page.read_text()

    # the live view (console sink, status --watch) shows a failover under its row
    assert routed_note(why) == why
    assert routed_note("auto: alpha has no record yet") is None
    snapshot = Snapshot(
        run_id="r1",
        state="running",
        total=1,
        counts={"running": 1},
        running=[RunningTask("t", "beta", 2, 100.0, "editing", routed=why)],
        started=100.0,
    )
    out = StringIO()
    Console(file=out, width=200, color_system=None).print(render(snapshot, now=101.0))
    assert f"routed: {why}" in out.getvalue()


def test_a_tool_that_failed_the_task_earlier_is_not_gone_back_to(tmp_path):
    alpha = write_tool_script(tmp_path / "alpha.toml", [AUTH])
    gamma = write_tool_script(tmp_path / "gamma.toml", [{"action": "fail", "error_class": "auth"}])
    beta = write_tool_script(tmp_path / "beta.toml", [OK])
    workstream(
        tmp_path,
        '[defaults]\ntools = ["alpha", "gamma", "beta"]\nrouting = "fixed"\n'
        'backoff = { initial = "0.01s", jitter = false }\n'
        '[[tasks]]\nid = "t"\nprompt = "p"\n',
    )

    result = run(tmp_path, alpha=alpha, beta=beta, gamma=gamma)

    assert result.returncode == 0, result.stderr
    assert tools_of(tmp_path, "t") == ["alpha", "gamma", "beta"]
    assert attempts_of(tmp_path, "t")[2]["route_reason"] == (
        "beta is the only tool left (passed over alpha: failed attempt 1 with auth;"
        " gamma: failed the last attempt with auth)"
    )
