"""Background execution of runs: submit returns a run id at once; a FIFO queue feeds at most
`max_concurrent` workers (1 per device by default) so a class sharing one server cannot overload it.

Workers only write to the run store; pages read the store. Nothing here knows about Streamlit.
Host limits come from the constructor or the environment:
  TLCORE_MAX_CONCURRENT (default 1), TLCORE_MAX_EPOCHS, TLCORE_MAX_TRAIN_IMAGES (per_class x classes).
"""
from __future__ import annotations

import gc
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .errors import PlanError
from .runs import RunStore
from .train.events import RunEnded
from .train.plan import Plan


@dataclass(frozen=True)
class Limits:
    max_epochs: int | None = None
    max_train_images: int | None = None     # caps per_class * classes; None: no cap

    @classmethod
    def from_env(cls) -> "Limits":
        def num(name: str) -> int | None:
            v = os.environ.get(name)
            return int(v) if v else None
        return cls(num("TLCORE_MAX_EPOCHS"), num("TLCORE_MAX_TRAIN_IMAGES"))

    def check(self, plan: Plan) -> None:
        if self.max_epochs is not None and plan.epochs > self.max_epochs:
            raise PlanError("epochs", f"this server allows at most {self.max_epochs} epochs per run")
        if self.max_train_images is not None:
            from .data import DATASETS
            k = len(DATASETS[plan.dataset].classes) or 2
            if plan.per_class is None or plan.per_class * k > self.max_train_images:
                raise PlanError("per_class", f"this server allows at most {self.max_train_images} training images "
                                             f"per run: set images per class to {max(2, self.max_train_images // k)} or fewer")


def _default_train(plan, emit, should_stop, artifact_dir) -> None:
    from .train.loop import train
    train(plan, emit, should_stop, artifact_dir)


class JobRunner:
    def __init__(self, store: RunStore, *, max_concurrent: int | None = None, train_fn: Callable | None = None,
                 limits: Limits | None = None) -> None:
        self.store = store
        self.max_concurrent = max_concurrent or int(os.environ.get("TLCORE_MAX_CONCURRENT", "1"))
        self.train_fn = train_fn or _default_train
        self.limits = limits if limits is not None else Limits.from_env()
        self._queue: deque[tuple[str, Plan]] = deque()
        self._stops: dict[str, threading.Event] = {}
        self._running: set[str] = set()
        self._lock = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False
        store.mark_interrupted()

    def submit(self, plan: Plan, *, owner: str = "", label: str = "") -> str:
        self.limits.check(plan)
        run_id = self.store.create(plan, owner=owner, label=label)
        with self._lock:
            self._queue.append((run_id, plan))
            self._stops[run_id] = threading.Event()
            if len(self._workers) < self.max_concurrent:
                t = threading.Thread(target=self._work, name=f"tlcore-worker-{len(self._workers)}", daemon=True)
                self._workers.append(t)
                t.start()
            self._lock.notify()
        return run_id

    def position(self, run_id: str) -> int | None:
        """1 for the next run to start; None when the run is not waiting."""
        with self._lock:
            for i, (rid, _) in enumerate(self._queue):
                if rid == run_id:
                    return i + 1
        return None

    def status(self, run_id: str) -> str:
        return self.store.status(run_id)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def stop(self, run_id: str) -> None:
        with self._lock:
            for item in list(self._queue):
                if item[0] == run_id:
                    self._queue.remove(item)
                    self._stops.pop(run_id, None)
                    self.store.append(run_id, RunEnded("stopped", "stopped before it started"))
                    return
            flag = self._stops.get(run_id)
        if flag is not None:
            flag.set()

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the run has ended (for scripts and tests); returns its status."""
        with self._lock:
            self._lock.wait_for(lambda: run_id not in self._running and all(r != run_id for r, _ in self._queue),
                                timeout=timeout)
        return self.store.status(run_id)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            for run_id, _ in self._queue:
                self.store.append(run_id, RunEnded("stopped", "the server shut down before this run started"))
            self._queue.clear()
            for flag in self._stops.values():
                flag.set()
            self._lock.notify_all()
        if wait:
            for t in self._workers:
                t.join()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue or self._closed)
                if self._closed and not self._queue:
                    return
                run_id, plan = self._queue.popleft()
                self._running.add(run_id)
                flag = self._stops[run_id]
            try:
                self._execute(run_id, plan, flag)
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
            ended = ended or isinstance(event, RunEnded)
            self.store.append(run_id, event)

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
