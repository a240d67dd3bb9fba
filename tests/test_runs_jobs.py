"""Runs persist across restarts and concurrent readers; jobs queue, stop and fail cleanly."""
from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time

import pytest

from tlcore.labs import run_plan
import tlcore.jobs.backends
import tlcore.jobs.runner
from fakes import fake_train
from tlcore.errors import PlanError
from tlcore.data import load_dataset
from tlcore.jobs import JobRunner, Limits, QueueFull
from tlcore.runs import RunNotFound, RunStore
from tlcore.train.events import Phase, RunEnded, RunStarted, Step
from tlcore.train.plan import Plan

PLAN = Plan(epochs=2)


def Runner(store, **kw) -> JobRunner:
    """Queue semantics are the same on every backend; threads let these tests use closures as runs."""
    kw.setdefault("train_fn", run_plan)
    return JobRunner(store, backend="thread", **kw)


def _until(condition, timeout: float = 10) -> None:
    """Workers pick runs up on their own thread: give them a moment before looking at the queue."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_runs_survive_a_restart_with_their_summary_numbers(tmp_path, store_url):
    store = RunStore(tmp_path, url=store_url)
    run_id = store.create(PLAN, owner="alice")
    fake_train(PLAN, lambda e: store.append(run_id, e), lambda: False, None)
    again = RunStore(tmp_path, url=store_url)
    run = again.load(run_id)
    assert run.status == "finished" and run.plan == PLAN and len(run.epochs) == 2
    [summary] = again.list(owner="alice")
    assert (summary.val_acc, summary.macro_f1, summary.seconds, summary.trainable_params) == (0.6, 0.87, 3.0, 10)
    assert again.list(owner="bob") == []


def test_readers_never_block_on_a_writing_run(tmp_path, store_url):
    store = RunStore(tmp_path, url=store_url)
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
    reader = RunStore(tmp_path, url=store_url)
    seen = 0
    while writer.is_alive():
        seen = max(seen, len(reader.load(run_id).steps))
    writer.join()
    assert not errors and len(reader.load(run_id).steps) == 300


def test_delete_removes_the_run_and_its_artifacts(tmp_path, store_url):
    store = RunStore(tmp_path, url=store_url)
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


def _age_heartbeat(store: RunStore, run_id: str, seconds: float) -> None:
    """Make a run's holder look silent for `seconds` (as if it had been killed that long ago)."""
    from sqlalchemy import update

    from tlcore.store import db_now
    from tlcore.store.schema import runs
    with store.db.write() as c:
        c.execute(update(runs).where(runs.c.id == run_id).values(heartbeat=db_now() - seconds))


def test_a_run_whose_holder_fell_silent_is_ended_as_interrupted_once(tmp_path, store_url):
    store = RunStore(tmp_path, url=store_url)
    silent, alive = _running_run(store), _running_run(store)
    _age_heartbeat(store, silent, 120)
    other = RunStore(tmp_path, url=store_url)          # a second server on the same store sweeps too
    ended = store.sweep(60) + other.sweep(60)
    assert ended == [silent]
    run = store.load(silent)
    assert run.status == "failed" and run.message.startswith("interrupted")
    assert len([e for e in run.events if isinstance(e, RunEnded)]) == 1
    assert store.status(alive) == "running"
    assert not store.append(silent, RunEnded("finished"))   # a late worker cannot end it a second time


def test_a_new_runner_ends_what_a_killed_server_left_behind(tmp_path):
    store = RunStore(tmp_path)
    run_id = _running_run(store)
    _age_heartbeat(store, run_id, 3600)
    Runner(RunStore(tmp_path), train_fn=fake_train).shutdown()
    assert store.status(run_id) == "failed"


def test_an_old_store_is_migrated_and_keeps_its_runs(tmp_path):
    with sqlite3.connect(tmp_path / "runs.sqlite") as c:  # the schema before migrations and heartbeats
        c.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL NOT NULL, owner TEXT NOT NULL DEFAULT '', "
                  "label TEXT NOT NULL DEFAULT '', plan_json TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT "
                  "NULL DEFAULT '', ended REAL, val_acc REAL, macro_f1 REAL, seconds REAL, trainable_params "
                  "INTEGER, epochs_done INTEGER NOT NULL DEFAULT 0)")
        c.execute("CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, "
                  "json TEXT NOT NULL, PRIMARY KEY (run_id, seq))")
        c.execute("INSERT INTO runs (id, created, plan_json, status, val_acc) VALUES ('done', 0, ?, 'finished', 0.9)",
                  (PLAN.to_json(),))
        c.execute("INSERT INTO runs (id, created, plan_json, status) VALUES ('old', 0, ?, 'running')",
                  (PLAN.to_json(),))
    store = RunStore(tmp_path)
    assert [(r.id, r.val_acc) for r in store.list() if r.id == "done"] == [("done", 0.9)]
    assert store.sweep() == ["old"]          # no heartbeat at all: nobody holds it
    assert store.status("old") == "failed"


def test_second_run_waits_in_the_queue_and_reports_its_position(tmp_path):
    gate = threading.Event()
    runner = Runner(RunStore(tmp_path), max_concurrent=1,
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
    runner = Runner(RunStore(tmp_path), max_concurrent=1, train_fn=lambda *a: fake_train(*a, gate=gate))
    running, queued = runner.submit(PLAN, owner="me"), runner.submit(PLAN, owner="me")
    runner.stop(queued, owner="me")
    runner.stop(running, owner="me")
    gate.set()
    assert runner.wait(running, 30) == "stopped"
    assert runner.status(queued) == "stopped"
    runner.shutdown()


def test_stopping_a_queued_run_wakes_whoever_waits_for_it(tmp_path):
    gate = threading.Event()
    runner = Runner(RunStore(tmp_path), max_concurrent=1, train_fn=lambda *a: fake_train(*a, gate=gate))
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
    monkeypatch.setattr(tlcore.jobs.backends, "auto_device_type", lambda: "cuda")
    monkeypatch.setattr(tlcore.jobs.backends, "local_devices", lambda: ("cpu", "cuda"))   # a host with a GPU
    gates = {"cuda": threading.Event(), "cpu": threading.Event()}
    runner = Runner(RunStore(tmp_path), max_concurrent=1,
                    train_fn=lambda plan, *a: fake_train(plan, *a, gate=gates[tlcore.jobs.backends.device_of(plan)]))
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
    runner = Runner(store, max_concurrent=1, train_fn=crash)
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
    monkeypatch.setattr(tlcore.jobs.backends, "release_memory", release_fails_once)
    runner = Runner(RunStore(tmp_path), max_concurrent=1, train_fn=fake_train)
    assert runner.wait(runner.submit(PLAN), 10) == "finished"
    assert runner.wait(runner.submit(PLAN), 10) == "finished"
    runner.shutdown()
    for t in threading.enumerate():  # the dead worker too, so its report lands inside this test
        if t.name.startswith("tlcore-"):
            t.join(10)


def test_a_crashing_run_fails_with_its_message_and_the_worker_survives(tmp_path):
    def crash(*a):
        raise RuntimeError("boom")
    runner = Runner(RunStore(tmp_path), train_fn=crash)
    run_id = runner.submit(PLAN)
    assert runner.wait(run_id, 30) == "failed"
    assert "boom" in runner.store.load(run_id).message
    runner.train_fn = fake_train
    assert runner.wait(runner.submit(PLAN), 30) == "finished"
    runner.shutdown()


def test_host_limits_refuse_plans_naming_the_field(tmp_path):
    runner = Runner(RunStore(tmp_path), train_fn=fake_train, limits=Limits(max_epochs=5, max_train_images=100))
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
    runner = Runner(RunStore(tmp_path), train_fn=fake_train, limits=Limits(max_train_images=2000))
    assert runner.wait(runner.submit(Plan(epochs=1)), 30) == "finished"   # digits: about 1,440 <= 2,000
    runner.shutdown()


def test_only_the_owner_can_stop_delete_or_rename_a_run(tmp_path, store_url):
    from tlcore.errors import NotOwner

    gate = threading.Event()
    runner = Runner(RunStore(tmp_path, url=store_url), max_concurrent=1, train_fn=lambda *a: fake_train(*a, gate=gate))
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


def test_events_since_returns_only_what_is_new(tmp_path, store_url):
    store = RunStore(tmp_path, url=store_url)
    run_id = store.create(PLAN)
    for i in range(3):
        store.append(run_id, Phase("data", i, 3))
    seen = store.events_since(run_id)
    assert [s for s, _ in seen] == [0, 1, 2]
    store.append(run_id, RunEnded("finished"))
    new = store.events_since(run_id, seen[-1][0])
    assert [(s, type(e).__name__) for s, e in new] == [(3, "RunEnded")]


def test_two_sweepers_at_once_end_each_stale_run_exactly_once(tmp_path, store_url):
    stores = [RunStore(tmp_path, url=store_url) for _ in range(4)]
    stale = [_running_run(stores[0]) for _ in range(6)]
    for run_id in stale:
        _age_heartbeat(stores[0], run_id, 300)
    ended: list[list[str]] = [[] for _ in stores]
    threads = [threading.Thread(target=lambda i=i: ended[i].extend(stores[i].sweep(60))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r for e in ended for r in e) == sorted(stale)
    for run_id in stale:
        assert len([e for e in stores[0].load(run_id).events if isinstance(e, RunEnded)]) == 1


def test_a_wrong_store_url_fails_at_start_in_one_line_naming_the_setting(tmp_path):
    from tlcore.store.db import StoreUnavailable

    for url in ("postgresql+psycopg://nobody:secret@127.0.0.1:1/none", "nosuchdb://x", "not a url"):
        with pytest.raises(StoreUnavailable) as err:
            RunStore(tmp_path, url=url)
        msg = str(err.value)
        assert msg.startswith("TLCORE_STORE_URL:") and "\n" not in msg and "secret" not in msg
