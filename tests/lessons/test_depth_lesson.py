"""Depth lab, at the page's defaults (digits, depth 20, width 16, sigmoid and ReLU + BatchNorm networks,
plain and residual, SGD one-cycle at 0.1, 8 epochs): with sigmoid units the gradient vanishes on its way
down a plain stack; shortcuts bring the first layer's gradient back within one order of the last
layer's; at equal depth the residual network trains to a lower loss in the same steps (He et al. 2016).

The gradient figure is log10 of the first convolution's gradient norm per weight over the last
convolution's, at initialisation (the first training batch): -12 means twelve orders of magnitude
smaller."""
from __future__ import annotations

import statistics
import time

import pytest

from tlcore.labs import depth as dl
from tlcore.train.events import LabResult, RunEnded

pytestmark = pytest.mark.lessons
SEEDS = (0, 1, 2)
SETTINGS = ("page defaults: digits, depth 20, width 16, networks sigmoid / sigmoid+residual / relu+bn / "
            "relu+bn+residual, SGD one-cycle 0.1, batch 64, 8 epochs, clip 1")


def rows(seed: int) -> dict[str, dict]:
    """Each network's summary row for the page's plan at `seed`."""
    events: list = []
    dl.run(dl.lab_plan(seed=seed), events.append, lambda: False, None)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    return dl.arm_rows([e for e in events if isinstance(e, LabResult)])


@pytest.fixture(scope="module")
def runs() -> tuple[float, dict[int, dict[str, dict]]]:
    """(when the runs started, seed -> rows): every lesson here reads the same three runs."""
    t0 = time.perf_counter()
    return t0, {seed: rows(seed) for seed in SEEDS}


@pytest.fixture
def page_runs(runs, lesson) -> dict[int, dict[str, dict]]:
    lesson.t0 = min(lesson.t0, runs[0])   # a row's seconds: the three runs it reads, not just its own check
    return runs[1]


def _orders(page_runs, code: str) -> dict[int, float]:
    return {s: r[code]["orders"] for s, r in page_runs.items()}


def test_with_sigmoid_and_no_shortcuts_the_first_layers_gradient_vanishes(lesson, page_runs):
    o = _orders(page_runs, "sigmoid")
    holds = max(o.values()) <= dl.VANISHED
    lesson.record(claim="with sigmoid and no shortcuts the first layer's gradient is orders of magnitude below the "
                        "last layer's at depth 20", settings=SETTINGS,
                  figure="sigmoid plain: log10 first/last conv gradient", per_seed=o, holds=holds)
    assert holds, o


def test_shortcuts_bring_the_first_layers_gradient_within_one_order(lesson, page_runs):
    for code in ("sigmoid+residual", "relu+bn+residual"):
        o = _orders(page_runs, code)
        holds = max(abs(v) for v in o.values()) < dl.WITHIN
        lesson.record(claim=f"shortcuts bring the first layer's gradient within one order of the last's ({code})",
                      settings=SETTINGS, figure=f"{code}: log10 first/last conv gradient", per_seed=o, holds=holds)
        assert holds, (code, o)


def test_batchnorm_with_relu_stops_the_gradient_vanishing(lesson, page_runs):
    o = _orders(page_runs, "relu+bn")
    holds = min(o.values()) > -dl.WITHIN
    lesson.record(claim="BatchNorm with ReLU (no shortcuts): the first layer's gradient is not below the last's by "
                        "an order or more", settings=SETTINGS, figure="relu+bn plain: log10 first/last conv gradient",
                  per_seed=o, holds=holds)
    assert holds, o


# Measured 2026-12-07 (seeds 0-2): +1.2 to +1.3 orders. Without shortcuts, BatchNorm with ReLU stops the
# vanishing but overshoots: the gradient grows towards the input (Yang et al. 2019 find BatchNorm makes deep
# plain networks' gradients explode at initialisation); at depth 50 it is +2 to +3.5. With shortcuts it
# stays within one order (the test above). Strict: the day it lands within one order, this fails until the
# mark goes.
@pytest.mark.xfail(strict=True, reason="ReLU + BatchNorm without shortcuts: +1.2-1.3 orders at depth 20 "
                                       "(the gradient grows towards the input)")
def test_batchnorm_with_relu_alone_brings_it_within_one_order(runs):
    page_runs = runs[1]
    o = _orders(page_runs, "relu+bn")
    assert max(abs(v) for v in o.values()) < dl.WITHIN, o


def test_at_equal_depth_the_residual_network_reaches_a_lower_training_loss(lesson, page_runs):
    gap = {s: r["relu+bn"]["train_loss"] - r["relu+bn+residual"]["train_loss"] for s, r in page_runs.items()}
    holds = min(gap.values()) > 0
    lesson.record(claim="at equal depth (20) the residual network reaches a lower training loss than the plain one "
                        "in the same steps (ReLU + BatchNorm)", settings=SETTINGS,
                  figure="plain - residual final training loss", per_seed=gap, holds=holds)
    assert holds, {s: (r["relu+bn"]["train_loss"], r["relu+bn+residual"]["train_loss"]) for s, r in page_runs.items()}
    # The sigmoid pair learns nothing in these steps, with or without shortcuts: both stay at chance.
    assert statistics.fmean(r["sigmoid"]["train_loss"] for r in page_runs.values()) > 0.97 * dl.CHANCE_LOSS
