"""One run of a plan, top to bottom: data, network, frozen prefix, steps, evaluation, events.

Speeds claimed for this loop come from `python -m tlcore.bench` (ratios against a plain
DataLoader + torchvision-transforms loop measured in the same run).

Every run ends with exactly one RunEnded event: finished, stopped (a stop request is honoured
within one step and keeps what was done) or failed (with a message a student can act on).
"""
from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import downloads
from ..data import ImageSplits, load_dataset
from ..device import DevicePolicy, pick
from ..errors import TLCoreError
from ..memory import allocator_message, is_allocator_failure
from ..metrics import confusion_matrix, report
from ..models import MODELS, build_network
from ..models.base import Network
from . import sklearn_heads
from .events import Emit, EpochEnded, Phase, RunEnded, RunStarted, Step, Unfrozen
from .features import FeatureCache, FrozenPrefix, compute_prefix, default_cache, feature_key, prefix_numel
from .pipeline import Preprocess
from .plan import Plan
from .schedules import group_lrs, multiplier
from .strategies import apply_cut, cut_schedule, frozen_groups_are_fixed, frozen_prefix_is_fixed
from .strategies import steps_per_epoch as steps_per_epoch_for

STEP_EVENT_INTERVAL_S = 0.25   # Step events are throttled: the UI redraws at ~1 Hz, the store need not see every step
EVAL_BATCH = 256


class _Stopped(Exception):
    pass


class _Failed(Exception):
    pass


@dataclass
class _Source:
    """What the trainable part eats: cached prefix outputs, or raw images that still need the prefix."""
    train: torch.Tensor
    val: torch.Tensor
    cached: bool


def train(plan: Plan, emit: Emit, should_stop: Callable[[], bool] = lambda: False,
          artifact_dir: Path | None = None, *, feature_cache: FeatureCache | None = None) -> Network | None:
    """Execute `plan`, reporting through `emit`; return the trained network (None for pixel_svm or a failure).

    Never raises for a failed run: it emits RunEnded("failed", message) instead.
    """
    t0 = time.perf_counter()
    run = _Run(plan, emit, should_stop, artifact_dir, feature_cache or default_cache())
    status, message = "finished", ""
    try:
        run.execute()
    except _Stopped:
        status, message = "stopped", "stopped on request; the epochs already finished are kept"
    except (_Failed, TLCoreError) as e:
        status, message = "failed", str(e)
    except Exception as e:
        if _out_of_memory(e):
            status, message = "failed", allocator_message(e)
        else:  # a bug, not the student's fault: say what happened, keep the trace
            if artifact_dir is not None:
                Path(artifact_dir).mkdir(parents=True, exist_ok=True)
                (Path(artifact_dir) / "error.txt").write_text(traceback.format_exc())
            status, message = "failed", f"internal error: {type(e).__name__}: {e}"
    net = getattr(run, "net", None) if status != "failed" else None
    if status == "failed":
        del run   # outside the except block: no traceback holds its tensors any more
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    emit(RunEnded(status, message, time.perf_counter() - t0))
    return net


def _out_of_memory(e: BaseException) -> bool:
    return is_allocator_failure(e)   # CPU ("DefaultCPUAllocator: can't allocate memory"), CUDA and MPS alike


class _Run:
    def __init__(self, plan: Plan, emit: Emit, should_stop: Callable[[], bool], artifact_dir: Path | None,
                 cache: FeatureCache) -> None:
        self.plan, self.emit, self.should_stop, self.cache = plan, emit, should_stop, cache
        self.artifact_dir = Path(artifact_dir) if artifact_dir is not None else None

    # --- setup ---------------------------------------------------------------------------------
    def execute(self) -> None:
        plan = self.plan
        torch.manual_seed(plan.seed)
        self.spec = MODELS[plan.model]
        self.policy: DevicePolicy = pick(plan.device).for_model(self.spec)
        self.size = plan.resolved_image_size()
        self.emit(Phase("data", 0, 1))
        with downloads.reporting(self._downloading):
            self.data: ImageSplits = load_dataset(plan.dataset, image_size=self.size, per_class=plan.per_class,
                                                  imbalance=plan.imbalance, seed=plan.seed,
                                                  path=plan.dataset_path or None)
        self.emit(Phase("data", 1, 1))
        if plan.strategy == "pixel_svm":
            self._run_pixel_svm()
        else:
            self._run_network()

    def _downloading(self, done: int, total: int | None) -> None:
        self.emit(Phase("download", done, total or 0))

    def _started(self, trainable: int, frozen: int, groups: tuple[str, ...]) -> None:
        d = self.data
        self.emit(RunStarted(self.plan.to_dict(), self.policy.name, trainable, frozen, groups,
                             int(d.train_y.numel()), int(d.val_y.numel()), tuple(d.classes)))

    # --- no network ----------------------------------------------------------------------------
    def _run_pixel_svm(self) -> None:
        self._started(0, 0, ())
        t = time.perf_counter()
        self.emit(Phase("svm", 0, 1))
        pred, scores, _ = sklearn_heads.fit_predict(
            "pixel_svm", sklearn_heads.pixel_features(self.data.train_x), self.data.train_y.numpy(),
            sklearn_heads.pixel_features(self.data.val_x), self.plan.seed)
        self.emit(Phase("svm", 1, 1))
        self._finish_classical(pred, scores, time.perf_counter() - t, cache_hit=False)

    def _finish_classical(self, pred: np.ndarray, scores: np.ndarray, seconds: float, cache_hit: bool) -> None:
        n = int(self.data.train_y.numel())
        self._epoch_ended(0, float("nan"), float("nan"), torch.as_tensor(pred), (), seconds, n / max(seconds, 1e-9),
                          cache_hit)
        prob = _as_probabilities(scores)
        self._save({"kind": "sklearn"}, torch.as_tensor(pred), torch.as_tensor(prob))

    # --- network strategies --------------------------------------------------------------------
    def _run_network(self) -> None:
        plan, policy = self.plan, self.policy
        with downloads.reporting(self._downloading):
            net = build_network(plan.model, self.data.num_classes, pretrained=plan.pretrained,
                                head=plan.head if plan.head in ("linear", "mlp") else "linear")
        net = net.to(policy.device, memory_format=policy.memory_format())
        self.net = net
        names = net.group_names
        n = len(names)
        cuts = cut_schedule(plan, n)
        group_params = [sum(p.numel() for p in g.parameters()) for g in net.groups.values()]
        head_params = sum(p.numel() for p in net.head.parameters())
        lowest = min(cuts)
        trainable = sum(group_params[lowest:]) + head_params
        frozen = sum(group_params[:lowest])
        if plan.head in ("logreg", "linear_svm"):
            trainable, frozen = 0, sum(group_params)
        self._started(trainable, frozen, names)
        self.prep = Preprocess(self.size, self.spec.mean, self.spec.std, policy)

        if plan.head in ("logreg", "linear_svm"):
            apply_cut(net, n, plan.bn)
            t = time.perf_counter()
            src = self._source(n)
            train_f, val_f = (src.train, src.val) if src.cached else self._compute_features(n)
            self.emit(Phase("classifier", 0, 1))
            pred, scores, _ = sklearn_heads.fit_predict(plan.head, train_f.float().cpu().numpy(),
                                                        self.data.train_y.numpy(), val_f.float().cpu().numpy(),
                                                        plan.seed)
            self.emit(Phase("classifier", 1, 1))
            self._finish_classical(pred, scores, time.perf_counter() - t, cache_hit=self._last_hit)
            return

        # Discriminative rates: the head is the top "group"; each backbone group below gets 1/factor of the one above.
        scales = group_lrs(1.0, n + 1, plan.discriminative_factor)
        params = [{"params": list(g.parameters()), "lr": plan.lr * s} for g, s in zip(net.groups.values(), scales)]
        params.append({"params": list(net.head.parameters()), "lr": plan.lr})
        if plan.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=plan.lr, momentum=plan.momentum, weight_decay=plan.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=plan.lr, weight_decay=plan.weight_decay)

        n_train = int(self.data.train_y.numel())
        bs = min(plan.batch_size, n_train)
        steps_per_epoch = steps_per_epoch_for(n_train, bs)
        total = steps_per_epoch * plan.epochs
        gen = torch.Generator().manual_seed(plan.seed)
        train_y = self.data.train_y.to(policy.device)
        # fp16 (GPUs without bf16) underflows small gradients unless the loss is scaled; bf16 needs no scaling.
        scaler = torch.amp.GradScaler(policy.device.type, enabled=policy.is_cuda and policy.train_amp
                                      and policy.amp_dtype == torch.float16)
        step = 0
        prev_cut = n + 1
        for epoch, cut in enumerate(cuts):
            if epoch > 0 and cut < prev_cut and plan.strategy == "gradual_unfreeze":
                for g in range(cut, min(prev_cut, n)):
                    self.emit(Unfrozen(epoch, names[g]))
            prev_cut = cut
            apply_cut(net, cut, plan.bn)
            t_epoch = time.perf_counter()   # computing the frozen features is part of the epoch that needs them
            src = self._source(cut)
            perm = torch.randperm(n_train, generator=gen)[: steps_per_epoch * bs].to(policy.device)
            loss_sum = torch.zeros((), device=policy.device)
            last_emit = 0.0
            for i in range(steps_per_epoch):
                if self.should_stop():
                    self._save_model()
                    raise _Stopped()
                idx = perm[i * bs:(i + 1) * bs]
                mult = multiplier(plan.schedule, step, total, cut_frac=plan.cut_frac, ratio=plan.ratio,
                                  warmup_frac=plan.warmup_frac)
                for pg, s in zip(opt.param_groups, scales):
                    pg["lr"] = plan.lr * s * mult
                logits = self._forward_train(src, idx, cut, gen)
                loss = F.cross_entropy(logits.float(), train_y[idx])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                loss_sum += loss.detach()
                now = time.perf_counter()
                # Reading the loss syncs the GPU; do it only when we report (always on CPU: it is free there).
                if not policy.is_cuda or now - last_emit >= STEP_EVENT_INTERVAL_S or i == steps_per_epoch - 1:
                    value = float(loss.item())
                    if not math.isfinite(value):
                        raise _Failed(f"the loss became {value} at epoch {epoch + 1}, step {i + 1}: the learning rate "
                                      f"({plan.lr:g}) is probably too high; try 10x lower")
                    if now - last_emit >= STEP_EVENT_INTERVAL_S or i == steps_per_epoch - 1:
                        lrs = tuple(pg["lr"] if gi >= cut or gi == n else 0.0 for gi, pg in enumerate(opt.param_groups))
                        done = min((i + 1) * bs, n_train)
                        self.emit(Step(epoch, step, total, steps_per_epoch, value, lrs, done / max(now - t_epoch, 1e-9)))
                        last_emit = now
                step += 1
            train_loss = float(loss_sum.item()) / steps_per_epoch
            if not math.isfinite(train_loss):
                raise _Failed(f"the loss became {train_loss} in epoch {epoch + 1}: the learning rate ({plan.lr:g}) "
                              "is probably too high; try 10x lower")
            seconds = time.perf_counter() - t_epoch
            val_loss, pred, prob = self._evaluate(src, cut)
            self.last_pred, self.last_prob = pred, prob   # a stop later on still keeps these
            self._epoch_ended(epoch, train_loss, val_loss, pred, names[cut:], seconds,
                              steps_per_epoch * bs / max(seconds, 1e-9), src.cached and self._last_hit)
        self._save_model()

    # --- data for the trainable part -----------------------------------------------------------
    def _source(self, cut: int) -> _Source:
        """Cached prefix outputs when the frozen part is fixed and they fit; raw images otherwise."""
        if getattr(self, "_src_cut", None) == cut:
            return self._src
        self._prefix = self._prefix_for = None   # the old cut's copy is no longer needed
        self._src = self._make_source(cut)
        self._src_cut = cut
        return self._src

    def _frozen_prefix(self, cut: int) -> FrozenPrefix | None:
        """The groups below the cut as a fast inference copy, when they compute a fixed function
        (BN policy "train" lets them learn). Built on first use: a feature-cache hit never needs it."""
        if not frozen_groups_are_fixed(self.plan, cut):
            return None
        if getattr(self, "_prefix_for", None) != cut:
            self._prefix, self._prefix_for = FrozenPrefix(self.net, cut, self.prep, self.policy), cut
        return self._prefix

    def _make_source(self, cut: int) -> _Source:
        plan, d = self.plan, self.data
        self._last_hit = False
        n_groups = len(self.net.group_names)
        if frozen_prefix_is_fixed(plan, cut) and self.cache.fits(
                len(d.train_y) + len(d.val_y), prefix_numel(self.net, cut, self.prep)):
            key = feature_key(self._identity(), cut)
            pair = self.cache.get(key)
            self._last_hit = pair is not None
            if pair is None:
                pair = self._compute_features(cut)
                self.cache.put(key, *pair)
            else:
                self.emit(Phase("features", 1, 1, cache_hit=True))
            dev = self.policy.device
            # Head-only features are small: keep fp32. Deeper cached maps stay half precision on a GPU.
            dtype = torch.float16 if cut < n_groups and self.policy.train_amp and self.policy.is_cuda else torch.float32
            return _Source(pair[0].to(dev, dtype), pair[1].to(dev, dtype), cached=True)
        dev = self.policy.device
        # Raw uint8 images go to the GPU once when they fit: batches are then gathered there.
        fits = not self.policy.is_cuda or d.train_x.nbytes + d.val_x.nbytes < 4 * 2**30
        where = dev if fits else torch.device("cpu")
        return _Source(d.train_x.to(where), d.val_x.to(where), cached=False)

    def _compute_features(self, cut: int) -> tuple[torch.Tensor, torch.Tensor]:
        """groups[:cut] over both splits, with progress; a stop request is honoured between batches."""
        d = self.data
        total = len(d.train_y) + len(d.val_y)
        batch = 256 if self.policy.is_cuda else 64

        def progress(offset: int) -> Callable[[int, int], None]:
            def report(done: int, _n: int) -> None:
                self.emit(Phase("features", offset + done, total))
                if self.should_stop():
                    raise _Stopped()
            return report

        prefix = self._frozen_prefix(cut)
        tr = compute_prefix(self.net, d.train_x, cut, self.prep, self.policy, batch, progress(0), prefix=prefix)
        va = compute_prefix(self.net, d.val_x, cut, self.prep, self.policy, batch, progress(len(d.train_y)),
                            prefix=prefix)
        return tr, va

    def _identity(self) -> dict:
        p = self.plan
        ident = {"dataset": p.dataset, "path": p.dataset_path, "per_class": p.per_class, "imbalance": p.imbalance,
                 "seed": p.seed, "model": p.model, "pretrained": p.pretrained, "size": self.size,
                 # bf16 features from one device are not another's fp32 ones
                 "device": self.policy.device.type, "dtype": str(self.policy.amp_dtype),
                 "n_train": int(self.data.train_y.numel()), "n_val": int(self.data.val_y.numel())}
        if p.dataset_path:
            path = Path(p.dataset_path)
            if path.exists():
                st = path.stat()
                ident["path_stat"] = (st.st_mtime_ns, st.st_size)
        return ident

    def _forward_train(self, src: _Source, idx: torch.Tensor, cut: int, gen: torch.Generator) -> torch.Tensor:
        net, policy = self.net, self.policy
        if src.cached:
            x = src.train[idx.to(src.train.device)].to(policy.device)
            if x.ndim == 4:
                x = x.contiguous(memory_format=policy.memory_format())
        else:
            x = self.prep(src.train[idx.to(src.train.device)], augment=self.plan.augment, generator=gen)
            prefix = self._frozen_prefix(cut)
            if prefix is not None:
                x = prefix(x)
            elif cut > 0:
                # BN policy "train": BatchNorm's scale and shift learn inside the frozen groups, so
                # the gradient has to flow back through them (their convolutions stay frozen).
                with policy.autocast(training=True):
                    x = net.features(x, 0, cut)
        if not policy.train_amp:
            x = x.float()
        with policy.autocast(training=True):
            return net.head(net.features(x, cut, None))

    @torch.no_grad()
    def _evaluate(self, src: _Source, cut: int) -> tuple[float, torch.Tensor, torch.Tensor]:
        net, policy = self.net, self.policy
        net.eval()
        y = self.data.val_y.to(policy.device)
        losses, preds, probs = [], [], []
        for start in range(0, len(y), EVAL_BATCH):
            sl = slice(start, start + EVAL_BATCH)
            if src.cached:
                x = src.val[sl].to(policy.device)
                with policy.autocast():
                    logits = net.head(net.features(x, cut, None)).float()
            else:
                x, start = self.prep(src.val[sl]), 0
                prefix = self._frozen_prefix(cut)
                if prefix is not None:
                    x, start = prefix(x), cut
                with policy.autocast():
                    logits = net.head(net.features(x, start, None)).float()
            losses.append(F.cross_entropy(logits, y[sl], reduction="sum"))
            p = logits.softmax(1)
            conf, pred = p.max(1)
            preds.append(pred)
            probs.append(conf)
        val_loss = float(torch.stack(losses).sum().item()) / max(len(y), 1)
        return val_loss, torch.cat(preds).cpu(), torch.cat(probs).cpu()

    # --- reporting -----------------------------------------------------------------------------
    def _epoch_ended(self, epoch: int, train_loss: float, val_loss: float, pred: torch.Tensor,
                     trainable: tuple[str, ...], seconds: float, ips: float, cache_hit: bool) -> None:
        d = self.data
        cm = confusion_matrix(d.val_y, pred, d.num_classes)
        rep = report(cm, d.classes)
        self.emit(EpochEnded(
            epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_acc=float(rep.accuracy),
            confusion=tuple(tuple(int(v) for v in row) for row in cm),
            precision=tuple(float(v) for v in rep.precision), recall=tuple(float(v) for v in rep.recall),
            f1=tuple(float(v) for v in rep.f1), macro_f1=float(rep.macro["f1"]),
            trainable_groups=tuple(trainable), seconds=seconds, images_per_s=ips, feature_cache_hit=cache_hit))

    def _save_model(self) -> None:
        if self.artifact_dir is None:
            return
        net = self.net
        n = len(net.group_names)
        # A frozen backbone is the published one: store only what this run changed.
        whole = min(cut_schedule(self.plan, n)) < n
        state = net.state_dict() if whole else {f"head.{k}": v for k, v in net.head.state_dict().items()}
        self._save({"kind": "network" if whole else "head", "state_dict": {k: v.cpu() for k, v in state.items()}},
                   getattr(self, "last_pred", None), getattr(self, "last_prob", None))

    def _save(self, model: dict, pred: torch.Tensor | None, prob: torch.Tensor | None) -> None:
        if self.artifact_dir is None:
            return
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        if "state_dict" in model:
            torch.save({**model, "plan": self.plan.to_dict(), "classes": list(self.data.classes)},
                       self.artifact_dir / "model.pt")
        if pred is not None:
            torch.save({"pred": pred, "confidence": prob, "true": self.data.val_y}, self.artifact_dir / "predictions.pt")
        (self.artifact_dir / "classes.json").write_text(json.dumps(list(self.data.classes)))


def _as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Confidence of the predicted class from predict_proba or decision scores (softmax of margins)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:  # binary decision_function
        s = np.stack([-s, s], axis=1)
    if not np.allclose(s.sum(1), 1.0) or (s < 0).any():
        s = np.exp(s - s.max(1, keepdims=True))
        s /= s.sum(1, keepdims=True)
    return s.max(1).astype(np.float32)
