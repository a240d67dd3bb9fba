"""A training run, top to bottom: the phases (tlcore.train.phases) composed for a plan's strategy.

Speeds claimed for this loop come from `python -m tlcore.bench` (ratios against a plain
DataLoader + torchvision-transforms loop measured in the same run).

Every run ends with exactly one RunEnded event (tlcore.train.scope): finished, stopped (a stop
request is honoured within one batch of any phase and keeps the last finished epoch) or failed
(with a message a student can act on).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..kinds import Kind, register_kind
from ..models.base import Network
from . import rng, sklearn_heads
from .events import Emit, Phase, Unfrozen
from .features import FeatureCache, default_cache
from .phases import (Clock, Evaluation, Prepared, build, epoch_event, evaluate, make_optimiser, param_counts,
                     prepare, snapshot, source_at, started, train_epoch)
from .plan import Plan
from .scope import RunScope
from .strategies import apply_cut, cut_schedule, steps_per_epoch

SKLEARN_HEADS = ("logreg", "linear_svm")


def _never() -> bool:
    return False


def train(plan: Plan, emit: Emit, should_stop: Callable[[], bool] = _never, artifact_dir: Path | None = None,
          *, feature_cache: FeatureCache | None = None) -> Network | None:
    """Execute `plan`, reporting through `emit`; return the trained network (None for pixel_svm or a
    run that did not finish). Never raises for a failed run: it emits RunEnded("failed", why) instead."""
    cache = feature_cache or default_cache()
    net = None
    with RunScope(plan, emit, artifact_dir) as scope:
        prepared = prepare(plan, emit, should_stop)
        scope.keep(true=prepared.data.val_y, classes=tuple(prepared.data.classes))
        if plan.strategy == "pixel_svm":
            _pixel_svm(prepared, scope, emit)
            return None
        net = build(prepared, emit)
        if plan.head in SKLEARN_HEADS:
            _sklearn_head(net, prepared, scope, cache, emit, should_stop)
        else:
            _fit(net, prepared, scope, cache, emit, should_stop)
    return net if scope.status == "finished" else None


def _fit(net: Network, p: Prepared, scope: RunScope, cache: FeatureCache, emit: Emit,
         should_stop: Callable[[], bool]) -> None:
    plan, names = p.plan, net.group_names
    cuts = cut_schedule(plan, len(names))
    emit(started(p, net, cuts, *param_counts(net, min(cuts))))
    optim = make_optimiser(net, plan, p.policy)
    spe = steps_per_epoch(int(p.data.train_y.numel()), plan.batch_size)
    gen = rng.generator(plan.seed, rng.SHUFFLE)
    whole = min(cuts) < len(names)   # a backbone that never trains is the published one: keep only the head
    src = None
    for epoch, cut in enumerate(cuts):
        _announce_unfreezing(plan, names, cuts, epoch, emit)
        apply_cut(net, cut, plan.bn)
        t_epoch = time.perf_counter()   # the frozen features are part of the epoch that needs them
        fresh = src is None or src.cut != cut
        if fresh:
            src = None   # the old cut's tensors can go before the new ones are made
            src = source_at(net, cut, p, cache, emit, should_stop, share_whole=True)
        stats = train_epoch(net, src, optim, p, epoch, Clock(scope.t0, epoch * spe, spe * plan.epochs), gen, emit,
                            should_stop)
        ev = evaluate(net, src, p, should_stop)
        emit(epoch_event(epoch, stats, ev, src, p, names[cut:], time.perf_counter() - t_epoch, fresh))
        scope.keep(pred=ev.pred, confidence=ev.confidence,
                   model={"kind": "network" if whole else "head", "state_dict": snapshot(net, whole)})


def _announce_unfreezing(plan: Plan, names: tuple[str, ...], cuts: tuple[int, ...], epoch: int, emit: Emit) -> None:
    if plan.strategy == "gradual_unfreeze" and epoch > 0 and cuts[epoch] < cuts[epoch - 1]:
        for g in range(cuts[epoch], min(cuts[epoch - 1], len(names))):
            emit(Unfrozen(epoch, names[g]))


# --- classifiers without a network head ------------------------------------------------------------
def _pixel_svm(p: Prepared, scope: RunScope, emit: Emit) -> None:
    emit(started(p, None, (), 0, 0))
    t = time.perf_counter()
    emit(Phase("svm", 0, 1))
    d = p.data
    pred, scores, _ = sklearn_heads.fit_predict("pixel_svm", sklearn_heads.pixel_features(d.train_x),
                                                d.train_y.numpy(), sklearn_heads.pixel_features(d.val_x), p.plan.seed)
    emit(Phase("svm", 1, 1))
    _classical_epoch(p, scope, emit, pred, scores, time.perf_counter() - t)


def _sklearn_head(net: Network, p: Prepared, scope: RunScope, cache: FeatureCache, emit: Emit,
                  should_stop: Callable[[], bool]) -> None:
    n = len(net.group_names)
    emit(started(p, net, (n,), 0, sum(q.numel() for q in net.groups.parameters())))
    apply_cut(net, n, p.plan.bn)
    src = source_at(net, n, p, cache, emit, should_stop, share_whole=True)
    train_f, val_f = src.train, src.val
    if not src.cached:   # no room in the feature cache: compute the features without keeping them
        from .phases import compute_features
        train_f, val_f = compute_features(net, n, p, emit, should_stop)
    t = time.perf_counter()
    emit(Phase("classifier", 0, 1))
    pred, scores, _ = sklearn_heads.fit_predict(p.plan.head, train_f.float().cpu().numpy(), p.data.train_y.numpy(),
                                                val_f.float().cpu().numpy(), p.plan.seed)
    emit(Phase("classifier", 1, 1))
    _classical_epoch(p, scope, emit, pred, scores, time.perf_counter() - t, src)


def _classical_epoch(p: Prepared, scope: RunScope, emit: Emit, pred: np.ndarray, scores: np.ndarray,
                     seconds: float, src=None) -> None:
    """A fitted classifier's one "epoch": its predictions scored like any other run's."""
    from .phases import EpochStats, Source
    ev = Evaluation(float("nan"), torch.as_tensor(pred), torch.as_tensor(sklearn_heads.confidence(scores)))
    n = int(p.data.train_y.numel())
    src = src or Source(0, p.data.train_x, p.data.val_x, False)
    stats = EpochStats(float("nan"), 1, n, seconds)
    emit(epoch_event(0, stats, ev, src, p, (), seconds + src.feature_seconds, True))
    scope.keep(pred=ev.pred, confidence=ev.confidence)


def _run(plan: Plan, emit: Emit, should_stop: Callable[[], bool], artifact_dir: Path | None) -> Network | None:
    return train(plan, emit, should_stop, artifact_dir)


register_kind(Kind("train", "Training run", _run))
