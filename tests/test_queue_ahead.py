"""Quick commands are handed to the pool ahead of its workers; slow ones are not, and no
more than max_parallel ever run at once."""

import sqlite3
from pathlib import Path

import pytest

from orchestra.engine.queue_ahead import LINGER_SECONDS, MOST_PER_WORKER, QueueAhead
from orchestra.testing import run_orchestra


def test_nothing_known_queues_one_per_worker():
    ahead = QueueAhead(workers=2)
    assert ahead.per_worker() == 1
    assert ahead.capacity() == 4


def test_quick_attempts_queue_deeper_and_slow_ones_do_not():
    quick = QueueAhead(workers=2)
    for _ in range(50):
        quick.observe(0.001)
    assert quick.per_worker() == MOST_PER_WORKER  # 20 ms of 1 ms attempts, capped at 16
    slow = QueueAhead(workers=2)
    for _ in range(50):
        slow.observe(2.0)
    assert slow.per_worker() == 1
    medium = QueueAhead(workers=3)
    for _ in range(200):
        medium.observe(0.005)
    assert medium.per_worker() == 4
    assert medium.capacity() == 3 * 5


def test_the_depth_follows_attempts_that_become_slow():
    ahead = QueueAhead(workers=2)
    for _ in range(50):
        ahead.observe(0.001)
    for _ in range(50):
        ahead.observe(1.0)
    assert ahead.per_worker() == 1


def test_the_loop_lingers_only_with_two_queued_per_worker_and_less_than_they_last():
    ahead = QueueAhead(workers=2)
    assert ahead.linger(6) == 0.0  # nothing known of how long the queued work lasts
    ahead.observe(0.002)
    assert ahead.linger(5) == 0.0
    # 6 held by 2 workers: 2 rounds queued of 2 ms each, so at most half of 4 ms
    assert ahead.linger(6) == pytest.approx(0.002)
    # however much is queued, never more than LINGER_SECONDS
    assert ahead.linger(40) == LINGER_SECONDS


def test_the_linger_is_judged_by_what_the_pool_holds_when_the_news_comes():
    # the loop decides how long to linger once the first news is in: attempts whose end
    # it brings keep no worker busy, so with 6 held and 2 of them ended nothing is queued
    import threading

    from orchestra.engine.messages import AttemptEnded, EventPosted, Inbox
    from orchestra.engine.running import RunningAttempts
    from orchestra.models import StepResult, Task

    pool = RunningAttempts(2, lambda task: [])
    tasks = [Task(id=f"t{i}", command=["true"]) for i in range(6)]
    for task in tasks:
        pool.add(task, 1, "shell", 0.0)
    pool.queue_ahead.observe(0.002)
    ended = [AttemptEnded(pool.by_task[t.id], StepResult("succeeded")) for t in tasks[:2]]
    assert pool.linger([EventPosted("tool.note", {}, "t5", 1)]) == pytest.approx(0.002)
    assert pool.linger(ended) == 0.0  # 4 left: one round queued, not two

    inbox = Inbox()
    asked: list[list] = []

    def linger(news: list) -> float:
        asked.append(list(news))
        threading.Timer(0.02, inbox.put, ("late",)).start()
        return 0.3  # long enough for the late news to come in

    inbox.put("first")
    inbox.put("second")
    assert inbox.wait(1.0, linger) == ["first", "second", "late"]
    assert asked == [["first", "second"]]  # asked with all the news there was then


@pytest.mark.slow  # seconds of real processes: the full suite runs it
def test_a_deep_queue_never_runs_more_than_max_parallel_at_once(tmp_path: Path):
    # 300 quick commands: the queue grows deep, yet the recorded spans (the workers'
    # start and end of each attempt) never overlap more than max_parallel at a time
    tasks = "".join(f'[[tasks]]\nid = "q{i:03d}"\ncommand = ["true"]\n' for i in range(300))
    (tmp_path / "ws.toml").write_text('id = "quick"\n' + tasks)
    result = run_orchestra("run", "ws.toml", "--max-parallel", "2", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / ".orchestra" / "orchestra.db") as db:
        spans = db.execute("SELECT started_at, ended_at FROM attempts").fetchall()
        states = dict(db.execute("SELECT state, count(*) FROM steps GROUP BY state"))
    assert states == {"succeeded": 300}
    assert len(spans) == 300
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in edges:  # an end at the same instant as a start comes first
        running += change
        most = max(most, running)
    assert most <= 2


def test_the_local_executor_runs_every_attempt_on_at_most_parallel_threads():
    # the pool behind the queue: every launch handed over runs before close returns, on
    # no more threads than max_parallel, and a work function that raises (a bug) costs
    # that launch only
    import threading
    import time

    from orchestra.builtin.executors import Local
    from orchestra.models import ExecutorRun

    done, threads = [], set()
    lock = threading.Lock()

    def work(launch):
        with lock:
            threads.add(threading.current_thread().name)
        if launch == 3:
            raise RuntimeError("a bug in the work function")
        time.sleep(0.001)
        with lock:
            done.append(launch)

    pool = Local().open(ExecutorRun(run_id="r", parallel=2, work=work, event=lambda *a: None))
    for launch in range(20):
        pool.submit(launch)
    pool.close()
    assert sorted(done) == [n for n in range(20) if n != 3]
    assert threads <= {"attempt_0", "attempt_1"}
