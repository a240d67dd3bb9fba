"""The learning-rate finder (Smith 2015, as fastai's `lr_find` does it) as a run of its own kind.

An exponential sweep of the head's learning rate from `start_lr` to `end_lr` over `num_it`
optimiser steps on the plan's trainable part (a feature extractor sweeps its head on the cached
features: seconds). The loss is smoothed with a bias-corrected moving average (beta 0.98); the sweep
stops early once the smoothed loss passes 4x its minimum. The network's weights (and BatchNorm
statistics, and the optimiser) are put back afterwards, bit for bit, so nothing the sweep did stays.

Suggestions, read off the smoothed curve with its first tenth and last five points left out:
valley (the middle of the longest descent; fastai's default), minimum / 10, and steepest (the most
negative slope of loss against log lr). With discriminative rates every group follows the head's
rate at its own scale, so the rate found is the plan's `lr` (the head's).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..models.base import Network
from ..train import rng
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.features import default_cache
from ..train.phases import Prepared, Source, build, forward_train, make_optimiser, param_counts, prepare, source_at, \
    started
from ..train.scope import Failed, RunScope, check_stop
from ..train.strategies import apply_cut, cut_schedule
from ..cli import Command, register_command

START_LR, END_LR, NUM_IT = 1e-7, 10.0, 100
BETA = 0.98          # the loss's moving average
STOP_FACTOR = 4.0    # stop once the smoothed loss is this many times its minimum
SUGGESTIONS = ("valley", "minimum", "steep")
SUGGESTION_TITLES = {"valley": "valley", "minimum": "minimum / 10", "steep": "steepest"}

POINT = register_schema("lr_find_point", {"step": int, "lr": float, "loss": float, "smoothed": float})
SUGGESTION = register_schema("lr_find_suggestion", {"name": str, "lr": float, "loss": float})


@dataclass(frozen=True)
class Sweep:
    lrs: tuple[float, ...]           # the head's rate at each step taken
    losses: tuple[float, ...]        # the raw batch losses
    smoothed: tuple[float, ...]      # bias-corrected moving average of the losses
    stopped_early: bool              # the smoothed loss passed STOP_FACTOR x its minimum
    suggestions: dict[str, tuple[float, float]]   # name -> (lr to use, smoothed loss at the point marked)


def sweep_lr(step: int, num_it: int, start_lr: float = START_LR, end_lr: float = END_LR) -> float:
    """fastai's SchedExp: start * (end / start) ** (step / num_it)."""
    return start_lr * (end_lr / start_lr) ** (step / num_it)


def _valley_index(losses: np.ndarray) -> int:
    """The longest strictly decreasing run of points (not necessarily adjacent), then a point
    a half of the way into its middle third: fastai's `valley`."""
    n = len(losses)
    length = np.ones(n, dtype=int)
    best_end = 0
    for i in range(1, n):
        lower = losses[:i] > losses[i]
        if lower.any():
            length[i] = max(1, int(length[:i][lower].max()) + 1)
        if length[i] > length[best_end]:
            best_end = i
    start = best_end - length[best_end]
    third = (best_end - start) / 3
    return int(start + int(third) + int(third / 2))


def suggest(lrs: np.ndarray, smoothed: np.ndarray, num_it: int) -> dict[str, tuple[float, float]]:
    """The three suggestions from a curve, each (lr, loss at the point marked on the plot)."""
    keep = np.isfinite(smoothed)
    lrs, losses = np.asarray(lrs, float)[keep], np.asarray(smoothed, float)[keep]
    lo, hi = num_it // 10, len(lrs) - 5   # the noisy start and the blown-up end say nothing
    if hi - lo < 3:
        lo, hi = 0, len(lrs)
    lrs, losses = lrs[lo:hi], losses[lo:hi]
    if len(lrs) < 3:
        raise Failed("the sweep stopped after too few steps to suggest a learning rate: the loss blew up at "
                     "once; try a lower start_lr")
    v = min(_valley_index(losses), len(lrs) - 1)
    m = int(np.argmin(losses))
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    s = int(np.argmin(slopes))
    return {"valley": (float(lrs[v]), float(losses[v])), "minimum": (float(lrs[m]) / 10, float(losses[m])),
            "steep": (float(lrs[s]), float(losses[s]))}


def run_sweep(net: Network, src: Source, prepared: Prepared, emit: Callable, should_stop: Callable[[], bool],
              *, start_lr: float = START_LR, end_lr: float = END_LR, num_it: int = NUM_IT) -> Sweep:
    """The sweep itself on what `src` feeds the trainable part (groups[src.cut:] and the head)."""
    plan, policy = prepared.plan, prepared.policy
    saved = {k: v.detach().clone() for k, v in net.state_dict().items()}
    rng_state = torch.get_rng_state()
    optim = make_optimiser(net, plan, policy)
    y_all = prepared.data.train_y.to(policy.device)
    n = len(y_all)
    bs = min(plan.batch_size, n)
    gen = rng.generator(plan.seed, rng.SHUFFLE)
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, False
    perm, at = torch.randperm(n, generator=gen).to(policy.device), 0
    try:
        for i in range(num_it):
            check_stop(should_stop)
            if at + bs > n:
                perm, at = torch.randperm(n, generator=gen).to(policy.device), 0
            idx = perm[at:at + bs]
            at += bs
            lr = sweep_lr(i, num_it, start_lr, end_lr)
            for pg, s in zip(optim.opt.param_groups, optim.scales):
                pg["lr"] = lr * s
            logits, aux = forward_train(net, src, idx, prepared, gen)
            loss = F.cross_entropy(logits.float(), y_all[idx])
            if aux is not None:
                loss = loss + net.aux_weight * F.cross_entropy(aux.float(), y_all[idx])
            optim.opt.zero_grad(set_to_none=True)
            optim.scaler.scale(loss).backward()
            optim.scaler.step(optim.opt)
            optim.scaler.update()
            value = float(loss.item())
            avg = BETA * avg + (1 - BETA) * value
            smooth = avg / (1 - BETA ** (i + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(smooth)
            emit(Phase("lr_find", i + 1, num_it))
            if not math.isfinite(smooth):
                stopped = True
                break
            best = min(best, smooth)
            if smooth > STOP_FACTOR * best:
                stopped = True
                break
    finally:
        net.load_state_dict(saved)   # bit for bit: what the sweep did to the weights never stays
        optim.opt.zero_grad(set_to_none=True)
        torch.set_rng_state(rng_state)
    return Sweep(tuple(lrs), tuple(losses), tuple(smoothed), stopped,
                 suggest(np.array(lrs), np.array(smoothed), num_it))


def run(plan, emit, should_stop, artifact_dir):
    with RunScope(plan, emit, artifact_dir) as scope:
        if not plan.uses_network or plan.head not in ("linear", "mlp"):
            raise Failed("the learning-rate finder sweeps a network's trainable part; an SVM on pixels or a "
                         "scikit-learn head has no learning rate (choose a linear or mlp head)")
        prepared = prepare(plan, emit, should_stop)
        scope.keep(classes=tuple(prepared.data.classes))
        net = build(prepared, emit)
        cut = cut_schedule(plan, len(net.group_names))[0]   # the part the run's first epoch trains
        emit(started(prepared, net, (cut,), *param_counts(net, cut)))
        apply_cut(net, cut, plan.bn)
        src = source_at(net, cut, prepared, default_cache(), emit, should_stop)
        t = time.perf_counter()
        result = run_sweep(net, src, prepared, emit, should_stop, start_lr=plan.option("start_lr", START_LR),
                           end_lr=plan.option("end_lr", END_LR), num_it=plan.option("num_it", NUM_IT))
        for i, (lr, loss, sm) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            emit(LabResult(POINT, {"step": i, "lr": lr, "loss": loss if math.isfinite(loss) else 1e30,
                                   "smoothed": sm if math.isfinite(sm) else 1e30}))
        for name in SUGGESTIONS:
            lr, loss = result.suggestions[name]
            emit(LabResult(SUGGESTION, {"name": name, "lr": lr, "loss": loss}))
        emit(Metrics({f"lr_{name}": result.suggestions[name][0] for name in SUGGESTIONS}
                     | {"sweep_seconds": time.perf_counter() - t, "steps": len(result.lrs)}))


def validate(plan) -> None:
    allowed = {"start_lr", "end_lr", "num_it"}
    extra = sorted(set(plan.options) - allowed)
    if extra:
        raise PlanError(f"options.{extra[0]}", f"is not an lr_find option (use {', '.join(sorted(allowed))})")
    start, end = plan.option("start_lr", START_LR), plan.option("end_lr", END_LR)
    num = plan.option("num_it", NUM_IT)
    for name, v in (("start_lr", start), ("end_lr", end)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise PlanError(f"options.{name}", "must be a positive number")
    if not start < end <= 100:
        raise PlanError("options.end_lr", "must be above start_lr and at most 100")
    if isinstance(num, bool) or not isinstance(num, int) or not 10 <= num <= 1000:
        raise PlanError("options.num_it", "must be a whole number of steps from 10 to 1000")


register_kind(Kind("lr_find", "Learning-rate finder", run, validate, results=(POINT, SUGGESTION)))


# --- reading a finished sweep back -----------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestions: dict[str, tuple[float, float]]


def found(run) -> Found | None:
    """A stored lr_find run's curve and suggestions (None until it has them)."""
    points = [r.values for r in run.results if r.schema == POINT]
    sugg = {r.values["name"]: (r.values["lr"], r.values["loss"]) for r in run.results if r.schema == SUGGESTION}
    if not points or set(sugg) != set(SUGGESTIONS):
        return None
    points.sort(key=lambda v: v["step"])
    return Found(tuple(v["lr"] for v in points), tuple(v["loss"] for v in points),
                 tuple(v["smoothed"] for v in points), sugg)


# --- the command line ------------------------------------------------------------------------------
def _arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import plan_options as _plan_options
    _plan_options(parser)
    parser.add_argument("--start-lr", type=float, default=START_LR, help=f"first rate (default {START_LR:g})")
    parser.add_argument("--end-lr", type=float, default=END_LR, help=f"last rate (default {END_LR:g})")
    parser.add_argument("--num-it", type=int, default=NUM_IT, help=f"steps of the sweep (default {NUM_IT})")


def _command(args: argparse.Namespace) -> int:
    import dataclasses

    from ..cli import run_plan_here
    from ..train.plan import Plan, default_image_size
    fields = {f.name for f in dataclasses.fields(Plan)}
    options = {k: v for k, v in vars(args).items() if k in fields}
    if options["image_size"] is None:
        options["image_size"] = default_image_size(options["device"])
    plan = Plan(**options, kind="lr_find",
                options={"start_lr": args.start_lr, "end_lr": args.end_lr, "num_it": args.num_it})

    def summary(run, notes):
        f = found(run)
        return {"run_id": run.id, "status": run.status, "kind": "lr_find", "strategy": plan.strategy,
                "model": plan.model, "dataset": plan.dataset,
                "suggestions": {k: v[0] for k, v in f.suggestions.items()} if f else None,
                "suggested_lr": f.suggestions["valley"][0] if f else None,
                "curve": {"lr": list(f.lrs), "loss": list(f.smoothed)} if f else None,
                "seconds": round(run.ended.seconds, 3) if run.ended else None, "message": run.message,
                "notes": notes}
    return run_plan_here(plan, summary)


register_command(Command("lr-find", "sweep the learning rate and suggest one (fastai's lr_find)", _arguments,
                         _command, description="Sweep the head's learning rate exponentially from --start-lr to "
                                               "--end-lr on the plan's trainable part, with the weights restored "
                                               "afterwards; prints one JSON line with the suggestions and the "
                                               "curve."))
