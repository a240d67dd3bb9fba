"""Seeded, stratified splits and the "small" / "imbalanced" training-set options."""
from __future__ import annotations

import math

import torch

from ..errors import DatasetError


def stratified_split(y: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): each class contributes round(val_fraction * n_c) (at least 1) to val."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = min(max(1, round(val_fraction * len(idx))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def class_sizes(available: list[int], per_class: int | None, imbalance: float) -> list[int]:
    """How many training images each class keeps.

    Sizes fall geometrically from class 0 to the last class so that largest / smallest equals
    `imbalance` (as closely as whole numbers allow), starting from `per_class` (or the smallest
    class); each class keeps at least one image and never more than it has.
    """
    k = len(available)
    top = min(per_class, max(available)) if per_class is not None else min(available)
    if imbalance == 1.0:
        return [min(top, a) for a in available]
    sizes = []
    for c, a in enumerate(available):
        n = top * imbalance ** (-c / (k - 1)) if k > 1 else top
        sizes.append(max(1, min(a, int(math.floor(n + 0.5)))))
    return sizes


def subsample(y: torch.Tensor, num_classes: int, per_class: int | None, imbalance: float, seed: int) -> torch.Tensor:
    """Indices into the training split that realise `per_class` and `imbalance` (deterministic in seed)."""
    if per_class is None and imbalance == 1.0:
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed + 1)
    per = [torch.nonzero(y == c).flatten() for c in range(num_classes)]
    available = [len(i) for i in per]
    if min(available) == 0:
        raise DatasetError("a class has no training images, so images per class cannot be chosen")
    sizes = class_sizes(available, per_class, imbalance)
    keep = [i[torch.randperm(len(i), generator=g)[:n]] for i, n in zip(per, sizes)]
    return torch.cat(keep).sort().values
