"""Background execution of runs: submit returns a run id at once; each device ("cpu", "cuda", "mps";
"auto" counts as the device it trains on) has its own FIFO queue feeding at most `max_concurrent`
workers (1 by default), so a class sharing one server cannot overload it and a CPU run never waits
behind a GPU run.

Workers only write to the run store; pages read the store. Nothing here knows about Streamlit.
Host limits come from the constructor or the environment:
  TLCORE_MAX_CONCURRENT (per device, default 1), TLCORE_MAX_EPOCHS, TLCORE_MAX_TRAIN_IMAGES (training
  images a run would really use).
"""
from __future__ import annotations

import gc
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .device import auto_device_type
from .errors import PlanError
from .limits import Limits
from .runs import RunStore
from .train.events import RunEnded
from .train.plan import Plan

log = logging.getLogger(__name__)


def _default_train(plan, emit, should_stop, artifact_dir) -> None:
    from .train.loop import train
    train(plan, emit, should_stop, artifact_dir)


def _device_of(plan: Plan) -> str:
    return auto_device_type() if plan.device == "auto" else plan.device


class JobRunner:
    def __init__(self, store: RunStore, *, max_concurrent: int | None = None, train_fn: Callable | None = None,
                 limits: Limits | None = None) -> None:
        self.store = store
        self.max_concurrent = max_concurrent or int(os.environ.get("TLCORE_MAX_CONCURRENT", "1"))  # per device
        self.train_fn = train_fn or _default_train
        self.limits = limits if limits is not None else Limits.from_env()
        self._queues: dict[str, deque[tuple[str, Plan]]] = {}   # per device
        self._workers: dict[str, list[threading.Thread]] = {}   # per device
        self._stops: dict[str, threading.Event] = {}
        self._running: set[str] = set()
        self._lock = threading.Condition()
        self._closed = False
        store.mark_interrupted()

    def submit(self, plan: Plan, *, owner: str = "", label: str = "") -> str:
        self.limits.check(plan)
        device = _device_of(plan)
        run_id = self.store.create(plan, owner=owner, label=label)
        with self._lock:
            self._queues.setdefault(device, deque()).append((run_id, plan))
            self._stops[run_id] = threading.Event()
            self._spawn(device)
            self._lock.notify_all()  # all devices' workers share one condition: notify() could wake the wrong one
        return run_id

    def position(self, run_id: str) -> int | None:
        """1 for the next run to start on its device; None when the run is not waiting."""
        with self._lock:
            for queue in self._queues.values():
                for i, (rid, _) in enumerate(queue):
                    if rid == run_id:
                        return i + 1
        return None

    def status(self, run_id: str) -> str:
        return self.store.status(run_id)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def stop(self, run_id: str, *, owner: str) -> None:
        """Stop a queued or running run; only its owner may (NotOwner otherwise)."""
        self.store.check_owner(run_id, owner, "stop")
        with self._lock:
            for queue in self._queues.values():
                for item in queue:
                    if item[0] == run_id:
                        # Record first: if the store refuses, the run stays queued rather than lost.
                        self.store.append(run_id, RunEnded("stopped", "stopped before it started"))
                        queue.remove(item)
                        self._stops.pop(run_id, None)
                        self._lock.notify_all()  # wait(run_id) is blocked on this
                        return
            flag = self._stops.get(run_id)
        if flag is not None:
            flag.set()

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the run has ended (for scripts and tests); returns its status."""
        with self._lock:
            self._lock.wait_for(lambda: run_id not in self._running and self._queued(run_id) is None,
                                timeout=timeout)
        return self.store.status(run_id)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            for queue in self._queues.values():
                for run_id, _ in queue:
                    self.store.append(run_id, RunEnded("stopped", "the server shut down before this run started"))
                queue.clear()
            for flag in self._stops.values():
                flag.set()
            self._lock.notify_all()
            workers = [t for ts in self._workers.values() for t in ts]
        if wait:
            for t in workers:
                t.join()

    def _queued(self, run_id: str) -> str | None:
        """The device whose queue holds the run; call with the lock held."""
        return next((d for d, q in self._queues.items() if any(r == run_id for r, _ in q)), None)

    def _spawn(self, device: str) -> None:
        """Start a worker for `device` if it has waiting runs and fewer live workers than the limit;
        call with the lock held. Only live threads count, so a worker that died gets replaced."""
        me = threading.current_thread()
        live = [t for t in self._workers.get(device, []) if t.is_alive() and t is not me]
        if len(live) < self.max_concurrent and self._queues.get(device):
            t = threading.Thread(target=self._work, args=(device,), name=f"tlcore-{device}-worker-{len(live)}",
                                 daemon=True)
            live.append(t)
            t.start()
        self._workers[device] = live

    def _work(self, device: str) -> None:
        try:
            while (job := self._next(device)) is not None:
                self._run(*job)
        finally:
            with self._lock:
                self._spawn(device)  # this worker is ending: if it died with runs waiting, replace it

    def _next(self, device: str) -> tuple[str, Plan, threading.Event] | None:
        with self._lock:
            queue = self._queues[device]
            self._lock.wait_for(lambda: queue or self._closed)
            if not queue:
                return None
            run_id, plan = queue.popleft()
            self._running.add(run_id)
            return run_id, plan, self._stops[run_id]

    def _run(self, run_id: str, plan: Plan, flag: threading.Event) -> None:
        try:
            self._execute(run_id, plan, flag)
        except BaseException as e:  # nothing above a worker thread handles it: fail the run, keep the worker
            log.exception("run %s: an error escaped the run's own handling", run_id)
            try:
                self.store.append(run_id, RunEnded("failed", f"{type(e).__name__}: {e}"))
            except Exception:
                log.exception("run %s: recording its failure failed again; it stays active in the store", run_id)
        finally:
            with self._lock:
                self._running.discard(run_id)
                self._stops.pop(run_id, None)
                self._lock.notify_all()
        _release_memory()

    def _execute(self, run_id: str, plan: Plan, flag: threading.Event) -> None:
        ended = False

        def emit(event) -> None:
            nonlocal ended
            self.store.append(run_id, event)
            # Only once stored: a RunEnded the store refused has not ended the run.
            ended = ended or isinstance(event, RunEnded)

        try:
            self.train_fn(plan, emit, flag.is_set, self.store.artifact_dir(run_id))
        except Exception as e:  # the worker must survive any run
            if not ended:
                self.store.append(run_id, RunEnded("failed", f"{type(e).__name__}: {e}"))
            return
        if not ended:
            self.store.append(run_id, RunEnded("failed", "the run ended without reporting how"))


def _release_memory() -> None:
    """A finished run's tensors go now, whoever closed their tab."""
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
