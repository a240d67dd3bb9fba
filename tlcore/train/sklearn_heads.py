"""Classifiers without a network head: an SVM on raw pixels, and linear models on CNN codes.

The lecture notes' advice for a small dataset unlike ImageNet is to skip transfer and fit an SVM on
something simple; `pixel_svm` is that baseline, scored with the same metrics as every other run.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

# An RBF SVM is quadratic in the sample count; above this a linear SVM keeps the run in seconds.
MAX_KERNEL_SVM_SAMPLES = 10_000
PIXEL_SIDE = 32  # raw pixels are compared at most at 32x32: more adds dimensions, not information



@contextlib.contextmanager
def one_blas_thread():
    """sklearn's fits on small matrices, on one BLAS thread: on two, scipy's L-BFGS spent 25-40x the CPU
    time (the layer probe's top group 1 s -> 80 s on a 2-core Zen 5 with one other busy process),
    waking and spinning threads for vectors of ~10k values. Process-wide while inside (OpenBLAS has no
    per-thread setting): a fit in another job meanwhile also gets one, which suits it too."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, user_api="blas"):
        yield


def pixel_features(images: torch.Tensor, side: int = PIXEL_SIDE) -> np.ndarray:
    """uint8 [N,3,H,W] -> float32 [N, 3*s*s] in [0, 1], downsampled (area) to at most `side`."""
    x = images.float() / 255.0
    if x.shape[-1] > side:
        x = F.interpolate(x, size=(side, side), mode="area")
    return x.flatten(1).numpy()


def fit_predict(kind: str, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, str]:
    """Fit `kind` ("pixel_svm", "logreg", "linear_svm") and return (val predictions, val scores, what was fit)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    if kind == "pixel_svm" and len(train_x) <= MAX_KERNEL_SVM_SAMPLES:
        clf, what = SVC(kernel="rbf", C=10.0, gamma="scale", random_state=seed), "RBF-kernel SVM on raw pixels"
    elif kind in ("pixel_svm", "linear_svm"):
        clf, what = LinearSVC(C=0.1, random_state=seed, max_iter=5000), "linear SVM"
    elif kind == "logreg":
        clf, what = LogisticRegression(max_iter=2000, C=1.0), "logistic regression"
    else:
        raise ValueError(f"unknown classifier {kind!r}")
    model = make_pipeline(StandardScaler(), clf)
    model.fit(train_x, train_y)
    scores = model.decision_function(val_x) if not hasattr(clf, "predict_proba") else model.predict_proba(val_x)
    return model.predict(val_x), np.asarray(scores, dtype=np.float32), what


def confidence(scores: np.ndarray) -> np.ndarray:
    """Confidence of the predicted class from predict_proba or decision scores (softmax of margins)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:  # binary decision_function
        s = np.stack([-s, s], axis=1)
    if not np.allclose(s.sum(1), 1.0) or (s < 0).any():
        s = np.exp(s - s.max(1, keepdims=True))
        s /= s.sum(1, keepdims=True)
    return s.max(1).astype(np.float32)
