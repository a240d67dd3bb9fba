"""What a worker does for one run, wherever it runs (a thread, a worker process, a Ray task): run the
plan, write its events and a heartbeat to the store, and stop when the store says so.

The store is the only channel: the server never holds the only copy of a result, and a worker on
another machine needs nothing but the store's URL.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import threading
import time
from typing import Callable

from .. import settings
from ..disk import disk_full_message, is_disk_full
from ..runs import HEARTBEAT_S, RunStore
from ..train.events import RunEnded
from ..train.plan import Plan

log = logging.getLogger(__name__)
STOP_POLL_S = 0.2          # how stale a "should I stop?" answer may be: the store is asked at most this often


class StopFlag:
    """`should_stop()` for a run: the store's stop flag (set by whoever may stop it, on any host), read at
    most every STOP_POLL_S; also true once the run has ended under the worker (a sweep, a forced stop)."""

    def __init__(self, store: RunStore, run_id: str, local: threading.Event | None = None) -> None:
        self.store, self.run_id, self.local = store, run_id, local
        self._checked, self._answer = 0.0, False

    def __call__(self) -> bool:
        if self._answer or (self.local is not None and self.local.is_set()):
            return True
        now = time.monotonic()
        if now - self._checked >= STOP_POLL_S:
            self._checked = now
            try:
                self._answer = self.store.stop_requested(self.run_id)
            except Exception:  # noqa: BLE001 - a store hiccup is not a stop; the next poll asks again
                log.warning("run %s: could not read its stop flag", self.run_id, exc_info=True)
        return self._answer


class Heartbeat:
    """A thread that renews a run's heartbeat while the block runs."""

    def __init__(self, store: RunStore, run_id: str, every: float = HEARTBEAT_S) -> None:
        self.store, self.run_id, self.every = store, run_id, every
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"tlcore-heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._done.wait(self.every):
            try:
                self.store.heartbeat([self.run_id], worker=self.worker)
            except Exception:  # noqa: BLE001 - a missed beat is survivable; a dead thread would not be
                log.warning("run %s: heartbeat failed", self.run_id, exc_info=True)

    def __enter__(self) -> "Heartbeat":
        self.store.heartbeat([self.run_id], worker=self.worker)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(self.every + 1)


def execute_run(store: RunStore, run_id: str, plan: Plan, train_fn: Callable,
                local_stop: threading.Event | None = None) -> None:
    """Run one plan to its end with `train_fn` (the entry point's runner, e.g. tlcore.labs.run_plan,
    which knows every kind). Whatever happens, the run ends in the store with exactly one RunEnded."""
    ended = False

    def emit(event) -> None:
        nonlocal ended
        # Only once stored: a RunEnded the store refused has not ended the run.
        if with_retry(lambda: store.append(run_id, event)) and isinstance(event, RunEnded):
            ended = True

    with Heartbeat(store, run_id):
        try:
            train_fn(plan, emit, StopFlag(store, run_id, local_stop), store.artifact_dir(run_id))
        except Exception as e:  # noqa: BLE001 - the worker must survive any run
            if not ended:
                if is_disk_full(e):   # the store's own disk, most likely: say so, once there is room to
                    end = RunEnded("failed", disk_full_message(e, _store_folder(store, run_id)))
                else:
                    log.exception("run %s: an error escaped the run's own handling", run_id)
                    end = RunEnded("failed", f"{type(e).__name__}: {e}")
                # The heartbeat goes on meanwhile, so no sweep takes it for a dead run ("interrupted").
                with_retry(lambda: store.append(run_id, end), ENDING_PATIENCE_S, full_disk_too=True)
            return
        if not ended:
            store.append(run_id, RunEnded("failed", "the run ended without reporting how"))


def _store_folder(store: RunStore, run_id: str):
    """Where a full disk most likely is: the SQLite file's folder, else the run's artifacts."""
    return store.root if store.db.sqlite else store.artifact_dir(run_id)


RETRY_FOR_S = 90.0
ENDING_PATIENCE_S = 3600.0   # a run's last word waits this long for room on a full disk


def with_retry(write: Callable, patience: float | None = None, *, full_disk_too: bool = False):
    """A store write that outlives a database restart: connection errors are retried with backoff for
    up to `patience` seconds (RETRY_FOR_S; the run waits rather than losing its events), anything else
    is raised. A full disk is raised at once (the run then ends as failed, saying so), unless
    `full_disk_too`: the run's ending waits for room rather than leave the run to a sweep."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from ..store.db import StoreDown

    deadline, pause = time.monotonic() + (RETRY_FOR_S if patience is None else patience), 0.25
    while True:
        try:
            return write()
        except (StoreDown, OperationalError, DBAPIError) as e:
            transient = isinstance(e, (StoreDown, OperationalError)) or getattr(e, "connection_invalidated", False)
            if is_disk_full(e) and not full_disk_too:
                raise
            if not transient or time.monotonic() + pause > deadline:
                raise
            cause = getattr(e, "cause", e)
            log.warning("the run store is unreachable (%s); retrying in %.1f s",
                        type(getattr(cause, "orig", None) or cause).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def release_memory() -> None:
    """A finished run's tensors go now, before the next run in this worker needs the room."""
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def worker_main(conn, store_spec: tuple[str, str], warm: Callable | None = None) -> None:
    """A worker process: take (run_id, plan_json, train_fn) jobs from the pipe until told to stop.

    Runs never share an interpreter with the UI, so a watched run does not wait for the server's
    interpreter lock, and a crash or an out-of-memory kill takes this process, not the server.
    `warm`, the entry point's runner, arrived pickled by name: unpickling it imported the engine
    (every kind, torch) before the first job, which is all it is for here."""
    root, url = store_spec
    store = RunStore(root, url=url)
    parent = os.getppid()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):   # the server went away
            return
        if job is None:
            return
        run_id, plan_json, train_fn, threads = job
        try:
            # The queue's thread count for this run (tlcore.jobs.runner.crowded_threads), else the host's.
            with settings.overridden("TLCORE_CPU_THREADS", threads) if threads else contextlib.nullcontext():
                execute_run(store, run_id, Plan.from_json(plan_json), train_fn)
        finally:
            release_memory()
        try:
            conn.send(("done", run_id))
        except (BrokenPipeError, OSError):
            return
        if os.getppid() != parent:   # orphaned: the run above was finished and kept; take no more
            return
