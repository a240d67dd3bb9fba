"""The negative-transfer lab's own sources: one network, the same source images, taught different things.

Half of the target dataset's training pool (a fixed half per class, the same for every run) is set
aside and blended onto photos, MNIST-M style (tlcore.data.shifted): the target's classes in another
look. The paper's small CNN (dann_arms.SmallCNN) is then
  related      taught the classes of those images: a source close to the target
  misleading   taught which photo lies behind each image: the same images, looked at for the wrong
               reason (the background's texture and colour, not the shape in front of it)
  random_init  not taught at all: the architecture alone, what "no source" is for this network
and the target's logistic regression reads its label classifier's hidden layer, as it reads the other
sources' features. The target's samples come from the other half of the pool only, so no image the
target trains or is scored on was ever a source image, in any look.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.shifted import DIGITS_M_SIZE, TRAIN_PHOTOS, blend
from ..train.phases import Clock, run_steps
from .dann_arms import SmallCNN, refuse_non_finite, small_cnn_input

NAMES = ("related", "misleading", "random_init")
SPLIT_SEED = 20260    # which half is the sources': fixed, so every run and seed sees the same split
SIZE = 32             # the small CNN's input side
EPOCHS = 10
LR = 0.01
BATCH = 32


def halves(y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(source rows, target rows) of a training pool: each class split in two, the source taking the
    smaller half; both sorted."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    src = []
    for c in range(num_classes):
        rows = torch.nonzero(y == c).flatten()
        src.append(rows[torch.randperm(len(rows), generator=g)[: len(rows) // 2]])
    src_rows = torch.cat(src).sort().values
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[src_rows] = False
    return src_rows, torch.nonzero(mask).flatten()


def on_photos(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, C, S, S] images -> (the images blended onto patches of photos, [N, 3, s, s] with s at
    least DIGITS_M_SIZE so a patch holds texture, as digits_m is built; which photo each one is on)."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    side = max(DIGITS_M_SIZE, x.shape[-1])
    if x.shape[-1] != side:
        x = F.interpolate(x.float(), size=(side, side), mode="bilinear", align_corners=False).round().clamp(0, 255)
    b = blend(x.to(torch.uint8).contiguous(), TRAIN_PHOTOS, seed)
    return b.images, torch.tensor([TRAIN_PHOTOS.index(p) for p in b.photo])


def train(x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int, device, should_stop,
          on_epoch=lambda epoch, epochs: None) -> SmallCNN:
    """The small CNN trained on (x, y), uint8 images: SGD with momentum, full batches in a fresh shuffle
    each epoch (the last partial one dropped, so BatchNorm never sees a stub), each epoch the engine's
    run_steps (stop requests, a non-finite loss refused). It reports no Step events: the lab's progress
    line is its Phase events."""
    torch.manual_seed(seed)
    net = SmallCNN(SIZE, num_classes).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    y = y.to(device)
    steps = len(x) // BATCH
    net.train()
    for epoch in range(EPOCHS):
        on_epoch(epoch, EPOCHS)
        perm = torch.randperm(len(x), generator=g)

        def one(i: int, perm=perm) -> torch.Tensor:
            idx = perm[i * BATCH:(i + 1) * BATCH]
            loss = F.cross_entropy(net.label(net.features(small_cnn_input(x[idx], SIZE, device))), y[idx.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        run_steps(steps, one, epoch=epoch, clock=Clock(0.0, epoch * steps, EPOCHS * steps), batch=BATCH,
                  emit=lambda e: None, should_stop=should_stop, on_loss=refuse_non_finite)
    return net.eval()


def untrained(num_classes: int, seed: int, device) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(SIZE, num_classes).to(device).eval()


def source_net(name: str, images: torch.Tensor, labels: torch.Tensor, photos: torch.Tensor, num_classes: int,
               seed: int, device, should_stop, on_epoch=lambda epoch, epochs: None) -> SmallCNN:
    """One of NAMES, from the source images on photos (`labels`: their classes; `photos`: which photo)."""
    if name == "related":
        return train(images, labels, num_classes, seed, device, should_stop, on_epoch)
    if name == "misleading":
        return train(images, photos, len(TRAIN_PHOTOS), seed, device, should_stop, on_epoch)
    if name == "random_init":
        return untrained(num_classes, seed, device)
    raise ValueError(f"unknown source {name!r}")


@torch.no_grad()
def features(net: SmallCNN, x: torch.Tensor, device, batch: int = 512) -> np.ndarray:
    """The label classifier's hidden layer (100 numbers after its second ReLU) for uint8 images."""
    net.eval()
    hidden = net.label[:-1]
    return torch.cat([hidden(net.features(small_cnn_input(x[i:i + batch], SIZE, device))).float().cpu()
                      for i in range(0, len(x), batch)]).numpy()
