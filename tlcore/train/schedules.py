"""Learning-rate schedules as pure functions of the step, so the UI can draw them before training.

`multiplier` is relative to the peak learning rate (peak = 1). With discriminative rates every
layer group follows the same shape at its own scale.
"""
from __future__ import annotations

import math

import numpy as np

# fastai's fit_one_cycle defaults (fastai/callback/schedule.py): warm up over the first quarter from
# lr_max/25, anneal to lr_max/1e5, and cycle the momentum (Adam's beta1) the other way, 0.95 -> 0.85 -> 0.95.
ONE_CYCLE_PCT = 0.25
ONE_CYCLE_DIV = 25.0
ONE_CYCLE_DIV_FINAL = 1e5
ONE_CYCLE_MOMS = (0.95, 0.85)


def _cos(start: float, end: float, pos: float) -> float:
    """Cosine annealing from `start` (pos 0) to `end` (pos 1)."""
    return start + (1 - math.cos(math.pi * pos)) / 2 * (end - start)


def one_cycle_pos(step: int, total_steps: int, pct_start: float) -> tuple[int, float]:
    """(phase, position in it): fastai's position in the run is step / total; phase 0 warms up over
    [0, pct_start), phase 1 anneals over [pct_start, 1]."""
    pos = step / max(total_steps, 1)
    if pos < pct_start:
        return 0, pos / pct_start
    return 1, (pos - pct_start) / (1 - pct_start)


def multiplier(schedule: str, step: int, total_steps: int, *, cut_frac: float = 0.1, ratio: float = 32.0,
               warmup_frac: float = 0.0, pct_start: float = ONE_CYCLE_PCT, div: float = ONE_CYCLE_DIV,
               div_final: float = ONE_CYCLE_DIV_FINAL, **_: float) -> float:
    t, total = step, max(total_steps, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "stlr":
        # ULMFiT (Howard & Ruder 2018), eq. 3: a short linear climb to the cut, a long linear descent.
        # The paper divides the descent by cut * (1/cut_frac - 1), which equals T - cut only when
        # T * cut_frac is a whole number; otherwise it overshoots and the rate goes negative near
        # the end. We divide by T - cut, so the descent always ends at lr/ratio at t = T.
        cut = max(1, math.floor(total * cut_frac))
        p = t / cut if t < cut else 1 - (t - cut) / max(total - cut, 1)
        return (1 + p * (ratio - 1)) / ratio
    if schedule == "cosine":
        warm = math.floor(total * warmup_frac)
        if t < warm:
            return (t + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (t - warm) / max(total - warm, 1)))
    if schedule == "one_cycle":
        # fastai: cosine from lr_max/div up to lr_max over pct_start of the steps, then cosine down to
        # lr_max/div_final (fastai divides the final rate by div_final alone; torch by div * final_div).
        phase, pos = one_cycle_pos(t, total, pct_start)
        return _cos(1 / div, 1.0, pos) if phase == 0 else _cos(1.0, 1 / div_final, pos)
    raise ValueError(f"unknown schedule {schedule!r}")


def momentum(schedule: str, step: int, total_steps: int, *, pct_start: float = ONE_CYCLE_PCT,
             mom_max: float = ONE_CYCLE_MOMS[0], mom_min: float = ONE_CYCLE_MOMS[1], **_: float) -> float | None:
    """The momentum (SGD) or beta1 (Adam) at a step, for schedules that cycle it (one_cycle);
    None where the schedule leaves the optimiser's own value alone."""
    if schedule != "one_cycle":
        return None
    phase, pos = one_cycle_pos(step, total_steps, pct_start)
    return _cos(mom_max, mom_min, pos) if phase == 0 else _cos(mom_min, mom_max, pos)


def momentum_curve(schedule: str, total_steps: int, **params: float) -> np.ndarray | None:
    """[total_steps] momentum / beta1 values, or None when the schedule does not cycle it."""
    if schedule != "one_cycle":
        return None
    return np.array([momentum(schedule, t, total_steps, **params) for t in range(total_steps)])


def plan_params(plan) -> dict[str, float]:
    """The schedule's parameters as a plan holds them (what multiplier and momentum take)."""
    return {"cut_frac": plan.cut_frac, "ratio": plan.ratio, "warmup_frac": plan.warmup_frac,
            "pct_start": plan.pct_start, "div": plan.div, "div_final": plan.div_final,
            "mom_max": plan.mom_max, "mom_min": plan.mom_min}


def group_lrs(base_lr: float, n_groups: int, factor: float) -> tuple[float, ...]:
    """Discriminative rates bottom -> top: the top gets base_lr, each group below 1/factor of the one above."""
    return tuple(base_lr / factor ** (n_groups - 1 - i) for i in range(n_groups))


def curve(schedule: str, total_steps: int, base_lr: float, n_groups: int = 1, factor: float = 1.0,
          **params: float) -> np.ndarray:
    """[total_steps, n_groups] learning rates, for drawing the plan before it runs."""
    m = np.array([multiplier(schedule, t, total_steps, **params) for t in range(total_steps)])
    return m[:, None] * np.array(group_lrs(base_lr, n_groups, factor))[None, :]
