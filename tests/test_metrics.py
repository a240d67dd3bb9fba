"""Our metrics agree with scikit-learn's and stay defined where a class is never predicted."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from tlcore.metrics import arithmetic_mean, confusion_matrix, f1_score, most_confused, report


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    k = 5
    y = rng.integers(0, k, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, k - 1, 300))  # class 4 rarely/never predicted
    pred[pred == 4] = 0 if seed % 2 else 4
    cm = confusion_matrix(y, pred, k)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=range(k)))
    assert cm.sum() == len(y)
    rep = report(cm, list("abcde"))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    np.testing.assert_allclose(rep.precision, p)
    np.testing.assert_allclose(rep.recall, r)
    np.testing.assert_allclose(rep.f1, f)
    np.testing.assert_array_equal(rep.support, s)
    assert rep.accuracy == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=range(k), average=avg, zero_division=0)
        got = rep.averages()[avg]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))


def test_a_class_never_predicted_gets_precision_zero_and_a_note():
    rep = report(confusion_matrix([0, 1, 1], [0, 0, 0], 2), ["cat", "dog"])
    assert rep.precision[1] == 0 and not np.isnan(rep.f1).any()
    assert any("'dog' was never predicted" in n for n in rep.notes)


def test_harmonic_mean_punishes_a_lopsided_classifier():
    assert arithmetic_mean(0.1, 0.95) == pytest.approx(0.525)
    assert round(f1_score(0.1, 0.95), 2) == 0.18
    assert f1_score(0, 0) == 0


def test_most_confused_pairs_come_largest_first():
    cm = np.array([[5, 3, 0], [1, 4, 7], [0, 2, 9]])
    assert most_confused(cm, ["a", "b", "c"], k=3) == [("b", "c", 7), ("a", "b", 3), ("c", "b", 2)]
