"""The strategy advisor: the grid of four cases, and a similarity estimate that can tell data apart."""
from __future__ import annotations

import pytest
import torch

from tlcore import advisor
from tlcore.data import ImageSplits, load_dataset


def test_each_cell_of_the_grid_recommends_its_strategy():
    assert advisor.recommend("small", "similar")[0] == "feature_extractor"
    assert advisor.recommend("large", "similar")[0] == "fine_tune_all"
    assert advisor.recommend("small", "different")[0] == "pixel_svm"
    assert advisor.recommend("large", "different")[0] == "scratch"
    assert advisor.size_of(50) == "small" and advisor.size_of(5000) == "large"


def test_similarity_probe_scores_real_digits_far_above_noise():
    digits = load_dataset("digits", image_size=32)
    est = advisor.estimate_similarity(digits, samples=300)
    assert est.cnn_accuracy > 0.6 and est.pixel_accuracy > 0.6
    g = torch.Generator().manual_seed(0)
    noise = ImageSplits(torch.randint(0, 256, (300, 3, 16, 16), dtype=torch.uint8, generator=g),
                        torch.arange(300) % 3, torch.zeros(3, 3, 16, 16, dtype=torch.uint8), torch.arange(3), ("a", "b", "c"))
    junk = advisor.estimate_similarity(noise, samples=300)
    assert junk.cnn_accuracy < 0.5 and junk.verdict == "different"


def test_the_codes_are_the_plain_networks_to_float_rounding():
    """The estimate's codes come from the engine's inference copy (BatchNorm folded, fp32): the plain
    network's own pooled top features, to the rounding a folded multiply-add changes."""
    from tlcore.device import pick
    from tlcore.models import MODELS, build_network
    from tlcore.train.pipeline import Preprocess
    digits = load_dataset("digits", image_size=32)
    idx = torch.arange(0, 40, 3)
    codes = advisor._cnn_codes(digits, idx, digits.train_x[idx], None)
    policy = pick("auto")
    spec = MODELS[advisor.CODES_MODEL]
    net = build_network(advisor.CODES_MODEL, 2).eval()
    with torch.no_grad():
        plain = net.features(Preprocess(advisor.PROBE_SIZE, spec.mean, spec.std, policy)(digits.train_x[idx]).float())
    assert codes.shape == plain.shape == (len(idx), net.feature_dim)
    assert torch.allclose(codes, plain, rtol=1e-4, atol=1e-4 * float(plain.abs().max()))


def test_a_second_estimate_of_the_same_sample_reads_its_codes_from_the_cache(tmp_path, monkeypatch):
    from tlcore import models
    from tlcore.train.features import FeatureCache
    digits = load_dataset("digits", image_size=32)
    cache = FeatureCache(tmp_path, budget_bytes=2**26)
    first = advisor.estimate_similarity(digits, samples=120, cache=cache)

    def no_network(*a, **k):
        raise AssertionError("the codes should have come from the cache")
    monkeypatch.setattr(models, "build_network", no_network)
    assert advisor.estimate_similarity(digits, samples=120, cache=FeatureCache(tmp_path, budget_bytes=2**26)) == first
    with pytest.raises(AssertionError):    # another sample is another key
        advisor.estimate_similarity(digits, samples=120, seed=1, cache=cache)
