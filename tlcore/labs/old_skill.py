"""What a network knew before fine-tuning, measured while it fine-tunes (the forgetting lab).

A skill is a fixed set of images, the answers the network gave (or should give) for them, and the
head that reads them off the backbone. "ImageNet skill" is the pretrained network's own top-1
ImageNet class on crops of the photos that ship with scikit-image and scikit-learn (offline), read
by its original 1000-class classifier: the fraction of crops on which the fine-tuned backbone, under
that classifier, still gives the same class is the skill kept. "Sequential" skill is a first task
learned in the run, scored on its validation images with its own head while a second task trains.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.shifted import TEST_PHOTOS, TRAIN_PHOTOS, photo

PHOTOS = TRAIN_PHOTOS + TEST_PHOTOS      # every bundled photo the project reads: 8, all offline
CROPS_PER_PHOTO = 24
# px the crops are fed at: the target's own size (Lite0 learned at 224). 96 px cost 3x as much, a third of
# the lab's time, and 64 px answers still show the lesson.
CROP_SIZE = 64


@lru_cache(maxsize=4)
def photo_crops(per_photo: int = CROPS_PER_PHOTO, size: int = CROP_SIZE, seed: int = 0) -> torch.Tensor:
    """uint8 [N, 3, size, size]: square crops of random side (a quarter of the photo's short side up
    to all of it) at random places of each bundled photo, resized to `size`; fixed given the seed (kept per process: read, never written to)."""
    g = np.random.default_rng(seed)
    out = []
    for name in PHOTOS:
        img = torch.from_numpy(photo(name)).permute(2, 0, 1).float()     # [3, H, W], halved
        h, w = img.shape[1:]
        short = min(h, w)
        for _ in range(per_photo):
            side = int(g.integers(max(short // 4, 16), short + 1))
            r, c = int(g.integers(0, h - side + 1)), int(g.integers(0, w - side + 1))
            crop = img[None, :, r:r + side, c:c + side]
            out.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                                     antialias=side > size))
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8)


@dataclass
class Skill:
    """Images, the answer expected for each, and the head that reads the answer off the backbone's
    pooled output; `prep` turns uint8 images into the backbone's input.

    `stored`: the outputs of groups[:cut] on these images, per cut, of the network the arms start
    from (`remember`). An arm whose groups below a cut have not changed since (gradual unfreezing's
    frozen part) reads them instead of running those groups again."""
    images: torch.Tensor
    answers: torch.Tensor
    head: nn.Module
    prep: object
    name: str
    stored: dict[int, torch.Tensor] = field(default_factory=dict)
    batch: int = 128

    def _copy(self, net):
        """The backbone as an inference copy (BatchNorm folded, static padding, each convolution fused
        with its activation: the engine's frozen-prefix fast path, train.features.FrozenPrefix), in fp32
        on every device: bf16 would change about one answer in twenty (measured on these crops), and
        differently on CPUs with and without it, and the skill is a measuring instrument."""
        from ..train.features import FrozenPrefix
        policy = dataclasses.replace(self.prep.policy, amp_dtype=None)
        return FrozenPrefix(net, len(net.group_names), self.prep, policy)

    @torch.no_grad()
    def predictions(self, net, untouched_below: int = 0) -> torch.Tensor:
        """Top-1 answers of `net`'s backbone under this skill's head, in inference mode (the network's
        mode is put back after). `untouched_below`: groups[:cut] are still those of the remembered
        network, so its stored outputs at that cut are read where there are some."""
        start = untouched_below if untouched_below in self.stored else 0
        inputs = self.stored[start] if start else self.images
        was = net.training
        net.eval()
        self.head.eval()
        try:
            fast = self._copy(net) if start == 0 else None
            preds = []
            for i in range(0, len(inputs), self.batch):
                x = inputs[i:i + self.batch]
                y = fast(self.prep(x)) if fast is not None else net.features(x, start, None)
                preds.append(self.head(y.float()).argmax(1).cpu())
        finally:
            net.train(was)
        return torch.cat(preds)

    def kept(self, net, untouched_below: int = 0) -> float:
        """Fraction of the images on which the network still gives the expected answer."""
        return float((self.predictions(net, untouched_below) == self.answers).float().mean())

    @torch.no_grad()
    def remember(self, net, cuts) -> torch.Tensor:
        """Store `net`'s outputs at each of `cuts` (0 < cut <= its groups) on the images, computed by the
        same fast copy `predictions` uses, in one pass; returns its answers (what the pass ends with)."""
        n = len(net.group_names)
        keep = {c for c in cuts if 0 < c <= n}
        was = net.training
        net.eval()
        self.head.eval()
        try:
            fast = self._copy(net)
            stages = list(fast.module) if fast.mode == "fp32" and len(fast.module) == n else None
            out = {c: [] for c in keep}
            preds = []
            for i in range(0, len(self.images), self.batch):
                x = self.prep(self.images[i:i + self.batch])
                if stages is None:       # not a copy of one module per group: only the answers
                    x = fast(x)
                else:
                    for g, stage in enumerate(stages):
                        x = stage(x)
                        if g + 1 in out:
                            out[g + 1].append(x)
                preds.append(self.head(x.float()).argmax(1).cpu())
        finally:
            net.train(was)
        self.stored = {c: torch.cat(v) for c, v in out.items() if v}
        return torch.cat(preds)


def imagenet_skill(net, imagenet_head: nn.Module, prep, crops: torch.Tensor, keep=()) -> Skill:
    """The pretrained network's own top-1 ImageNet answers on `crops`: what fine-tuning may forget.
    `keep`: cuts at which the pretrained backbone's outputs on the crops are stored (Skill.remember)."""
    probe = Skill(crops, torch.zeros(len(crops), dtype=torch.long), imagenet_head, prep, "imagenet")
    probe.answers = probe.remember(net, keep)
    return probe
