"""The six cases, each measured beside the reference loop in the same process, and the sizes they run at."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from ..device import DevicePolicy, pick
from ..labs.probe import fit_probe, pooled_features
from ..models import MODELS, build_network
from ..train.events import EpochEnded, Phase, RunStarted
from ..train.features import FeatureCache, FrozenPrefix, compute_prefix, prefix_mode
from ..train.pipeline import Preprocess
from ..train.plan import Plan
from . import labs, reference
from .harness import (Context, bench_dataset, dir_bytes, flag_noise, forget_datasets, isolated_dirs, mb,
                      memory_details, run_ours, stand_in_weights)
from .report import Measure, Result, Target

# Where `python -m tlcore` resolves for the CLI case: the folder that holds the package.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
#                                      Hyperparameters
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    name: str
    # case 1: feature_extractor (linear probe) on Fashion-MNIST
    c1_models: tuple[str, ...]
    c1_train: int              # training images, balanced over the 10 classes
    c1_val: int                # validation images
    c1_px: int                 # model input side, px (the data stays stored at 28 px uint8)
    c1_epochs: int             # head-training epochs compared
    c1_ref_epochs: int         # epochs the reference really runs; below c1_epochs its time is extrapolated linearly
    c1_acc: float              # "time to accuracy": first epoch whose validation accuracy is at least this
    # case 2: fine_tune_all training throughput
    c2_models: tuple[str, ...]
    c2_px: int                 # px
    c2_batch: int              # images per step
    c2_steps: int              # timed steps (ours: its second epoch of c2_steps steps; the first warms up)
    c2_warmup: int             # the reference's untimed steps
    # case 3: gradual_unfreeze until every group trains (one epoch per group, plus the head alone)
    c3_model: str
    c3_train: int              # images
    c3_val: int                # images
    c3_px: int                 # px
    # case 4: frozen-backbone inference
    c4_models: tuple[str, ...]
    c4_px: int                 # px
    c4_batch: int              # images per batch
    c4_batches: int            # timed batches
    c4_warmup: int             # untimed batches
    # case 5: the CLI's offline default from a cold start
    c5_timeout_s: float        # seconds; the run is killed (and fails its target) after this
    # case 7: labs, each page-default run from a cold process against its plain implementation (tlcore.bench.labs)
    c7_labs: tuple[str, ...] = ()
    # shared by cases 1-3, both sides
    batch: int = 64            # images per step
    lr: float = 1e-3           # AdamW peak rate of the head; each layer group below gets 1/2.6 of the one above
    weight_decay: float = 1e-4
    ref_workers: int = 0       # the reference DataLoader's worker processes


LAB_ROWS = tuple(labs.ROWS)

SIZES = {
    # A test-only size: every case in seconds, figures too small to mean anything.
    "tiny": Sizes("tiny", c1_models=("efficientnet_lite0",), c1_train=200, c1_val=100, c1_px=32, c1_epochs=3,
                  c1_ref_epochs=1, c1_acc=0.3,
                  c2_models=("efficientnet_lite0",), c2_px=32, c2_batch=8, c2_steps=2, c2_warmup=1,
                  c3_model="efficientnet_lite0", c3_train=40, c3_val=20, c3_px=32,
                  c4_models=("efficientnet_lite0",), c4_px=64, c4_batch=8, c4_batches=1, c4_warmup=1,
                  c5_timeout_s=120, batch=32, c7_labs=("zero_shot",)),
    # CPU: the whole suite in under 10 minutes on 2 cores.
    # Case 1 keeps the full size's 224 px and shrinks the image count instead: the count scales both
    # sides alike, the resolution does not (bf16 and channels_last gain more on larger maps).
    "quick": Sizes("quick", c1_models=("efficientnet_lite0", "resnet18"), c1_train=480, c1_val=120, c1_px=224,
                   c1_epochs=10, c1_ref_epochs=2, c1_acc=0.7,
                   c2_models=("resnet18", "resnet50", "efficientnet_lite0"), c2_px=96, c2_batch=16, c2_steps=5,
                   c2_warmup=2,
                   c3_model="efficientnet_lite0", c3_train=320, c3_val=80, c3_px=64,
                   c4_models=("resnet18", "resnet50", "efficientnet_b0", "efficientnet_lite0"), c4_px=224,
                   c4_batch=64, c4_batches=1, c4_warmup=1,
                   c5_timeout_s=200, c7_labs=LAB_ROWS),
    # GPU: the sizes the targets are stated for.
    "full": Sizes("full", c1_models=("efficientnet_lite0", "resnet18"), c1_train=60000, c1_val=10000, c1_px=224,
                  c1_epochs=10, c1_ref_epochs=2, c1_acc=0.8,
                  c2_models=("resnet18", "resnet50", "efficientnet_lite0"), c2_px=224, c2_batch=256, c2_steps=20,
                  c2_warmup=5,
                  c3_model="efficientnet_lite0", c3_train=5000, c3_val=1000, c3_px=224,
                  c4_models=("resnet18", "resnet50", "efficientnet_b0", "efficientnet_lite0"), c4_px=224,
                  c4_batch=512, c4_batches=20, c4_warmup=5,
                  c5_timeout_s=300, batch=256, ref_workers=8, c7_labs=LAB_ROWS),
}


@dataclass(frozen=True)
class Goal:
    """A target printed next to a result, PASS or FAIL."""
    device: Literal["cpu", "cuda", "any"]
    case: int
    model: str                        # "" for every model of the case
    field: Literal["ours", "speedup"]
    op: Literal[">=", "<"]
    threshold: float
    label: str
    row: str = ""                     # only rows whose name ends with this
    px: int = 0                       # only at this input size
    min_batch: int = 0                # only at this batch size or more


GOALS = (
    Goal("cpu", 1, "", "speedup", ">=", 20.0, "speedup", row="10 epochs"),
    Goal("cpu", 2, "", "speedup", ">=", 1.0, "speedup"),
    Goal("cpu", 4, "resnet18", "ours", ">=", 15.0, "img/s", px=224),
    Goal("cpu", 4, "", "speedup", ">=", 2.0, "speedup", px=224),     # issue 17: with or without bf16
    Goal("any", 5, "", "ours", "<", 30.0, "s"),
    Goal("cuda", 4, "resnet18", "ours", ">=", 35_000, "img/s", px=224, min_batch=512),
    Goal("cuda", 4, "resnet50", "ours", ">=", 12_000, "img/s", px=224, min_batch=512),
    Goal("cuda", 4, "efficientnet_b0", "ours", ">=", 17_000, "img/s", px=224, min_batch=512),
    Goal("cuda", 4, "", "speedup", ">=", 3.0, "speedup"),
    Goal("cuda", 2, "resnet50", "ours", ">=", 2_800, "img/s"),
    Goal("cuda", 2, "resnet18", "ours", ">=", 8_000, "img/s"),
    Goal("cuda", 2, "resnet50", "speedup", ">=", 3.0, "speedup"),
    Goal("cuda", 2, "resnet18", "speedup", ">=", 3.0, "speedup"),
)


def attach_targets(r: Result, device_type: str) -> None:
    d = r.details
    for g in GOALS:
        if g.device not in ("any", device_type) or g.case != r.case or (g.model and d.get("model") != g.model):
            continue
        if not r.name.endswith(g.row) or (g.px and d.get("px") != g.px) or d.get("batch", 0) < g.min_batch:
            continue
        r.targets.append(Target(g.label, r.ours if g.field == "ours" else r.speedup, g.op, g.threshold))


def _plan(dataset: str, model: str, strategy: str, s: Sizes, **kw: object) -> Plan:
    # A constant rate on both sides: the reference has no schedule to match.
    base = dict(dataset=dataset, model=model, strategy=strategy, batch_size=s.batch, lr=s.lr,
                weight_decay=s.weight_decay, schedule="constant", seed=0)
    return Plan(**{**base, **kw})


# ---------------------------------------------------------------------------------------------
#                            Case 1: feature extractor on Fashion-MNIST
# ---------------------------------------------------------------------------------------------
def case_feature_extractor(s: Sizes, ctx: Context) -> list[Result]:
    name, data, source = bench_dataset(ctx, s.c1_train, s.c1_val)
    dev = ctx.policy.device
    n_img = s.c1_train + s.c1_val
    out = []
    for model in s.c1_models:
        ctx.log(f"  {model}: ours, {s.c1_epochs} epochs from a cold feature cache")
        cache_root = ctx.tmp / f"case1-{model}"
        cache = FeatureCache(cache_root, 2**40)
        plan = _plan(name, model, "feature_extractor", s, epochs=s.c1_epochs, image_size=s.c1_px)
        tl, m, warm, feat_end, t_feat = _ours_cold_then_warm(plan, ctx, cache)

        ctx.log(f"  {model}: reference, {s.c1_ref_epochs} epochs")
        ref, rm, per_epoch, ref_total = _reference_head_training(model, data, s, dev)

        common = {"model": model, "weights": ctx.weights[model], "px": s.c1_px, "train_images": s.c1_train,
                  "val_images": s.c1_val, "data": source}
        # The mode the engine's prefix aims for on these images (calibration may still refuse int8).
        planned = prefix_mode(build_network(model, 10, pretrained=False), len(MODELS[model].groups), ctx.policy,
                              s.c1_train, s.c1_px)
        notes = _extrapolation_notes(len(ref), ref[-1].elapsed, per_epoch, s.c1_epochs)
        out.append(Result(1, f"{model} {s.c1_epochs} epochs", f"s, {s.c1_epochs} epochs", m.seconds, ref_total,
                          details={**common,
                                   "ours_feature_img_per_s": n_img / max(t_feat, 1e-9),
                                   "ref_img_per_s": n_img / per_epoch,
                                   "ours_head_s": tl.of(EpochEnded)[-1][0] - feat_end,   # training on the cache
                                   "ours_warm_cache_s": warm.seconds,
                                   "ours_val_acc": tl.of(EpochEnded)[-1][1].val_acc, "ref_val_acc": ref[-1].val_acc,
                                   "ours_prefix_mode": planned, **memory_details(m, rm),
                                   "dataset_mb": mb(data.train_x.nbytes + data.val_x.nbytes),
                                   "dataset_mb_if_fp32_at_px": mb(n_img * 3 * s.c1_px ** 2 * 4),
                                   "feature_cache_mb": mb(dir_bytes(cache_root))},
                          notes=notes))
        if ctx.weights[model] != "ImageNet":
            out[-1].notes.append("random weights: no time-to-accuracy row")
            continue
        out.append(accuracy_row(model, s.c1_acc, [(t, e.val_acc) for t, e in tl.of(EpochEnded)],
                                [(e.elapsed, e.val_acc) for e in ref], common))
    return out


def _ours_cold_then_warm(plan: Plan, ctx: Context, cache: FeatureCache):
    """The engine from a cold feature cache, then from the warm one: (the cold run's timeline and Measure,
    the warm run's Measure, when the cold run's feature pass ended and how long it took, in seconds)."""
    tl, m = run_ours(plan, ctx, cache)
    _, warm = run_ours(plan, ctx, cache)
    feat_end = [t for t, e in tl.of(Phase) if e.name == "features"][-1]
    return tl, m, warm, feat_end, feat_end - tl.of(RunStarted)[0][0]


def _reference_head_training(model: str, data, s: Sizes, dev: torch.device) -> tuple[list, Measure, float, float]:
    """The reference's head training, c1_ref_epochs of it, stretched to c1_epochs: (its epochs, its
    Measure, seconds per epoch, total seconds). The first epoch carries one-off costs (oneDNN/cuDNN
    kernel selection), so later epochs are extrapolated from the steady ones when there are any."""
    with Measure(dev) as rm:
        ref = reference.fit(model, data, size=s.c1_px, top_groups=[0] * s.c1_ref_epochs, batch_size=s.batch,
                            lr=s.lr, weight_decay=s.weight_decay, factor=2.6, device=dev, workers=s.ref_workers)
    steady = ref[1:] or ref
    per_epoch = sum(e.seconds for e in steady) / len(steady)
    return ref, rm, per_epoch, ref[-1].elapsed + (s.c1_epochs - len(ref)) * per_epoch


def _extrapolation_notes(ran: int, elapsed: float, per_epoch: float, epochs: int) -> list[str]:
    if ran >= epochs:
        return []
    return [f"EXTRAPOLATED: the reference ran {ran} of {epochs} epochs ({elapsed:.1f}s); the other {epochs - ran} "
            f"are added at {per_epoch:.1f}s each (its {'later' if ran > 1 else 'only'} epochs' mean)"]


def accuracy_row(model: str, goal: float, ours: list[tuple[float, float]], ref: list[tuple[float, float]],
                 common: dict) -> Result:
    """Seconds until the first epoch with validation accuracy >= goal, per side, from (seconds, accuracy)
    per epoch. A side that never got there within its epochs is "not reached": under load, or with
    few epochs, that is an outcome to report, not an error."""
    first = {side: next(((i + 1, t) for i, (t, a) in enumerate(epochs) if a >= goal), (None, None))
             for side, epochs in (("ours", ours), ("ref", ref))}
    notes = [f"first epoch with val accuracy >= {goal:.0%}; ours reached {max(a for _, a in ours):.1%} in "
             f"{len(ours)} epochs, the reference {max(a for _, a in ref):.1%} in {len(ref)}"]
    for side, label, epochs in (("ours", "ours", ours), ("ref", "the reference", ref)):
        if first[side][0] is None:
            notes.append(f"{label} did not reach {goal:.0%} in the {len(epochs)} epochs it ran: not reached")
    return Result(1, f"{model} to {goal:.0%} val acc", "s to accuracy", first["ours"][1], first["ref"][1],
                  details={**common, "ours_epochs_to_acc": first["ours"][0], "ref_epochs_to_acc": first["ref"][0]},
                  notes=notes, absent=NOT_REACHED)


NOT_REACHED = "not reached"


# ---------------------------------------------------------------------------------------------
#                           Case 2: fine_tune_all training throughput
# ---------------------------------------------------------------------------------------------
def case_fine_tune_all(s: Sizes, ctx: Context) -> list[Result]:
    name, data, source = bench_dataset(ctx, s.c2_batch * s.c2_steps, 10)
    dev = ctx.policy.device
    out = []
    for model in s.c2_models:
        ctx.log(f"  {model}: ours, 2 epochs of {s.c2_steps} steps (the first warms up)")
        plan = _plan(name, model, "fine_tune_all", s, epochs=2, batch_size=s.c2_batch, image_size=s.c2_px)
        tl, m = run_ours(plan, ctx)
        measured = [e for _, e in tl.of(EpochEnded)][1]
        ctx.log(f"  {model}: reference, {s.c2_warmup} + {s.c2_steps} steps")
        with Measure(dev) as rm:
            net = build_network(model, data.num_classes, pretrained=True)
            loader = reference.tutorial_loader(data.train_x, data.train_y, model, s.c2_px, s.c2_batch, shuffle=True,
                                               workers=s.ref_workers)
            timed = reference.train_throughput(net, loader, dev, warmup=s.c2_warmup, steps=s.c2_steps, lr=s.lr,
                                               weight_decay=s.weight_decay, factor=2.6)
            del net
        out.append(Result(2, model, f"train img/s at {s.c2_px}px", measured.images_per_s, timed.images_per_s, rate=True,
                          details={"model": model, "weights": ctx.weights[model], "px": s.c2_px, "batch": s.c2_batch,
                                   "steps": s.c2_steps, **memory_details(m, rm),
                                   "data": source}))
    return out


# ---------------------------------------------------------------------------------------------
#                             Case 3: gradual unfreezing, every group
# ---------------------------------------------------------------------------------------------
def case_gradual_unfreeze(s: Sizes, ctx: Context) -> list[Result]:
    name, data, source = bench_dataset(ctx, s.c3_train, s.c3_val)
    model, dev = s.c3_model, ctx.policy.device
    n = len(MODELS[model].groups)
    ctx.log(f"  {model}: ours, {n + 1} epochs (head, then one more group each epoch)")
    tl, m = run_ours(_plan(name, model, "gradual_unfreeze", s, epochs=n + 1, image_size=s.c3_px), ctx)
    ctx.log(f"  {model}: reference, {n + 1} epochs")
    with Measure(dev) as rm:
        ref = reference.fit(model, data, size=s.c3_px, top_groups=list(range(n + 1)), batch_size=s.batch, lr=s.lr,
                            weight_decay=s.weight_decay, factor=2.6, device=dev, workers=s.ref_workers)
    return [Result(3, model, f"s, {n + 1} epochs", m.seconds, ref[-1].elapsed,
                   details={"model": model, "weights": ctx.weights[model], "px": s.c3_px, "train_images": s.c3_train,
                            "val_images": s.c3_val, "ours_val_acc": tl.of(EpochEnded)[-1][1].val_acc,
                            "ref_val_acc": ref[-1].val_acc, **memory_details(m, rm),
                            "data": source})]


# ---------------------------------------------------------------------------------------------
#                          Case 4: frozen-backbone inference throughput
# ---------------------------------------------------------------------------------------------
def case_inference(s: Sizes, ctx: Context) -> list[Result]:
    """Steady-state images/s of the engine's feature path. The prefix is built once and calibrated
    on the warm-up batch as a run over INFERENCE_RUN_IMAGES would do it (int8 only pays on a long
    pass); those one-off seconds are reported as setup_s, outside the timed batches."""
    n_img = s.c4_batch * (s.c4_batches + s.c4_warmup)
    _, data, source = bench_dataset(ctx, n_img, 10)
    policy, dev = ctx.policy, ctx.policy.device
    warm_x, timed_x = data.train_x[: s.c4_batch * s.c4_warmup], data.train_x[s.c4_batch * s.c4_warmup:]
    out = []
    for model in s.c4_models:
        spec = MODELS[model]
        ctx.log(f"  {model}: ours (engine feature path), then the reference")
        with Measure(dev) as m:
            net = build_network(model, data.num_classes, pretrained=True)
            net = net.to(dev, memory_format=policy.memory_format()).eval().requires_grad_(False)
            prep = Preprocess(s.c4_px, spec.mean, spec.std, policy)
            with torch.inference_mode(), Measure(dev, memory=False) as setup:
                prefix = FrozenPrefix(net, len(net.groups), prep, policy)
                prefix.calibrate(warm_x, planned_images=INFERENCE_RUN_IMAGES)
                compute_prefix(net, warm_x, len(net.groups), prep, policy, s.c4_batch, prefix=prefix)
            with torch.inference_mode(), Measure(dev, memory=False, images=len(timed_x)) as ours:
                compute_prefix(net, timed_x, len(net.groups), prep, policy, s.c4_batch, prefix=prefix)
            del net
        with Measure(dev) as rm:
            net = build_network(model, data.num_classes, pretrained=True)
            loader = reference.tutorial_loader(data.train_x, data.train_y, model, s.c4_px, s.c4_batch, shuffle=False,
                                               workers=s.ref_workers)
            ref = reference.infer_throughput(net, loader, dev, warmup=s.c4_warmup, batches=s.c4_batches)
            del net
        out.append(Result(4, model, f"img/s at {s.c4_px}px", ours.images_per_s, ref.images_per_s, rate=True,
                          details={"model": model, "weights": ctx.weights[model], "px": s.c4_px, "batch": s.c4_batch,
                                   **memory_details(m, rm), "policy": _policy(policy, prefix),
                                   "setup_s": setup.seconds, "int8_calibration_s": prefix.int8_seconds,
                                   "int8_rel_error": prefix.int8_error, "data": source}))
    return out


# Case 4 calibrates as a run over this many images would: it times the pass such a run makes.
INFERENCE_RUN_IMAGES = 10_000


def _policy(p: DevicePolicy, prefix: FrozenPrefix) -> str:
    fused = f", {prefix.fused} conv+activation fused" if prefix.fused else ""
    return f"{prefix.mode}{fused}, {'channels_last' if p.channels_last else 'NCHW'}, inference_mode"


# ---------------------------------------------------------------------------------------------
#                       Case 5: the CLI's offline default from a cold start
# ---------------------------------------------------------------------------------------------
CLI = ("-m", "tlcore", "train", "--dataset", "digits", "--model", "efficientnet_lite0", "--strategy",
       "feature_extractor")


def case_cold_start(s: Sizes, ctx: Context) -> list[Result]:
    """Seconds from launching the CLI, with empty caches and run store, to its JSON line, on the CPU."""
    home = Path(tempfile.mkdtemp(dir=ctx.tmp, prefix="cli-"))
    env = {**os.environ, "TLCORE_HOME": str(home / "home"), "TLCORE_CACHE_DIR": str(home / "cache"),
           "TLCORE_DATA_DIR": str(home / "data"), "CUDA_VISIBLE_DEVICES": ""}
    err = home / "stderr.txt"
    ctx.log("  " + " ".join(("python",) + CLI))
    t0 = time.perf_counter()
    with open(err, "w") as ferr:
        p = subprocess.Popen([sys.executable, *CLI], cwd=PACKAGE_ROOT, env=env, stdout=subprocess.PIPE, stderr=ferr, text=True)
        killer = threading.Timer(s.c5_timeout_s, p.kill)
        killer.start()
        seconds, line = None, ""
        try:
            for line in p.stdout:
                if line.startswith("{"):
                    seconds = time.perf_counter() - t0
                    break
            p.wait()
        finally:
            killer.cancel()
    name, metric = "digits efficientnet_lite0", "s to JSON line"
    details: dict = {"command": "python " + " ".join(CLI), "device": "cpu", "timeout_s": s.c5_timeout_s}
    notes = ["cold: fresh TLCORE_HOME and TLCORE_CACHE_DIR, a new Python process, CUDA hidden"]
    if seconds is None and p.returncode == -9:   # our timer killed it: a slow run, not a broken one
        return [Result(5, name, metric, None, details=details,
                       notes=notes + [f"no JSON line within {s.c5_timeout_s:.0f}s: stopped, so the target fails"])]
    if seconds is None:
        tail = err.read_text().strip().splitlines()[-1:] or ["no output"]
        return [Result(5, name, metric, None, details=details,
                       error=f"exit {p.returncode} without a JSON line: {tail[0][-200:]}")]
    got = json.loads(line)
    details.update(status=got.get("status"), val_acc=got.get("val_acc"), engine_run_s=got.get("seconds"))
    return [Result(5, name, metric, seconds, details=details, notes=notes)]


# ---------------------------------------------------------------------------------------------
#                        Case 6: the layer probe's single pass (issue 12)
# ---------------------------------------------------------------------------------------------
PROBE_SIZES = {"tiny": (64, 32), "quick": (512, 96), "full": (5000, 224)}   # images, px


def case_probe_pass(s: Sizes, ctx: Context) -> list[Result]:
    """The probe's pooled features of every layer group from one hooked pass, timed against one plain
    feature pass over the same images (the cost floor) and against the naive loop that runs groups[:k]
    again for every group k. Random weights: the cost does not depend on their values."""
    n, px = PROBE_SIZES.get(s.name, PROBE_SIZES["quick"])
    model = "efficientnet_lite0"
    net, images, prep = _random_probe_inputs(model, n, px, ctx.policy)
    batch = 256 if ctx.policy.is_cuda else 64

    @torch.no_grad()
    def plain() -> None:
        for i in range(0, n, batch):
            net.features(prep(images[i:i + batch])).cpu()

    t_plain, _ = _timed(plain, ctx.policy)
    t_probe, feats = _timed(lambda: pooled_features(net, images, prep, batch), ctx.policy)
    t_naive, _ = _timed(lambda: pooled_features(net, images, prep, batch, naive=True), ctx.policy)
    details = {"model": model, "px": px, "images": n, "batch": batch, "groups": len(feats),
               "plain_pass_s": t_plain, "probe_pass_s": t_probe, "naive_loop_s": t_naive,
               "probe_over_plain": t_probe / t_plain, "naive_over_probe": t_naive / t_probe,
               "probe_fits_s": _probe_fits_seconds(feats, n)}
    note = ["features of every group from one hooked forward pass; the fits (logistic regression, C by 3-fold "
            "CV) are in details.probe_fits_s"]
    return [Result(6, f"{model} vs one feature pass", "s", t_probe, t_plain, details=details, notes=note),
            Result(6, f"{model} vs naive per-group loop", "s", t_probe, t_naive, details=details, notes=note)]


def _random_probe_inputs(model: str, n: int, px: int, policy: DevicePolicy):
    """The network with seeded random weights, n random 28 px images, and its preprocessing at px."""
    spec = MODELS[model]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = build_network(model, 10, pretrained=False).to(policy.device).eval()
        images = torch.randint(0, 256, (n, 3, 28, 28), dtype=torch.uint8)
    return net, images, Preprocess(px, spec.mean, spec.std, policy)


def _timed(fn: Callable[[], object], policy: DevicePolicy) -> tuple[float, object]:
    """(seconds, result) of fn's second call: the first warms kernels and the allocator."""
    def sync() -> None:
        if policy.is_cuda:
            torch.cuda.synchronize()
    fn()
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def _probe_fits_seconds(feats: list[torch.Tensor], n: int) -> float:
    """Seconds to fit the probe's classifier on every group's features (half the images train it)."""
    y = np.arange(n) % 10
    t = time.perf_counter()
    for f in feats:
        fit_probe(f.numpy()[: n // 2], y[: n // 2], f.numpy()[n // 2:], y[n // 2:])
    return time.perf_counter() - t


# ---------------------------------------------------------------------------------------------
#                                          The suite
# ---------------------------------------------------------------------------------------------
def case_labs(s: Sizes, ctx: Context) -> list[Result]:
    """Each lab's page-default run from a cold process with fresh caches, as a student's first press
    costs it, against the plain implementation of the same computation (its row's labs.FP32 or labs.UNSHARED), in this
    suite; with the lesson's figure each side showed (the same computation: the same lesson)."""
    out = []
    for name in s.c7_labs:
        row = labs.ROWS[name]
        ctx.log(f"  lab {name}: ours")
        ours = labs.run_cold(name)
        ctx.log(f"  lab {name}: plain")
        plain = labs.run_cold(name, plain=True)
        if "error" in ours or "error" in plain:
            out.append(Result(7, name, "-", None, error=str(ours.get("error") or plain.get("error"))))
            continue
        # The run's own seconds: a student's run starts in the host's warm worker (imports paid), with
        # caches as cold as a new dataset leaves them; the process's start is in details (cold_s).
        details = {"press": row.title, "figure": ours["figure"], "ours_value": ours["value"],
                   "plain_value": plain["value"], "ours_cold_s": ours["cold_s"], "plain_cold_s": plain["cold_s"],
                   "plain": "fp32, no shared frozen features" if row.plain == labs.UNSHARED else "fp32"}
        r = Result(7, name, "s per run, cold caches", ours["run_s"], plain["run_s"], details=details,
                   targets=[Target(f"<{row.target_s:g} s", ours["run_s"], "<", row.target_s)])
        out.append(r)
    return out


CASES: dict[int, tuple[str, Callable[[Sizes, Context], list[Result]]]] = {
    1: ("feature_extractor on Fashion-MNIST", case_feature_extractor),
    2: ("fine_tune_all training throughput", case_fine_tune_all),
    3: ("gradual_unfreeze over every group", case_gradual_unfreeze),
    4: ("frozen-backbone inference throughput", case_inference),
    5: ("offline default from a cold start (CLI, CPU)", case_cold_start),
    6: ("layer probe: one pass vs a feature pass and a per-group loop", case_probe_pass),
    7: ("labs: each page-default run vs its plain implementation", case_labs),
}


def models_used(s: Sizes, cases: list[int]) -> set[str]:
    """Models whose ImageNet weights the chosen cases load (case 6 builds random weights only)."""
    per_case = {1: s.c1_models, 2: s.c2_models, 3: (s.c3_model,), 4: s.c4_models, 5: ("efficientnet_lite0",), 6: (), 7: ()}
    return {m for c in cases for m in per_case[c]}


def run_suite(s: Sizes, cases: list[int], log: Callable[[str], None] = lambda line: None,
              data_root: Path | None = None) -> list[Result]:
    """Run the chosen cases; a case that breaks becomes an ERROR row instead of ending the suite.

    `data_root`: a folder holding Fashion-MNIST in torchvision's layout (see data_roots)."""
    policy = pick("auto")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tlcore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with isolated_dirs(tmp), stand_in_weights(models_used(s, cases), tmp) as weights:
            ctx = Context(policy, tmp, weights, log, data_root=data_root)
            try:
                for c in cases:
                    title, fn = CASES[c]
                    log(f"case {c}: {title} ({s.name})")
                    t = time.perf_counter()
                    try:
                        results += fn(s, ctx)
                    except Exception as e:  # one broken case must not cost the others' figures
                        results.append(Result(c, title, "-", None, error=f"{type(e).__name__}: {e}"))
                    log(f"case {c}: {time.perf_counter() - t:.0f}s")
            finally:
                forget_datasets(ctx)
    for r in results:
        attach_targets(r, policy.device.type)
        flag_noise(r)
    return results
