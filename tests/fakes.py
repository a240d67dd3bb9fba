"""Stand-in runs for the job-queue tests: importable by name, so worker processes (spawn) can run them."""
from __future__ import annotations

import os
import threading
import time

import tlcore.labs  # noqa: F401  (a worker that unpickles a fake validates its plan: it must know every kind)
from tlcore.train.events import EpochEnded, RunEnded, RunStarted, Step


def epoch(i: int, acc: float) -> EpochEnded:
    return EpochEnded(i, 1.0, 1.1, acc, ((3, 1), (0, 4)), (1.0, 0.8), (0.75, 1.0), (0.86, 0.89), 0.87, ("top",),
                      1.5, 100.0)


def fake_train(plan, emit, should_stop, artifact_dir, gate: threading.Event | None = None):
    emit(RunStarted(plan.to_dict(), "cpu", 10, 90, ("stem", "top"), 8, 8, ("a", "b")))
    for e in range(plan.epochs):
        if gate is not None:
            gate.wait(10)
        if should_stop():
            emit(RunEnded("stopped", "stopped on request"))
            return
        emit(Step(e, e, plan.epochs, 1, 0.5, (0.0, 1e-3), 50.0))
        emit(epoch(e, 0.5 + 0.1 * e))
    emit(RunEnded("finished", "", 3.0))


def until_stopped(plan, emit, should_stop, artifact_dir):
    """Steps until a stop is asked for (at most a minute), reporting the worker's pid first."""
    emit(RunStarted(plan.to_dict(), f"pid {os.getpid()}", 1, 0, ("top",), 1, 1, ("a", "b")))
    deadline = time.monotonic() + 60
    i = 0
    while time.monotonic() < deadline:
        if should_stop():
            emit(RunEnded("stopped", "stopped on request"))
            return
        emit(Step(0, i, 10**6, 10**6, 0.5, (1e-3,), 1.0))
        i += 1
        time.sleep(0.05)
    emit(RunEnded("finished", "nobody stopped it"))


def ignores_stops(plan, emit, should_stop, artifact_dir):
    """A run stuck where it cannot look at its stop flag (a long C call, a hung download)."""
    emit(RunStarted(plan.to_dict(), f"pid {os.getpid()}", 1, 0, ("top",), 1, 1, ("a", "b")))
    time.sleep(120)


def crash(*a):
    raise RuntimeError("boom")


def steady(plan, emit, should_stop, artifact_dir):
    """Steps for `plan.epochs` seconds, then finishes: a run long enough to break something under."""
    emit(RunStarted(plan.to_dict(), f"pid {os.getpid()}", 1, 0, ("top",), 1, 1, ("a", "b")))
    deadline, i = time.monotonic() + plan.epochs, 0
    while time.monotonic() < deadline:
        if should_stop():
            emit(RunEnded("stopped", "stopped on request"))
            return
        emit(Step(0, i, 10**6, 10**6, 0.5, (1e-3,), 1.0))
        i += 1
        time.sleep(0.1)
    emit(epoch(0, 0.9))
    emit(RunEnded("finished", "", float(plan.epochs)))
