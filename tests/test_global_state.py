"""A run driven in-process (by a library user, a test, a long-lived server) leaves the
interpreter as it found it: the cyclic garbage collector on, and nothing frozen out of its
sight, so garbage made before or during the run is still freed."""

import gc
import threading
import weakref

import pytest

from orchestra.config import find_project
from orchestra.engine.runs import start_run
from orchestra.planning import load_checked


class Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def clean_collector():
    """The collector as a fresh interpreter has it, before and after the test, whatever
    an earlier test in this worker did to it."""
    gc.unfreeze()
    gc.enable()
    yield
    gc.unfreeze()
    gc.enable()


def test_a_run_in_process_leaves_garbage_collectable_and_nothing_frozen(
    tmp_path, plugin_host, monkeypatch, clean_collector
):
    (tmp_path / "orchestra.toml").write_text('sandbox = "none"\n')
    (tmp_path / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n'
        '[[tasks]]\nid = "b"\ncommand = ["true"]\ndepends_on = ["a"]\n'
    )
    monkeypatch.chdir(tmp_path)
    project = find_project(tmp_path)
    workstream, settings = load_checked(str(tmp_path / "ws.toml"), project, plugin_host)
    leftover = Cycle()
    left = weakref.ref(leftover)
    gc.collect()  # it lives into the oldest generation, as long-lived data does
    del leftover  # garbage from before the run: the next full collection frees it

    outcome = start_run(
        str(tmp_path / "ws.toml"),
        workstream,
        settings,
        project,
        plugin_host,
        sinks=[],
        cancel=threading.Event(),
    )

    assert outcome.state == "succeeded"
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert left() is None
