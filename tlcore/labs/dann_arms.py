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
from ..train.scope import check_stop
from .grl import GradientReversal, dann_lambda, dann_lr

MIN_SIZE, MAX_SIZE = 16, 64        # the small CNN: below 16 px its two pools leave nothing; above 64 use a zoo model
# Scales the paper's lambda(p). On a few hundred digits and a few hundred steps the full weight
# lets the domain head win the tug of war (domain accuracy swings below 0.5: features flipped, not mixed).
DOMAIN_WEIGHT = 0.3
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


def _input(x: torch.Tensor, size: int, device) -> torch.Tensor:
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
    return Arms(src, tgt, lambda: SmallCNN(size, src.num_classes).to(device), lambda x: _input(x, size, device))


def train_arm(arm: str, plan, arms: Arms, emit, should_stop) -> nn.Module:
    src, tgt = arms.src, arms.tgt
    g = torch.Generator().manual_seed(plan.seed)
    torch.manual_seed(plan.seed)
    net = arms.make_net()
    # One rate for all, the pretrained group included: at a tenth for it (a fine-tuning habit) DANN's
    # target accuracy on digits -> digits_m stayed at source-only's (0.437 vs 0.432, Lite0 stage3,
    # 60 per class, 8 epochs); at the full rate it rose above it (0.490 vs 0.476).
    opt = torch.optim.SGD(net.parameters(), lr=plan.lr, momentum=0.9, weight_decay=plan.weight_decay)
    labelled = tgt if arm == "target_only" else src
    bs = plan.batch_size
    steps_per_epoch = max(1, math.ceil(len(labelled.train_y) / bs))
    total = plan.epochs * steps_per_epoch
    t_last = 0.0
    weight = float(plan.option("domain_weight", DOMAIN_WEIGHT))
    for epoch in range(plan.epochs):
        net.train()
        order_l = torch.randperm(len(labelled.train_y), generator=g)
        n_other = len(tgt.train_y) if arm != "target_only" else len(src.train_y)
        order_o = torch.randperm(n_other, generator=g).repeat(math.ceil(len(order_l) / n_other) + 1)
        for s in range(steps_per_epoch):
            check_stop(should_stop)
            step = epoch * steps_per_epoch + s
            p = step / total
            lam = weight * dann_lambda(p) if arm == "dann" else 0.0
            for group in opt.param_groups:
                group["lr"] = dann_lr(p, plan.lr)
            net.grl.lam = lam
            il = order_l[s * bs:(s + 1) * bs]
            io = order_o[s * bs:s * bs + len(il)]
            if arm == "target_only":
                xs, xt = src.train_x[io], tgt.train_x[il]
                yl = tgt.train_y[il]
            else:
                xs, xt = src.train_x[il], tgt.train_x[io]
                yl = src.train_y[il]
            x = torch.cat([arms.encode(xs), arms.encode(xt)])
            device = x.device
            _, logits, dom = net(x)
            n_s = len(xs)
            lab_logits = logits[n_s:] if arm == "target_only" else logits[:n_s]
            d_true = torch.cat([torch.zeros(n_s, dtype=torch.long), torch.ones(len(xt), dtype=torch.long)]).to(device)
            loss = F.cross_entropy(lab_logits, yl.to(device)) + F.cross_entropy(dom, d_true)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            now = time.monotonic()
            if now - t_last > 0.25 or step == total - 1:
                t_last = now
                emit(Phase(arm, step + 1, total))
        sa, ta, da = scores(net, arms)
        emit(LabResult(EPOCH, {"arm": arm, "epoch": epoch, "source_acc": sa, "target_acc": ta, "domain_acc": da,
                               "lambda": dann_lambda((epoch + 1) / plan.epochs) if arm == "dann" else 0.0}))
    return net
