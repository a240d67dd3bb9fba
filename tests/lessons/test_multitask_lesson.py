"""Multi-task lab, at the page's defaults: a task with few labels gains from a related task through
the shared trunk (the notes' three conditions: related tasks, similar amounts of data, a network big
enough). Each run trains the joint network and both single-task networks on the same batches, so a
gain is what sharing did and nothing else."""
from __future__ import annotations

import statistics

import pytest

from tlcore.labs import multitask as mt
from tlcore.train.events import Metrics, RunEnded

pytestmark = pytest.mark.lessons
SEEDS = (0, 1, 2)
POINT = 0.01


def outcome(seed: int, **opts) -> dict[str, float]:
    """The run's metrics for the page's plan at `seed` (options not given: the page's defaults)."""
    events: list = []
    mt.run(mt.lab_plan(seed=seed, **opts), events.append, lambda: False, None)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    return next(e for e in events if isinstance(e, Metrics)).values


@pytest.fixture(scope="module")
def page_runs() -> dict[int, dict[str, float]]:
    return {seed: outcome(seed) for seed in SEEDS}


def test_with_five_percent_of_its_labels_task_b_gains_from_the_related_task(lesson, page_runs):
    gain_b = {s: m["joint_B"] - m["single_B"] for s, m in page_runs.items()}
    gain_a = {s: m["joint_A"] - m["single_A"] for s, m in page_runs.items()}
    holds = statistics.fmean(gain_b.values()) > mt.MARGIN and min(gain_b.values()) > 0
    lesson.record(claim="with 5% of B's labels the joint network beats single-task B",
                  settings="page defaults: digit pairs, B = right digit, 5% of B's labels, w_B 0.5, width 16, 5 epochs",
                  figure="gain in B (joint - single)", per_seed=gain_b, holds=holds)
    kept = min(gain_a.values()) >= -POINT
    lesson.record(claim="task A, with all its labels, keeps its accuracy within a point",
                  settings="page defaults", figure="gain in A (joint - single)", per_seed=gain_a, holds=kept)
    assert holds, gain_b
    assert kept, gain_a


def test_with_all_labels_the_joint_network_matches_two_single_ones_with_about_half_the_parameters(lesson):
    runs = {seed: outcome(seed, b_labels=1.0) for seed in SEEDS[:1]}
    worst = {s: min(m["joint_A"] - m["single_A"], m["joint_B"] - m["single_B"]) for s, m in runs.items()}
    share = {s: m["joint_params"] / m["single_params"] for s, m in runs.items()}
    holds = min(worst.values()) >= -mt.MARGIN and max(share.values()) <= 0.6
    lesson.record(claim="with all of B's labels the joint network matches the single ones with about half the "
                        "parameters", settings="page defaults, 100% of B's labels",
                  figure="gain in the worse task (joint - single)", per_seed=worst, holds=holds)
    assert holds, (worst, share)


def test_an_unrelated_task_b_does_not_help_task_a(lesson):
    runs = {seed: outcome(seed, related=False) for seed in SEEDS[:1]}
    gain_a = {s: m["joint_A"] - m["single_A"] for s, m in runs.items()}
    holds = max(gain_a.values()) <= mt.MARGIN
    lesson.record(claim="an unrelated task B (the background's brightness) does not help task A",
                  settings="page defaults, B = background brightness", figure="gain in A, unrelated B",
                  per_seed=gain_a, holds=holds)
    assert holds, gain_a


def test_uncertainty_weighting_learns_the_weights_and_keeps_the_gain(lesson):
    runs = {seed: outcome(seed, weighting="uncertainty") for seed in SEEDS[:1]}
    gain_b = {s: m["joint_B"] - m["single_B"] for s, m in runs.items()}
    learned = all(m["s_A"] != 0.0 and m["s_B"] != 0.0 for m in runs.values())
    holds = learned and min(gain_b.values()) > 0
    lesson.record(claim="uncertainty weighting learns its weights and B still gains", settings="page defaults, "
                  "uncertainty weighting", figure="gain in B, uncertainty weighting", per_seed=gain_b, holds=holds)
    assert holds, (gain_b, [(m["s_A"], m["s_B"]) for m in runs.values()])
