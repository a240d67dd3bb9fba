"""Runs persist across restarts and concurrent readers; jobs queue, stop and fail cleanly."""
from __future__ import annotations

import threading

import pytest

from tlcore.errors import PlanError
from tlcore.jobs import JobRunner, Limits
from tlcore.runs import RunNotFound, RunStore
from tlcore.train.events import EpochEnded, RunEnded, RunStarted, Step
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
    run_id = store.create(PLAN)
    (store.artifact_dir(run_id) / "model.pt").write_bytes(b"x")
    store.delete(run_id)
    assert not store.artifact_dir(run_id).exists()
    with pytest.raises(RunNotFound):
        store.load(run_id)


def test_runs_left_running_by_a_dead_server_become_failed(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(PLAN)
    store.append(run_id, RunStarted(PLAN.to_dict(), "cpu", 1, 1, (), 1, 1, ("a", "b")))
    JobRunner(RunStore(tmp_path), train_fn=fake_train)
    run = store.load(run_id)
    assert run.status == "failed" and "restarted" in run.message


def test_second_run_waits_in_the_queue_and_reports_its_position(tmp_path):
    gate = threading.Event()
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1,
                       train_fn=lambda *a: fake_train(*a, gate=gate))
    first, second = runner.submit(PLAN), runner.submit(PLAN)
    assert runner.position(second) == 1 and runner.position(first) is None
    gate.set()
    assert runner.wait(first, 30) == "finished"
    assert runner.wait(second, 30) == "finished"
    runner.shutdown()


def test_stop_ends_queued_and_running_runs_as_stopped(tmp_path):
    gate = threading.Event()
    runner = JobRunner(RunStore(tmp_path), max_concurrent=1, train_fn=lambda *a: fake_train(*a, gate=gate))
    running, queued = runner.submit(PLAN), runner.submit(PLAN)
    runner.stop(queued)
    runner.stop(running)
    gate.set()
    assert runner.wait(running, 30) == "stopped"
    assert runner.status(queued) == "stopped"
    runner.shutdown()


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
        runner.submit(Plan(epochs=2))
    assert err.value.field == "per_class"
    assert runner.wait(runner.submit(Plan(epochs=2, per_class=10)), 30) == "finished"
    runner.shutdown()
