"""The domain-adaptation arms (Ganin & Lempitsky 2015): the paper's small CNN, a zoo group with the
same heads, and the trainer of one arm (source only, DANN, or target labels). The DANN lab runs all
three; the negative-transfer lab trains its from-scratch baseline with the small CNN's target arm."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..train.events import LabResult, Phase, register_schema
from ..train.phases import Clock, run_steps
from ..train.scope import Failed
from .grl import GradientReversal, dann_lambda, dann_lr

ARM_TITLES = {"source_only": "Source only", "dann": "DANN", "target_only": "Target labels (ceiling)"}
MIN_SIZE, MAX_SIZE = 16, 64        # the small CNN: below 16 px its two pools leave nothing; above 64 use a zoo model
# Scales the paper's lambda(p); 1 is the paper's schedule as is. It was 0.3 (it capped the reversal at
# 0.3 while the page drew lambda -> 1). With per-domain batches (dann_step) the full weight gains more:
# page defaults, seed 0, +0.120 at 1 against +0.084 at 0.3.
DOMAIN_WEIGHT = 1.0
EPOCH = register_schema("dann_epoch", {"arm": str, "epoch": int, "source_acc": float, "target_acc": float,
                                       "domain_acc": float, "lambda": float})


# --- network ----------------------------------------------------------------------------------------
class SmallCNN(nn.Module):
    """The paper's MNIST network: two conv/pool blocks as the feature extractor, a three-layer label
    classifier and a two-layer domain classifier behind the gradient reversal layer."""

    def __init__(self, size: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 5), nn.BatchNorm2d(48), nn.Dropout2d(0.1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        with torch.no_grad():
            dim = self.features(torch.zeros(2, 3, size, size)).shape[1]
        self.label = nn.Sequential(nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                                   nn.Linear(100, classes))
        self.grl = GradientReversal(0.0)
        self.domain = nn.Sequential(nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, 2))

    def forward(self, x):
        f = self.features(x)
        return f, self.label(f), self.domain(self.grl(f))


def min_side_for_small_cnn() -> int:
    return MIN_SIZE


class BackboneDANN(nn.Module):
    """One group of a zoo backbone (its input: the frozen groups' cached output), pooled, then the
    same two heads as the small CNN."""

    def __init__(self, group: nn.Module, sample: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(group, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        with torch.no_grad():
            was = group.training
            dim = self.features.eval()(sample[:1]).shape[1]
            group.train(was)
        self.label = nn.Sequential(nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, classes))
        self.grl = GradientReversal(0.0)
        self.domain = nn.Sequential(nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, 2))

    forward = SmallCNN.forward


@dataclass
class Arms:
    """What every arm trains on: both domains in the network's input space, a way to make a fresh
    network, and the batch transform from stored tensors to that input."""
    src: object            # ImageSplits (train_x/val_x: raw uint8 images or cached prefix outputs)
    tgt: object
    make_net: Callable[[], nn.Module]
    encode: Callable[[torch.Tensor], torch.Tensor]


def small_cnn_input(x: torch.Tensor, size: int, device) -> torch.Tensor:
    """uint8 images -> the small CNN's input: [0, 1], resized to `size`, centred on 0 (-1..1)."""
    x = x.to(device).float().div_(255)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5


# --- one arm --------------------------------------------------------------------------------------------
@torch.no_grad()
def features_and_scores(net: nn.Module, x: torch.Tensor, encode, batch: int = 512):
    net.eval()
    feats, labels, doms = [], [], []
    for i in range(0, len(x), batch):
        f, y, d = net(encode(x[i:i + batch]))
        feats.append(f.cpu()), labels.append(y.argmax(1).cpu()), doms.append(d.argmax(1).cpu())
    return torch.cat(feats), torch.cat(labels), torch.cat(doms)


def scores(net, arms: Arms) -> tuple[float, float, float]:
    src, tgt = arms.src, arms.tgt
    _, ys, ds = features_and_scores(net, src.val_x, arms.encode)
    _, yt, dt = features_and_scores(net, tgt.val_x, arms.encode)
    # Domain accuracy balanced over the two domains, so a classifier that always says "source" scores 0.5.
    dom = 0.5 * ((ds == 0).float().mean() + (dt == 1).float().mean())
    return float((ys == src.val_y).float().mean()), float((yt == tgt.val_y).float().mean()), float(dom)


def small_cnn_arms(src, tgt, size: int, device) -> Arms:
    return Arms(src, tgt, lambda: SmallCNN(size, src.num_classes).to(device), lambda x: small_cnn_input(x, size, device))


@dataclass(frozen=True)
class Batches:
    """The indices each step draws: `steps_per_epoch` = one pass over the labelled side; every batch is full
    (`size` labelled images and `size` from the other domain), taken in turn from a stream of shuffles, so
    BatchNorm never sees a stub of a batch at an epoch's end."""
    labelled: torch.Tensor
    other: torch.Tensor
    size: int
    steps_per_epoch: int

    @classmethod
    def draw(cls, n_labelled: int, n_other: int, size: int, epochs: int, seed: int) -> "Batches":
        g = torch.Generator().manual_seed(seed)
        spe = max(1, math.ceil(n_labelled / size))
        need = epochs * spe * size

        def stream(n: int) -> torch.Tensor:
            return torch.cat([torch.randperm(n, generator=g) for _ in range(need // n + 2)])
        return cls(stream(n_labelled), stream(n_other), size, spe)

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        sl = slice(step * self.size, (step + 1) * self.size)
        return self.labelled[sl], self.other[sl]


def dann_step(net: nn.Module, opt, arm: str, arms: Arms, il: torch.Tensor, io: torch.Tensor) -> torch.Tensor:
    """One optimiser step: the label loss on the labelled batch, the domain loss on both batches, the
    domain loss's gradient reversed into the features at the network's current `grl.lam`.
    Each domain's batch goes through the network on its own, so BatchNorm normalises it with its own
    domain's statistics during training, as common DANN implementations do. With both in one batch DANN
    gained nothing at the page's defaults (seed 0: -0.019, against +0.120 per domain at the same rates
    and weight; the one change measured, not its mechanism)."""
    lab, other = (arms.tgt, arms.src) if arm == "target_only" else (arms.src, arms.tgt)
    _, logits, d_lab = net(arms.encode(lab.train_x[il]))
    _, _, d_other = net(arms.encode(other.train_x[io]))
    device = logits.device
    lab_is_target = int(arm == "target_only")      # the domain label: 0 source, 1 target
    d_true = torch.cat([torch.full((len(il),), lab_is_target), torch.full((len(io),), 1 - lab_is_target)])
    loss = F.cross_entropy(logits, lab.train_y[il].to(device)) + \
        F.cross_entropy(torch.cat([d_lab, d_other]), d_true.to(device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def applied_lambda(arm: str, p: float, weight: float) -> float:
    """The reversed gradient's weight at progress p: the paper's schedule times the plan's domain weight
    for DANN; 0 for the other arms (their domain head only measures)."""
    return weight * dann_lambda(p) if arm == "dann" else 0.0


def refuse_non_finite(value: float, where: str) -> None:
    if not math.isfinite(value):
        raise Failed(f"the loss became {value} {where}: the learning rate is probably too high; try 10x lower")


def train_arm(arm: str, plan, arms: Arms, emit, should_stop, *, position: tuple[int, int] = (0, 1),
              t0: float | None = None, score_epochs: bool = True) -> nn.Module:
    """Train one arm for plan.epochs epochs of phases.run_steps; score it after each (unless `score_epochs`
    is False: a caller that reads only the trained network skips two validation passes an epoch; scoring
    draws no random numbers, so the training is the same either way). `position`: (this arm's index, arms
    in the run), so the Step events' global index runs over the whole run's steps."""
    torch.manual_seed(plan.seed)                   # the weights and dropout: each arm starts alike
    net = arms.make_net()
    opt = torch.optim.SGD(net.parameters(), lr=plan.lr, momentum=0.9, weight_decay=plan.weight_decay)
    lab, other = (arms.tgt, arms.src) if arm == "target_only" else (arms.src, arms.tgt)
    batches = Batches.draw(len(lab.train_y), len(other.train_y), plan.batch_size, plan.epochs, plan.seed)
    spe, weight = batches.steps_per_epoch, float(plan.option("domain_weight", DOMAIN_WEIGHT))
    total = plan.epochs * spe
    t0 = time.perf_counter() if t0 is None else t0
    for epoch in range(plan.epochs):
        def one(i: int, first: int = epoch * spe) -> torch.Tensor:
            p = (first + i) / total
            for group in opt.param_groups:
                group["lr"] = dann_lr(p, plan.lr)
            net.grl.lam = applied_lambda(arm, p, weight)
            return dann_step(net, opt, arm, arms, *batches.at(first + i))

        net.train()
        # The progress line lab pages show (they read Phase events, not every Step): which arm, which epoch.
        emit(Phase(f"arm {position[0] + 1} of {position[1]}: {ARM_TITLES[arm]} · epoch {epoch + 1} of {plan.epochs}",
                   position[0] * plan.epochs + epoch, position[1] * plan.epochs))
        clock = Clock(t0, position[0] * total + epoch * spe, position[1] * total)
        run_steps(spe, one, epoch=epoch, clock=clock, batch=2 * batches.size, emit=emit, should_stop=should_stop,
                  lrs=lambda: (opt.param_groups[0]["lr"],), on_loss=refuse_non_finite)
        if not score_epochs:
            continue
        sa, ta, da = scores(net, arms)
        emit(LabResult(EPOCH, {"arm": arm, "epoch": epoch, "source_acc": sa, "target_acc": ta, "domain_acc": da,
                               "lambda": float(net.grl.lam)}))
    return net
