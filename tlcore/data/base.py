"""The one shape every dataset comes out in, and the registry entry that describes a dataset."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch

Source = Literal["bundled", "torchvision", "url", "folder"]


@dataclass(frozen=True)
class ImageSplits:
    """Decoded images, ready for the engine.

    `*_x` are uint8 tensors [N, 3, H, W] (RGB), stored at the smaller of the native size and the
    requested image size; the engine upscales and normalises on the device, per batch.
    `*_y` are int64 tensors [N]. `classes[i]` names label i.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: tuple[str, ...]
    name: str = ""
    # Counts a learner may want to see: skipped unreadable files, ignored non-images, ...
    notes: dict[str, int] = field(default_factory=dict)
    # What was really loaded, as one string: the source's content (a folder's files, a zip's entries,
    # a registry set's name and options) plus the training subsample. Caches key on it (decoded data,
    # frozen features), so two runs share a cache exactly when they train and score on the same images.
    fingerprint: str = ""
    # A subsampled training split's whole dataset and the rows of its training split it keeps (None for a
    # whole dataset): frozen features are then computed once for the whole and every subsample (each
    # student's seed, each per-class count) takes its rows from them (tlcore.train.phases.source_at).
    whole: "ImageSplits | None" = field(default=None, repr=False, compare=False)
    rows: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])


@dataclass(frozen=True)
class DatasetSpec:
    name: str                      # registry key, snake_case
    title: str                     # what the UI shows
    description: str
    source: Source
    licence: str
    classes: tuple[str, ...]       # empty for `folder` (known only once loaded)
    native_size: int               # side of the stored images (0 when it varies, e.g. folder)
    download_from: str             # where a download comes from ("" when bundled)
    # load(root, image_size, path) -> full train/val data before per-class / imbalance options.
    load: Callable[..., ImageSplits]
    # available_offline(root) -> bool: usable right now with no network.
    available_offline: Callable[[Path], bool]
