"""Runs on a real local Ray cluster with the run store on a real PostgreSQL server."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import fakes
from tlcore.labs import run_plan
from tlcore.jobs import JobRunner
from tlcore.jobs.ray_backend import RayBackend, RayUnavailable
from tlcore.runs import RunStore
from tlcore.train.plan import Plan


def _until(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the Ray task"
        time.sleep(0.1)


@pytest.fixture
def ray_runner(ray_address, postgres, tmp_path, monkeypatch):
    # The stand-in runs travel by name: a Ray worker imports `fakes` from this folder, and so every plan
    # kind it registers (sent by value, a fake arrived without them and the worker could not read its plan).
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.setenv("TLCORE_RAY_ADDRESS", ray_address)
    store = RunStore(tmp_path, url=postgres.new_database())
    runner = JobRunner(store, max_concurrent=2, train_fn=run_plan)
    assert isinstance(runner.backend, RayBackend)    # chosen by TLCORE_RAY_ADDRESS alone
    yield runner
    runner.shutdown()


def _worker_pid(store: RunStore, run_id: str) -> int:
    _until(lambda: store.load(run_id).started is not None)
    return int(store.load(run_id).started.device.split()[1])


def test_a_run_on_ray_writes_its_events_to_the_postgres_store(ray_runner):
    ray_runner.train_fn = fakes.fake_train
    run_id = ray_runner.submit(Plan(epochs=3), owner="me")
    assert ray_runner.wait(run_id, 120) == "finished", ray_runner.store.load(run_id).message
    run = ray_runner.store.load(run_id)
    assert len(run.epochs) == 3 and run.ended.status == "finished"
    assert ray_runner.store._row(run_id)["worker"]      # the task renewed its heartbeat


def test_stop_reaches_a_ray_task_through_the_store(ray_runner):
    ray_runner.train_fn = fakes.until_stopped
    run_id = ray_runner.submit(Plan(), owner="me")
    _worker_pid(ray_runner.store, run_id)
    ray_runner.stop(run_id, owner="me")
    assert ray_runner.wait(run_id, 60) == "stopped"


def test_a_ray_worker_killed_mid_run_ends_its_run_as_interrupted(ray_runner):
    ray_runner.train_fn = fakes.until_stopped
    run_id = ray_runner.submit(Plan(), owner="me")
    pid = _worker_pid(ray_runner.store, run_id)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    assert ray_runner.wait(run_id, 120) == "failed"
    assert ray_runner.store.load(run_id).message.startswith("interrupted")


def test_an_unreachable_ray_address_fails_at_start_in_one_line(tmp_path, monkeypatch):
    from conftest import free_port
    with pytest.raises(RayUnavailable) as err:
        RayBackend(RunStore(tmp_path), address=f"127.0.0.1:{free_port()}")
    assert str(err.value).startswith("TLCORE_RAY_ADDRESS:") and "\n" not in str(err.value)
