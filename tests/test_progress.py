"""Time left and speed figures from synthetic event lists (tlcore.progress: pure functions)."""
from __future__ import annotations

import pytest

from tlcore import progress
from tlcore.kinds import KINDS
from tlcore.labs import dann
from tlcore.train.events import EpochEnded, LabResult, RunEnded, RunStarted, Step
from tlcore.train.plan import Plan

GROUPS = ("stem", "stage1", "stage2", "stage3")
MFLOPS = (10.0, 20.0, 30.0, 40.0)       # forward MFLOPs per image of each group
SPE = 10                                 # steps per epoch: 320 images, batch 32


def started(plan: Plan, *, cuts=(), mflops=()) -> RunStarted:
    return RunStarted(plan.to_dict(), "cpu", 1000, 1000, GROUPS, 320, 80, ("a", "b"), cuts=cuts,
                      steps_per_epoch=SPE, group_mflops=mflops)


def steps(epoch: int, first: int, last: int, t0: float, per_step: float, ips: float = 0.0) -> list[Step]:
    """Reports of steps first..last (global) of one epoch, `per_step` seconds apart on the run's clock."""
    return [Step(epoch, s, SPE * 4, SPE, 1.0, (1e-3,), ips, elapsed=t0 + (s - first) * per_step)
            for s in range(first, last + 1)]


def epoch_end(epoch: int, *, trainable=(), feature_seconds=0.0, feature_ips=0.0, steps_per_s=0.0, ips=500.0,
              cache_hit=False) -> EpochEnded:
    return EpochEnded(epoch, 1.0, 1.0, 0.5, ((1, 0), (0, 1)), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), 1.0,
                      tuple(trainable), 1.0, ips, feature_cache_hit=cache_hit, feature_seconds=feature_seconds,
                      feature_images_per_s=feature_ips, steps_per_s=steps_per_s)


GRADUAL = Plan(strategy="gradual_unfreeze", epochs=4, batch_size=32, image_size=32)


def test_gradual_unfreezing_waits_until_a_network_epoch_is_measured():
    """The head-only first epoch says nothing about the cost of the layers still to open."""
    s = started(GRADUAL, cuts=(4, 3, 2, 1), mflops=MFLOPS)
    events = steps(0, 0, 9, 1.0, 0.001)
    assert progress.time_left(GRADUAL, s, events, [epoch_end(0, feature_seconds=2.0)]) is None
    assert progress.left_text(None) == "estimating time left…"


def test_gradual_unfreezing_scales_measured_steps_to_the_groups_still_to_open():
    s = started(GRADUAL, cuts=(4, 3, 2, 1), mflops=MFLOPS)
    events = steps(0, 0, 9, 1.0, 0.001) + steps(1, 10, 14, 5.0, 0.1)   # cut 3 measured: 0.1 s a step
    epochs = [epoch_end(0, feature_seconds=2.0)]   # 400 images x 100 MFLOPs in 2 s: 5e-5 s per MFLOP-image
    left = progress.time_left(GRADUAL, s, events, epochs)
    # 5 steps of this epoch at 0.1 s; cut 2 scaled by its training work (3 x trainable MFLOPs: 210
    # against 120); cut 1's work is over twice the measured cut's (270), too far to scale: priced from
    # the feature pass's forward rate instead (32 images x 4.5 x 90 MFLOPs x 5e-5 s), the larger of the
    # two; a feature pass through the new frozen prefix before each; each epoch's evaluation, a forward
    # pass over 80 validation images through the groups it trains (40, 70, 90 MFLOPs).
    far = max(0.1 * 270 / 120, 32 * progress.TRAIN_OVER_FEATURE_PASS * 90 * 5e-5)
    expected = (5 * 0.1 + 10 * 0.1 * 210 / 120 + 10 * far + 400 * 30 * 5e-5 + 400 * 10 * 5e-5
                + 80 * (40 + 70 + 90) * 5e-5)
    assert left == pytest.approx(expected)
    naive = (4 * SPE - 15) * 0.1        # today's estimate: the current epoch's speed for everything left
    assert left > naive


def test_without_the_engines_new_fields_unmeasured_cuts_say_estimating():
    s = started(GRADUAL)   # cuts and MFLOPs not filled in: defaults
    events = steps(0, 0, 9, 0.0, 0.0, ips=3000.0) + steps(1, 10, 14, 0.0, 0.0, ips=300.0)
    assert progress.time_left(GRADUAL, s, events) is None


def test_a_constant_cut_is_estimated_from_the_stepping_speed_alone():
    """Feature extractor: every epoch costs the same, so the measured speed is enough (no MFLOPs needed)."""
    plan = Plan(strategy="feature_extractor", epochs=3, batch_size=32, image_size=32)
    events = steps(0, 0, 4, 0.0, 0.0, ips=1000.0)     # 5 steps, 160 images in 0.16 s
    left = progress.time_left(plan, started(plan), events)
    assert left == pytest.approx((3 * SPE - 5) * 160 / 1000 / 5)


def test_fine_tuning_uses_the_runs_clock_between_reports():
    plan = Plan(strategy="fine_tune_all", epochs=2, batch_size=32, image_size=32)
    s = started(plan, cuts=(0, 0), mflops=MFLOPS)
    events = steps(0, 0, 3, 10.0, 0.5, ips=999.0)
    # Steps at 0.5 s; each epoch's evaluation at the forward rate those steps imply (0.5 s for 32 images
    # x 3 x 100 MFLOPs), over 80 validation images x 100 MFLOPs.
    evaluation = 2 * 80 * 100 * 0.5 / (32 * 3 * 100)
    assert progress.time_left(plan, s, events) == pytest.approx((2 * SPE - 4) * 0.5 + evaluation)


def test_nothing_to_estimate_without_steps_or_a_network():
    assert progress.time_left(GRADUAL, None, []) is None
    svm = Plan(strategy="pixel_svm", image_size=32)
    assert progress.time_left(svm, started(svm), steps(0, 0, 2, 1.0, 0.1)) is None


def test_the_progress_line_says_how_a_run_ended():
    plan = Plan(epochs=3, image_size=32)
    assert progress.ended_text(RunEnded("finished", seconds=12.0), 3, plan) == "Finished: 3 of 3 epochs in 12 s"
    assert progress.ended_text(RunEnded("stopped", seconds=130.0), 1, plan) == "Stopped after 1 of 3 epochs (2 min)"
    assert progress.ended_text(RunEnded("failed", "boom"), 0, plan).startswith("Failed")
    svm = Plan(strategy="pixel_svm", image_size=32)
    assert "SVM" in progress.ended_text(RunEnded("finished", seconds=3.0), 1, svm)
    assert "Fitting" not in progress.ended_text(RunEnded("finished", seconds=3.0), 1, svm)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_with_a_summary_says_what_one_of_its_rows_is(name):
    kind = KINDS[name]
    assert bool(kind.unit) == bool(kind.results), f"{name}: set Kind(unit=...) to what one summary row is"


def test_a_lab_run_ends_counting_what_it_ran_not_epochs():
    """Labs emit no EpochEnded: the line once said "Finished: 0 of 8 epochs" after every arm had trained."""
    plan = Plan(kind="dann", dataset="digits", per_class=10, epochs=8)
    arm = {"source_acc": 0.9, "target_acc": 0.5, "domain_acc": 0.5, "seconds": 1.0}
    events = [LabResult(dann.FINAL, {"arm": a, **arm}) for a in ("source_only", "dann", "target_labels")]
    events.insert(1, LabResult(dann.EPOCH, {"arm": "dann", "epoch": 0, "source_acc": 0.9, "target_acc": 0.5,
                                            "domain_acc": 0.5, "lambda": 0.1}))
    assert progress.done_so_far(plan, events) == (3, "arm")
    assert progress.ended_text(RunEnded("finished", seconds=41.0), 3, plan, "arm") == "Finished: 3 arms in 41 s"
    assert progress.ended_text(RunEnded("stopped", seconds=20.0), 1, plan, "arm") == "Stopped after 1 arm (20 s)"
    train_plan = Plan(epochs=3, image_size=32)
    assert progress.done_so_far(train_plan, [epoch_end(0), epoch_end(1)]) == (2, "")   # a training run: epochs


def test_a_feature_extractor_epoch_shows_the_backbone_and_the_head_apart():
    e = epoch_end(0, feature_ips=250.0, steps_per_s=40.0, ips=82094.0)
    figures = dict(progress.speed_figures(e))
    assert figures == {"Backbone images/s (feature pass)": "250", "Head steps/s": "40.0"}
    cached = dict(progress.speed_figures(epoch_end(1, cache_hit=True, steps_per_s=40.0, ips=82094.0)))
    assert cached == {"Backbone features": "from the cache", "Head steps/s": "40.0"}
    # An engine that does not fill the new fields yet: the figure says it is the head on stored features.
    assert [label for label, _ in progress.speed_figures(epoch_end(0, ips=82094.0))] == \
        ["Head images/s (on stored features)"]
    assert progress.speed_figures(epoch_end(2, trainable=("stage3",), ips=120.0)) == [("Training images/s", "120")]
