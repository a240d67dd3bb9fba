"""Runs persist across restarts and concurrent readers; jobs queue, stop and fail cleanly."""
from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import tlcore.jobs
from tlcore.errors import PlanError
from tlcore.data import load_dataset
from tlcore.jobs import JobRunner, Limits
from tlcore.runs import RunNotFound, RunStore
from tlcore.train.events import EpochEnded, Phase, RunEnded, RunStarted, Step
from tlcore.train.plan import Plan

PLAN = Plan(epochs=2)


def _epoch(i: int, acc: float) -> EpochEnded:
    return EpochEnded(i, 1.0, 1.1, acc, ((3, 1), (0, 4)), (1.0, 0.8), (0.75, 1.0), (0.86, 0.89), 0.87, ("top",),
                      1.5, 100.0)


def fake_train(plan, emit, should_stop, artifact_dir, gate: threading.Event | None = None):
    emit(RunStarted(plan.to_dict(), "cpu", 10, 90, ("stem", "top"), 8, 8, ("a", "b")))
    for epoch in range(plan.epochs):
        if gate is not None:
            gate.wait(10)
        if should_stop():
            emit(RunEnded("stopped", "stopped on request"))
            return
        emit(Step(epoch, epoch, plan.epochs, 1, 0.5, (0.0, 1e-3), 50.0))
        emit(_epoch(epoch, 0.5 + 0.1 * epoch))
    emit(RunEnded("finished", "", 3.0))


def _until(condition, timeout: float = 10) -> None:
    """Workers pick runs up on their own thread: give them a moment before looking at the queue."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_runs_survive_a_restart_with_their_summary_numbers(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(PLAN, owner="alice")
    fake_train(PLAN, lambda e: store.append(run_id, e), lambda: False, None)
    again = RunStore(tmp_path)
    run = again.load(run_id)
    assert run.status == "finished" and run.plan == PLAN and len(run.epochs) == 2
    [summary] = again.list(owner="alice")
    assert (summary.val_acc, summary.macro_f1, summary.seconds, summary.trainable_params) == (0.6, 0.87, 3.0, 10)
    assert again.list(owner="bob") == []


def test_readers_never_block_on_a_writing_run(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(PLAN)
    errors: list[Exception] = []

    def write():
        try:
            for i in range(300):
                store.append(run_id, Step(0, i, 300, 300, 0.1, (1e-3,), 1.0))
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    writer = threading.Thread(target=write)
    writer.start()
    reader = RunStore(tmp_path)
    seen = 0
    while writer.is_alive():
        seen = max(seen, len(reader.load(run_id).steps))
    writer.join()
    assert not errors and len(reader.load(run_id).steps) == 300


def test_delete_removes_the_run_and_its_artifacts(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(PLAN, owner="me")
    (store.artifact_dir(run_id) / "model.pt").write_bytes(b"x")
    store.delete(run_id, owner="me")
    assert not store.artifact_dir(run_id).exists()
    with pytest.raises(RunNotFound):
        store.load(run_id)


def _running_run(store: RunStore) -> str:
    run_id = store.create(PLAN)
    store.append(run_id, RunStarted(PLAN.to_dict(), "cpu", 1, 1, (), 1, 1, ("a", "b")))
    return run_id


def _set_owner(store: RunStore, run_id: str, **cols) -> None:
    with sqlite3.connect(store.db) as c:
        for name, value in cols.items():
            c.execute(f"UPDATE runs SET {name}=? WHERE id=?", (value, run_id))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_runs_left_running_by_a_dead_server_become_failed(tmp_path):
    store = RunStore(tmp_path)
    run_id = _running_run(store)
    _set_owner(store, run_id, pid=_dead_pid())
    JobRunner(RunStore(tmp_path), train_fn=fake_train)
    run = store.load(run_id)
    assert run.status == "failed" and "restarted" in run.message


def test_a_new_runner_leaves_the_runs_of_live_processes_and_other_hosts_alone(tmp_path):
    # A CLI run (or another server) sharing the store is still training while a server starts.
    store = RunStore(tmp_path)
    ours, elsewhere = _running_run(store), _running_run(store)
    _set_owner(store, elsewhere, host=socket.gethostname() + "-other", pid=_dead_pid())
    JobRunner(RunStore(tmp_path), train_fn=fake_train)
    assert store.status(ours) == "running" and store.status(elsewhere) == "running"


def test_a_restarted_server_with_its_old_pid_still_fails_its_old_runs(tmp_path):
    # In a container the server is pid 1 after every restart: the pid alone cannot tell.
    store = RunStore(tmp_path)
    run_id = _running_run(store)
    _set_owner(store, run_id, process="a-process-that-has-ended")
    JobRunner(RunStore(tmp_path), train_fn=fake_train)
    assert store.status(run_id) == "failed"


def test_an_old_store_gains_the_owner_columns_and_its_unowned_runs_fail(tmp_path):
    with sqlite3.connect(tmp_path / "runs.sqlite") as c:  # the schema before runs recorded their process
        c.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL NOT NULL, owner TEXT NOT NULL DEFAULT '', "
                  "label TEXT NOT NULL DEFAULT '', plan_json TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT "
                  "NULL DEFAULT '', ended REAL, val_acc REAL, macro_f1 REAL, seconds REAL, trainable_params "
                  "INTEGER, epochs_done INTEGER NOT NULL DEFAULT 0)")
        c.execute("INSERT INTO runs (id, created, plan_json, status) VALUES ('old', 0, ?, 'running')",
                  (PLAN.to_json(),))
    store = RunStore(tmp_path)
    live = _running_run(store)
    JobRunner(store, train_fn=fake_train)
    assert store.status("old") == "failed" and store.status(live) == "running"


def test_second_run_waits_in_the_queue_and_reports_its_position(tmp_path):
    gate = threading.Event()
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1,
                       train_fn=lambda *a: fake_train(*a, gate=gate))
    first, second = runner.submit(PLAN), runner.submit(PLAN)
    _until(lambda: runner.running() == [first])
    assert runner.position(second) == 1 and runner.position(first) is None
    gate.set()
    assert runner.wait(first, 30) == "finished"
    assert runner.wait(second, 30) == "finished"
    runner.shutdown()


def test_stop_ends_queued_and_running_runs_as_stopped(tmp_path):
    gate = threading.Event()
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1, train_fn=lambda *a: fake_train(*a, gate=gate))
    running, queued = runner.submit(PLAN, owner="me"), runner.submit(PLAN, owner="me")
    runner.stop(queued, owner="me")
    runner.stop(running, owner="me")
    gate.set()
    assert runner.wait(running, 30) == "stopped"
    assert runner.status(queued) == "stopped"
    runner.shutdown()


def test_stopping_a_queued_run_wakes_whoever_waits_for_it(tmp_path):
    gate = threading.Event()
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1, train_fn=lambda *a: fake_train(*a, gate=gate))
    running, queued = runner.submit(PLAN, owner="me"), runner.submit(PLAN, owner="me")
    seen: list[str] = []
    waiter = threading.Thread(target=lambda: seen.append(runner.wait(queued, 20)), daemon=True)
    waiter.start()
    waiter.join(0.3)  # let it block in wait()
    runner.stop(queued, owner="me")
    waiter.join(5)
    assert seen == ["stopped"]
    gate.set()
    runner.shutdown()


def test_each_device_has_its_own_queue_and_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(tlcore.jobs, "auto_device_type", lambda: "cuda")
    gates = {"cuda": threading.Event(), "cpu": threading.Event()}
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1,
                       train_fn=lambda plan, *a: fake_train(plan, *a, gate=gates[tlcore.jobs._device_of(plan)]))
    gpu = runner.submit(Plan(epochs=2, device="cuda"))
    auto = runner.submit(PLAN)  # "auto" trains on the GPU here, so it queues behind it
    cpu, cpu2 = runner.submit(Plan(epochs=2, device="cpu")), runner.submit(Plan(epochs=2, device="cpu"))
    _until(lambda: len(runner.running()) == 2)
    assert runner.running() == sorted([gpu, cpu])
    assert (runner.position(auto), runner.position(cpu2)) == (1, 1)
    gates["cpu"].set()  # the CPU queue drains while the GPU run still holds its device
    assert runner.wait(cpu, 30) == "finished" and runner.wait(cpu2, 30) == "finished"
    assert runner.status(gpu) == "running" and runner.position(auto) == 1
    gates["cuda"].set()
    assert runner.wait(gpu, 30) == "finished" and runner.wait(auto, 30) == "finished"
    runner.shutdown()


def test_a_run_whose_failure_cannot_be_written_does_not_stall_the_queue(tmp_path, caplog):
    store = RunStore(tmp_path)
    append, broken = store.append, [True]

    def locked_once(run_id, event):
        if isinstance(event, RunEnded) and event.status == "failed" and broken and broken.pop():
            raise sqlite3.OperationalError("database is locked")
        append(run_id, event)

    def crash(*a):
        raise RuntimeError("boom")
    store.append = locked_once
    runner = JobRunner(store, max_concurrent=1, train_fn=crash)
    with caplog.at_level(logging.ERROR, logger="tlcore.jobs"):
        first = runner.submit(PLAN)
        assert runner.wait(first, 10) == "failed"
    assert "database is locked" in caplog.text and runner.running() == []
    runner.train_fn = fake_train
    assert runner.wait(runner.submit(PLAN), 10) == "finished"
    runner.shutdown()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death is the point
def test_a_worker_that_dies_is_replaced(tmp_path, monkeypatch):
    calls = []

    def release_fails_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the allocator broke")
    monkeypatch.setattr(tlcore.jobs, "_release_memory", release_fails_once)
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1, train_fn=fake_train)
    assert runner.wait(runner.submit(PLAN), 10) == "finished"
    assert runner.wait(runner.submit(PLAN), 10) == "finished"
    runner.shutdown()
    for t in threading.enumerate():  # the dead worker too, so its report lands inside this test
        if t.name.startswith("tlcore-"):
            t.join(10)


def test_a_crashing_run_fails_with_its_message_and_the_worker_survives(tmp_path):
    def crash(*a):
        raise RuntimeError("boom")
    runner = JobRunner(RunStore(tmp_path), train_fn=crash)
    run_id = runner.submit(PLAN)
    assert runner.wait(run_id, 30) == "failed"
    assert "boom" in runner.store.load(run_id).message
    runner.train_fn = fake_train
    assert runner.wait(runner.submit(PLAN), 30) == "finished"
    runner.shutdown()


def test_host_limits_refuse_plans_naming_the_field(tmp_path):
    runner = JobRunner(RunStore(tmp_path), train_fn=fake_train, limits=Limits(max_epochs=5, max_train_images=100))
    with pytest.raises(PlanError) as err:
        runner.submit(Plan(epochs=6, per_class=5))
    assert err.value.field == "epochs"
    with pytest.raises(PlanError) as err:
        runner.submit(Plan(epochs=2))               # all of digits
    n = len(load_dataset("digits", image_size=Plan().resolved_image_size()).train_y)
    assert err.value.field == "per_class" and f"{n:,} images" in str(err.value) and "10 or fewer" in str(err.value)
    assert runner.wait(runner.submit(Plan(epochs=2, per_class=10)), 30) == "finished"
    runner.shutdown()


def test_host_image_limit_counts_the_real_dataset_so_the_default_passes_when_it_fits(tmp_path):
    runner = JobRunner(RunStore(tmp_path), train_fn=fake_train, limits=Limits(max_train_images=2000))
    assert runner.wait(runner.submit(Plan(epochs=1)), 30) == "finished"   # digits: about 1,440 <= 2,000
    runner.shutdown()


def test_only_the_owner_can_stop_delete_or_rename_a_run(tmp_path):
    from tlcore.errors import NotOwner

    gate = threading.Event()
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1, train_fn=lambda *a: fake_train(*a, gate=gate))
    run_id = runner.submit(PLAN, owner="alice")
    for action in (lambda: runner.stop(run_id, owner="mallory"), lambda: runner.stop(run_id, owner=""),
                   lambda: runner.store.delete(run_id, owner="mallory"),
                   lambda: runner.store.rename(run_id, "mine now", owner="mallory")):
        with pytest.raises(NotOwner):
            action()
    gate.set()
    assert runner.wait(run_id, 30) == "finished"
    runner.store.rename(run_id, "first try", owner="alice")
    assert runner.store.load(run_id).label == "first try"
    runner.shutdown()


def test_events_since_returns_only_what_is_new(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(PLAN)
    for i in range(3):
        store.append(run_id, Phase("data", i, 3))
    seen = store.events_since(run_id)
    assert [s for s, _ in seen] == [0, 1, 2]
    store.append(run_id, RunEnded("finished"))
    new = store.events_since(run_id, seen[-1][0])
    assert [(s, type(e).__name__) for s, e in new] == [(3, "RunEnded")]
