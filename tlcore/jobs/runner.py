"""The job queue: per-device FIFO queues, a few slots per device, stops, waits and the liveness sweep."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Callable

from .. import settings
from ..errors import PlanError, TLCoreError
from ..runs import HEARTBEAT_S, RunStore
from ..train.events import RunEnded
from ..train.plan import Plan
from .backends import DEVICE_NAMES, Backend, ProcessBackend, ThreadBackend, device_of, local_devices
from ..limits import Limits

log = logging.getLogger(__name__)
FORCE_STOP_AFTER_S = 30.0      # a running run that ignores its stop flag this long is cancelled by force
SWEEP_EVERY_S = 10.0


def crowded_threads(device: str, waiting: int, cores: int | None = None) -> int | None:
    """CPU threads for a run that starts while `waiting` others wait for the same device: on a CPU host
    a crowded queue means many students' pages, which the server draws on the same cores. A run then
    leaves one core to the server: a thread of a run's parallel step that the server pushes off its
    core stalls the whole step (on 2 cores with 20 pages polling, each tiny run took 8 s on two threads
    and 3.5 s on one, benchmarks/loadtest.py). Alone it takes every core. None: the host's own
    setting, which wins when the host set TLCORE_CPU_THREADS."""
    cores = cores or os.cpu_count() or 1
    if device != "cpu" or waiting <= 0 or cores < 2 or settings.is_set("TLCORE_CPU_THREADS"):
        return None
    return cores - 1


class QueueFull(TLCoreError):
    """One person already has as many runs waiting as this server allows."""


def _make_backend(name: str, store: RunStore, train_fn: Callable) -> Backend:
    if name == "thread":
        return ThreadBackend(store)
    if name == "ray":
        from .ray_backend import RayBackend
        return RayBackend(store)
    return ProcessBackend(store, warm=train_fn if settings.read("TLCORE_WORKER_PREWARM") else None)


def default_backend() -> str:
    return "ray" if settings.read("TLCORE_RAY_ADDRESS") else "process"


class JobRunner:
    def __init__(self, store: RunStore, *, train_fn: Callable, max_concurrent: int | None = None,
                 backend: str | Backend | None = None, limits: Limits | None = None,
                 max_queued_per_owner: int | None = None) -> None:
        self.store = store
        self.limits = limits if limits is not None else Limits.from_env()   # checks every setting first
        self.max_concurrent = max_concurrent or settings.read("TLCORE_MAX_CONCURRENT")   # per device
        self.max_queued_per_owner = max_queued_per_owner or settings.read("TLCORE_MAX_QUEUED_PER_OWNER")
        self.backend = _make_backend(backend or default_backend(), store, train_fn) if not hasattr(backend, "run") \
            else backend
        # How a plan runs, handed in by the entry point: tlcore.labs.run_plan knows every kind. It travels to
        # worker processes and Ray tasks by reference, so importing it there registers the kinds too.
        self.train_fn = train_fn
        self._queues: dict[str, deque[tuple[str, Plan, str]]] = {}   # device -> (run id, plan, owner)
        self._slots: dict[str, list[threading.Thread]] = {}
        self._running: set[str] = set()
        self._stop_asked: dict[str, float] = {}                      # running run -> when its stop was asked
        self._lock = threading.Condition()
        self._closed = threading.Event()
        store.sweep()
        self._sweeper = threading.Thread(target=self._keep_alive, name="tlcore-sweeper", daemon=True)
        self._sweeper.start()

    # --- what pages call ---------------------------------------------------------------------------
    def devices(self) -> tuple[str, ...]:
        """The device types a plan may ask for here ("auto" always): what the backend's workers have."""
        have = getattr(self.backend, "devices", None)
        return have() if have is not None else local_devices()

    def check_device(self, plan: Plan) -> None:
        """A plan for a device no worker has would queue, then fail: refused like any out-of-range value."""
        if plan.device != "auto" and plan.device not in self.devices():
            raise PlanError("device", f"this server has no {DEVICE_NAMES.get(plan.device, plan.device)}: choose auto or "
                                      f"one of {', '.join(self.devices())}")

    def submit(self, plan: Plan, *, owner: str = "", label: str = "", lesson: str = "") -> str:
        self.check_device(plan)
        self.limits.check(plan)
        device = device_of(plan)
        with self._lock:
            waiting = sum(1 for q in self._queues.values() for _, _, o in q if o == owner and owner)
            if waiting >= self.max_queued_per_owner:
                raise QueueFull(f"you already have {waiting} runs waiting, the most this server queues for one "
                                "person: wait until one of them starts, or stop one")
            run_id = self.store.create(plan, owner=owner, label=label, lesson=lesson)
            self._queues.setdefault(device, deque()).append((run_id, plan, owner))
            self._spawn(device)
            self._lock.notify_all()  # all devices' slots share one condition: notify() could wake the wrong one
        return run_id

    def position(self, run_id: str) -> int | None:
        """1 for the next run to start on its device; None when the run is not waiting here."""
        with self._lock:
            for queue in self._queues.values():
                for i, (rid, _, _) in enumerate(queue):
                    if rid == run_id:
                        return i + 1
        return None

    def status(self, run_id: str) -> str:
        return self.store.status(run_id)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def stop(self, run_id: str, *, owner: str, teacher_key: str | None = None) -> None:
        """Stop a queued or running run. Only its owner may (NotOwner otherwise), or a teacher holding
        the host's TLCORE_TEACHER_KEY: the one deliberate exception."""
        self.store.check_owner_or_teacher(run_id, owner, teacher_key, "stop")
        with self._lock:
            for queue in self._queues.values():
                for item in queue:
                    if item[0] == run_id:
                        # Record first: if the store refuses, the run stays queued rather than lost.
                        self.store.append(run_id, RunEnded("stopped", "stopped before it started"))
                        queue.remove(item)
                        self._lock.notify_all()  # wait(run_id) is blocked on this
                        return
            self._stop_asked.setdefault(run_id, time.monotonic())
        # The worker may be anywhere (a process, another host): it reads the flag in the store.
        self.store.request_stop(run_id, owner=None)

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the run has ended (for scripts and tests); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while run_id in self._running or self._queued(run_id) is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._lock.wait(left)
        return self.store.status(run_id)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._closed.set()
            for queue in self._queues.values():
                for run_id, _, _ in queue:
                    self.store.append(run_id, RunEnded("stopped", "the server shut down before this run started"))
                queue.clear()
            for run_id in self._running:
                self._stop_asked.setdefault(run_id, time.monotonic())
            running = list(self._running)
            self._lock.notify_all()
            slots = [t for ts in self._slots.values() for t in ts]
        for run_id in running:
            self.store.request_stop(run_id, owner=None)
        if wait:
            for t in slots:
                t.join()
            self.backend.close()

    # --- the slots ----------------------------------------------------------------------------------
    def _queued(self, run_id: str) -> str | None:
        """The device whose queue holds the run; call with the lock held."""
        return next((d for d, q in self._queues.items() if any(r == run_id for r, _, _ in q)), None)

    def _spawn(self, device: str) -> None:
        """Start a slot for `device` if it has waiting runs and fewer live slots than the limit; call
        with the lock held. Only live threads count, so a slot that died gets replaced."""
        me = threading.current_thread()
        live = [t for t in self._slots.get(device, []) if t.is_alive() and t is not me]
        if len(live) < self.max_concurrent and self._queues.get(device):
            t = threading.Thread(target=self._work, args=(device,), name=f"tlcore-{device}-slot-{len(live)}",
                                 daemon=True)
            live.append(t)
            t.start()
        self._slots[device] = live

    def _work(self, device: str) -> None:
        try:
            while (job := self._next(device)) is not None:
                self._run(*job)
        finally:
            with self._lock:
                self._spawn(device)  # this slot is ending: if it died with runs waiting, replace it

    def _next(self, device: str) -> tuple[str, Plan] | None:
        with self._lock:
            queue = self._queues[device]
            while not queue and not self._closed.is_set():
                self._lock.wait()
            if not queue:
                return None
            run_id, plan, _owner = queue.popleft()
            self._running.add(run_id)
            return run_id, plan

    def _run(self, run_id: str, plan: Plan) -> None:
        def forced() -> bool:
            asked = self._stop_asked.get(run_id)
            return asked is not None and time.monotonic() - asked > FORCE_STOP_AFTER_S

        try:
            device = device_of(plan)
            with self._lock:
                waiting = len(self._queues.get(device, ()))
            self.backend.run(run_id, plan, self.train_fn, forced, threads=crowded_threads(device, waiting))
        except BaseException as e:  # nothing above a slot handles it: fail the run, keep the slot
            log.exception("run %s: the %s backend failed", run_id, self.backend.name)
            try:
                self.store.append(run_id, RunEnded("failed", f"{type(e).__name__}: {e}"))
            except Exception:
                log.exception("run %s: recording its failure failed too; the sweep will end it", run_id)
        finally:
            with self._lock:
                self._running.discard(run_id)
                self._stop_asked.pop(run_id, None)
                self._lock.notify_all()

    # --- liveness -----------------------------------------------------------------------------------
    def _keep_alive(self) -> None:
        """Renew the heartbeat of the runs waiting here (their workers renew the running ones') and
        end the runs whose holder has gone, every few seconds, until shutdown."""
        last_sweep = time.monotonic()
        while not self._closed.wait(HEARTBEAT_S):
            with self._lock:
                waiting = [r for q in self._queues.values() for r, _, _ in q]
            try:
                self.store.heartbeat(waiting)
                if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
                    last_sweep = time.monotonic()
                    self.store.sweep()
            except Exception:  # noqa: BLE001 - the database may be restarting: try again next beat
                log.warning("heartbeat or sweep failed; trying again in %.0f s", HEARTBEAT_S, exc_info=True)
