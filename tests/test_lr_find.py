"""The learning-rate finder: fastai's sweep, smoothing, stopping rule and suggestions, with the
network left exactly as it was."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tlcore import __main__ as cli
from tlcore.errors import PlanError
from tlcore.kinds import run_plan
from tlcore.labs import lr_find
from tlcore.runs import RunStore
from tlcore.train.events import LabResult, Metrics, RunEnded
from tlcore.train.features import FeatureCache
from tlcore.train.phases import build, prepare, source_at
from tlcore.train.plan import Plan
from tlcore.train.strategies import apply_cut

TINY = dict(dataset="digits", image_size=32, per_class=8, batch_size=16, seed=0)


def test_the_sweep_is_exponential_from_1e_7_to_10_over_100_steps():
    assert lr_find.sweep_lr(0, 100) == pytest.approx(1e-7)
    assert lr_find.sweep_lr(100, 100) == pytest.approx(10.0)
    assert lr_find.sweep_lr(50, 100) == pytest.approx(np.sqrt(1e-7 * 10))
    ratios = [lr_find.sweep_lr(i + 1, 100) / lr_find.sweep_lr(i, 100) for i in range(99)]
    np.testing.assert_allclose(ratios, ratios[0])


def test_suggestions_on_a_known_curve():
    lrs = np.array([lr_find.sweep_lr(i, 100) for i in range(100)])
    x = np.log10(lrs)
    loss = 2.0 / (1 + np.exp(3 * (x + 3))) + 0.2 + 0.3 * np.clip(x + 1, 0, None) ** 2   # falls near 1e-3, rises after 1e-1
    s = lr_find.suggest(lrs, loss, 100)
    assert set(s) == {"valley", "minimum", "steep"}
    steep_lr = s["steep"][0]
    assert 1e-4 < steep_lr < 1e-2          # the steepest descent is around 1e-3
    m_lr = lrs[10:95][np.argmin(loss[10:95])]
    assert s["minimum"][0] == pytest.approx(m_lr / 10)
    assert 1e-4 < s["valley"][0] < m_lr    # inside the long descent, below the minimum


def test_the_valley_is_in_the_longest_descent_as_fastai_finds_it():
    losses = np.array([5, 4, 4.5, 3, 2, 1, 0.5, 2, 3, 0.2, 9], float)
    # longest decreasing run: 5, 4, 3, 2, 1, 0.5, 0.2 (7 points, ends at index 9)
    end, length = 9, 7
    third = (end - (end - length)) / 3
    assert lr_find._valley_index(losses) == (end - length) + int(third) + int(third / 2)


def test_a_curve_that_never_falls_suggests_the_lowest_rate_of_the_window_not_the_highest():
    lrs = np.array([lr_find.sweep_lr(i, 100) for i in range(100)])
    rising = np.linspace(2.0, 3.0, 100)
    s = lr_find.suggest(lrs, rising, 100)
    # fastai's valley then picks the window's first point (it starts after the first tenth)
    assert s["valley"] == (pytest.approx(lrs[10]), pytest.approx(rising[10]))
    assert lr_find._valley_index(rising) == 0


def test_the_window_is_trimmed_before_it_is_cut_at_the_first_non_finite_loss():
    lrs = np.array([lr_find.sweep_lr(i, 100) for i in range(60)])
    # A sweep that stopped on a blow-up: the loss falls to its lowest at index 54, then NaN at 59.
    # Trimmed first (fastai), the window is [10, 55): its minimum is index 54. Dropping the NaN
    # before trimming would take one point too many off the end and miss it.
    loss = np.concatenate([np.linspace(2.5, 1.0, 55), [1.2, 1.5, 2.0, 3.0, np.nan]])
    s = lr_find.suggest(lrs, loss, 100)
    assert s["minimum"] == (pytest.approx(lrs[54] / 10), pytest.approx(1.0))


def test_nothing_after_the_first_non_finite_loss_is_read():
    lrs = np.array([lr_find.sweep_lr(i, 100) for i in range(100)])
    loss = np.linspace(2.5, 1.5, 100)
    loss[50] = np.inf
    loss[51:] = 0.1            # past a blow-up the numbers are not this training's: they must not count
    s = lr_find.suggest(lrs, loss, 100)
    assert s["minimum"] == (pytest.approx(lrs[49] / 10), pytest.approx(loss[49]))
    assert all(lr <= lrs[49] for lr, _ in s.values())


def _assert_valley_in_the_descent(lrs, smoothed, valley: float, num_it: int) -> None:
    """The valley is a rate of the curve where the smoothed loss has already fallen, left of the
    lowest point: never the top of the window, where the loss blows up."""
    lrs, smoothed = np.asarray(lrs), np.asarray(smoothed)
    window = slice(num_it // 10, len(lrs) - 5)
    at = int(np.argmin(np.abs(np.log(lrs / valley))))
    assert lrs[at] == pytest.approx(valley)
    assert lrs[window][0] <= valley < lrs[window][np.argmin(smoothed[window])]
    assert smoothed[at] < smoothed[window][0]


def _prepared(**changes):
    plan = Plan(**{**TINY, **changes})
    events = []
    p = prepare(plan, events.append)
    return p, events


def test_the_sweep_restores_the_weights_bit_for_bit_and_smooths_and_stops_like_fastai():
    p, events = _prepared(strategy="fine_tune_top", top_groups=1)
    net = build(p)
    cut = len(net.group_names) - 1
    apply_cut(net, cut, "frozen")   # the top group trains: its weights and BatchNorm statistics move
    src = source_at(net, cut, p, FeatureCache(budget_bytes=0), events.append)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sweep = lr_find.run_sweep(net, src, p, events.append, lambda: False, num_it=40)
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), f"{k} changed"
    # the smoothed loss is the bias-corrected moving average of the raw losses
    avg = 0.0
    for i, (raw, sm) in enumerate(zip(sweep.losses, sweep.smoothed)):
        avg = 0.98 * avg + 0.02 * raw
        assert sm == pytest.approx(avg / (1 - 0.98 ** (i + 1)), rel=1e-9)
    # up to 10 the loss blows up: the sweep stops once the smoothed loss passes 4x its minimum
    if sweep.stopped_early:
        assert sweep.smoothed[-1] > 4 * min(sweep.smoothed[:-1]) or not np.isfinite(sweep.smoothed[-1])
        assert all(s <= 4 * min(sweep.smoothed[:i + 1]) for i, s in enumerate(sweep.smoothed[:-1]))
    else:
        assert len(sweep.lrs) == 40
    assert sweep.lrs[0] == pytest.approx(1e-7)


def test_an_lr_find_run_goes_through_the_store_with_a_valley_suggestion():
    plan = Plan(**TINY, kind="lr_find", options={"num_it": 40})
    events = []
    run_plan(plan, events.append)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    rows = [e for e in events if isinstance(e, LabResult)]
    assert sum(r.schema == lr_find.POINT for r in rows) >= 10
    metrics = next(e for e in events if isinstance(e, Metrics)).values
    points = sorted((r.values for r in rows if r.schema == lr_find.POINT), key=lambda v: v["step"])
    _assert_valley_in_the_descent([v["lr"] for v in points], [v["smoothed"] for v in points],
                                  metrics["lr_valley"], 40)


def test_bad_options_and_heads_are_refused_clearly():
    with pytest.raises(PlanError, match="num_it"):
        Plan(kind="lr_find", options={"num_it": 3})
    with pytest.raises(PlanError, match="end_lr"):
        Plan(kind="lr_find", options={"start_lr": 1.0, "end_lr": 0.1})
    with pytest.raises(PlanError, match="not an lr_find option"):
        Plan(kind="lr_find", options={"lr": 1})
    events = []
    run_plan(Plan(**TINY, kind="lr_find", strategy="pixel_svm"), events.append)
    assert events[-1].status == "failed" and "no learning rate" in events[-1].message


def test_the_cli_prints_one_json_line_with_the_suggestions_and_the_curve(capsys):
    code = cli.main(["lr-find", "--dataset", "digits", "--image-size", "32", "--per-class", "8", "--num-it", "30"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 1
    d = json.loads(out[0])
    assert d["kind"] == "lr_find" and d["status"] == "finished"
    assert d["suggestions"][lr_find.DEFAULT] == d["suggested_lr"] > 0   # the Train page's first button
    assert set(d["suggestions"]) == {"valley", "minimum", "steep"}
    assert len(d["curve"]["lr"]) == len(d["curve"]["loss"]) >= 10
    _assert_valley_in_the_descent(d["curve"]["lr"], d["curve"]["loss"], d["suggestions"]["valley"], 30)
    assert RunStore().load(d["run_id"]).plan.kind == "lr_find"
