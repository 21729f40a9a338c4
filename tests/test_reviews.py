"""Review gates through real `orchestra run` processes, real git repositories and scripted
tools: a second tool reads each change before it lands; what it asks for reaches the next
attempt; its edits never land; a reviewer that fails never approves; its cost counts."""

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from orchestra.engine.review_text import UnreadableVerdict, read_verdict
from orchestra.testing import (
    make_git_repo,
    run_orchestra,
    scripted_tools_env,
    tool_calls,
    write_tool_script,
)

APPROVE = {"answer": '{"verdict": "approve", "comments": "Does what the task asks."}'}


def reject(comments: str, **more) -> dict:
    return {"answer": json.dumps({"verdict": "request_changes", "comments": comments}), **more}


def edit(path: str, content: str, **more) -> dict:
    return {"edit": {"path": path, "content": content}, **more}


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def rows(project: Path, query: str, *args):
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


def reviews_of(project: Path, task: str = "t"):
    return rows(project, "SELECT * FROM reviews WHERE task_id = ? ORDER BY id", task)


def attempts_of(project: Path, task: str = "t"):
    return rows(project, "SELECT * FROM attempts WHERE task_id = ? ORDER BY number", task)


def state_of(project: Path, task: str = "t"):
    return rows(project, "SELECT state, reason FROM steps WHERE task_id = ?", task)[0]


def run_branch_file(repo: Path, path: str) -> str:
    (run_id,) = rows(repo, "SELECT id FROM runs ORDER BY created_at DESC LIMIT 1")[0]
    return git(repo, "show", f"orchestra/{run_id}:{path}")


def project(tmp_path: Path, tasks: str, *, defaults: str = "", config: str = "") -> Path:
    repo = make_git_repo(tmp_path / "repo", {"app.py": "VALUE = 0\n"})
    if "backoff" not in defaults:  # a retry need not wait here
        defaults += '\nbackoff = { initial = "0s" }'
    (repo / "ws.toml").write_text(f'id = "w"\n[defaults]\n{defaults}\n{tasks}')
    if config:
        (repo / "orchestra.toml").write_text(config)
    return repo


def run(repo: Path, *arguments: str, **scripts):
    return run_orchestra(
        "run", "ws.toml", "--quiet", *arguments, cwd=repo, env=scripted_tools_env(**scripts)
    )


TASK = 'id = "t"\nprompt = "Set VALUE to 2"\ntool = "alpha"\n'


def test_an_approved_change_lands_and_the_reviewer_read_the_diff_checks_and_guidelines(
    tmp_path,
):
    repo = project(
        tmp_path,
        f"[[tasks]]\n{TASK}" + "checks = [\"python3 -c 'print(123 + 321)'\"]\n",
        defaults='review = { tools = ["beta"], prompt = "No print statements." }',
    )
    alpha = write_tool_script(tmp_path / "alpha.toml", [edit("app.py", "VALUE = 2\n")])
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[APPROVE])

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 0, result.stderr
    assert run_branch_file(repo, "app.py") == "VALUE = 2\n"
    (review,) = reviews_of(repo)
    assert (review["tool"], review["verdict"], review["landed"]) == ("beta", "approve", 1)
    assert review["comments"] == "Does what the task asks."
    assert review["route_reason"] == "beta is the only tool that may review it"
    assert Path(review["log_path"]).name == "t.1.review.log"
    (asked,) = [call for call in tool_calls(beta) if call["kind"] == "review"]
    assert "Set VALUE to 2" in asked["prompt"]
    assert "+VALUE = 2" in asked["prompt"]  # the diff
    assert "444" in asked["prompt"]  # the checks' output
    assert "No print statements." in asked["prompt"]  # the team's guidelines
    assert '"verdict": "request_changes"' in asked["prompt"]  # the format asked for
    assert asked["cwd"] != str(repo)  # in the change's worktree, not the user's checkout
    kinds = [row["type"] for row in rows(repo, "SELECT type FROM events ORDER BY seq")]
    assert kinds.index("review.started") < kinds.index("review.approved")
    assert kinds.index("review.approved") < kinds.index("step.succeeded")


def test_a_rejection_sends_the_comments_to_the_next_attempt_and_its_edit_never_lands(tmp_path):
    repo = project(tmp_path, f"[[tasks]]\n{TASK}", defaults='review = { tools = ["beta"] }')
    alpha = write_tool_script(
        tmp_path / "alpha.toml", [edit("app.py", "VALUE = 1\n"), edit("app.py", "VALUE = 2\n")]
    )
    beta = write_tool_script(
        tmp_path / "beta.toml",
        [{}],
        reviews=[
            reject("VALUE must be 2, not 1.", edit=edit("app.py", "REVIEWER WAS HERE\n")["edit"]),
            APPROVE,
        ],
    )

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 0, result.stderr
    first, second = attempts_of(repo)
    assert (first["outcome"], first["error_class"]) == ("failed", "review_rejected")
    assert first["message"] == "beta asked for changes: VALUE must be 2, not 1."
    assert second["outcome"] == "succeeded"
    rejected, approved = reviews_of(repo)
    assert (rejected["round"], rejected["verdict"], rejected["landed"]) == (1, "request_changes", 0)
    assert "+REVIEWER WAS HERE" in rejected["edits"]  # kept for the record
    assert (approved["round"], approved["verdict"], approved["landed"]) == (2, "approve", 1)
    # the comments, and the diff they refer to, reached the author's second attempt
    retry = [call for call in tool_calls(alpha) if call["kind"] == "attempt"][1]
    assert "VALUE must be 2, not 1." in retry["feedback"]
    assert "+VALUE = 1" in retry["feedback"]
    # the reviewer's edit is nowhere on the run branch
    assert run_branch_file(repo, "app.py") == "VALUE = 2\n"
    assert "REVIEWER" not in git(repo, "log", "-p", "--all")
    (event,) = rows(repo, "SELECT payload FROM events WHERE type = 'review.rejected'")
    assert json.loads(event["payload"])["edits_discarded"] == ["app.py"]


def test_a_change_rejected_max_rounds_times_fails_the_task_and_lands_nothing(tmp_path):
    repo = project(
        tmp_path,
        f"[[tasks]]\n{TASK}max_attempts = 5\n",
        defaults='review = { tools = ["beta"], max_rounds = 2 }',
    )
    alpha = write_tool_script(tmp_path / "alpha.toml", [edit("app.py", "VALUE = 1\n")])
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[reject("Still wrong.")])

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 1
    assert [row["verdict"] for row in reviews_of(repo)] == ["request_changes"] * 2
    assert len(attempts_of(repo)) == 2  # max_rounds, not max_attempts, ended it
    state = state_of(repo)
    assert state["state"] == "failed"
    assert "sent back 2 time(s), as many as max_rounds = 2 allows" in state["reason"]
    assert "Still wrong." in state["reason"]
    assert "orchestra/" not in git(repo, "branch", "--list", "orchestra/*")  # nothing merged


def test_a_review_that_is_not_required_lands_the_change_on_its_last_round_and_says_so(tmp_path):
    repo = project(
        tmp_path,
        f"[[tasks]]\n{TASK}",
        defaults='review = { tools = ["beta"], max_rounds = 1, required = false }',
    )
    alpha = write_tool_script(tmp_path / "alpha.toml", [edit("app.py", "VALUE = 1\n")])
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[reject("I would use 2.")])

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 0, result.stderr
    (review,) = reviews_of(repo)
    assert (review["verdict"], review["landed"]) == ("request_changes", 1)
    assert run_branch_file(repo, "app.py") == "VALUE = 1\n"
    (event,) = rows(repo, "SELECT payload FROM events WHERE type = 'review.rejected'")
    assert json.loads(event["payload"])["landed"] is True


@pytest.mark.parametrize(
    "answer",
    [
        "Looks good to me!",  # no verdict at all
        '{"verdict": "lgtm", "comments": ""}',  # not a verdict orchestra knows
        '{"verdict": "approve"}\n{"verdict": "request_changes", "comments": "x"}',  # both
    ],
)
def test_an_unreadable_verdict_is_invalid_output_and_never_an_approval(tmp_path, answer):
    repo = project(
        tmp_path, f"[[tasks]]\n{TASK}max_attempts = 1\n", defaults='review = { tools = ["beta"] }'
    )
    alpha = write_tool_script(tmp_path / "alpha.toml", [edit("app.py", "VALUE = 2\n")])
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[{"answer": answer}])

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 1
    (review,) = reviews_of(repo)
    assert (review["outcome"], review["error_class"], review["verdict"]) == (
        "failed",
        "invalid_output",
        None,
    )
    (attempt,) = attempts_of(repo)
    assert attempt["error_class"] == "review_failed"
    assert "the review by beta failed (invalid_output" in attempt["message"]
    assert state_of(repo)["state"] == "failed"
    assert "orchestra/" not in git(repo, "branch", "--list", "orchestra/*")
    assert rows(repo, "SELECT type FROM events WHERE type = 'review.failed'")


def test_a_failed_reviewer_is_passed_over_and_an_open_breaker_sends_the_next_task_elsewhere(
    tmp_path,
):
    repo = project(
        tmp_path,
        f'[[tasks]]\n{TASK}[[tasks]]\nid = "u"\nprompt = "More"\ntool = "alpha"\n'
        'depends_on = ["t"]\n',
        defaults='review = { tools = ["beta", "gamma"] }\nbackoff = { initial = "0s" }',
        config="[tools.beta]\nbreaker_failures = 1\nbreaker_cooldown = 600\n",
    )
    alpha = write_tool_script(
        tmp_path / "alpha.toml",
        [{}],
        tasks={"t": [edit("app.py", "VALUE = 2\n")], "u": [edit("more.py", "MORE = 1\n")]},
    )
    broken = {"action": "fail", "error_class": "provider_error", "message": "502 Bad Gateway"}
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[broken])
    gamma = write_tool_script(tmp_path / "gamma.toml", [{}], reviews=[APPROVE])

    result = run(repo, alpha=alpha, beta=beta, gamma=gamma)

    assert result.returncode == 0, result.stderr
    failed, approved = reviews_of(repo, "t")
    assert (failed["tool"], failed["error_class"], failed["landed"]) == (
        "beta",
        "provider_error",
        0,
    )
    assert (approved["tool"], approved["verdict"]) == ("gamma", "approve")
    assert "failed the last review with provider_error" in approved["route_reason"]
    (next_task,) = reviews_of(repo, "u")
    assert next_task["tool"] == "gamma"
    assert "beta: breaker open" in next_task["route_reason"]
    # the reviewer's failure is its own: the author's breaker stays closed
    breakers = {row["tool"]: row["state"] for row in rows(repo, "SELECT * FROM breakers")}
    assert breakers.get("beta") == "open" and breakers.get("alpha", "closed") == "closed"


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_a_task_whose_only_reviewer_is_behind_an_open_breaker_waits_for_it(tmp_path):
    repo = project(
        tmp_path,
        f'[[tasks]]\n{TASK}[[tasks]]\nid = "u"\nprompt = "More"\ntool = "alpha"\n'
        'depends_on = ["t"]\n',
        defaults='review = { tools = ["beta"] }\nbackoff = { initial = "0s" }',
        config="[tools.beta]\nbreaker_failures = 1\nbreaker_cooldown = 1\n",
    )
    alpha = write_tool_script(
        tmp_path / "alpha.toml",
        [{}],
        tasks={"t": [edit("app.py", "VALUE = 2\n")], "u": [edit("more.py", "MORE = 1\n")]},
    )
    broken = {"action": "fail", "error_class": "provider_error", "message": "502 Bad Gateway"}
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[broken, APPROVE])

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 0, result.stderr
    failed, approved = reviews_of(repo, "t")
    assert failed["error_class"] == "provider_error" and approved["verdict"] == "approve"
    # the retry waited for beta's breaker (1 s) rather than going unreviewed
    assert approved["started_at"] - failed["ended_at"] >= 0.9
    kinds = [row["type"] for row in rows(repo, "SELECT type FROM events ORDER BY seq")]
    assert "breaker.opened" in kinds


def test_a_reviewer_that_made_the_change_is_refused_unless_self_review_is_set(tmp_path):
    repo = project(tmp_path, f"[[tasks]]\n{TASK}", defaults='review = { tools = ["alpha"] }')
    alpha = write_tool_script(tmp_path / "alpha.toml", [edit("app.py", "VALUE = 2\n")])

    result = run(repo, alpha=alpha)

    assert result.returncode == 1
    state = state_of(repo)
    assert state["state"] == "failed"
    assert state["reason"] == "no tool may review it (alpha: made the change)"
    assert tool_calls(alpha) == []  # refused before the tool ran

    (repo / "ws.toml").write_text(
        (repo / "ws.toml")
        .read_text()
        .replace('tools = ["alpha"]', 'tools = ["alpha"], self_review = true')
    )
    alpha = write_tool_script(
        tmp_path / "alpha.toml", [edit("app.py", "VALUE = 2\n")], reviews=[APPROVE]
    )
    assert run(repo, alpha=alpha).returncode == 0


def test_the_budget_counts_what_the_reviewers_spent(tmp_path):
    tasks = "".join(
        f'[[tasks]]\nid = "{name}"\nprompt = "p"\ntool = "alpha"\n'
        + (f'depends_on = ["{after}"]\n' if after else "")
        for name, after in (("a", None), ("b", "a"), ("c", "b"))
    )
    repo = project(
        tmp_path,
        tasks,
        defaults='review = { tools = ["beta"] }\nbudget = { cost = 0.25 }',
    )
    cheap = {"usage": {"input_tokens": 100, "output_tokens": 10, "cost_usd": 0.01}}
    alpha = write_tool_script(
        tmp_path / "alpha.toml",
        [{}],
        tasks={name: [edit(f"{name}.py", "x = 1\n", **cheap)] for name in "abc"},
    )
    dear = {"usage": {"input_tokens": 5000, "output_tokens": 500, "cost_usd": 0.2}}
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[{**APPROVE, **dear}])

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 1
    states = {row["task_id"]: row["state"] for row in rows(repo, "SELECT * FROM steps")}
    # a's attempt and review cost 0.21; b's review takes the run past 0.25: c never starts
    assert states == {"a": "succeeded", "b": "succeeded", "c": "skipped"}
    assert "budget" in state_of(repo, "c")["reason"]
    (run_row,) = rows(repo, "SELECT * FROM events WHERE type = 'run.failed'")
    assert json.loads(run_row["payload"])["cost"] == pytest.approx(0.42)


def test_review_false_on_a_task_and_an_inplace_workspace(tmp_path):
    repo = project(
        tmp_path,
        f'[[tasks]]\n{TASK}review = false\n[[tasks]]\nid = "u"\nprompt = "p"\ntool = "alpha"\n'
        'workspace = "inplace"\n',
        defaults='review = { tools = ["beta"] }',
    )
    alpha = write_tool_script(
        tmp_path / "alpha.toml",
        [{}],
        tasks={"t": [edit("app.py", "VALUE = 2\n")], "u": [edit("u.py", "u = 1\n")]},
    )
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[APPROVE])

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 1
    assert state_of(repo, "t")["state"] == "succeeded"
    assert reviews_of(repo, "t") == []  # review = false: it landed unread
    state = state_of(repo, "u")
    assert state["state"] == "failed"
    assert "workspace 'inplace' cannot keep a reviewer's edits out" in state["reason"]


def test_plan_shows_the_reviewer_a_run_would_pick_and_why(tmp_path):
    repo = project(
        tmp_path,
        f'[[tasks]]\n{TASK}[[tasks]]\nid = "u"\nprompt = "p"\ntool = "beta"\n',
        defaults='review = { tools = ["alpha", "beta"] }',
    )
    alpha = write_tool_script(tmp_path / "alpha.toml", [{}])
    beta = write_tool_script(tmp_path / "beta.toml", [{}])
    env = scripted_tools_env(alpha=alpha, beta=beta)

    shown = run_orchestra("plan", "ws.toml", cwd=repo, env=env)
    document = run_orchestra("plan", "ws.toml", "--format", "json", cwd=repo, env=env)

    assert shown.returncode == 0, shown.stderr
    assert "review: beta — beta is the only tool left (passed over alpha: made the change)" in (
        shown.stdout
    )
    assert "review: alpha — alpha is the only tool left (passed over beta: made the change)" in (
        shown.stdout
    )
    tasks = {task["id"]: task for task in json.loads(document.stdout)["tasks"]}
    assert tasks["t"]["review"]["tool"] == "beta"
    assert tasks["u"]["review"]["passed_over"] == [
        {"tool": "beta", "kind": "author", "why": "made the change"}
    ]


def test_a_review_table_is_checked_like_the_rest_of_the_file(tmp_path):
    (tmp_path / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "t"\nprompt = "p"\n'
        'review = { tools = ["bad name"], max_rounds = 0, timeout = "0s" }\n'
    )
    (tmp_path / "typo.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "u"\nprompt = "p"\nreview = { tool = ["codex"] }\n'
    )

    result = run_orchestra("validate", "ws.toml", cwd=tmp_path)
    typo = run_orchestra("validate", "typo.toml", cwd=tmp_path)

    assert result.returncode == 2
    assert "task 't': field 'review.tools': invalid name 'bad name'" in result.stderr
    assert "task 't': field 'review.max_rounds': must be at least 1" in result.stderr
    assert "task 't': field 'review.timeout': must be longer than zero" in result.stderr
    assert typo.returncode == 2
    assert "task 'u': field 'review.tool': unknown key 'tool' (did you mean 'tools'?)" in (
        typo.stderr
    )
    assert "Traceback" not in result.stderr + typo.stderr


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"verdict": "approve", "comments": "fine"}', ("approve", "fine")),
        ('I read it.\n```json\n{"verdict": "approve", "comments": ""}\n```', ("approve", "")),
        (
            '{\n  "verdict": "request_changes",\n  "comments": "add a test"\n}',
            ("request_changes", "add a test"),
        ),
    ],
)
def test_a_verdict_is_read_from_the_answer(answer, expected):
    assert read_verdict(answer) == expected


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("", "no answer"),
        ("LGTM", "holds no"),
        ('{"verdict": "approve", "comments": 3}', "not a string"),
        ('{"verdict": "request_changes", "comments": "  "}', "without saying which"),
        ('{"verdict": "approve",, "comments": "x"}', "not valid JSON"),
        ('{"verdict": "approve"} {"verdict": "request_changes", "comments": "no"}', "both"),
    ],
)
def test_an_answer_without_one_clear_verdict_is_refused(answer, why):
    with pytest.raises(UnreadableVerdict, match=why):
        read_verdict(answer)


def test_a_run_killed_while_its_reviewer_reads_lands_nothing_unreviewed_and_resumes(tmp_path):
    import signal

    from orchestra.testing import start_orchestra, wait_for

    repo = project(tmp_path, f"[[tasks]]\n{TASK}", defaults='review = { tools = ["beta"] }')
    alpha = write_tool_script(tmp_path / "alpha.toml", [edit("app.py", "VALUE = 2\n")])
    beta = write_tool_script(tmp_path / "beta.toml", [{}], reviews=[{"action": "hang"}, APPROVE])
    env = scripted_tools_env(alpha=alpha, beta=beta)
    process = start_orchestra("run", "ws.toml", "--plain", cwd=repo, env=env)
    wait_for(
        lambda: any(call["kind"] == "review" for call in tool_calls(beta)),
        what="the reviewer to start",
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    (run_id,) = rows(repo, "SELECT id FROM runs")[0]
    # the change was made and checked, but not reviewed: it is not on the run branch
    assert run_branch_file(repo, "app.py") == "VALUE = 0\n"

    resumed = run_orchestra("resume", run_id, "--plain", cwd=repo, env=env)

    assert resumed.returncode == 0, resumed.stderr
    first, second = attempts_of(repo)
    assert (first["outcome"], first["error_class"]) == ("interrupted", "crashed")
    assert second["outcome"] == "succeeded"
    (review,) = reviews_of(repo)  # the killed review left no verdict behind
    assert (review["attempt"], review["verdict"], review["landed"]) == (2, "approve", 1)
    assert run_branch_file(repo, "app.py") == "VALUE = 2\n"
    assert not git(repo, "branch", "--list", "orchestra-tasks/*")  # no attempt left behind


def test_plan_says_a_project_outside_git_cannot_hold_its_reviews(tmp_path):
    (tmp_path / "ws.toml").write_text(
        'id = "w"\n[defaults]\nreview = { tools = ["beta"] }\n[[tasks]]\n' + TASK
    )
    alpha = write_tool_script(tmp_path / "alpha.toml", [{}])
    beta = write_tool_script(tmp_path / "beta.toml", [{}])

    shown = run_orchestra(
        "plan", "ws.toml", cwd=tmp_path, env=scripted_tools_env(alpha=alpha, beta=beta)
    )

    assert "1 task(s) cannot run on this machine as they are:" in shown.stdout
    assert "t: its changes are to be reviewed, but workspace 'inplace' cannot" in shown.stdout


def test_a_huge_change_or_check_output_is_cut_so_the_question_fits_one_argument():
    from orchestra.engine.review_text import PROMPT_LIMIT, review_prompt
    from orchestra.models import Review, Task

    question = review_prompt(
        Task(id="t", prompt="Rename everything"),
        Review(prompt="Be strict."),
        "+a line of a very large change\n" * 50_000,
        [("pytest", ["x" * 10_000] * 50)],
        1,
    )

    assert len(question) <= PROMPT_LIMIT + 1_000
    assert "[… diff cut here]" in question
    assert question.index("## The change") < question.index("## The checks")
    assert question.rstrip().endswith("not writing.")  # the verdict's format is never cut


def test_a_reviewer_quoting_the_authors_key_leaves_no_trace_of_it(tmp_path):
    key = "sk-author-only-5f3a9c1e7d"
    repo = project(
        tmp_path,
        f"[[tasks]]\n{TASK}max_attempts = 1\n",
        defaults='review = { tools = ["beta"], max_rounds = 1 }',
        config=f'[tools.alpha]\nenv = {{ ALPHA_API_KEY = "{key}" }}\n',
    )
    alpha = write_tool_script(tmp_path / "alpha.toml", [edit("app.py", "VALUE = 2\n")])
    beta = write_tool_script(
        tmp_path / "beta.toml", [{}], reviews=[reject(f"Never hard-code {key} in app.py.")]
    )

    result = run(repo, alpha=alpha, beta=beta)

    assert result.returncode == 1
    (review,) = reviews_of(repo)
    assert review["comments"] == "Never hard-code *** in app.py."
    database = (repo / ".orchestra" / "orchestra.db").read_bytes()
    wal = repo / ".orchestra" / "orchestra.db-wal"
    assert key.encode() not in database + (wal.read_bytes() if wal.exists() else b"")
