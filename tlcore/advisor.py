"""The strategy advisor: place a dataset on the size x similarity grid and recommend a strategy.

Similarity to ImageNet is estimated, not known. We fit the same linear probe (logistic regression,
cross-validated) twice on a small sample: once on frozen EfficientNet-Lite0 features ("CNN codes")
and once on raw pixels. If ImageNet features beat pixels clearly, what the network learned on
ImageNet is useful here, which is what "similar" means for transfer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from .data.base import ImageSplits

if TYPE_CHECKING:
    from .train.features import FeatureCache

Size = Literal["small", "large"]
Similarity = Literal["similar", "different"]

LARGE_PER_CLASS = 500        # training images per class from which we call a dataset "large" (rule of thumb)
PROBE_SAMPLES = 400          # images the probe looks at: seconds on a laptop, enough to rank features
PROBE_SIZE = 96              # px fed to the frozen network for the probe
CODES_MODEL = "efficientnet_lite0"   # the frozen network whose codes are probed: offline, small
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


def estimate_similarity(data: ImageSplits, *, samples: int = PROBE_SAMPLES, seed: int = 0,
                        cache: FeatureCache | None = None) -> SimilarityEstimate:
    """Cross-validated linear-probe accuracy on frozen ImageNet features vs on raw pixels. With a
    feature cache (the run passes the engine's), the sample's CNN codes are kept there: a class
    estimating the same data with the same seed computes them once."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .train.sklearn_heads import one_blas_thread, pixel_features

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train_y), generator=g)[:samples]
    x, y = data.train_x[idx], data.train_y[idx].numpy()
    codes = _cnn_codes(data, idx, x, cache).numpy()
    folds = int(max(2, min(5, np.bincount(y).min())))

    def probe(features: np.ndarray) -> float:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.5))
        return float(cross_val_score(clf, features, y, cv=folds).mean())

    with one_blas_thread():
        return SimilarityEstimate(probe(codes), probe(pixel_features(x)), len(y))


def _cnn_codes(data: ImageSplits, idx: torch.Tensor, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
    """EfficientNet-Lite0's pooled top features of the sample at PROBE_SIZE px (float32, CPU), through
    the engine's inference copy of the network (BatchNorm folded, activations fused on a CPU: 1.8x
    the plain pass, the same codes to ~1e-5), in fp32 as before rather than the policy's bf16, whose
    codes are 4-8% off."""
    import dataclasses
    import hashlib

    from .device import pick
    from .models import MODELS, build_network
    from .models.build import weights_identity
    from .train.features import FrozenPrefix, feature_identity, feature_key
    from .train.pipeline import Preprocess

    policy = pick("auto")
    key = None
    if cache is not None and data.fingerprint:   # data built in memory has no identity to key on
        ident = feature_identity(data_fingerprint=data.fingerprint, model=CODES_MODEL,
                                 weights=weights_identity(CODES_MODEL), truncate_after="", size=PROBE_SIZE,
                                 policy=policy)
        rows = hashlib.sha256(idx.numpy().tobytes()).hexdigest()[:16]
        key = feature_key({**ident, "mode": "similarity-codes-fp32", "rows": rows}, -1)
        hit = cache.get(key)
        if hit is not None:
            return hit[0]
    spec = MODELS[CODES_MODEL]
    net = build_network(CODES_MODEL, 2).to(policy.device, memory_format=policy.memory_format()).eval()
    prep = Preprocess(PROBE_SIZE, spec.mean, spec.std, policy)
    frozen = FrozenPrefix(net, len(net.group_names), prep, dataclasses.replace(policy, amp_dtype=None))
    with torch.no_grad():
        codes = torch.cat([frozen(prep(x[i:i + 64])).float().cpu() for i in range(0, len(x), 64)])
    if key is not None:
        cache.put(key, codes, codes[:0])
    return codes


