"""Learning-rate schedules as pure functions of the step, so the UI can draw them before training.

`multiplier` is relative to the peak learning rate (peak = 1). With discriminative rates every
layer group follows the same shape at its own scale.
"""
from __future__ import annotations

import math

import numpy as np

ONE_CYCLE_PCT = 0.3            # torch's OneCycleLR defaults
ONE_CYCLE_DIV = 25.0
ONE_CYCLE_FINAL_DIV = 1e4


def multiplier(schedule: str, step: int, total_steps: int, *, cut_frac: float = 0.1, ratio: float = 32.0,
               warmup_frac: float = 0.0) -> float:
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
        # Same curve as torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="cos", three_phase=False).
        initial, final = 1 / ONE_CYCLE_DIV, 1 / (ONE_CYCLE_DIV * ONE_CYCLE_FINAL_DIV)
        up_end = float(ONE_CYCLE_PCT * total) - 1
        down_end = float(total) - 1
        if t <= up_end:
            pct, start, end = t / up_end if up_end > 0 else 1.0, initial, 1.0
        else:
            pct, start, end = (t - up_end) / (down_end - up_end), 1.0, final
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
    raise ValueError(f"unknown schedule {schedule!r}")


def group_lrs(base_lr: float, n_groups: int, factor: float) -> tuple[float, ...]:
    """Discriminative rates bottom -> top: the top gets base_lr, each group below 1/factor of the one above."""
    return tuple(base_lr / factor ** (n_groups - 1 - i) for i in range(n_groups))


def curve(schedule: str, total_steps: int, base_lr: float, n_groups: int = 1, factor: float = 1.0,
          **params: float) -> np.ndarray:
    """[total_steps, n_groups] learning rates, for drawing the plan before it runs."""
    m = np.array([multiplier(schedule, t, total_steps, **params) for t in range(total_steps)])
    return m[:, None] * np.array(group_lrs(base_lr, n_groups, factor))[None, :]
