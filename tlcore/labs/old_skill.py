"""What a network knew before fine-tuning, measured while it fine-tunes (the forgetting lab).

A skill is a fixed set of images, the answers the network gave (or should give) for them, and the
head that reads them off the backbone. "ImageNet skill" is the pretrained network's own top-1
ImageNet class on crops of the photos that ship with scikit-image and scikit-learn (offline), read
by its original 1000-class classifier: the fraction of crops on which the fine-tuned backbone, under
that classifier, still gives the same class is the skill kept. "Sequential" skill is a first task
learned in the run, scored on its validation images with its own head while a second task trains.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.shifted import TEST_PHOTOS, TRAIN_PHOTOS, photo

PHOTOS = TRAIN_PHOTOS + TEST_PHOTOS      # every bundled photo the project reads: 8, all offline
CROPS_PER_PHOTO = 24
CROP_SIZE = 96                           # px the crops are fed at (Lite0 learned at 224; 96 keeps it cheap)


def photo_crops(per_photo: int = CROPS_PER_PHOTO, size: int = CROP_SIZE, seed: int = 0) -> torch.Tensor:
    """uint8 [N, 3, size, size]: square crops of random side (a quarter of the photo's short side up
    to all of it) at random places of each bundled photo, resized to `size`; fixed given the seed."""
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
    pooled output; `prep` turns uint8 images into the backbone's input."""
    images: torch.Tensor
    answers: torch.Tensor
    head: nn.Module
    prep: object
    name: str

    @torch.no_grad()
    def predictions(self, net, batch: int = 128) -> torch.Tensor:
        """Top-1 answers of `net`'s backbone under this skill's head, in inference mode (the network's
        mode is put back after)."""
        was = net.training
        net.eval()
        self.head.eval()
        preds = [self.head(net.features(self.prep(self.images[i:i + batch]))).argmax(1).cpu()
                 for i in range(0, len(self.images), batch)]
        net.train(was)
        return torch.cat(preds)

    def kept(self, net) -> float:
        """Fraction of the images on which the network still gives the expected answer."""
        return float((self.predictions(net) == self.answers).float().mean())


def imagenet_skill(net, imagenet_head: nn.Module, prep, crops: torch.Tensor) -> Skill:
    """The pretrained network's own top-1 ImageNet answers on `crops`: what fine-tuning may forget."""
    probe = Skill(crops, torch.zeros(len(crops), dtype=torch.long), imagenet_head, prep, "imagenet")
    probe.answers = probe.predictions(net)
    return probe
