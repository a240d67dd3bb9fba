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


def test_one_cycle_matches_torch():
    total, lr = 100, 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    torch_lrs = []
    for _ in range(total):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [lr * multiplier("one_cycle", t, total) for t in range(total)]
    np.testing.assert_allclose(ours, torch_lrs, rtol=1e-6, atol=1e-12)


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
