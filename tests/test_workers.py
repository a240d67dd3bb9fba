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


class _Recording:
    """A backend that records the threads each run was given; the first run waits for `release`."""
    name = "recording"

    def __init__(self, store):
        import threading
        self.store, self.release, self.threads = store, threading.Event(), {}

    def devices(self):
        return ("cpu",)

    def run(self, run_id, plan, train_fn, forced, threads=None):
        from tlcore.train.events import RunEnded
        self.threads[run_id] = threads
        if len(self.threads) == 1:
            self.release.wait(30)
        self.store.append(run_id, RunEnded("finished", ""))

    def close(self):
        pass


def test_a_run_that_starts_while_others_wait_leaves_one_core_to_the_server(tmp_path, monkeypatch):
    """A crowded queue on a CPU host (a class's pages to draw): the run trains on every core but one; the
    last run, alone, on the host's setting (every core). A host's own TLCORE_CPU_THREADS wins over both."""
    from tlcore.jobs.runner import crowded_threads
    monkeypatch.delenv("TLCORE_CPU_THREADS", raising=False)
    assert crowded_threads("cpu", 3, cores=2) == 1 and crowded_threads("cpu", 3, cores=16) == 15
    assert crowded_threads("cpu", 0, cores=2) is None and crowded_threads("cuda", 5, cores=2) is None
    assert crowded_threads("cpu", 5, cores=1) is None
    store = RunStore(tmp_path)
    backend = _Recording(store)
    runner = JobRunner(store, max_concurrent=1, backend=backend, train_fn=run_plan)
    try:
        plan = Plan(image_size=32, epochs=1, per_class=10, device="cpu")
        ids = [runner.submit(plan.replace(seed=i), owner=f"s{i}") for i in range(3)]   # the first one holds the slot
        backend.release.set()
        assert [runner.wait(r, 60) for r in ids] == ["finished"] * 3
        cores = os.cpu_count() or 1
        assert [backend.threads[r] for r in ids[1:]] == [cores - 1 if cores > 1 else None, None]
        monkeypatch.setenv("TLCORE_CPU_THREADS", "2")
        assert crowded_threads("cpu", 3, cores=2) is None
    finally:
        runner.shutdown()


def test_a_worker_process_trains_a_run_on_the_threads_the_queue_gave_it(tmp_path, monkeypatch):
    monkeypatch.delenv("TLCORE_CPU_THREADS", raising=False)   # the worker is spawned from this environment
    from tlcore.jobs.backends import ProcessBackend
    store, backend = RunStore(tmp_path), ProcessBackend(RunStore(tmp_path))
    try:
        run_id = store.create(Plan(image_size=32, epochs=1, per_class=10), owner="me")
        backend.run(run_id, Plan(image_size=32, epochs=1, per_class=10), run_plan, lambda: False, threads=1)
        assert store.load(run_id).status == "finished"
        assert "(1 threads" in store.load(run_id).started.device
    finally:
        backend.close()


def test_a_server_starts_a_warm_worker_before_the_first_run_and_that_run_uses_it(tmp_path, monkeypatch):
    """The engine's imports are paid while the class opens its pages, not by the first student's run."""
    monkeypatch.setenv("TLCORE_WORKER_PREWARM", "1")
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1, backend="process", train_fn=run_plan)
    try:
        spare = runner.backend._spare
        assert spare is not None and spare.alive()       # started with the runner, before any submit
        run_id = runner.submit(Plan(image_size=32, epochs=1, per_class=10), owner="me")
        assert runner.wait(run_id, 300) == "finished"
        assert runner.store._row(run_id)["worker"].endswith(f":{spare.proc.pid}")
    finally:
        runner.shutdown()
