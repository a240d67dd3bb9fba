"""How much memory a plan needs, estimated before it runs; and one plain message for allocator failures.

A run's peak is what it keeps all along (weights, the frozen prefix's inference copy, gradients
and optimiser state of the trainable part, the dataset, cached features) plus the largest of its
passing needs: a training step (what autograd saves for backward, times the batch), an evaluation
batch, a feature-extraction batch. What a network saves depends on the model, the cut and the
image size, so it is measured: the network runs once on PyTorch's meta device (shapes, no
arithmetic) under `saved_tensors_hooks`, at the plan's own size, and the answer is kept per model,
cut and size in memory and under the cache directory. `tests/test_memory.py` checks estimates
against real peaks.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from .errors import PlanError


if TYPE_CHECKING:
    from .data import ImageSplits
    from .train.plan import Plan

FOOTPRINT_VERSION = 1
# What a run costs beyond its tensors, calibrated on real peaks (2-core Zen 5, torch 2.14, one and two threads;
# tests/test_memory.py): a worker process holds 0.68-0.73 GB before its first run, and a run adds about
# 0.6 GB that does not grow with the batch. Counting 0.1 GB for both, Lite0 fine_tune_all at 224 px peaked
# 1.11x over its estimate at batch 16 and a worker 1.14x at batch 64 (issue 25): the estimate must err high.
PROCESS_BYTES = 700 * 2**20     # the worker process itself: the interpreter, torch, torchvision, scikit-learn
RUNTIME_BYTES = 550 * 2**20     # allocator and oneDNN caches, kernel workspaces, thread pools, the autograd engine
GPU_SHARE = 0.9                 # of a GPU's memory: the CUDA context and allocator slack take the rest
_SVC_CACHE = 200 * 2**20        # scikit-learn SVC's kernel cache


# --- what a network keeps, per image ------------------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    """Bytes per image (fp32) for one model, cut, BatchNorm policy, head and image size."""
    saved: int            # what autograd keeps for backward in a training step
    widest_train: int     # largest activation on the training path (backward holds about two at once)
    widest_above: int     # largest activation from the cut up (evaluation)
    widest_below: int     # largest activation below the cut (the frozen prefix)
    cut_numel: int        # values per image at the cut: what the feature cache stores
    params: int           # every parameter of the network
    trainable: int        # parameters that train at this cut
    below: int            # parameters of the groups below the cut

    def scaled(self, ratio: float) -> "Footprint":
        """The same network at `ratio` times the pixels: activations scale, parameters do not."""
        s = lambda v: int(v * ratio)  # noqa: E731
        return dataclasses.replace(self, saved=s(self.saved), widest_train=s(self.widest_train),
                                   widest_above=s(self.widest_above), widest_below=s(self.widest_below),
                                   cut_numel=s(self.cut_numel))


_FOOTPRINTS: dict[tuple, Footprint] = {}   # keyed by everything that determines one


def _widest(modules: list[torch.nn.Module], run: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    """Run `run` and return (largest output of any module in `modules`, in bytes; the result)."""
    widest = [0]

    def hook(_m, _inp, out) -> None:
        if isinstance(out, torch.Tensor):
            widest[0] = max(widest[0], out.nbytes)
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        out = run()
    finally:
        for h in handles:
            h.remove()
    return widest[0], out


def _saved_bytes(params: set[int], run: Callable[[], torch.Tensor]) -> int:
    """Bytes autograd saves for backward while `run` executes, each storage once, parameters excluded."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s._cdata not in params:
            seen[s._cdata] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())


def measure(model: str, cut: int, fixed_prefix: bool, bn: str, size: int, head: str = "linear") -> Footprint:
    """Measure a Footprint on the meta device: no weights and no arithmetic, so about a second at any size.

    `fixed_prefix`: the groups below the cut run without gradients (tlcore.train.strategies.frozen_groups_are_fixed)."""
    from .models import build_network
    from .train.strategies import apply_cut

    b = 2   # BatchNorm in training mode needs more than one value per channel
    with torch.device("meta"):
        net = build_network(model, 2, pretrained=False, head=head)
        x = torch.empty(b, 3, size, size)
    apply_cut(net, cut, bn)
    groups = list(net.groups.values())
    below = [m for g in groups[:cut] for m in g.modules()]
    above = [m for g in groups[cut:] for m in g.modules()] + list(net.head.modules())
    with torch.no_grad():
        widest_below, at_cut = _widest(below, lambda: net.features(x, 0, cut))
        widest_above, _ = _widest(above, lambda: net.head(net.features(at_cut, cut, None)))
    start, inp = (cut, at_cut) if fixed_prefix else (0, x)
    params = {p.untyped_storage()._cdata for p in net.parameters()}
    saved = _saved_bytes(params, lambda: net.head(net.features(inp, start, None)))
    widest_train = max(widest_above, widest_below if not fixed_prefix else 0)
    return Footprint(saved // b, widest_train // b, widest_above // b, widest_below // b, at_cut[0].numel(),
                     sum(p.numel() for p in net.parameters()),
                     sum(p.numel() for p in net.parameters() if p.requires_grad),
                     sum(p.numel() for g in groups[:cut] for p in g.parameters()))


def footprint(model: str, cut: int, fixed_prefix: bool, bn: str, size: int, head: str = "linear") -> Footprint:
    """`measure`, remembered in this process and on disk (a new worker process need not measure again)."""
    from .paths import cache_dir

    key = (model, cut, fixed_prefix, bn, size, head, torch.__version__, FOOTPRINT_VERSION)
    if key in _FOOTPRINTS:
        return _FOOTPRINTS[key]
    file = cache_dir() / "memory" / f"{'-'.join(map(str, key))}.json".replace("+", "_")
    try:
        fp = Footprint(**json.loads(file.read_text()))
    except (OSError, ValueError, TypeError):
        fp = measure(model, cut, fixed_prefix, bn, size, head)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(dataclasses.asdict(fp)))
            os.replace(tmp, file)
        except OSError:
            pass   # an unwritable cache only means measuring again next time
    _FOOTPRINTS[key] = fp
    return fp


# --- a plan's estimate --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run's worker process holds at its peak, by what holds them (the process itself included).
    On a CUDA device only `host_parts` stay in the computer's memory; on a CPU or an Apple GPU (which
    shares it) everything does."""
    parts: dict[str, int]
    device: str                           # "cpu", "cuda", "mps": where the run trains
    host_parts: tuple[str, ...] = ("dataset", "features_cache", "runtime", "process")

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def host(self) -> int:
        if self.device != "cuda":
            return self.total
        return sum(v for k, v in self.parts.items() if k in self.host_parts)

    @property
    def on_gpu(self) -> int:
        return self.total - self.host if self.device == "cuda" else 0


@dataclass(frozen=True)
class _Data:
    """What the estimate needs to know about the dataset."""
    n_train: int
    n_val: int
    nbytes: int          # the stored uint8 images, both splits
    side: int


@dataclass(frozen=True)
class _Policy:
    device: str
    train_amp: bool      # training steps run in bf16/fp16: saved activations take half the bytes
    infer_amp: bool      # the frozen prefix's copy and inference run in bf16/fp16


def _policy(plan: "Plan") -> _Policy:
    """What tlcore.device.pick would choose, without changing any torch setting."""
    from .device import _cpu_has_bf16, auto_device_type
    from .models import MODELS
    from .settings import read

    device = auto_device_type() if plan.device == "auto" else plan.device
    if device == "cuda":
        return _Policy("cuda", True, True)
    if device == "mps":
        return _Policy("mps", False, False)
    bf16 = _cpu_has_bf16() and read("TLCORE_CPU_BF16")
    return _Policy("cpu", bf16 and MODELS[plan.model].cpu_bf16_training, bf16)


def _data_of(data: "ImageSplits") -> _Data:
    return _Data(int(data.train_y.numel()), int(data.val_y.numel()), data.train_x.nbytes + data.val_x.nbytes,
                 data.image_size)


def _classical(plan: "Plan", d: _Data, pol: _Policy) -> dict[str, int]:
    """pixel_svm: pixels as float32, scikit-learn's float64 copies, the SVC kernel cache."""
    from .train.sklearn_heads import PIXEL_SIDE
    dims = 3 * min(d.side, PIXEL_SIDE) ** 2
    return {"dataset": 2 * d.nbytes, "features": (d.n_train + d.n_val) * dims * (4 + 8 + 8) + _SVC_CACHE,
            "runtime": RUNTIME_BYTES, "process": PROCESS_BYTES}


def _at_cut(plan: "Plan", cut: int, d: _Data, pol: _Policy, fp: Footprint, n_groups: int) -> dict[str, int]:
    from .train.phases import FEATURE_BATCH, eval_batch   # the loop's own batch sizes (imported late: no cycle)
    from .settings import read
    fixed = cut > 0 and plan.bn == "frozen"
    cached = fixed and not plan.augment and \
        (d.n_train + d.n_val) * fp.cut_numel * 2 <= read("TLCORE_FEATURE_CACHE_MB") * 2**20   # FeatureCache.fits
    act = 0.5 if pol.train_amp else 1.0
    b, size = min(plan.batch_size, d.n_train), plan.resolved_image_size()
    image = 3 * size * size * 4                      # one preprocessed input image, float32
    states = 2 if plan.optimizer == "adamw" else (1 if plan.momentum > 0 else 0)
    parts = {"weights": 4 * fp.params + (fp.below * (2 if pol.infer_amp else 4) if fixed else 0),
             "gradients": 4 * fp.trainable,
             "optimiser": 4 * fp.trainable * (states + 1),        # + one step's temporaries
             "dataset": 2 * d.nbytes, "runtime": RUNTIME_BYTES, "process": PROCESS_BYTES}
    if pol.device == "cuda":   # one copy stays on the host; raw images also go to the GPU when they fit there
        parts["dataset"] = d.nbytes
        parts["dataset_on_gpu"] = d.nbytes if not cached and d.nbytes < 4 * 2**30 else 0
    if plan.head in ("logreg", "linear_svm"):                     # fitted by scikit-learn, float64 copies
        parts.update(gradients=0, optimiser=0)
        parts["features"] = (d.n_train + d.n_val) * fp.cut_numel * (6 + 4 + 8 + 8)
    elif cached:
        on_device = 2 if (pol.device == "cuda" and cut < n_groups) else 4
        parts["features_cache"] = (d.n_train + d.n_val) * fp.cut_numel * 2     # float16, kept on the host
        parts["features"] = (d.n_train + d.n_val) * fp.cut_numel * on_device
    step_in = b * fp.cut_numel * 4 if cached else b * (image * 3 + (3 * fp.widest_below if fixed else 0))
    step = int(b * act * (fp.saved + 2 * fp.widest_train)) + step_in
    n_eval = min(eval_batch(plan), d.n_val)
    evaluation = n_eval * 3 * fp.widest_above + (0 if cached else n_eval * (2 * image + 3 * fp.widest_below))
    fb = min(FEATURE_BATCH.get(pol.device, 64), max(d.n_train, d.n_val))
    feature_pass = fb * (2 * image + 3 * fp.widest_below) if cached else 0
    parts["activations"] = max(step, evaluation, feature_pass)
    return parts


def _cuts(plan: "Plan", n_groups: int) -> list[int]:
    from .train.strategies import cut_schedule
    return sorted(set(cut_schedule(plan, n_groups)))


def _estimate(plan: "Plan", d: _Data, fp_at: Callable[..., Footprint]) -> MemoryEstimate:
    from .models import MODELS
    pol = _policy(plan)
    if plan.strategy == "pixel_svm":
        return MemoryEstimate(_classical(plan, d, pol), pol.device)
    n_groups = len(MODELS[plan.model].groups)
    size, head = plan.resolved_image_size(), plan.head if plan.head in ("linear", "mlp") else "linear"
    worst: dict[str, int] = {}
    for cut in _cuts(plan, n_groups):
        fp = fp_at(plan.model, cut, cut > 0 and plan.bn == "frozen", plan.bn, size, head)
        parts = _at_cut(plan, cut, d, pol, fp, n_groups)
        if sum(parts.values()) > sum(worst.values()):
            worst = parts
    return MemoryEstimate(worst, pol.device)


def _load(plan: "Plan") -> "ImageSplits":
    from .data import load_dataset
    return load_dataset(plan.dataset, image_size=plan.resolved_image_size(), per_class=plan.per_class,
                        imbalance=plan.imbalance, seed=plan.seed, path=plan.dataset_path or None,
                        display_name=plan.dataset_name or None)


def estimate(plan: "Plan", data: "ImageSplits | None" = None) -> MemoryEstimate:
    """The memory `plan`'s worker process will hold at its peak. `data`: its dataset, when already
    loaded (it is loaded, from its cache, otherwise)."""
    return _estimate(plan, _data_of(data if data is not None else _load(plan)), footprint)


# --- refusing what will not fit -----------------------------------------------------------------------
def gb(n: float) -> str:
    return f"{n / 2**30:,.1f} GB"


def _gpu_budget() -> int | None:
    if not torch.cuda.is_available():
        return None
    from .settings import read
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return int(GPU_SHARE * total / read("TLCORE_MAX_CONCURRENT"))


def _fits(est: MemoryEstimate, budget: int, gpu: int | None) -> bool:
    return est.host <= budget and (gpu is None or est.on_gpu <= gpu)


def _largest_batch(plan: "Plan", fits: Callable[["Plan"], bool]) -> int | None:
    lo, hi = 1, plan.batch_size - 1   # activations grow with the batch: bisect for the largest that fits
    if hi < 1 or not fits(plan.replace(batch_size=1)):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(plan.replace(batch_size=mid)) else (lo, mid - 1)
    return lo


def _largest_size(plan: "Plan", fits: Callable[["Plan"], bool]) -> int | None:
    from .models import MODELS
    low = MODELS[plan.model].min_input_size
    sizes = range(plan.resolved_image_size() - 16, low - 1, -16)
    return next((s for s in sizes if fits(plan.replace(image_size=s))), None)


def _advice(plan: "Plan", d: _Data, budget: int, gpu: int | None) -> tuple[str, list[str]]:
    """(the plan field to change first, what to lower or choose instead), each checked to fit."""
    size = plan.resolved_image_size()
    # Trying other sizes scales this size's measurement by pixels: one measurement, not one per size.
    scaled = lambda m, c, f, bn, s, h: footprint(m, c, f, bn, size, h).scaled((s / size) ** 2)  # noqa: E731
    fits = lambda p: _fits(_estimate(p, d, scaled), budget, gpu)  # noqa: E731
    advice: list[tuple[str, str]] = []
    if plan.strategy != "pixel_svm":
        if (b := _largest_batch(plan, fits)) is not None:
            advice.append(("batch_size", f"lower the batch size to {b} or less"))
        if (s := _largest_size(plan, fits)) is not None:
            advice.append(("image_size", f"lower the image size to {s} px or less"))
        for strategy in ("fine_tune_top", "feature_extractor"):
            other = plan.replace(strategy=strategy, top_groups=1, head=plan.head if plan.head in ("linear", "mlp")
                                 else "linear")
            if strategy != plan.strategy and _fits(_estimate(other, d, footprint), budget, gpu):
                advice.append(("strategy", f"choose the strategy {strategy}, which trains fewer layer groups"))
                break
    if not advice:
        return "model", ["choose a smaller model or dataset"]
    return advice[0][0], [a for _, a in advice]


def check(plan: "Plan", budget_bytes: int, data: "ImageSplits | None" = None) -> MemoryEstimate:
    """The plan's estimate, or a PlanError saying what to lower when it needs more than
    `budget_bytes` of the computer's memory (or more than its GPU holds)."""
    d = _data_of(data if data is not None else _load(plan))
    est = _estimate(plan, d, footprint)
    gpu = _gpu_budget() if est.device == "cuda" else None
    if _fits(est, budget_bytes, gpu):
        return est
    field, advice = _advice(plan, d, budget_bytes, gpu)
    over = (f"about {gb(est.on_gpu)} of GPU memory and this GPU allows {gb(gpu)} per run"
            if gpu is not None and est.on_gpu > gpu else
            f"about {gb(est.host)} of memory and this server allows {gb(budget_bytes)} per run")
    raise PlanError(field, f"this run would need {over}: {', or '.join(advice)}")
