"""Fine-tune from here: for each cut, the groups up to it frozen, the groups above it trained with a
new head for E epochs; validation accuracy per cut beside the frozen probe's curve (the frozen vs
fine-tuned comparison of Yosinski et al., 2014). One result row per cut, emitted as it finishes, so a
stopped run keeps the cuts already done."""
from __future__ import annotations

import time

import torch

from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..train import rng
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.features import default_cache
from ..train.phases import Clock, build, evaluate, make_optimiser, prepare, source_at, started, train_epoch
from ..train.scope import RunScope, check_stop
from ..train.strategies import apply_cut, steps_per_epoch

SCHEMA = register_schema("cut_finetune", {"group": str, "index": int, "val_acc": float, "epochs": int,
                                          "trained_groups": int, "seconds": float})
MAX_EPOCHS = 20


def _validate(plan) -> None:
    extra = set(plan.options) - {"epochs"}
    if extra:
        raise PlanError("options", f"fine-tuning per cut takes only epochs, not {', '.join(sorted(extra))}")
    e = plan.options.get("epochs", 1)
    if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= MAX_EPOCHS:
        raise PlanError("options.epochs", f"must be a whole number of epochs from 1 to {MAX_EPOCHS}")
    if plan.truncate_after:
        raise PlanError("truncate_after", "fine-tuning per cut uses the whole network")


def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        t0 = time.perf_counter()
        epochs = int(plan.option("epochs", 1))
        prepared = prepare(plan, emit, should_stop)
        scope.keep(classes=tuple(prepared.data.classes))
        cache = default_cache()
        net = build(prepared, emit)
        names = net.group_names
        emit(started(prepared, net))
        val_y = prepared.data.val_y
        spe = steps_per_epoch(int(prepared.data.train_y.numel()), plan.batch_size)
        best = 0.0
        for i, name in enumerate(names):
            emit(Phase("cut", i, len(names)))
            check_stop(should_stop)
            t = time.perf_counter()
            if i:
                net = build(prepared)       # every cut starts again from the pretrained weights
            cut = i + 1                     # frozen: groups up to and including `name`
            apply_cut(net, cut, plan.bn)
            src = source_at(net, cut, prepared, cache, emit, should_stop)
            optim = make_optimiser(net, plan, prepared.policy)
            gen = rng.generator(plan.seed, rng.SHUFFLE)
            for e in range(epochs):
                train_epoch(net, src, optim, prepared, e, Clock(t0, e * spe, spe * epochs), gen, emit, should_stop)
            ev = evaluate(net, src, prepared, should_stop)
            acc = float((ev.pred.flatten() == val_y.flatten()).float().mean())
            best = max(best, acc)
            emit(LabResult(SCHEMA, {"group": name, "index": i, "val_acc": acc, "epochs": epochs,
                                    "trained_groups": len(names) - cut, "seconds": time.perf_counter() - t}))
            del src, optim
            if prepared.policy.is_cuda:
                torch.cuda.empty_cache()
        emit(Phase("cut", len(names), len(names)))
        emit(Metrics({"val_acc": best}))


register_kind(Kind("cut_finetune", "Fine-tune from each cut", run, validate=_validate, results=(SCHEMA,), unit="cut",
                   epochs=lambda plan: (plan.option("epochs", 1), "options.epochs")))   # per cut, its own option
