"""The SQLite store: schema and migrations, transitions with their events, attempts,
queries, and the run lock, on real database files (and real processes where a process
has to die)."""

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest

from orchestra.errors import OrchestraError
from orchestra.models import Usage
from orchestra.store import (
    RunLocked,
    SchemaTooNew,
    Store,
    StoreError,
    UnknownRun,
)
from orchestra.store import run_writes as store_module
from orchestra.store.lifecycle import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    IllegalTransition,
    RunState,
    StepState,
)
from orchestra.store.migrations import MIGRATIONS, migrate
from orchestra.testing import make_git_repo

TABLES = {"_migrations", "runs", "steps", "attempts", "events", "breakers", "kv"}


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / ".orchestra" / "orchestra.db") as opened:
        yield opened


def new_run(store, tasks=("models", "api", "format")):
    return store.create_run("auth", "auth.toml", "sha256:abc", list(tasks), {"routing": "auto"})


def path_to(table, target):
    """The shortest list of states that leads from pending to ``target``."""
    paths = {table_key(table, "pending"): []}
    frontier = [table_key(table, "pending")]
    while frontier:
        state = frontier.pop(0)
        for following in sorted(table[state]):
            if following not in paths:
                paths[following] = [*paths[state], following]
                frontier.append(following)
    return paths[table_key(table, target)]


def table_key(table, name):
    return next(state for state in table if state == name)


def fake_time(clock):
    """The store's view of the time module, with ``clock`` as time.time."""
    return types.SimpleNamespace(time=clock, gmtime=time.gmtime, strftime=time.strftime)


def event_types(store, run_id):
    return [event.type for event in store.events(run_id)]


def tables(path):
    connection = sqlite3.connect(path)
    try:
        return {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    finally:
        connection.close()


# -- schema and migrations -------------------------------------------------------------


def test_open_creates_directories_schema_and_records_migrations(tmp_path):
    path = tmp_path / "deep" / "er" / "orchestra.db"
    with Store.open(path):
        pass
    assert TABLES <= tables(path)
    connection = sqlite3.connect(path)
    recorded = connection.execute("SELECT name, applied_at FROM _migrations ORDER BY rowid")
    rows = recorded.fetchall()
    connection.close()
    assert [name for name, _ in rows] == [function.__name__ for function in MIGRATIONS]
    assert all(applied_at > 0 for _, applied_at in rows)


def test_wal_foreign_keys_synchronous_and_busy_timeout_are_on(store):
    pragma = store._connection.execute
    assert pragma("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert pragma("PRAGMA foreign_keys").fetchone()[0] == 1
    assert pragma("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert pragma("PRAGMA busy_timeout").fetchone()[0] >= 1000
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        pragma("INSERT INTO steps (run_id, task_id, position, state) VALUES ('no', 't', 0, 'x')")


def test_reopening_keeps_everything(tmp_path):
    path = tmp_path / "orchestra.db"
    with Store.open(path) as first:
        run_id = new_run(first)
        first.claim_run(run_id)
        first.set_run_state(run_id, "running")
        before = (first.run(run_id), first.steps(run_id), first.events(run_id))
    with Store.open(path) as second:
        assert (second.run(run_id), second.steps(run_id), second.events(run_id)) == before
        assert second.run(run_id).settings == {"routing": "auto"}


def test_a_database_of_an_older_version_gets_the_later_migrations(tmp_path):
    path = tmp_path / "orchestra.db"
    connection = sqlite3.connect(path, isolation_level=None)
    assert migrate(connection, MIGRATIONS[:1]) == ["m001_initial"]
    connection.execute(
        "INSERT INTO runs (id, workstream_id, state, created_at) VALUES ('old', 'ws', 'failed', 1)"
    )
    connection.close()
    assert "attempts_by_tool" not in tables(path)

    with Store.open(path) as store:
        assert store.run("old").state is RunState.FAILED
    assert "runs_by_created_at" in tables(path)
    connection = sqlite3.connect(path)
    columns = {row[1] for row in connection.execute("PRAGMA table_info(attempts)")}
    connection.close()
    assert {"tool_version", "route_reason", "capabilities", "feedback"} <= columns
    connection = sqlite3.connect(path)
    names = [name for (name,) in connection.execute("SELECT name FROM _migrations")]
    connection.close()
    assert names == [function.__name__ for function in MIGRATIONS]
    with Store.open(path):  # nothing left to apply, nothing applied twice
        pass


def test_migrations_that_fail_leave_the_database_as_it_was(tmp_path):
    path = tmp_path / "orchestra.db"

    def broken(connection):
        connection.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")

    connection = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(connection, [*MIGRATIONS[:2], broken])
    assert list(connection.execute("SELECT name FROM _migrations")) == []
    assert not {"runs", "half_done"} & set(tables(path))
    assert migrate(connection, MIGRATIONS[:2]) == [f.__name__ for f in MIGRATIONS[:2]]
    connection.close()


def test_opening_an_up_to_date_database_waits_for_no_writer(tmp_path):
    path = tmp_path / "orchestra.db"
    Store.open(path).close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        with Store.open(path) as store:  # reads the migrations, takes no write lock
            assert store.runs() == []
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_database_of_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "orchestra.db"
    Store.open(path).close()
    connection = sqlite3.connect(path)
    connection.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', 1)")
    connection.commit()
    connection.close()
    with pytest.raises(SchemaTooNew, match="m999_from_the_future") as raised:
        Store.open(path)
    assert isinstance(raised.value, OrchestraError) and raised.value.file == str(path)


def test_a_file_that_is_no_database_is_a_one_line_error(tmp_path):
    path = tmp_path / "orchestra.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the run database: file is not a database"):
        Store.open(path)


# -- runs, steps and their events ------------------------------------------------------


def test_create_run_makes_a_pending_run_with_pending_steps_in_task_order(store):
    run_id = new_run(store, ["b", "a", "c"])
    run = store.run(run_id)
    assert (run.workstream_id, run.workstream_file, run.content_hash) == (
        "auth",
        "auth.toml",
        "sha256:abc",
    )
    assert run.state is RunState.PENDING and run.started_at is None and run.ended_at is None
    assert [(step.task_id, step.state, step.attempts) for step in store.steps(run_id)] == [
        ("b", StepState.PENDING, 0),
        ("a", StepState.PENDING, 0),
        ("c", StepState.PENDING, 0),
    ]
    [created] = store.events(run_id)
    assert (created.seq, created.type, created.payload) == (
        1,
        "run.created",
        {"workstream_id": "auth", "file": "auth.toml", "tasks": 3},
    )


def test_a_run_goes_running_only_once_claimed(store):
    run_id = new_run(store)
    with pytest.raises(RuntimeError, match="only once this store claims it"):
        store.set_run_state(run_id, "running")
    assert store.run(run_id).state is RunState.PENDING
    store.claim_run(run_id)
    store.set_run_state(run_id, RunState.RUNNING)
    assert store.run(run_id).owner_pid == os.getpid()
    assert event_types(store, run_id) == ["run.created", "run.claimed", "run.running"]


def test_run_times_and_error_follow_the_state(store):
    run_id = new_run(store)
    store.claim_run(run_id)
    store.set_run_state(run_id, "running")
    started = store.run(run_id).started_at
    assert started is not None
    seq = store.set_run_state(run_id, "failed", error="task api failed", payload={"failed": 1})
    run = store.run(run_id)
    assert run.state is RunState.FAILED and run.error == "task api failed"
    assert run.started_at == started and run.ended_at >= started
    last = store.events(run_id)[-1]
    assert last.seq == seq and last.type == "run.failed"
    assert last.payload == {
        "from": "running",
        "to": "failed",
        "error": "task api failed",
        "failed": 1,
    }


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One database for the many transition cases (a new file each would be slow)."""
    with Store.open(tmp_path_factory.mktemp("transitions") / "orchestra.db") as opened:
        yield opened


@pytest.mark.parametrize("current, new", list(itertools.product(RunState, repeat=2)))
def test_every_run_transition_in_the_table_works_and_no_other(shared_store, current, new):
    store = shared_store
    run_id = new_run(store, ["t"])
    store.claim_run(run_id)
    for state in path_to(RUN_TRANSITIONS, current):
        if state is RunState.INTERRUPTED:  # only a dead driver's run gets there
            store.release_run(run_id)
            assert store.mark_interrupted_if_orphaned(run_id)
            store.claim_run(run_id)
        else:
            store.set_run_state(run_id, state)
    assert store.run(run_id).state is current
    before = store.events(run_id)

    if new in RUN_TRANSITIONS[current]:
        seq = store.set_run_state(run_id, new)
        assert store.run(run_id).state is new
        after = store.events(run_id)
        assert after[:-1] == before and after[-1].seq == seq == len(before) + 1
        assert after[-1].type == f"run.{new}"
    else:
        with pytest.raises(
            IllegalTransition, match=f"run {run_id} cannot go from {current} to {new}"
        ):
            store.set_run_state(run_id, new)
        assert store.run(run_id).state is current
        assert store.events(run_id) == before
    assert [event.seq for event in store.events(run_id)] == list(
        range(1, len(store.events(run_id)) + 1)
    )
    store.release_run(run_id)


@pytest.mark.parametrize("current, new", list(itertools.product(StepState, repeat=2)))
def test_every_step_transition_in_the_table_works_and_no_other(shared_store, current, new):
    store = shared_store
    run_id = new_run(store, ["models", "api"])
    for state in path_to(STEP_TRANSITIONS, current):
        store.set_step_state(run_id, "api", state)
    before_step, before_events = store.step(run_id, "api"), store.events(run_id)
    assert before_step.state is current

    if new in STEP_TRANSITIONS[current]:
        seq = store.set_step_state(run_id, "api", new, reason="because")
        assert store.step(run_id, "api").state is new
        assert store.step(run_id, "api").reason == "because"
        after = store.events(run_id)
        assert after[:-1] == before_events and after[-1].seq == seq == len(before_events) + 1
        assert (after[-1].type, after[-1].task_id) == (f"step.{new}", "api")
        assert after[-1].payload == {"from": current.value, "to": new.value, "reason": "because"}
    else:
        with pytest.raises(
            IllegalTransition, match=f"step 'api' of run {run_id} cannot go from {current} to {new}"
        ):
            store.set_step_state(run_id, "api", new, reason="because")
        assert store.step(run_id, "api") == before_step
        assert store.events(run_id) == before_events
    assert store.step(run_id, "models").state is StepState.PENDING


def test_step_times_follow_the_state(store):
    run_id = new_run(store)
    for state in ("ready", "running", "retrying", "running", "succeeded"):
        store.set_step_state(run_id, "api", state)
        if state == "ready":
            assert store.step(run_id, "api").started_at is None
    step = store.step(run_id, "api")
    first_start = next(e.at for e in store.events(run_id) if e.type == "step.running")
    assert step.started_at == first_start and step.ended_at >= step.started_at
    assert step.reason is None


def test_event_seqs_count_1_to_n_per_run_even_around_failures(store):
    first, second = new_run(store), new_run(store)
    store.add_event(first, "note", {"n": 1})
    with pytest.raises(IllegalTransition):
        store.set_step_state(first, "api", "running")
    with pytest.raises(UnknownRun):
        store.set_step_state(first, "nope", "ready")
    with pytest.raises(sqlite3.IntegrityError):  # an event about a task the run lacks
        store.add_event(first, "note", task_id="nope")
    store.set_step_state(first, "api", "ready")
    store.add_event(second, "note")
    assert [event.seq for event in store.events(first)] == [1, 2, 3]
    assert [event.seq for event in store.events(second)] == [1, 2]
    assert [event.seq for event in store.events(first, after_seq=1)] == [2, 3]
    assert [event.seq for event in store.events(first, after_seq=1, limit=1)] == [2]
    assert store.events(first)[1].payload == {"n": 1}


def test_threads_sharing_one_store_get_distinct_seqs(store):
    run_id = new_run(store)

    def write():
        for number in range(50):
            store.add_event(run_id, "tick", {"n": number})

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [event.seq for event in store.events(run_id)] == list(range(1, 202))


def test_step_states_say_what_the_step_records_say(store):
    run_id = new_run(store)
    store.claim_run(run_id)
    store.set_step_state(run_id, "api", StepState.READY)
    store.begin_attempt(run_id, "api", StepState.READY, "shell")
    store.set_step_state(run_id, "format", StepState.SKIPPED, reason="not wanted")
    states = store.step_states(run_id)
    assert states == [(step.task_id, step.state, step.attempts) for step in store.steps(run_id)]
    assert states == [
        ("models", StepState.PENDING, 0),
        ("api", StepState.RUNNING, 1),
        ("format", StepState.SKIPPED, 0),
    ]


def test_unknown_runs_and_tasks_are_user_errors(store):
    run_id = new_run(store)
    with pytest.raises(UnknownRun, match="no run 'nope' in the database"):
        store.run("nope")
    for call in (
        lambda: store.steps("nope"),
        lambda: store.step_states("nope"),
        lambda: store.set_run_state("nope", "canceled"),
        lambda: store.add_event("nope", "note"),
        lambda: store.claim_run("nope"),
    ):
        with pytest.raises(UnknownRun, match="no run 'nope'"):
            call()
    with pytest.raises(UnknownRun, match=f"run {run_id} has no task 'ghost'"):
        store.step(run_id, "ghost")
    assert issubclass(UnknownRun, OrchestraError)


# -- attempts --------------------------------------------------------------------------


def test_attempts_are_numbered_per_step_and_record_how_they_ended(store):
    run_id = new_run(store)
    store.set_step_state(run_id, "api", "ready")
    first = store.begin_attempt(
        run_id, "api", "ready", "aider", command="aider --msg 'add login'", log_path="a.log"
    )
    store.finish_attempt(
        run_id,
        "api",
        first,
        outcome="failed",
        exit_code=1,
        error_class="rate_limited",
        message="slow down",
        retry_after=30.0,
        usage=Usage(input_tokens=100, cached_input_tokens=40, output_tokens=7, cost_usd=0.01),
    )
    store.set_step_state(run_id, "api", "retrying", reason="rate_limited")
    second = store.begin_attempt(run_id, "api", "retrying", "codex", command="codex exec '***'")
    store.finish_attempt(run_id, "api", second, outcome="succeeded", exit_code=0, diff="+x\n")
    assert (first, second) == (1, 2)
    assert store.step(run_id, "api").attempts == 2

    one, two = store.attempts(run_id, "api")
    assert (one.number, one.tool, one.command, one.log_path) == (
        1,
        "aider",
        "aider --msg 'add login'",
        "a.log",
    )
    assert (one.outcome, one.exit_code, one.error_class, one.message, one.retry_after) == (
        "failed",
        1,
        "rate_limited",
        "slow down",
        30.0,
    )
    assert one.usage == Usage(100, 40, 7, 0.01) and one.duration >= 0
    assert (two.number, two.tool, two.outcome, two.diff, two.usage) == (
        2,
        "codex",
        "succeeded",
        "+x\n",
        Usage(),
    )
    started, finished = [e for e in store.events(run_id) if e.type.startswith("attempt.")][:2]
    assert (started.task_id, started.attempt, started.payload) == (
        "api",
        1,
        {"tool": "aider", "log_path": "a.log"},
    )
    assert finished.payload == {
        "outcome": "failed",
        "exit_code": 1,
        "error_class": "rate_limited",
        "message": "slow down",
        "retry_after": 30.0,
        "input_tokens": 100,
        "cached_input_tokens": 40,
        "output_tokens": 7,
        "cost_usd": 0.01,
    }
    assert [a.task_id for a in store.attempts(run_id)] == ["api", "api"]
    assert store.attempts(run_id, "models") == []


def test_attempts_only_start_from_a_step_that_may_run_and_end_once(store):
    run_id = new_run(store)
    for said in ("pending", "ready"):  # what the step is, or what the caller thinks
        with pytest.raises(IllegalTransition, match="cannot go from pending to running"):
            store.begin_attempt(run_id, "api", said, "shell")
    store.set_step_state(run_id, "api", "ready")
    with pytest.raises(RuntimeError, match="is ready, not retrying"):
        store.begin_attempt(run_id, "api", "retrying", "shell")
    number = store.begin_attempt(run_id, "api", "ready", "shell")
    with pytest.raises(IllegalTransition, match="cannot go from running to running"):
        store.begin_attempt(run_id, "api", "ready", "shell")  # the step runs already
    store.finish_attempt(run_id, "api", number, outcome="succeeded")
    with pytest.raises(RuntimeError, match="already finished"):
        store.finish_attempt(run_id, "api", number, outcome="failed")
    with pytest.raises(RuntimeError, match="has no attempt 7"):
        store.finish_attempt(run_id, "api", 7, outcome="failed")
    assert store.step(run_id, "api").attempts == 1
    assert store.attempts(run_id)[0].outcome == "succeeded"


# -- listing runs ----------------------------------------------------------------------


def test_runs_are_listed_newest_first_and_filtered_by_state(store, monkeypatch):
    clock = iter(range(1_800_000_000, 1_800_000_100))
    monkeypatch.setattr(store_module, "time", fake_time(lambda: float(next(clock))))
    made = [new_run(store) for _ in range(4)]
    store.set_run_state(made[1], "canceled")
    assert [run.id for run in store.runs()] == made[::-1]
    assert [run.id for run in store.runs(limit=2)] == made[:1:-1]
    assert [run.id for run in store.runs(state="canceled")] == [made[1]]
    assert [run.id for run in store.runs(state=RunState.PENDING)] == [made[3], made[2], made[0]]
    assert store.runs(state="succeeded") == []
    assert made == sorted(made)  # ids sort by creation time


def test_run_ids_made_in_the_same_second_are_distinct(store, monkeypatch):
    monkeypatch.setattr(store_module, "time", fake_time(lambda: 1_795_663_465.5))
    suffixes = iter([b"\xab\x12", b"\xab\x12", b"\xab\x12", b"\xcd\x34"])  # it repeats
    monkeypatch.setattr(store_module.os, "urandom", lambda size: next(suffixes))
    first, second = new_run(store), new_run(store)
    assert (first, second) == ("20261126-032425-ab12", "20261126-032425-cd34")
    monkeypatch.undo()
    many = {new_run(store, ["t"]) for _ in range(100)}
    assert len(many) == 100


# -- breakers and small values ---------------------------------------------------------


def test_breakers_and_values_are_saved(store, tmp_path):
    assert store.breaker("codex") is None
    store.set_breaker("codex", "open", failures=3, opened_at=12.0, last_error_class="auth")
    store.set_breaker("aider", "closed", failures=0)
    store.set_breaker("codex", "half_open", failures=3, opened_at=12.0)
    codex = store.breaker("codex")
    assert (codex.state, codex.failures, codex.opened_at, codex.last_error_class) == (
        "half_open",
        3,
        12.0,
        None,
    )
    assert [breaker.tool for breaker in store.breakers()] == ["aider", "codex"]
    assert store.get_value("router.round_robin", 0) == 0
    store.set_value("router.round_robin", {"position": 2})
    assert store.get_value("router.round_robin") == {"position": 2}


# -- the run lock ----------------------------------------------------------------------


def test_two_stores_never_drive_the_same_run(tmp_path):
    path = tmp_path / "orchestra.db"
    with Store.open(path) as first, Store.open(path) as second:
        run_id = new_run(first)
        first.claim_run(run_id)
        first.claim_run(run_id)  # claiming again is harmless
        with pytest.raises(RunLocked, match=rf"run {run_id} is being driven by pid {os.getpid()}"):
            second.claim_run(run_id)
        assert first.is_locked(run_id) and second.is_locked(run_id)
        assert first.holds(run_id) and not second.holds(run_id)
        first.release_run(run_id)
        assert not second.is_locked(run_id)
        second.claim_run(run_id)
        assert second.holds(run_id)
    with Store.open(path) as third:  # closing a store releases its claims
        third.claim_run(run_id)


HOLDER = textwrap.dedent(
    """
    import subprocess, sys
    from orchestra.store import Store

    store = Store.open(sys.argv[1])
    store.claim_run(sys.argv[2])
    store.set_run_state(sys.argv[2], "running")
    # a tool left running after orchestra dies, started without close_fds
    tool = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=False)
    print(tool.pid, flush=True)
    sys.stdin.read()
    """
)


def test_a_killed_driver_leaves_its_run_free_and_interrupted(tmp_path):
    path = tmp_path / "orchestra.db"
    with Store.open(path) as store:
        run_id = new_run(store)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    tool_pid = None
    try:
        tool_pid = int(holder.stdout.readline())
        with Store.open(path) as store:
            with pytest.raises(
                RunLocked, match=rf"run {run_id} is being driven by pid {holder.pid} on host "
            ):
                store.claim_run(run_id)
            assert store.is_locked(run_id)
            assert not store.mark_interrupted_if_orphaned(run_id)
            assert store.run(run_id).state is RunState.RUNNING

            holder.send_signal(signal.SIGKILL)
            assert holder.wait(timeout=10) == -signal.SIGKILL
            os.kill(tool_pid, 0)  # the tool still runs, and does not hold the lock

            assert not store.is_locked(run_id)
            assert store.mark_orphaned_runs() == [run_id]
            assert not store.mark_interrupted_if_orphaned(run_id)  # once only
            run = store.run(run_id)
            assert run.state is RunState.INTERRUPTED and run.owner_pid == holder.pid
            interrupted = store.events(run_id)[-1]
            assert interrupted.type == "run.interrupted"
            assert interrupted.payload["owner_pid"] == holder.pid

            store.claim_run(run_id)  # resume
            store.set_run_state(run_id, "running", event_type="run.resumed")
            assert store.events(run_id)[-1].type == "run.resumed"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
        holder.stdin.close()
        if tool_pid is not None:
            os.kill(tool_pid, signal.SIGKILL)


WRITER = textwrap.dedent(
    """
    import sys
    from orchestra.store import Store

    store = Store.open(sys.argv[1])
    run_id = sys.argv[2]
    written = 0
    while True:
        store.add_event(run_id, "tick", {"n": written, "padding": "x" * 300}, task_id="api")
        written += 1
        if written == 3000:  # past a few WAL checkpoints
            print(written, flush=True)
    """
)


def test_the_database_survives_a_writer_killed_mid_write(tmp_path):
    path = tmp_path / "orchestra.db"
    with Store.open(path) as store:
        run_id = new_run(store)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), run_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "3000"
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=10) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()

    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    connection.close()
    with Store.open(path) as store:
        events = store.events(run_id)
        assert len(events) > 3000
        assert [event.seq for event in events] == list(range(1, len(events) + 1))
        ticks = [event.payload["n"] for event in events if event.type == "tick"]
        assert ticks == list(range(len(ticks)))
        assert store.add_event(run_id, "after") == len(events) + 1  # and it is writable


def test_the_directory_made_for_the_database_ignores_itself_in_git(tmp_path):
    repo = make_git_repo(tmp_path / "repo")
    Store.open(repo / ".orchestra" / "orchestra.db").close()
    (repo / ".orchestra" / "runs").mkdir()
    (repo / ".orchestra" / "runs" / "t.1.log").write_text("output\n")

    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )

    assert status.stdout == ""
