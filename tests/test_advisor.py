"""The strategy advisor: the grid of four cases, and a similarity estimate that can tell data apart."""
from __future__ import annotations

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
