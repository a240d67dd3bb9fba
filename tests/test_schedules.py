"""Learning-rate schedules are the formulas the lecture notes give, drawable before training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tlcore.train.schedules import curve, group_lrs, multiplier


def test_stlr_peaks_at_the_cut_starts_and_ends_at_lr_over_ratio_and_is_linear_between():
    total, cut_frac, ratio = 200, 0.1, 32
    m = np.array([multiplier("stlr", t, total, cut_frac=cut_frac, ratio=ratio) for t in range(total + 1)])
    cut = int(total * cut_frac)
    assert m.argmax() == cut and m[cut] == pytest.approx(1.0)
    assert m[0] == pytest.approx(1 / ratio) and m[total] == pytest.approx(1 / ratio)
    second = np.diff(m, 2)
    second[cut - 1] = 0  # the kink
    np.testing.assert_allclose(second, 0, atol=1e-12)


def _fastai_one_cycle(t, total, lr_max, pct=0.25, div=25.0, div_final=1e5, moms=(0.95, 0.85, 0.95)):
    """fit_one_cycle's curves written out: combined_cos(pct, lr_max/div, lr_max, lr_max/div_final) at pos = t/total."""
    def cos(a, b, p):
        return a + (1 + np.cos(np.pi * (1 - p))) * (b - a) / 2
    pos = t / total
    if pos < pct:
        p = pos / pct
        return cos(lr_max / div, lr_max, p), cos(moms[0], moms[1], p)
    p = (pos - pct) / (1 - pct)
    return cos(lr_max, lr_max / div_final, p), cos(moms[1], moms[2], p)


def test_one_cycle_is_fastais_closed_form_for_lr_and_momentum():
    from tlcore.train.schedules import momentum
    total, lr = 100, 0.1
    ours_lr = [lr * multiplier("one_cycle", t, total) for t in range(total)]
    ours_mom = [momentum("one_cycle", t, total) for t in range(total)]
    expected = np.array([_fastai_one_cycle(t, total, lr) for t in range(total)])
    np.testing.assert_allclose(ours_lr, expected[:, 0], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ours_mom, expected[:, 1], rtol=1e-9)
    assert ours_lr[0] == pytest.approx(lr / 25) and max(ours_lr) == pytest.approx(lr)
    assert int(np.argmax(ours_lr)) == 25 and int(np.argmin(ours_mom)) == 25
    assert ours_mom[0] == pytest.approx(0.95)
    # the last step is one step before the end: close to lr_max / 1e5 and to 0.95
    assert ours_lr[-1] < lr / 1e3 and ours_mom[-1] == pytest.approx(0.95, abs=1e-3)
    # other parameters follow the same formula
    custom = [lr * multiplier("one_cycle", t, 40, pct_start=0.5, div=10, div_final=100) for t in range(40)]
    np.testing.assert_allclose(custom, [_fastai_one_cycle(t, 40, lr, 0.5, 10, 100)[0] for t in range(40)], rtol=1e-9)
    assert momentum("stlr", 3, 10) is None


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_one_cycle_cycles_the_optimisers_momentum_or_beta1(optimizer):
    from tlcore.device import pick
    from tlcore.models import build_network
    from tlcore.train.phases import make_optimiser
    from tlcore.train.plan import Plan
    plan = Plan(schedule="one_cycle", optimizer=optimizer, lr=0.01, mom_max=0.9, mom_min=0.8)
    net = build_network(plan.model, 3, pretrained=False)
    optim = make_optimiser(net, plan, pick("cpu"))
    total = 20
    for t in (0, 5, 12):
        optim.set_step(t, total)
        lr, mom = _fastai_one_cycle(t, total, 0.01, moms=(0.9, 0.8, 0.9))
        pg = optim.opt.param_groups[-1]
        assert pg["lr"] == pytest.approx(lr)
        assert (pg["betas"][0] if optimizer == "adamw" else pg["momentum"]) == pytest.approx(mom)


def test_cosine_rises_during_warmup_then_only_falls():
    m = np.array([multiplier("cosine", t, 100, warmup_frac=0.1) for t in range(100)])
    assert (np.diff(m[:10]) > 0).all() and (np.diff(m[10:]) <= 0).all() and m[9] == pytest.approx(1.0)


def test_discriminative_rates_differ_by_the_factor_between_neighbours():
    lrs = group_lrs(1e-3, 5, 2.6)
    assert lrs[-1] == 1e-3
    np.testing.assert_allclose(np.array(lrs[1:]) / np.array(lrs[:-1]), 2.6)
    assert len(set(group_lrs(1e-3, 4, 1.0))) == 1


def test_curve_has_one_column_per_group_with_the_same_shape():
    c = curve("stlr", 50, 1e-2, n_groups=3, factor=2.0)
    assert c.shape == (50, 3)
    np.testing.assert_allclose(c[:, 2] / c[:, 0], 4.0)
