"""Faults a shared host meets: the database restarts, the server is killed. No finished run is lost
and no run is left "running" for ever."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import fakes
from tlcore.jobs import JobRunner
from tlcore.runs import RunStore
from tlcore.train.events import Step
from tlcore.train.plan import Plan

TESTS = Path(__file__).parent


def _until(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_run_rides_out_a_database_restart(postgres, tmp_path):
    store = RunStore(tmp_path, url=postgres.new_database())
    runner = JobRunner(store, backend="process", train_fn=fakes.steady)
    run_id = runner.submit(Plan(epochs=12), owner="me")     # about 12 s of steps
    _until(lambda: len(store.load(run_id).steps) > 5)
    postgres.stop("fast")
    time.sleep(2)
    postgres.start()
    assert runner.wait(run_id, 180) == "finished"
    run = store.load(run_id)
    steps = [e.step for e in run.events if isinstance(e, Step)]
    assert steps == list(range(len(steps)))                 # nothing lost while it was down, nothing twice
    runner.shutdown()


SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
import fakes
from tlcore.jobs import JobRunner
from tlcore.runs import RunStore
from tlcore.train.plan import Plan
runner = JobRunner(RunStore({home!r}), backend="process", train_fn=fakes.steady)
print(runner.submit(Plan(epochs=8), owner="me"), flush=True)
time.sleep(600)
"""


def test_a_server_killed_mid_run_loses_no_run_and_leaves_none_running(tmp_path):
    home = tmp_path / "home"
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(tests=str(TESTS), home=str(home))],
                              stdout=subprocess.PIPE, text=True, cwd=TESTS.parent)
    run_id = server.stdout.readline().strip()
    store = RunStore(home)
    _until(lambda: store.load(run_id).steps)
    server.kill()                       # no clean shutdown: what `kill -9` or a crash does
    server.wait(30)
    restarted = JobRunner(RunStore(home), backend="process", train_fn=fakes.steady)   # the server comes back and sweeps
    _until(lambda: store.status(run_id) != "running", timeout=120)
    assert store.status(run_id) == "finished"   # its worker outlived the server and finished the run
    restarted.shutdown()
