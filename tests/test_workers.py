"""Runs execute in worker processes: the server's interpreter never trains, a dead worker fails only
its run, stops travel through the store."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tlcore.labs import run_plan
import tlcore.jobs.runner
from tlcore.jobs import JobRunner, QueueFull
from tlcore.runs import RunStore
from tlcore.train.plan import Plan


def _until(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for a worker"
        time.sleep(0.05)


def _worker_pid(store: RunStore, run_id: str) -> int:
    _until(lambda: store.load(run_id).started is not None)
    return int(store.load(run_id).started.device.split()[1])


@pytest.fixture
def runner(tmp_path):
    r = JobRunner(RunStore(tmp_path), max_concurrent=1, backend="process", train_fn=run_plan)
    yield r
    r.shutdown()


def test_a_real_run_trains_in_a_worker_process_not_the_server(runner):
    run_id = runner.submit(Plan(image_size=32, epochs=1, per_class=10), owner="me")
    assert runner.wait(run_id, 300) == "finished"
    row = runner.store._row(run_id)
    assert row["worker"] and not row["worker"].endswith(f":{os.getpid()}")
    assert runner.store.load(run_id).last_epoch.val_acc > 0.2      # chance is 0.1


def test_a_killed_worker_fails_only_its_run_and_the_next_run_gets_a_new_worker(runner):
    runner.train_fn = __import__("fakes").until_stopped
    first = runner.submit(Plan(), owner="me")
    first_pid = _worker_pid(runner.store, first)
    os.kill(first_pid, signal.SIGKILL)    # what the out-of-memory killer does
    assert runner.wait(first, 60) == "failed"
    assert "SIGKILL" in runner.store.load(first).message
    second = runner.submit(Plan(), owner="me")
    pid = _worker_pid(runner.store, second)
    runner.stop(second, owner="me")
    assert runner.wait(second, 60) == "stopped"
    assert pid != first_pid          # a new worker process, not the killed one


def test_a_stop_asked_through_the_store_reaches_the_worker(runner, tmp_path):
    runner.train_fn = __import__("fakes").until_stopped
    run_id = runner.submit(Plan(), owner="me")
    _worker_pid(runner.store, run_id)
    RunStore(tmp_path).request_stop(run_id, owner="me")    # e.g. another server sharing the store
    assert runner.wait(run_id, 60) == "stopped"
    assert runner.store.load(run_id).message == "stopped on request"


def test_a_run_that_ignores_its_stop_is_cancelled_by_force(runner, monkeypatch):
    monkeypatch.setattr(tlcore.jobs.runner, "FORCE_STOP_AFTER_S", 1.0)
    runner.train_fn = __import__("fakes").ignores_stops
    run_id = runner.submit(Plan(), owner="me")
    _worker_pid(runner.store, run_id)
    runner.stop(run_id, owner="me")
    assert runner.wait(run_id, 60) == "stopped"
    assert "by force" in runner.store.load(run_id).message


def test_one_person_cannot_fill_the_queue(tmp_path):
    r = JobRunner(RunStore(tmp_path), max_concurrent=1, backend="thread", max_queued_per_owner=2,
                  train_fn=__import__("fakes").until_stopped)
    running = r.submit(Plan(), owner="greedy")
    _until(lambda: r.running() == [running])
    r.submit(Plan(), owner="greedy")
    r.submit(Plan(), owner="greedy")
    with pytest.raises(QueueFull, match="2 runs waiting"):
        r.submit(Plan(), owner="greedy")
    r.submit(Plan(), owner="someone else")      # others still get in
    r.shutdown()


def test_a_cli_run_killed_with_kill_9_is_ended_by_the_sweep_not_left_running(tmp_path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "tlcore", "train", "--strategy", "fine_tune_all", "--epochs", "50",
                          "--image-size", "32"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RunStore()
    try:
        _until(lambda: any(r.status == "running" for r in store.list()))
    finally:
        p.kill()
        p.wait(30)
    [run] = store.list()
    assert store.sweep(grace_s=3600) == []            # a fresh heartbeat: not yet given up on
    _until(lambda: store.sweep(grace_s=2) == [run.id], timeout=60)
    ended = store.load(run.id)
    assert ended.status == "failed" and ended.message.startswith("interrupted")


def test_a_run_that_starts_while_others_wait_leaves_one_core_to_the_server(tmp_path, monkeypatch):
    """A crowded queue on a CPU host (a class's pages to draw): the run trains on every core but one; the
    last run, alone, on every core. A host's own TLCORE_CPU_THREADS wins over both."""
    from tlcore.jobs.runner import crowded_threads
    assert crowded_threads("cpu", 3, cores=2) == 1 and crowded_threads("cpu", 3, cores=16) == 15
    assert crowded_threads("cpu", 0, cores=2) is None and crowded_threads("cuda", 5, cores=2) is None
    assert crowded_threads("cpu", 5, cores=1) is None
    monkeypatch.setenv("TLCORE_CPU_THREADS", "2")
    assert crowded_threads("cpu", 3, cores=2) is None
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: nothing to leave to the server")
    monkeypatch.delenv("TLCORE_CPU_THREADS")   # the worker processes are spawned from this environment
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1, backend="process", train_fn=run_plan)
    try:
        plan = Plan(image_size=32, epochs=1, per_class=10)
        first, last = runner.submit(plan, owner="a"), runner.submit(plan.replace(seed=1), owner="b")
        assert runner.wait(first, 300) == "finished" and runner.wait(last, 300) == "finished"
        threads = {r: runner.store.load(r).started.device for r in (first, last)}
        assert f"{os.cpu_count() - 1} thread" in threads[first], threads
        assert f"{os.cpu_count()} thread" in threads[last], threads
    finally:
        runner.shutdown()
