"""Digits in another domain, built the way MNIST-M is built (Ganin & Lempitsky 2015): each digit is
blended onto a random patch of a colour photo, |patch - digit| per colour channel, so the shapes
stay and the look changes. The photos ship with scikit-image and scikit-learn (offline). The
training part and the test part use different photos, so no patch seen while adapting is scored.

`digits_m` is built from the bundled digits, `mnist_m` from MNIST (when MNIST is on disk or can be
downloaded). Both are deterministic given the split seed, and cached like every dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .base import DatasetSpec, ImageSplits
from .registry import DATASETS, register

# Which photo feeds which part. Disjoint by construction (a test checks it).
TRAIN_PHOTOS = ("skimage:astronaut", "skimage:coffee", "skimage:rocket", "skimage:immunohistochemistry",
                "skimage:hubble_deep_field")
TEST_PHOTOS = ("sklearn:china.jpg", "sklearn:flower.jpg", "skimage:chelsea")
PHOTO_SCALE = 0.5   # photos are halved first so a small patch holds texture, not one flat colour


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """One photo as uint8 [H, W, 3], halved."""
    lib, key = name.split(":", 1)
    if lib == "skimage":
        import skimage.data
        img = getattr(skimage.data, key)()
    else:
        from sklearn.datasets import load_sample_image
        img = load_sample_image(key)
    t = torch.from_numpy(np.array(img[..., :3], dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float()
    h, w = int(t.shape[-2] * PHOTO_SCALE), int(t.shape[-1] * PHOTO_SCALE)
    t = torch.nn.functional.interpolate(t, size=(h, w), mode="area")
    return t[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class Blended:
    images: torch.Tensor        # uint8 [N, 3, S, S]
    photo: tuple[str, ...]      # which photo each image's patch came from
    box: torch.Tensor           # [N, 2] top-left corner (row, col) of each patch in its (halved) photo


def blend(digits: torch.Tensor, photos: tuple[str, ...], seed: int) -> Blended:
    """|patch - digit| for each digit ([N, 3, S, S] uint8, ink bright), on a random patch of a random
    photo from `photos`, chosen by `seed` alone."""
    n, _, s, _ = digits.shape
    g = np.random.default_rng(seed)
    which = g.integers(0, len(photos), size=n)
    out = torch.empty_like(digits)
    boxes = torch.empty((n, 2), dtype=torch.long)
    for p_i, name in enumerate(photos):   # one photo at a time: no per-image Python beyond the crop offsets
        idx = np.nonzero(which == p_i)[0]
        if len(idx) == 0:
            continue
        img = torch.from_numpy(photo(name)).permute(2, 0, 1)   # [3, H, W]
        rows = torch.from_numpy(g.integers(0, img.shape[1] - s + 1, size=len(idx)))
        cols = torch.from_numpy(g.integers(0, img.shape[2] - s + 1, size=len(idx)))
        r = rows[:, None] + torch.arange(s)[None]               # [k, s]
        c = cols[:, None] + torch.arange(s)[None]
        patches = img[:, r[:, :, None], c[:, None, :]].permute(1, 0, 2, 3)   # [k, 3, s, s]
        d = digits[torch.from_numpy(idx)]
        out[torch.from_numpy(idx)] = (patches.short() - d.short()).abs().to(torch.uint8)
        boxes[torch.from_numpy(idx)] = torch.stack([rows, cols], 1)
    return Blended(out, tuple(photos[i] for i in which), boxes)


def shifted(base: ImageSplits, name: str, seed: int) -> ImageSplits:
    """`base`'s digits on photos: its training part on TRAIN_PHOTOS, its validation part on TEST_PHOTOS."""
    tr = blend(base.train_x, TRAIN_PHOTOS, seed)
    va = blend(base.val_x, TEST_PHOTOS, seed + 1)
    return ImageSplits(tr.images, base.train_y, va.images, base.val_y, base.classes, name)


# The stored side: the digits are upscaled to it before blending, so a patch has some texture.
DIGITS_M_SIZE = 28


def load_digits_m(root: Path, image_size: int, seed: int, val_fraction: float, path=None) -> ImageSplits:
    from .images import shrink
    from .sources import load_digits
    base = load_digits(root, 8, seed, val_fraction)
    side = min(DIGITS_M_SIZE, image_size)
    up = lambda x: torch.nn.functional.interpolate(x.float(), size=(side, side), mode="bilinear",  # noqa: E731
                                                   align_corners=False).round().clamp(0, 255).to(torch.uint8)
    base = ImageSplits(up(base.train_x), base.train_y, up(base.val_x), base.val_y, base.classes, "digits")
    out = shifted(base, "digits_m", seed)
    return ImageSplits(shrink(out.train_x, image_size), out.train_y, shrink(out.val_x, image_size), out.val_y,
                       out.classes, "digits_m")


def load_mnist_m(root: Path, image_size: int, seed: int, val_fraction: float, path=None, download: bool = True
                 ) -> ImageSplits:
    from .images import shrink
    base = DATASETS["mnist"].load(root, 28, seed, val_fraction, download=download)
    out = shifted(base, "mnist_m", seed)
    return ImageSplits(shrink(out.train_x, image_size), out.train_y, shrink(out.val_x, image_size), out.val_y,
                       out.classes, "mnist_m")


def register_all(register, datasets) -> None:
    digits = tuple(str(i) for i in range(10))
    register(DatasetSpec(
        "digits_m", "Digits on photos (bundled)", "The bundled digits blended onto patches of photos, MNIST-M style: "
        "the same digits in another domain.", "bundled", "BSD-3 (scikit-learn digits; scikit-image and scikit-learn "
        "sample photos)", digits, DIGITS_M_SIZE, "", load=load_digits_m, available_offline=lambda root: True))
    register(DatasetSpec(
        "mnist_m", "MNIST on photos", "MNIST blended onto patches of photos, like MNIST-M.", "torchvision",
        "CC BY-SA 3.0 (MNIST); scikit-image and scikit-learn sample photos", digits, 28, datasets["mnist"].download_from,
        load=load_mnist_m, available_offline=lambda root: datasets["mnist"].available_offline(root)))


register_all(register, DATASETS)   # digits_m, mnist_m: digits on photos
