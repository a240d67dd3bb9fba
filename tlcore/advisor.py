"""The strategy advisor: place a dataset on the size x similarity grid and recommend a strategy.

Similarity to ImageNet is estimated, not known. We fit the same linear probe (logistic regression,
cross-validated) twice on a small sample: once on frozen EfficientNet-Lite0 features ("CNN codes")
and once on raw pixels. If ImageNet features beat pixels clearly, what the network learned on
ImageNet is useful here, which is what "similar" means for transfer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .data.base import ImageSplits

Size = Literal["small", "large"]
Similarity = Literal["similar", "different"]

LARGE_PER_CLASS = 500        # training images per class from which we call a dataset "large" (rule of thumb)
PROBE_SAMPLES = 400          # images the probe looks at: seconds on a laptop, enough to rank features
PROBE_SIZE = 96              # px fed to the frozen network for the probe
CLEAR_GAIN = 0.05            # ImageNet features must beat pixels by 5 accuracy points to call the data similar

RULES: dict[tuple[Size, Similarity], tuple[str, str]] = {
    ("small", "similar"): ("feature_extractor",
                           "Keep every pretrained layer frozen and train only a new head: the features already fit, "
                           "and fine-tuning many weights on few images would overfit."),
    ("large", "similar"): ("fine_tune_all",
                           "Start from the pretrained weights and fine-tune the whole network: there is enough data "
                           "to adjust every layer without overfitting."),
    ("small", "different"): ("pixel_svm",
                             "ImageNet features do not help much and there is too little data to learn new ones: "
                             "a classic classifier such as an SVM is a strong, cheap baseline (cutting the network "
                             "lower down, at more generic layers, is the other option)."),
    ("large", "different"): ("scratch",
                             "With plenty of data unlike ImageNet you can train the whole network from random weights; "
                             "starting from the pretrained weights and fine-tuning everything often works as well."),
}


@dataclass(frozen=True)
class SimilarityEstimate:
    cnn_accuracy: float
    pixel_accuracy: float
    samples: int

    @classmethod
    def from_values(cls, values: dict) -> "SimilarityEstimate":
        """From the similarity run's result row (tlcore.labs.similarity)."""
        return cls(float(values["cnn_accuracy"]), float(values["pixel_accuracy"]), int(values["samples"]))

    @property
    def verdict(self) -> Similarity:
        return "similar" if self.cnn_accuracy - self.pixel_accuracy >= CLEAR_GAIN else "different"


def size_of(images_per_class: float) -> Size:
    return "large" if images_per_class >= LARGE_PER_CLASS else "small"


def recommend(size: Size, similarity: Similarity) -> tuple[str, str]:
    """(strategy, why) for one cell of the grid."""
    return RULES[(size, similarity)]


def estimate_similarity(data: ImageSplits, *, samples: int = PROBE_SAMPLES, seed: int = 0) -> SimilarityEstimate:
    """Cross-validated linear-probe accuracy on frozen ImageNet features vs on raw pixels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .device import pick
    from .models import MODELS, build_network
    from .train.pipeline import Preprocess
    from .train.sklearn_heads import pixel_features

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train_y), generator=g)[:samples]
    x, y = data.train_x[idx], data.train_y[idx].numpy()
    policy = pick("auto")
    spec = MODELS["efficientnet_lite0"]
    net = build_network("efficientnet_lite0", 2).to(policy.device).eval()
    prep = Preprocess(PROBE_SIZE, spec.mean, spec.std, policy)
    with torch.no_grad():
        codes = torch.cat([net.features(prep(x[i:i + 64])).float().cpu() for i in range(0, len(x), 64)]).numpy()
    folds = int(max(2, min(5, np.bincount(y).min())))

    def probe(features: np.ndarray) -> float:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.5))
        return float(cross_val_score(clf, features, y, cv=folds).mean())

    return SimilarityEstimate(probe(codes), probe(pixel_features(x)), len(y))
