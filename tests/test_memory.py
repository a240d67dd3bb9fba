"""A plan's memory is estimated before it runs, refused when it cannot fit, and an allocator failure
anywhere reads as one plain line."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tlcore.memory as memory
import tlcore.settings as settings
import tlcore.train.scope as scope
from tlcore.data import ImageSplits
from tlcore.errors import PlanError
from tlcore.limits import Limits
from tlcore.train.events import RunEnded
from tlcore.train.plan import Plan

ROOT = Path(__file__).resolve().parents[1]


def _splits(n_train=1437, n_val=360, side=8, classes=10) -> ImageSplits:
    """A stand-in for digits' shape: the estimate needs only counts and the stored size."""
    y = torch.arange(n_train) % classes
    return ImageSplits(torch.zeros(n_train, 3, side, side, dtype=torch.uint8), y,
                       torch.zeros(n_val, 3, side, side, dtype=torch.uint8), torch.arange(n_val) % classes,
                       tuple(str(i) for i in range(classes)))


BIG = Plan(strategy="fine_tune_all", batch_size=256, image_size=224, device="cpu")   # the largest the UI offers


# --- the estimate ---------------------------------------------------------------------------------------
def test_activations_grow_with_the_batch_and_the_pixels():
    data = _splits()
    base = memory.estimate(BIG.replace(batch_size=64, image_size=112), data).parts["activations"]
    assert memory.estimate(BIG.replace(batch_size=128, image_size=112), data).parts["activations"] == \
        pytest.approx(2 * base, rel=0.05)
    assert memory.estimate(BIG.replace(batch_size=64, image_size=224), data).parts["activations"] == \
        pytest.approx(4 * base, rel=0.15)


def test_freezing_more_needs_less_memory():
    data = _splits()
    need = {s: memory.estimate(BIG.replace(strategy=s), data).total
            for s in ("fine_tune_all", "fine_tune_top", "feature_extractor")}
    assert need["fine_tune_all"] > need["fine_tune_top"] > need["feature_extractor"]
    assert need["fine_tune_all"] > 8 * 2**30 > need["feature_extractor"]   # it used over 10 GB; a probe is small


def test_footprints_are_measured_once_and_remembered_on_disk(monkeypatch):
    memory.footprint("resnet18", 3, True, "frozen", 64)
    memory._FOOTPRINTS.clear()                 # a new process: only the disk remembers

    def must_not_measure(*a, **k):
        raise AssertionError("measured again")
    monkeypatch.setattr(memory, "measure", must_not_measure)
    assert memory.footprint("resnet18", 3, True, "frozen", 64).cut_numel == 128 * 8 * 8   # stage2's output


def test_the_estimate_uses_the_loops_own_batch_sizes():
    import inspect
    src = inspect.getsource(memory._at_cut)
    assert "eval_batch(plan)" in src and "FEATURE_BATCH" in src   # imported from the loop, never copied


def _tiny_zip(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for c in ("a", "b"):
            for i in range(20):   # 32 training images (one full batch), 8 for validation
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                zf.writestr(f"{c}/{i}.png", buf.getvalue())
    return path


_MEASURE = """
import ctypes, gc, json, re, sys
import tlcore.labs  # a worker process imports every kind: its memory before a run counts
from tlcore import memory
from tlcore.train.loop import train
from tlcore.train.plan import Plan

def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024

trim = ctypes.CDLL(None).malloc_trim   # glibc: hand freed heap back, so reused memory counts again
out = []
for spec in json.loads(sys.argv[2]):
    plan = Plan(dataset="folder", dataset_path=sys.argv[1], epochs=1, device="cpu", **spec)
    est = memory.estimate(plan)
    gc.collect()
    trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                   # peak RSS := RSS now
    before = status("VmRSS")
    events = []
    train(plan, events.append)
    out.append({"real": status("VmHWM"), "est": est.total, "end": events[-1].status})
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak from /proc")
def test_estimates_are_close_to_the_real_peak_of_two_models(tmp_path):
    """Each plan's real peak (the child's peak RSS: like a worker process, it has imported tlcore and
    torch, and runs one plan) against the estimate: it must not be over it, nor far under it."""
    plans = [{"model": "efficientnet_lite0", "strategy": "fine_tune_all", "batch_size": 32, "image_size": 48},
             {"model": "mobilenet_v2", "strategy": "scratch", "batch_size": 32, "image_size": 48}]
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(_tiny_zip(tmp_path / "tiny.zip")), json.dumps(plans)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    for plan, r in zip(plans, json.loads(done.stdout.strip().splitlines()[-1])):
        assert r["end"] == "finished"
        ratio = r["real"] / r["est"]
        assert 0.4 <= ratio <= 1.0, f"{plan['model']}: real {r['real'] / 2**20:.0f} MiB, " \
                                     f"estimated {r['est'] / 2**20:.0f} MiB"


# --- refusing ---------------------------------------------------------------------------------------------
def test_a_plan_over_the_budget_is_refused_saying_what_to_lower():
    data, limits = _splits(), Limits(max_run_memory_gb=4)
    with pytest.raises(PlanError) as err:
        limits.check(BIG, data)
    e = err.value
    assert e.field == "batch_size" and "\n" not in str(e) and "4.0 GB" in str(e)
    batch = int(str(e).split("lower the batch size to ")[1].split()[0])
    limits.check(BIG.replace(batch_size=batch), data)             # what it suggests does fit
    with pytest.raises(PlanError):
        limits.check(BIG.replace(batch_size=batch + 8), data)     # and is about the largest that does


def test_the_default_budget_is_a_share_of_this_machine_split_between_concurrent_runs(monkeypatch):
    host = settings.host_memory_bytes()
    assert 2**28 < host <= 2**50
    monkeypatch.delenv("TLCORE_MAX_RUN_MEMORY_GB", raising=False)
    assert Limits.from_env().max_run_memory_gb == pytest.approx(settings.HOST_SHARE * host / 2**30, rel=1e-6)
    monkeypatch.setenv("TLCORE_MAX_CONCURRENT", "2")
    assert Limits.from_env().max_run_memory_gb == pytest.approx(settings.HOST_SHARE * host / 2**31, rel=1e-6)
    monkeypatch.setenv("TLCORE_MAX_RUN_MEMORY_GB", "3.5")
    assert Limits.from_env().max_run_memory_gb == 3.5


def test_limits_live_in_their_own_module_and_jobs_still_offers_them():
    from tlcore import jobs
    assert jobs.Limits is Limits


# --- allocator failures -----------------------------------------------------------------------------------
CPU_OOM = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you "
                       "tried to allocate 10737418240 bytes. Error code 12 (Cannot allocate memory)")
FAILURES = {
    "the computer": CPU_OOM,
    "the GPU": torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.2 GiB total)"),
    "the Apple GPU": RuntimeError("MPS backend out of memory (MPS allocated: 17.1 GB, other allocations: 1.2 GB, "
                                  "max allowed: 18.1 GB). Tried to allocate 512.0 MB on private pool."),
}


@pytest.mark.parametrize("where", sorted(FAILURES))
def test_every_allocator_failure_is_recognised_and_told_plainly(where):
    exc = FAILURES[where]
    assert scope.is_allocator_failure(exc)
    msg = scope.allocator_message(exc)
    assert msg.startswith(f"{where} ran out of memory") and "batch size" in msg and "\n" not in msg
    assert len({scope.allocator_message(e).split(" ran out")[1] for e in FAILURES.values()}) == 1   # one message


@pytest.mark.parametrize("exc", [RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("bad value"),
                                 KeyError("out of memory")])
def test_other_errors_are_not_taken_for_allocator_failures(exc):
    assert not scope.is_allocator_failure(exc)
    assert scope.is_allocator_failure(MemoryError())


def test_a_run_that_hits_the_cpu_allocator_fails_with_the_plain_message(monkeypatch):
    from tlcore.train import loop, phases

    def no_memory(*a, **k):
        raise CPU_OOM
    monkeypatch.setattr(phases, "build_network", no_memory)
    events = []
    loop.train(Plan(image_size=32, epochs=1), events.append)
    end = events[-1]
    assert isinstance(end, RunEnded) and end.status == "failed"
    assert end.message == scope.allocator_message(CPU_OOM) and "internal error" not in end.message
