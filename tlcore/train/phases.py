"""The engine's phases, each a function from values to a value: the steps every run and every lab
is made of, composed top to bottom by `loop.train` (a lab composes them its own way).

    prepare(plan)                       -> Prepared     the data, the device, the preprocessing
    build(prepared)                     -> Network      the backbone's groups and a new head, on the device
    source_at(net, cut, prepared, ...)  -> Source       what the trainable part eats at a cut
    make_optimiser(net, plan)           -> Optimiser    per-group rates (discriminative) and the schedule
    train_epoch(net, source, ...)       -> EpochStats   one pass of optimiser steps over the training split
    evaluate(net, source, prepared)     -> Evaluation   loss and predictions on the validation split
    epoch_event(...)                    -> EpochEnded   what the epoch tells the world
    snapshot(net, whole)                -> dict         the weights worth keeping, copied to the CPU

Speeds claimed for these come from `python -m tlcore.bench` (ratios against a plain DataLoader +
torchvision-transforms loop measured in the same run). A stop request raises `Stopped` between
any two batches of any phase; `scope.RunScope` turns that (and every failure) into one RunEnded.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..data import ImageSplits, load_plan_data
from ..data.registry import DATASETS
from ..device import DevicePolicy, pick
from ..metrics import confusion_matrix, report
from ..models import MODELS, ModelSpec, build_network
from ..models.base import Network
from ..models.build import group_mflops, weights_identity
from . import rng
from .events import Emit, EpochEnded, Phase, RunStarted, Step
from .features import (FeatureCache, FrozenPrefix, compute_prefix, feature_identity, feature_key, prefix_numbers,
                       prefix_numel)
from .pipeline import Preprocess
from .plan import Plan
from .schedules import group_lrs, momentum, multiplier, plan_params
from .scope import Failed, check_stop
from .strategies import frozen_groups_are_fixed, frozen_prefix_is_fixed
from .strategies import steps_per_epoch as steps_per_epoch_for

STEP_EVENT_INTERVAL_S = 0.25   # Step events are throttled: the UI redraws at ~1 Hz, the store need not see every step
EVAL_BATCH = 256               # at most; never more than twice the training batch, which the host's memory check allows
FEATURE_BATCH = {"cuda": 256}  # images per batch of the frozen-feature pass; 64 on other devices


def eval_batch(plan: Plan) -> int:
    return min(EVAL_BATCH, 2 * plan.batch_size)
ShouldStop = Callable[[], bool]


def _never() -> bool:
    return False


# --- prepare ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    plan: Plan
    data: ImageSplits
    policy: DevicePolicy
    spec: ModelSpec
    size: int                   # side in px fed to the model
    prep: Preprocess            # uint8 batches -> normalised model input on the device

    @property
    def dataset_name(self) -> str:
        """What people call the data: an upload's file name, or the registry title."""
        p = self.plan
        if p.dataset_name:
            return p.dataset_name
        if p.dataset == "folder":
            return p.dataset_path.rstrip("/").rsplit("/", 1)[-1] or "your images"
        return DATASETS[p.dataset].title


def prepare(plan: Plan, emit: Emit, should_stop: ShouldStop = _never) -> Prepared:
    """Decode the plan's data once (or take it from the caches) and pick the device."""
    spec = MODELS[plan.model]
    policy = pick(plan.device).for_model(spec)
    configure_determinism(policy, plan.deterministic)
    emit(Phase("data", 0, 1))
    data = load_plan_data(plan, lambda done, total: emit(Phase("download", done, total or 0)))
    emit(Phase("data", 1, 1))
    check_stop(should_stop)   # decoding cannot be interrupted; a stop asked for meanwhile lands here
    size = plan.resolved_image_size()
    return Prepared(plan, data, policy, spec, size, Preprocess(size, spec.mean, spec.std, policy))


def configure_determinism(policy: DevicePolicy, deterministic: bool) -> None:
    """CUDA: cuDNN's autotuner picks kernels by timing, so runs differ; deterministic plans turn it off
    and ask for deterministic algorithms. CPU kernels here are deterministic at a fixed thread count."""
    if not policy.is_cuda:
        return
    import os
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


# --- build -----------------------------------------------------------------------------------------
def build(prepared: Prepared, emit: Emit | None = None, *, pretrained: bool | None = None) -> Network:
    """The plan's network on the device: pretrained or random (scratch) weights, its own seed."""
    from .. import downloads
    plan, policy = prepared.plan, prepared.policy
    head = plan.head if plan.head in ("linear", "mlp") else "linear"
    report = (lambda done, total: emit(Phase("download", done, total or 0))) if emit else None
    with downloads.reporting(report) if report else _nullcontext(), rng.seeded(plan.seed):
        net = build_network(plan.model, prepared.data.num_classes,
                            pretrained=plan.pretrained if pretrained is None else pretrained, head=head,
                            truncate_after=plan.truncate_after)
    rng.seed_dropout(net, rng.generator(plan.seed, rng.DROPOUT, policy.device))
    return net.to(policy.device, memory_format=policy.memory_format())


def _nullcontext():
    import contextlib
    return contextlib.nullcontext()


# --- what the trainable part eats ------------------------------------------------------------------
# Training images (both splits) up to which a subsample's frozen features come from its whole dataset's,
# computed once: digits' 1,797 at 32 px cost the first student a fraction of a second more, and every
# other student of the class (another seed, another per-class count) then reads them. Above it, a
# subsample computes only its own rows (a whole Fashion-MNIST for 40 images per class would not pay).
SHARE_WHOLE_MAX = 20_000


@dataclass(frozen=True)
class Source:
    """Inputs of groups[cut:]: the frozen prefix's outputs (cached), or raw uint8 images."""
    cut: int
    train: torch.Tensor
    val: torch.Tensor
    cached: bool
    prefix: FrozenPrefix | None = None    # groups[:cut] as a fast copy, for raw images through a fixed prefix
    feature_seconds: float = 0.0          # spent computing the prefix's outputs for this source
    cache_hit: bool = False

    @property
    def n_images(self) -> int:
        return int(self.train.shape[0] + self.val.shape[0])


def cache_identity(prepared: Prepared) -> dict:
    p = prepared.plan
    return feature_identity(data_fingerprint=prepared.data.fingerprint, model=p.model,
                            weights=weights_identity(p.model, p.pretrained), truncate_after=p.truncate_after,
                            size=prepared.size, policy=prepared.policy)


def _whole_split(prepared: Prepared) -> Prepared | None:
    """The subsample's whole dataset, prepared alike, when computing its features for every subsample
    at once is cheap enough to pay for the first one (a class's students differ by seed and count)."""
    d = prepared.data
    w, rows = d.whole, d.rows
    if w is None or rows is None or len(w.train_y) + len(w.val_y) > SHARE_WHOLE_MAX:
        return None
    if len(rows) != len(d.train_y) or not torch.equal(w.train_y[rows], d.train_y):
        return None   # data rebuilt from another split since: its rows say nothing about it
    return dataclasses.replace(prepared, data=w)


def source_at(net: Network, cut: int, prepared: Prepared, cache: FeatureCache, emit: Emit,
              should_stop: ShouldStop = _never, identity: dict | None = None, share_whole: bool = False) -> Source:
    """Cached prefix outputs when the frozen part is fixed and they fit; raw images otherwise.
    `share_whole`: a training subsample reads its rows of its whole dataset's features (computed once)."""
    whole = _whole_split(prepared) if share_whole and identity is None else None
    if whole is not None and frozen_prefix_is_fixed(prepared.plan, cut):
        src = source_at(net, cut, whole, cache, emit, should_stop)
        if src.cached:
            rows = prepared.data.rows.to(src.train.device)
            return dataclasses.replace(src, train=src.train[rows])
    plan, d, policy = prepared.plan, prepared.data, prepared.policy
    n_groups = len(net.group_names)
    if frozen_prefix_is_fixed(plan, cut) and cache.fits(len(d.train_y) + len(d.val_y),
                                                        prefix_numel(net, cut, prepared.prep)):
        ident = identity if identity is not None else cache_identity(prepared)
        numbers = prefix_numbers(net, cut, policy, len(d.train_y) + len(d.val_y), prepared.size)
        key = feature_key({**ident, **numbers}, cut)
        pair, seconds = cache.get(key), 0.0
        if pair is None:
            with cache.computing(key, should_stop):   # students asking for the same features: computed once
                pair = cache.get(key)
                if pair is None:
                    t = time.perf_counter()
                    pair = compute_features(net, cut, prepared, emit, should_stop)
                    seconds = time.perf_counter() - t
                    cache.put(key, *pair)
        if seconds == 0.0:
            emit(Phase("features", 1, 1, cache_hit=True))
        # Head-only features are small: keep fp32. Deeper cached maps stay half precision on a GPU.
        dtype = torch.float16 if cut < n_groups and policy.train_amp and policy.is_cuda else torch.float32
        return Source(cut, pair[0].to(policy.device, dtype), pair[1].to(policy.device, dtype), True,
                      feature_seconds=seconds, cache_hit=seconds == 0.0)
    # Raw uint8 images go to the GPU once when they fit: batches are then gathered there.
    fits = not policy.is_cuda or d.train_x.nbytes + d.val_x.nbytes < 4 * 2**30
    where = policy.device if fits else torch.device("cpu")
    prefix = FrozenPrefix(net, cut, prepared.prep, policy) if frozen_groups_are_fixed(plan, cut) else None
    return Source(cut, d.train_x.to(where), d.val_x.to(where), False, prefix=prefix)


def compute_features(net: Network, cut: int, prepared: Prepared, emit: Emit,
                     should_stop: ShouldStop = _never) -> tuple[torch.Tensor, torch.Tensor]:
    """groups[:cut] over both splits, with progress; a stop request is honoured between batches."""
    d, policy = prepared.data, prepared.policy
    prefix = FrozenPrefix(net, cut, prepared.prep, policy)
    total = len(d.train_y) + len(d.val_y)
    batch = FEATURE_BATCH.get(policy.device.type, 64)

    def progress(offset: int) -> Callable[[int, int], None]:
        def tell(done: int, _n: int) -> None:
            emit(Phase("features", offset + done, total))
            check_stop(should_stop)
        return tell

    tr = compute_prefix(net, d.train_x, cut, prepared.prep, policy, batch, progress(0), prefix=prefix)
    va = compute_prefix(net, d.val_x, cut, prepared.prep, policy, batch, progress(len(d.train_y)), prefix=prefix)
    return tr, va


# --- the optimiser ---------------------------------------------------------------------------------
@dataclass
class Optimiser:
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scales: tuple[float, ...]     # per optimiser group (layer groups bottom -> top, head, [aux]) x lr
    plan: Plan

    def set_step(self, step: int, total: int) -> None:
        p = self.plan
        params = plan_params(p)
        mult = multiplier(p.schedule, step, total, **params)
        mom = momentum(p.schedule, step, total, **params)   # one-cycle cycles it; None: left alone
        for pg, s in zip(self.opt.param_groups, self.scales):
            pg["lr"] = p.lr * s * mult
            if mom is not None:
                set_momentum(pg, mom)

    def lrs(self, cut: int, n_groups: int) -> tuple[float, ...]:
        """The rate of each layer group and the head (0 for frozen groups), for Step events."""
        groups = self.opt.param_groups[: n_groups + 1]
        return tuple(pg["lr"] if gi >= cut or gi == n_groups else 0.0 for gi, pg in enumerate(groups))


def set_momentum(pg: dict, value: float) -> None:
    """SGD's momentum, or Adam's beta1 (fastai cycles whichever the optimiser has)."""
    if "betas" in pg:
        pg["betas"] = (value, pg["betas"][1])
    else:
        pg["momentum"] = value


def make_optimiser(net: Network, plan: Plan, policy: DevicePolicy) -> Optimiser:
    """Discriminative rates: the head is the top "group"; each backbone group below gets 1/factor of
    the one above. Inception's auxiliary head learns at the rate of the group it taps."""
    n = len(net.group_names)
    scales = list(group_lrs(1.0, n + 1, plan.discriminative_factor))
    params = [{"params": list(g.parameters()), "lr": plan.lr * s} for g, s in zip(net.groups.values(), scales)]
    params.append({"params": list(net.head.parameters()), "lr": plan.lr})
    if net.aux is not None:
        scales.append(scales[net.aux_after])
        params.append({"params": list(net.aux.parameters()), "lr": plan.lr * scales[-1]})
    if plan.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=plan.lr, momentum=plan.momentum, weight_decay=plan.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=plan.lr, weight_decay=plan.weight_decay)
    # fp16 (GPUs without bf16) underflows small gradients unless the loss is scaled; bf16 needs no scaling.
    scaler = torch.amp.GradScaler(policy.device.type, enabled=policy.is_cuda and policy.train_amp
                                  and policy.amp_dtype == torch.float16)
    return Optimiser(opt, scaler, tuple(scales), plan)


# --- one epoch of steps ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EpochStats:
    loss: float             # mean training loss over the epoch's steps
    steps: int
    images: int
    seconds: float          # stepping only (the feature pass and evaluation are not in it)


@dataclass(frozen=True)
class Clock:
    """Where a run is in time and in steps: Step events carry both."""
    t0: float               # perf_counter() when the run started
    step0: int              # global index of the epoch's first step
    total: int              # steps in the whole run


StepFn = Callable[[int], "torch.Tensor | None"]   # i-th step of an epoch -> its loss (None: nothing to learn from)


def run_steps(steps: int, step: StepFn, *, epoch: int, clock: Clock, batch: int, emit: Emit,
              should_stop: ShouldStop = _never, lrs: Callable[[], tuple[float, ...]] = tuple,
              on_loss: Callable[[float, str], None] | None = None, sync_each_step: bool = True) -> EpochStats:
    """One epoch of `steps` optimiser steps, whatever a step computes: the part every trainer shares.

    `step(i)` sets its rate, computes its losses (one or several, from one or several sources), steps
    the optimiser(s) and returns the loss it reports. Around it: a stop request between any two steps,
    throttled Step events (global index, rates from `lrs()`, images/s), a non-finite loss refused by
    `on_loss(value, where)` (it raises), and the epoch's mean loss. A training run, the multi-task
    arms, DANN's arms and the LR finder are all this loop with their own step.
    """
    loss_sum, counted = 0.0, 0
    pending: list[torch.Tensor] = []      # on a GPU, summed on the device and read once at the end
    t_start = last_emit = time.perf_counter()
    for i in range(steps):
        check_stop(should_stop)
        loss = step(i)
        now = time.perf_counter()
        # Each epoch's first and last steps are always reported (so the curves start where the schedule
        # starts, whatever the machine's speed); steps between them at most every STEP_EVENT_INTERVAL_S.
        report = i == 0 or i == steps - 1 or now - last_emit >= STEP_EVENT_INTERVAL_S
        if loss is None:
            continue
        counted += 1
        # Reading the loss syncs the GPU; do it only when we report (always on CPU: it is free there).
        if sync_each_step or report:
            value = float(loss.detach().item())
            if on_loss is not None:
                on_loss(value, f"at epoch {epoch + 1}, step {i + 1}")
            if sync_each_step:
                loss_sum += value
            else:
                pending.append(loss.detach())
            if report:
                done = min((i + 1) * batch, steps * batch)
                emit(Step(epoch, clock.step0 + i, clock.total, steps, value, lrs(),
                          done / max(now - t_start, 1e-9), now - clock.t0))
                last_emit = now
        else:
            pending.append(loss.detach())
    if pending:
        loss_sum += float(torch.stack([v.float() for v in pending]).sum().item())
    mean = loss_sum / counted if counted else float("nan")
    if on_loss is not None and counted:
        on_loss(mean, f"in epoch {epoch + 1}")
    return EpochStats(mean, steps, steps * batch, time.perf_counter() - t_start)


def train_epoch(net: Network, src: Source, optim: Optimiser, prepared: Prepared, epoch: int, clock: Clock,
                gen: torch.Generator, emit: Emit, should_stop: ShouldStop = _never) -> EpochStats:
    plan, policy = prepared.plan, prepared.policy
    y = prepared.data.train_y.to(policy.device)
    n_train = len(y)
    bs = min(plan.batch_size, n_train)
    spe = steps_per_epoch_for(n_train, bs)
    perm = torch.randperm(n_train, generator=gen)[: spe * bs].to(policy.device)

    def one(i: int) -> torch.Tensor:
        idx = perm[i * bs:(i + 1) * bs]
        optim.set_step(clock.step0 + i, clock.total)
        return train_step(net, src, idx, y[idx], optim, prepared, gen)

    return run_steps(spe, one, epoch=epoch, clock=clock, batch=bs, emit=emit, should_stop=should_stop,
                     lrs=lambda: optim.lrs(src.cut, len(net.group_names)),
                     on_loss=lambda v, where: _check_finite(v, plan, where), sync_each_step=not policy.is_cuda)


def _check_finite(value: float, plan: Plan, where: str) -> None:
    if not math.isfinite(value):
        raise Failed(f"the loss became {value} {where}: the learning rate ({plan.lr:g}) is probably too high; "
                     "try 10x lower")


def train_loss(net: Network, src: Source, idx: torch.Tensor, y: torch.Tensor, prepared: Prepared,
               gen: torch.Generator) -> torch.Tensor:
    """The loss a training step minimises on one batch (Inception's auxiliary loss included)."""
    logits, aux = forward_train(net, src, idx, prepared, gen)
    loss = F.cross_entropy(logits.float(), y)
    if aux is not None:   # Inception's auxiliary classifier, as its paper trains it
        loss = loss + net.aux_weight * F.cross_entropy(aux.float(), y)
    return loss


def train_step(net: Network, src: Source, idx: torch.Tensor, y: torch.Tensor, optim: Optimiser, prepared: Prepared,
               gen: torch.Generator) -> torch.Tensor:
    """One optimiser step on one batch at the optimiser's current rates: what training, the LR finder
    and the probe's fine-tuning all take. Returns the batch's loss (not yet read back from the device)."""
    loss = train_loss(net, src, idx, y, prepared, gen)
    optim.opt.zero_grad(set_to_none=True)
    optim.scaler.scale(loss).backward()
    optim.scaler.step(optim.opt)
    optim.scaler.update()
    return loss


def forward_train(net: Network, src: Source, idx: torch.Tensor, prepared: Prepared, gen: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits for a training batch (and the auxiliary head's, where it trains)."""
    policy, cut = prepared.policy, src.cut
    x = _trainable_input(net, src, idx, prepared, gen)
    if not policy.train_amp:
        x = x.float()
    with policy.autocast(training=True):
        if net.aux is None or cut > net.aux_after:
            return net.head(net.features(x, cut, None)), None
        # The auxiliary head trains while the group it taps does, on maps large enough for it.
        tap = net.features(x, cut, net.aux_after + 1)
        logits = net.head(net.features(tap, net.aux_after + 1, None))
        return logits, net.aux(tap) if tap.shape[-1] >= net.aux_min_side else None


def _trainable_input(net: Network, src: Source, idx: torch.Tensor, prepared: Prepared,
                     gen: torch.Generator) -> torch.Tensor:
    policy, cut = prepared.policy, src.cut
    if src.cached:
        x = src.train[idx.to(src.train.device)].to(policy.device)
        return x.contiguous(memory_format=policy.memory_format()) if x.ndim == 4 else x
    x = prepared.prep(src.train[idx.to(src.train.device)], augment=prepared.plan.augment, generator=gen)
    if src.prefix is not None:
        return src.prefix(x)
    if cut > 0:
        # BN policy "train": BatchNorm's scale and shift learn inside the frozen groups, so the
        # gradient has to flow back through them (their convolutions stay frozen).
        with policy.autocast(training=True):
            return net.features(x, 0, cut)
    return x


# --- evaluation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    loss: float
    pred: torch.Tensor          # [N] predicted class per validation image (CPU)
    confidence: torch.Tensor    # [N] probability of the predicted class (CPU)


@torch.no_grad()
def evaluate(net: Network, src: Source, prepared: Prepared, should_stop: ShouldStop = _never) -> Evaluation:
    policy = prepared.policy
    net.eval()
    y = prepared.data.val_y.to(policy.device)
    losses, preds, confs = [], [], []
    n = eval_batch(prepared.plan)
    for start in range(0, len(y), n):
        check_stop(should_stop)
        logits = _val_logits(net, src, slice(start, start + n), prepared)
        losses.append(F.cross_entropy(logits, y[start:start + n], reduction="sum"))
        conf, pred = logits.softmax(1).max(1)
        preds.append(pred)
        confs.append(conf)
    loss = float(torch.stack(losses).sum().item()) / max(len(y), 1)
    return Evaluation(loss, torch.cat(preds).cpu(), torch.cat(confs).cpu())


def _val_logits(net: Network, src: Source, sl: slice, prepared: Prepared) -> torch.Tensor:
    policy = prepared.policy
    if src.cached:
        x, start = src.val[sl].to(policy.device), src.cut
    else:
        x, start = prepared.prep(src.val[sl]), 0
        if src.prefix is not None:
            x, start = src.prefix(x), src.cut
    with policy.autocast():
        return net.head(net.features(x, start, None)).float()


# --- reporting and keeping -------------------------------------------------------------------------
def started(prepared: Prepared, net: Network | None, cuts: tuple[int, ...] = (), trainable: int = 0,
            frozen: int = 0) -> RunStarted:
    """The run's first event: what it trains on, where, and (for a network) its groups and schedule."""
    plan, d = prepared.plan, prepared.data
    groups = net.group_names if net is not None else ()
    n_train = int(d.train_y.numel())
    return RunStarted(plan.to_dict(), prepared.policy.name, trainable, frozen, groups, n_train, int(d.val_y.numel()),
                      tuple(d.classes), dataset_name=prepared.dataset_name, cuts=cuts,
                      steps_per_epoch=steps_per_epoch_for(n_train, plan.batch_size) if cuts else 0,
                      group_mflops=group_mflops(plan.model, prepared.size, plan.truncate_after) if net else ())


def param_counts(net: Network, lowest_cut: int) -> tuple[int, int]:
    """(trainable, frozen) parameters over the run: groups from the lowest cut up train, with the head."""
    per_group = [sum(p.numel() for p in g.parameters()) for g in net.groups.values()]
    head = sum(p.numel() for p in net.head.parameters())
    aux = sum(p.numel() for p in net.aux.parameters()) if net.aux is not None and lowest_cut <= net.aux_after else 0
    return sum(per_group[lowest_cut:]) + head + aux, sum(per_group[:lowest_cut])


def epoch_event(epoch: int, stats: EpochStats, ev: Evaluation, src: Source, prepared: Prepared,
                trainable: tuple[str, ...], seconds: float, fresh_features: bool) -> EpochEnded:
    """The epoch's numbers. `fresh_features`: this epoch paid for the prefix's pass (its first at a cut)."""
    d = prepared.data
    cm = confusion_matrix(d.val_y, ev.pred, d.num_classes)
    rep = report(cm, d.classes)
    feat_s = src.feature_seconds if fresh_features else 0.0
    return EpochEnded(
        epoch=epoch, train_loss=stats.loss, val_loss=ev.loss, val_acc=float(rep.accuracy),
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        precision=tuple(float(v) for v in rep.precision), recall=tuple(float(v) for v in rep.recall),
        f1=tuple(float(v) for v in rep.f1), macro_f1=float(rep.macro["f1"]), trainable_groups=trainable,
        seconds=seconds, images_per_s=stats.images / max(stats.seconds, 1e-9),
        feature_cache_hit=src.cached and src.cache_hit, feature_seconds=feat_s,
        feature_images_per_s=src.n_images / feat_s if feat_s > 0 else 0.0,
        steps_per_s=stats.steps / max(stats.seconds, 1e-9))


def snapshot(net: Network, whole: bool) -> dict:
    """The weights a run keeps, copied to the CPU: the whole network, or only the head when the
    backbone never trained (it is the published one)."""
    module = net if whole else net.head
    prefix = "" if whole else "head."
    return {f"{prefix}{k}": v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
