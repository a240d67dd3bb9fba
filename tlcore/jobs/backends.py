"""Where a run executes: a worker process (the default), a thread (tests, notebooks) or Ray.

A backend's `run(run_id, plan, train_fn, forced)` blocks until the run has ended in the store, and
must end it there (as failed, saying why) if its worker dies. `forced()` turns true when a stop
was asked for and the run has not honoured it in time: the backend then cancels it by force.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from typing import Callable, Protocol

from ..device import auto_device_type
from ..runs import RunStore
from ..train.events import RunEnded
from ..train.plan import Plan
from .worker import execute_run, release_memory, worker_main

log = logging.getLogger(__name__)
POLL_S = 0.25
VOUCH_EVERY_S = 5.0   # while its worker process is alive, the server renews the run's heartbeat too


def device_of(plan: Plan) -> str:
    """The device type a plan's run queues for ("auto" resolved on this host)."""
    return auto_device_type() if plan.device == "auto" else plan.device


DEVICE_NAMES = {"cuda": "CUDA GPU", "mps": "Apple GPU", "cpu": "CPU"}


def local_devices() -> tuple[str, ...]:
    """The device types runs can train on in this host's worker processes."""
    import torch

    from ..device import _mps_available
    return ("cpu", *(("cuda",) if torch.cuda.is_available() else ()), *(("mps",) if _mps_available() else ()))


class Backend(Protocol):
    name: str

    def devices(self) -> tuple[str, ...]: ...   # the device types its workers have

    # `threads`: CPU threads for this run, or None for the worker's own setting (tlcore.jobs.runner.crowded_threads)
    def run(self, run_id: str, plan: Plan, train_fn: Callable, forced: Callable[[], bool],
            threads: int | None = None) -> None: ...

    def close(self) -> None: ...


class ThreadBackend:
    """Runs in a thread of this process: for tests and notebooks, never for a shared server."""
    name = "thread"

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def devices(self) -> tuple[str, ...]:
        return local_devices()

    def run(self, run_id, plan, train_fn, forced, threads=None) -> None:
        # `threads` is not applied: this process's torch threads are the server's own too.
        try:
            execute_run(self.store, run_id, plan, train_fn)
        finally:
            release_memory()

    def close(self) -> None:
        pass


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, ctx, store: RunStore, name: str, warm: Callable | None = None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, store.spec, warm), name=name, daemon=True)
        self.proc.start()
        child.close()

    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(10)

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.kill()


def death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal
        sig = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        why = " (SIGKILL usually means the machine ran out of memory)" if sig == "SIGKILL" else ""
        return f"the worker process running it was killed by {sig}{why}"
    return f"the worker process running it died (exit code {exitcode})"


class ProcessBackend:
    """A small pool of worker processes per device, started with spawn (safe with CUDA, no inherited
    locks); each JobRunner slot owns one worker and replaces it when it dies."""
    name = "process"

    def __init__(self, store: RunStore, warm: Callable | None = None) -> None:
        self.store = store
        self._ctx = mp.get_context("spawn")
        self._workers: dict[int, _Worker] = {}    # slot thread id -> its worker
        self._lock = threading.Lock()
        # `warm` (the runner's train_fn): one worker starts now and imports the engine while the class opens
        # its pages, so the first run does not wait for it (5-10 s on a busy 2-core host). Its slot takes it.
        self._spare = _Worker(self._ctx, store, "tlcore-worker-spare", warm) if warm is not None else None

    def devices(self) -> tuple[str, ...]:
        return local_devices()   # the workers are spawned from this process, on this machine

    def _worker(self) -> _Worker:
        key = threading.get_ident()
        with self._lock:
            w = self._workers.get(key)
            if w is None or not w.alive():
                spare, self._spare = self._spare, None
                w = self._workers[key] = spare if spare is not None and spare.alive() else \
                    _Worker(self._ctx, self.store, f"tlcore-worker-{len(self._workers)}")
            return w

    def run(self, run_id, plan, train_fn, forced, threads=None) -> None:
        w = self._worker()
        w.conn.send((run_id, plan.to_json(), train_fn, threads))
        vouched = time.monotonic()
        while True:
            # A worker renews its run's heartbeat once it has imported torch and picked the run up; on a
            # loaded machine a fresh spawn can take longer than the grace period, so until then (and
            # after) the server vouches for a run whose worker process it sees alive.
            if time.monotonic() - vouched >= VOUCH_EVERY_S and w.alive():
                vouched = time.monotonic()
                try:
                    self.store.heartbeat([run_id])
                except Exception:  # noqa: BLE001 - the database may be restarting; the worker beats too
                    log.warning("run %s: heartbeat failed", run_id, exc_info=True)
            if w.conn.poll(POLL_S):
                try:
                    w.conn.recv()
                    return
                except (EOFError, OSError):
                    pass   # it died while answering: handled below
            if not w.alive() or not w.conn:
                w.proc.join(1)
                self.store.append(run_id, RunEnded("failed", death_message(w.proc.exitcode)))
                return
            if forced():
                w.kill()
                self.store.append(run_id, RunEnded("stopped", "stopped by force: it did not stop by itself in time"))
                return

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
            if self._spare is not None:
                workers.append(self._spare)
                self._spare = None
        for w in workers:
            w.close()
