"""The bench's harness: what every case needs around its measurement, and nothing about any one case.

A suite runs in scratch folders with stand-in weights where ImageNet files are not cached (`Context`,
`isolated_dirs`, `stand_in_weights`), on a Fashion-MNIST subset registered as a dataset for the suite's
length (`bench_dataset`), runs the engine with a clock on its events (`run_ours`, `Timeline`), and marks
a figure a busy neighbour disturbed (`flag_noise`). The cases and the runner are in `cases.py`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..data import DATASETS, ImageSplits, load_dataset
from ..data.base import DatasetSpec
from ..data.images import shrink
from ..data.registry import register
from ..data.splits import subsample
from ..device import DevicePolicy
from ..errors import TLCoreError
from ..models import MODELS, weights_status
from ..paths import data_dir
from ..train.events import Event, RunEnded
from ..train.features import FeatureCache
from ..train.loop import train
from ..train.plan import Plan
from .report import Measure, Result

# A folder with Fashion-MNIST in torchvision's layout (FashionMNIST/raw/...), for when it is not in
# the engine's data folder (TLCORE_DATA_DIR); --data-root overrides it. benchmarks/ says where it is here.
DATA_ENV = "TLCORE_BENCH_DATA"


# ---------------------------------------------------------------------------------------------
#                                            Setup
# ---------------------------------------------------------------------------------------------
@dataclass
class Context:
    policy: DevicePolicy
    tmp: Path                                  # scratch: cold feature caches, stand-in weights, the CLI's homes
    weights: dict[str, str]                    # model -> "ImageNet" or why not
    log: Callable[[str], None] = lambda line: None
    datasets: list[str] = field(default_factory=list)   # registered for this suite only; see forget_datasets
    data_root: Path | None = None              # looked in for Fashion-MNIST before the engine's data folder


@contextlib.contextmanager
def stand_in_weights(models: set[str], root: Path) -> Iterator[dict[str, str]]:
    """Random-init files in place of ImageNet weights that are not cached, so throughput cases run
    offline: the compute is the same. Accuracy figures from such a model mean nothing and say so."""
    missing = sorted(m for m in models if weights_status(m) == "needs download")
    labels = {m: "random init (ImageNet file not cached; same compute)" if m in missing else "ImageNet"
              for m in models}
    if not missing:
        yield labels
        return
    old = torch.hub.get_dir()
    ckpt = root / "hub" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    for f in (Path(old) / "checkpoints").glob("*"):
        (ckpt / f.name).symlink_to(f)
    for m in missing:
        torch.manual_seed(0)
        torch.save(MODELS[m].build().state_dict(), ckpt / os.path.basename(MODELS[m].weights.url))
    torch.hub.set_dir(str(root / "hub"))
    try:
        yield labels
    finally:
        torch.hub.set_dir(old)


@contextlib.contextmanager
def isolated_dirs(root: Path) -> Iterator[None]:
    """Decoded-data caches and run stores go to scratch: a benchmark neither reads nor leaves state."""
    saved = {k: os.environ.get(k) for k in ("TLCORE_CACHE_DIR", "TLCORE_HOME")}
    os.environ["TLCORE_CACHE_DIR"], os.environ["TLCORE_HOME"] = str(root / "cache"), str(root / "home")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------------------------------------
#                                            Data
# ---------------------------------------------------------------------------------------------
def data_roots(data_root: Path | None) -> list[Path]:
    """Where the bench looks for Fashion-MNIST, in order: --data-root, $TLCORE_BENCH_DATA, the engine's data folder."""
    env = os.environ.get(DATA_ENV)
    roots = [Path(data_root)] if data_root is not None else [Path(env)] if env else []
    return roots + [data_dir()]


def _fashion_mnist(data_root: Path | None = None) -> tuple[ImageSplits, str] | None:
    for root in data_roots(data_root):
        try:
            return load_dataset("fashion_mnist", image_size=28, root=root, download=False), f"Fashion-MNIST ({root})"
        except TLCoreError:
            continue
    return None


def synthetic_fashion(n_train: int, n_val: int, seed: int = 0) -> ImageSplits:
    """Fashion-MNIST's shape (28 px grey, 10 classes) when it is absent: a smooth random template
    per class under noise, so a probe on CNN features learns it but not instantly."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.nn.functional.interpolate(torch.rand(10, 1, 7, 7, generator=g), size=28, mode="bilinear")

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 10
        x = 0.6 * templates[y] + 0.4 * torch.rand(n, 1, 28, 28, generator=g)
        return (x * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous(), y

    (tx, ty), (vx, vy) = make(n_train), make(n_val)
    return ImageSplits(tx, ty, vx, vy, tuple(f"class {i}" for i in range(10)), "synthetic")


def _stratified(y: torch.Tensor, n: int) -> torch.Tensor:
    keep = subsample(y, 10, max(2, math.ceil(n / 10)), 1.0, seed=0)
    return keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(0))[:n]].sort().values


def bench_dataset(ctx: Context, n_train: int, n_val: int) -> tuple[str, ImageSplits, str]:
    """A balanced Fashion-MNIST subset registered as a dataset, so the engine loads it like any other.

    Returns (registry name, the splits, where they came from)."""
    name = f"bench_fmnist_{n_train}_{n_val}"
    if name in DATASETS:
        data = DATASETS[name].load(None, 28, 0, 0.0)
        return name, data, data.name
    full = _fashion_mnist(ctx.data_root)
    if full is None:
        source = "synthetic (Fashion-MNIST not found)"
        data = dataclasses.replace(synthetic_fashion(n_train, n_val), name=source)
    else:
        f, source = full
        tr, va = _stratified(f.train_y, n_train), _stratified(f.val_y, n_val)
        data = ImageSplits(f.train_x[tr], f.train_y[tr], f.val_x[va], f.val_y[va], f.classes, source)

    def load(root: object, image_size: int, seed: int, val_fraction: float) -> ImageSplits:
        if image_size >= data.image_size:
            return data
        return ImageSplits(shrink(data.train_x, image_size), data.train_y, shrink(data.val_x, image_size),
                           data.val_y, data.classes, data.name)

    register(DatasetSpec(name, f"Bench subset {n_train}/{n_val}", source, "bundled", "as the source",
                         data.classes, 28, "", load=load, available_offline=lambda root: True))
    ctx.datasets.append(name)
    return name, data, source


def forget_datasets(ctx: Context) -> None:
    """Take the suite's subsets out of the registry again: the dataset list people see stays the product's."""
    for name in ctx.datasets:
        DATASETS.pop(name, None)
    ctx.datasets.clear()


# ---------------------------------------------------------------------------------------------
#                                     Running the engine
# ---------------------------------------------------------------------------------------------
@dataclass
class Timeline:
    """Engine events, each stamped with seconds since the run started."""
    t0: float = field(default_factory=time.perf_counter)
    events: list[tuple[float, Event]] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        self.events.append((time.perf_counter() - self.t0, event))

    def of(self, kind: type) -> list[tuple[float, Event]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]


def run_ours(plan: Plan, ctx: Context, cache: FeatureCache | None = None) -> tuple[Timeline, Measure]:
    cache = cache or FeatureCache(Path(tempfile.mkdtemp(dir=ctx.tmp, prefix="features-")), 2**40)
    with Measure(ctx.policy.device) as m:
        tl = Timeline()
        train(plan, tl, feature_cache=cache)
    ended = tl.of(RunEnded)[-1][1]
    if ended.status != "finished":
        raise RuntimeError(f"the engine run {plan.model}/{plan.strategy} {ended.status}: {ended.message}")
    return tl, m


# ---------------------------------------------------------------------------------------------
#                                   Memory and noise
# ---------------------------------------------------------------------------------------------
def memory_details(ours: Measure, ref: Measure) -> dict[str, float | None]:
    """Peak and added memory of both sides, and how long their threads waited (what flag_noise reads)."""
    return {"ours_peak_mb": ours.peak_mb, "ours_added_mb": ours.added_mb,
            "ref_peak_mb": ref.peak_mb, "ref_added_mb": ref.added_mb,
            "ours_cpu_wait": ours.cpu_wait, "ref_cpu_wait": ref.cpu_wait}


NOISY_WAIT = 0.2   # threads waiting for a CPU, on average; above this a neighbour disturbed the figure


def flag_noise(r: Result) -> None:
    waits = {side: r.details.get(f"{side}_cpu_wait") for side in ("ours", "ref")}
    busy = {side: w for side, w in waits.items() if w is not None and w > NOISY_WAIT}
    if busy:
        r.notes.append("NOISY: another process held the CPU; threads waited on average "
                       + ", ".join(f"{w:.2f} ({side})" for side, w in busy.items()))


def dir_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def mb(n: float) -> float:
    return n / 2**20
