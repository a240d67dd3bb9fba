"""The learning-rate finder's promise: training at the rate it suggests (lr_find.DEFAULT, the Train page's
default button, rounded as the button rounds it) gets within 2 points of the best fixed rate of a
decade sweep (1e-5 ... 1). On digits with the Train page's default plan (EfficientNet-Lite0, linear
head, AdamW, batch 64, 3 epochs, its STLR schedule: the finder suggests the peak rate a schedule
starts from, which is how the page uses it), at LESSON_SIZE px, only the rate differing between
runs, for a frozen backbone (feature_extractor) and for fine_tune_top, seeds 0, 1, 2."""
from __future__ import annotations

import math
import statistics
import time

import pytest
import torch

import tlcore.labs  # noqa: F401  (registers every kind, "train" included)
from tlcore.kinds import run_plan
from tlcore.labs import lr_find
from tlcore.train.events import EpochEnded, Metrics, RunEnded
from tlcore.train.plan import Plan

pytestmark = pytest.mark.lessons

SEEDS = (0, 1, 2)
LESSON_SIZE = 32                         # px: affordable on a CPU; the page's CPU default is 96
DECADES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
WITHIN = 0.02


def rounded(lr: float) -> float:
    """The Train page's button (ui/lr_find.rounded): clamped to the lr control's range, two figures."""
    from ui.controls import CONTROLS
    lo, hi = CONTROLS["lr"].lo, CONTROLS["lr"].hi
    value = min(max(lr, lo), hi)
    return float(round(value, 1 - int(math.floor(math.log10(value)))))


def _final_acc(plan: Plan, tmp_path) -> float:
    events = []
    run_plan(plan, events.append, artifact_dir=tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    return [e.val_acc for e in events if isinstance(e, EpochEnded)][-1]


# The valley (fastai's default) fails this: measured, seeds 0-2, one thread, it sits 1-1.5 decades below
# the best rate, and 3 epochs at the Train page's STLR reward the higher rate: feature_extractor
# 0.0012-0.0025 -> 0.758-0.780 against 0.1 -> 0.869-0.886; fine_tune_top 0.0003-0.0004 -> 0.841-0.864
# against 0.01 -> 0.936-0.947. The steepest point holds (lr_find.DEFAULT says how it was chosen).
@pytest.mark.parametrize("strategy", ["feature_extractor", "fine_tune_top"])
def test_training_at_the_suggested_rate_is_within_2_points_of_the_best_decade(strategy, lesson, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("TLCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(tmp_path / "cache"))   # the frozen features, shared by every run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # CPU kernels are deterministic at a fixed thread count
    gaps, rows, cpu = {}, [], time.process_time()
    try:
        for seed in SEEDS:
            base = Plan(dataset="digits", image_size=LESSON_SIZE, strategy=strategy, seed=seed)
            events = []
            run_plan(base.replace(kind="lr_find"), events.append, artifact_dir=tmp_path / f"find{seed}")
            suggested = rounded([e for e in events if isinstance(e, Metrics)][-1].values[f"lr_{lr_find.DEFAULT}"])
            plan = base
            accs = {lr: _final_acc(plan.replace(lr=lr), tmp_path / f"{seed}-{lr:g}") for lr in DECADES}
            best = max(accs, key=accs.get)
            at = _final_acc(plan.replace(lr=suggested), tmp_path / f"{seed}-suggested")
            gaps[seed] = at - accs[best]
            rows.append(f"seed {seed}: suggested {suggested:g} -> {at:.3f}; best decade {best:g} -> {accs[best]:.3f}; "
                        + ", ".join(f"{lr:g}: {a:.3f}" for lr, a in accs.items()))
    finally:
        torch.set_num_threads(threads)
    print(f"\n{strategy}\n" + "\n".join(rows) + f"\nCPU {time.process_time() - cpu:.0f} s")
    holds = all(g >= -WITHIN for g in gaps.values())
    lesson.record(claim=f"training at the finder's suggestion ({strategy}) is within 2 points of the best "
                        "decade rate",
                  settings=f"digits, EfficientNet-Lite0, {strategy}, linear head, AdamW, batch {base.batch_size}, "
                           f"{base.epochs} epochs, {base.schedule} schedule, {LESSON_SIZE} px; rates 1e-5..1 and the "
                           f"{lr_find.SUGGESTION_TITLES[lr_find.DEFAULT]} point",
                  figure=f"{strategy}: suggestion - best decade accuracy", per_seed=gaps, holds=holds)
    assert holds, f"{strategy}: the suggestion is more than {WITHIN} below the best decade:\n" + "\n".join(rows)
