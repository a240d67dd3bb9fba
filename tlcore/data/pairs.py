"""Images with two labels each, for the multi-task lab: MultiMNIST-style pairs of digits.

Two digits sit side by side on one canvas, overlapping a little, each shifted at random. Task A is
the left digit. Task B is either the right digit (a related task: the same strokes make both
answers) or the canvas's background brightness, one of a few levels we paint ourselves (an
unrelated task: nothing about digits helps with it). The images are the same in both cases; only
task B's labels change, so relatedness is the one thing that differs between two runs.

Pairs of the training digits make the training pairs and pairs of the validation digits make the
validation pairs, so no validation pair reuses a digit the network trained on.

`digit_pairs` (sklearn's bundled 8x8 digits, offline) and `mnist_pairs` (MNIST, when it is on
disk) are also registered as ordinary datasets whose label is task A, so the Data page can show them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .base import DatasetSpec, ImageSplits
from .registry import DATASETS, load_dataset, register

DIGITS = tuple(str(i) for i in range(10))
BRIGHTNESS = ("dark", "dim", "grey", "light")   # task B when unrelated: the background's level
_LEVELS = (0, 28, 56, 84)                       # background grey of each level (ink is up to 255)
_NOISE = 20                                     # +- per-pixel noise, so one pixel never tells the level
PAIR_SOURCES = {"digit_pairs": ("digits", 8), "mnist_pairs": ("mnist", 14)}   # name -> (digit set, digit side px)
DEFAULT_TRAIN_PAIRS = 2000
VAL_PAIRS = 600


@dataclass(frozen=True)
class TwoTaskSplits:
    """uint8 images [N, 3, S, S] with two label sets: `*_a` (left digit) and `*_b` (task B)."""
    train_x: torch.Tensor
    train_a: torch.Tensor
    train_b: torch.Tensor
    val_x: torch.Tensor
    val_a: torch.Tensor
    val_b: torch.Tensor
    classes_a: tuple[str, ...]
    classes_b: tuple[str, ...]
    related: bool
    name: str = ""

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])


def is_two_task(dataset: str) -> bool:
    return dataset in PAIR_SOURCES


def _compose(x: torch.Tensor, y: torch.Tensor, n: int, side: int, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """n pairs from single digits x [M, H, W] (uint8 grey): (images, left, right, brightness level)."""
    m = x.shape[0]
    left, right = torch.randint(0, m, (n,), generator=gen), torch.randint(0, m, (n,), generator=gen)
    level = torch.randint(0, len(_LEVELS), (n,), generator=gen)
    canvas_side, j = 2 * side, max(side // 4, 1)   # j: how far each digit may wander
    canvas = torch.zeros(n, canvas_side, canvas_side, dtype=torch.int16)
    rows = torch.randint(side // 2 - j, side // 2 + j + 1, (n, 2), generator=gen)
    cols = torch.stack([torch.randint(0, j + 1, (n,), generator=gen),                     # left digit
                        torch.randint(side - j, side + 1, (n,), generator=gen)], 1)       # right one
    cols = cols.clamp(max=canvas_side - side)
    for k in range(n):   # once per pair when the data is built, never inside training
        for which, idx in ((0, left[k]), (1, right[k])):
            r, c = int(rows[k, which]), int(cols[k, which])
            patch = canvas[k, r:r + side, c:c + side]
            canvas[k, r:r + side, c:c + side] = torch.maximum(patch, x[idx].to(torch.int16))   # overlap: brightest ink
    background = torch.tensor(_LEVELS, dtype=torch.int16)[level].view(n, 1, 1)
    noise = torch.randint(-_NOISE, _NOISE + 1, canvas.shape, generator=gen, dtype=torch.int16)
    img = torch.maximum(canvas, (background + noise).clamp(min=0)).clamp(0, 255).to(torch.uint8)
    return img.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(), y[left], y[right], level


def _singles(source: str, side: int, root: Path | str | None, download: bool) -> ImageSplits:
    return load_dataset(source, image_size=28 if source == "mnist" else side, root=root, download=download)


def _grey(x: torch.Tensor, side: int) -> torch.Tensor:
    g = x[:, 0]
    if g.shape[-1] != side:
        g = F.interpolate(g[:, None].float(), size=(side, side), mode="area")[:, 0].round().clamp(0, 255).to(torch.uint8)
    return g


def load_two_task(dataset: str, *, related: bool = True, train_pairs: int = DEFAULT_TRAIN_PAIRS,
                  val_pairs: int = VAL_PAIRS, seed: int = 0, root: Path | str | None = None,
                  download: bool = False) -> TwoTaskSplits:
    """The two-task images of `dataset` (a name in PAIR_SOURCES). The pairs depend on `seed` only
    through the training pairs: the validation pairs are the same for every run. `download`: fetch
    MNIST first if it is not on disk (the lab's runs never do: the Data page or `prefetch mnist` does)."""
    source, side = PAIR_SOURCES[dataset]
    singles = _singles(source, side, root, download)
    tr_x, va_x = _grey(singles.train_x, side), _grey(singles.val_x, side)
    x, a, right, level = _compose(tr_x, singles.train_y, train_pairs, side, torch.Generator().manual_seed(seed))
    vx, va, vright, vlevel = _compose(va_x, singles.val_y, val_pairs, side, torch.Generator().manual_seed(10_007))
    b, vb = (right, vright) if related else (level, vlevel)
    return TwoTaskSplits(x, a, b, vx, va, vb, DIGITS, DIGITS if related else BRIGHTNESS, related,
                         name=DATASETS[dataset].title)


def _load_as_images(dataset: str, root: Path, image_size: int, seed: int, val_fraction: float,
                    path: Any = None, download: bool = False) -> ImageSplits:
    """The registry's view: the pair images labelled by task A (the left digit)."""
    d = load_two_task(dataset, root=root, download=download)
    return ImageSplits(d.train_x, d.train_a, d.val_x, d.val_a, DIGITS, d.name)


def _register() -> None:
    def loader(name):
        return lambda root, image_size, seed, val_fraction, path=None, download=False: \
            _load_as_images(name, root, image_size, seed, val_fraction, path, download)
    register(DatasetSpec(
        "digit_pairs", "Digit pairs (16x16, bundled)",
        "Two bundled digits side by side on a background of one of four greys: two labels per image "
        "(the left digit, and the right digit or the background), for the multi-task lab.",
        "bundled", "BSD-3 (scikit-learn); UCI ML hand-written digits", DIGITS, 16, "",
        load=loader("digit_pairs"), available_offline=lambda root: True))
    register(DatasetSpec(
        "mnist_pairs", "MNIST pairs (28x28)",
        "Two MNIST digits side by side (MultiMNIST style), two labels per image, for the multi-task lab.",
        "torchvision", "CC BY-SA 3.0 (Y. LeCun, C. Cortes)", DIGITS, 28, DATASETS["mnist"].download_from,
        load=loader("mnist_pairs"), available_offline=lambda root: DATASETS["mnist"].available_offline(root)))


_register()
