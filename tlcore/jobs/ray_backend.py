"""Runs on a Ray cluster, when TLCORE_RAY_ADDRESS is set: the same worker code as the local worker
processes (tlcore.jobs.worker.execute_run), as one Ray task per run.

The task writes its events and heartbeat to the run store itself, so the store must be one every
Ray worker can reach (PostgreSQL through TLCORE_STORE_URL; TLCORE_ARTIFACTS_DIR on a shared disk).
Tasks never retry: a retried training run would write a second set of events. A run whose worker
dies ends as failed, saying so; a stop goes through the store's flag, with ray.cancel(force=True)
when the run does not honour it in time.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .. import settings
from ..errors import TLCoreError
from ..runs import RunStore
from ..train.events import RunEnded
from .backends import device_of
from .worker import execute_run, release_memory

log = logging.getLogger(__name__)
POLL_S = 0.25
_INIT = threading.Lock()
_PASS_ON = ("TLCORE_", "TORCH_HOME", "XDG_CACHE_HOME", "HF_HOME", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


class RayUnavailable(TLCoreError):
    """TLCORE_RAY_ADDRESS names a cluster this server cannot join."""


def _runtime_env() -> dict:
    """What a Ray worker needs to import tlcore and find the same caches and store as this server."""
    repo = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k.startswith(_PASS_ON)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": env}


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A quick TCP check first: Ray's own attempt at an address where nothing listens takes minutes."""
    import socket
    hostport = address.split("://", 1)[-1]
    if ":" not in hostport or address in ("auto", "local"):
        return
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as e:
        raise RayUnavailable(f"TLCORE_RAY_ADDRESS: nothing answers at {address} ({type(e).__name__}: {e}); "
                             "start the head with `ray start --head` or unset the variable") from None


def connect(address: str) -> None:
    """ray.init(address=...) once per server process; a clear one-line error when it cannot."""
    import ray
    _reachable(address)
    with _INIT:
        if ray.is_initialized():
            return
        try:
            ray.init(address=address, namespace="tlcore", runtime_env=_runtime_env(), log_to_driver=False,
                     ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RayUnavailable(f"TLCORE_RAY_ADDRESS: cannot join the Ray cluster at {address}: {first}") from None


def _task(store_spec: tuple[str, str], run_id: str, plan_json: str, train_fn) -> None:
    from ..train.plan import Plan
    root, url = store_spec
    try:
        execute_run(RunStore(root, url=url), run_id, Plan.from_json(plan_json), train_fn)
    finally:
        release_memory()


class RayBackend:
    name = "ray"

    def __init__(self, store: RunStore, address: str | None = None) -> None:
        import ray
        self.store = store
        connect(address or settings.read("TLCORE_RAY_ADDRESS"))
        self._remote = ray.remote(max_retries=0)(_task)
        self.gpu_share = settings.read("TLCORE_RAY_GPU_FRACTION")   # below 1: runs share a GPU

    def devices(self) -> tuple[str, ...]:
        """What the cluster's workers have: a GPU anywhere in it makes CUDA runs placeable."""
        import ray
        return ("cpu", "cuda") if ray.cluster_resources().get("GPU", 0) > 0 else ("cpu",)

    def _resources(self, plan) -> dict:
        gpus = self.gpu_share if device_of(plan) == "cuda" else 0
        return {"num_cpus": 1, "num_gpus": gpus}

    def run(self, run_id, plan, train_fn, forced, threads=None) -> None:
        # `threads` is not applied: a Ray task's CPUs are what it declares to the cluster.
        import ray
        ref = self._remote.options(**self._resources(plan)).remote(self.store.spec, run_id, plan.to_json(), train_fn)
        cancelled = False
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            if ready:
                break
            if forced() and not cancelled:
                ray.cancel(ref, force=True)
                cancelled = True
        try:
            ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            self.store.append(run_id, RunEnded("stopped", "stopped by force: it did not stop by itself in time"))
        except ray.exceptions.RayError as e:   # the worker died (killed, out of memory, its node lost)
            if cancelled:
                self.store.append(run_id, RunEnded("stopped", "stopped by force: it did not stop by itself in time"))
            else:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                self.store.append(run_id, RunEnded("failed", f"interrupted: the Ray worker running it died ({first})"))

    def close(self) -> None:
        pass
