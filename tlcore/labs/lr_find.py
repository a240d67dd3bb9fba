"""The learning-rate finder (Smith 2015, as fastai's `lr_find` does it) as a run of its own kind.

An exponential sweep of the head's learning rate from `start_lr` to `end_lr` over `num_it`
optimiser steps on the plan's trainable part (a feature extractor sweeps its head on the cached
features: seconds). The loss is smoothed with a bias-corrected moving average (beta 0.98); the sweep
stops early once the smoothed loss passes 4x its minimum. The network's weights (and BatchNorm
statistics, and the optimiser) are put back afterwards, bit for bit, so nothing the sweep did stays.

Suggestions, read off the smoothed curve with its first tenth and last five points left out:
valley (the middle of the longest descent; fastai's default), minimum / 10, and steepest (the most
negative slope of loss against log lr: the one offered first, DEFAULT, for the reason given there).
With discriminative rates every group follows the head's rate at its own scale, so the rate found is
the plan's `lr` (the head's).
"""
from __future__ import annotations

import argparse
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import PlanError
from ..kinds import Kind, register_kind
from ..models.base import Network
from ..train import rng
from ..train.events import LabResult, Metrics, Phase, register_schema
from ..train.features import default_cache
from ..train.phases import Optimiser, Prepared, Source, build, make_optimiser, param_counts, prepare, source_at, \
    started, train_step
from ..train.scope import Failed, RunScope, check_stop
from ..train.strategies import apply_cut, cut_schedule
from ..cli import Command, register_command

START_LR, END_LR, NUM_IT = 1e-7, 10.0, 100
BETA = 0.98          # the loss's moving average
STOP_FACTOR = 4.0    # stop once the smoothed loss is this many times its minimum
SUGGESTIONS = ("valley", "minimum", "steep")
SUGGESTION_TITLES = {"valley": "valley", "minimum": "minimum / 10", "steep": "steepest"}
# The suggestion the Train page offers first and the CLI's `suggested_lr`. Steepest, not fastai's valley:
# measured on digits with the Train page's plan (Lite0, 3 epochs of STLR, 32 px, seeds 0-2, one thread;
# tests/lessons/test_lr_find_lesson.py), training at the steepest point came within 2 points of the best
# rate of a decade sweep in 6 of 6 runs (feature_extractor -0.006..+0.003, fine_tune_top +0.000..+0.006),
# minimum / 10 in 5 of 6, the valley in none (it sits 1-1.5 decades lower: -0.09 to -0.11), since a short
# run rewards the higher rate. fastai moved to the valley for long runs; ours are a few epochs.
DEFAULT = "steep"

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
    a half of the way into its middle third: fastai's `valley`. A curve that never falls has no
    run longer than one point: the first point, as fastai picks it (the formula alone says -1,
    which indexes the last, highest rate)."""
    n = len(losses)
    length = np.ones(n, dtype=int)
    best_end = 0
    for i in range(1, n):
        lower = losses[:i] > losses[i]
        if lower.any():
            length[i] = max(1, int(length[:i][lower].max()) + 1)
        if length[i] > length[best_end]:
            best_end = i
    start = best_end - length[best_end]   # fastai's, one before the run's first point
    third = (best_end - start) / 3
    return max(0, int(start + int(third) + int(third / 2)))


def _window(lrs: np.ndarray, losses: np.ndarray, num_it: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of the curve the suggestions read, as fastai takes it: trim first (the noisy first
    tenth and the last five points say nothing), then cut at the first non-finite loss, since
    nothing after a blow-up is a loss of the same training."""
    lo, hi = num_it // 10, len(lrs) - 5
    if hi - lo < 3:   # a sweep that stopped early: read all of it rather than nothing
        lo, hi = 0, len(lrs)
    lrs, losses = lrs[lo:hi], losses[lo:hi]
    bad = np.flatnonzero(~np.isfinite(losses))
    end = int(bad[0]) if len(bad) else len(losses)
    return lrs[:end], losses[:end]


def suggest(lrs: np.ndarray, smoothed: np.ndarray, num_it: int) -> dict[str, tuple[float, float]]:
    """The three suggestions from a curve, each (lr, loss at the point marked on the plot)."""
    lrs, losses = _window(np.asarray(lrs, float), np.asarray(smoothed, float), num_it)
    if len(lrs) < 3:
        raise Failed("the sweep stopped after too few steps to suggest a learning rate: the loss blew up at "
                     "once; try a lower start_lr")
    v = _valley_index(losses)
    m = int(np.argmin(losses))
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    s = int(np.argmin(slopes))
    return {"valley": (float(lrs[v]), float(losses[v])), "minimum": (float(lrs[m]) / 10, float(losses[m])),
            "steep": (float(lrs[s]), float(losses[s]))}


class _Curve:
    """The sweep's record as it grows: raw losses, their bias-corrected moving average, and
    fastai's stopping rule (a non-finite loss, or the smoothed loss past STOP_FACTOR x its minimum)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._avg, self._best, self.stopped = 0.0, math.inf, False

    def add(self, lr: float, loss: float) -> bool:
        """Record one step; False once the sweep should stop."""
        self._avg = BETA * self._avg + (1 - BETA) * loss
        smooth = self._avg / (1 - BETA ** (len(self.lrs) + 1))
        self.lrs.append(lr)
        self.losses.append(loss)
        self.smoothed.append(smooth)
        if math.isfinite(smooth):
            self._best = min(self._best, smooth)
        self.stopped = not math.isfinite(smooth) or smooth > STOP_FACTOR * self._best
        return not self.stopped

    def sweep(self, num_it: int) -> Sweep:
        return Sweep(tuple(self.lrs), tuple(self.losses), tuple(self.smoothed), self.stopped,
                     suggest(np.array(self.lrs), np.array(self.smoothed), num_it))


def _batches(n: int, bs: int, gen: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Index batches of a fresh shuffle each time the data runs out (the last partial batch dropped)."""
    while True:
        perm = torch.randperm(n, generator=gen).to(device)
        for at in range(0, n - bs + 1, bs):
            yield perm[at:at + bs]


def set_head_rate(optim: Optimiser, lr: float) -> None:
    """The head at `lr`, each layer group below at its discriminative share of it."""
    for pg, s in zip(optim.opt.param_groups, optim.scales):
        pg["lr"] = lr * s


@contextmanager
def _put_back(net: Network) -> Iterator[None]:
    """Whatever happens inside, the weights, BatchNorm statistics, gradients and the global RNG
    leave exactly as they came: bit for bit, nothing the sweep did stays."""
    saved = {k: v.detach().clone() for k, v in net.state_dict().items()}
    rng_state = torch.get_rng_state()
    try:
        yield
    finally:
        net.load_state_dict(saved)
        net.zero_grad(set_to_none=True)
        torch.set_rng_state(rng_state)


def run_sweep(net: Network, src: Source, prepared: Prepared, emit: Callable, should_stop: Callable[[], bool],
              *, start_lr: float = START_LR, end_lr: float = END_LR, num_it: int = NUM_IT) -> Sweep:
    """The sweep on what `src` feeds the trainable part (groups[src.cut:] and the head): each step is
    the training run's own `train_step`, at the sweep's rate."""
    plan, policy = prepared.plan, prepared.policy
    y = prepared.data.train_y.to(policy.device)
    gen = rng.generator(plan.seed, rng.SHUFFLE)
    batches = _batches(len(y), min(plan.batch_size, len(y)), gen, policy.device)
    curve = _Curve()
    with _put_back(net):
        optim = make_optimiser(net, plan, policy)
        for i, idx in zip(range(num_it), batches):
            check_stop(should_stop)
            lr = sweep_lr(i, num_it, start_lr, end_lr)
            set_head_rate(optim, lr)
            loss = train_step(net, src, idx, y[idx], optim, prepared, gen)
            emit(Phase("lr_find", i + 1, num_it))
            if not curve.add(lr, float(loss.item())):
                break
    return curve.sweep(num_it)


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


register_kind(Kind("lr_find", "Learning-rate finder", run, validate, results=(POINT, SUGGESTION), unit="suggested rate",
                   epochs=None))   # a sweep of steps: plan.epochs is the plan it suggests a rate for, not run here


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
                "suggested_lr": f.suggestions[DEFAULT][0] if f else None,
                "curve": {"lr": list(f.lrs), "loss": list(f.smoothed)} if f else None,
                "seconds": round(run.ended.seconds, 3) if run.ended else None, "message": run.message,
                "notes": notes}
    return run_plan_here(plan, summary)


register_command(Command("lr-find", "sweep the learning rate and suggest one (fastai's lr_find)", _arguments,
                         _command, description="Sweep the head's learning rate exponentially from --start-lr to "
                                               "--end-lr on the plan's trainable part, with the weights restored "
                                               "afterwards; prints one JSON line with the suggestions and the "
                                               "curve."))
