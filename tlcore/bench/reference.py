"""The plain reference: the PyTorch loop a tutorial would write, measured beside the engine.

torchvision transforms (Resize, ToTensor, Normalize) run per image in a DataLoader over PIL images,
in fp32 and NCHW, and the whole network is forwarded at every step. Frozen layers are frozen with
`requires_grad` only, so their outputs are recomputed every epoch. Nothing here is tuned. It only
shares the engine's model zoo, so both sides compute the same function with the same weights, and
frozen BatchNorm stays in inference mode as it does in the engine.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ..data import ImageSplits
from ..models import MODELS, Network, build_network
from .report import Measure


# ---------------------------------------------------------------------------------------------
#                                          DataLoader
# ---------------------------------------------------------------------------------------------
class TutorialImages(Dataset):
    """Images handed out one at a time as PIL images, as torchvision datasets do."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: transforms.Compose) -> None:
        self.x = x.permute(0, 2, 3, 1).contiguous().numpy()   # N,H,W,3 uint8: what Image.fromarray takes
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def tutorial_loader(x: torch.Tensor, y: torch.Tensor, model: str, size: int, batch_size: int, *,
                    shuffle: bool, workers: int, seed: int = 0) -> DataLoader:
    spec = MODELS[model]
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize(spec.mean, spec.std)])
    return DataLoader(TutorialImages(x, y, tf), batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=workers > 0 and torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(seed))


def _forever(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from loader


@contextlib.contextmanager
def tutorial_backend():
    """cuDNN and matmul settings as a fresh process has them: the engine's device policy switches on
    cudnn.benchmark and TF32, and a tutorial does neither."""
    if not torch.cuda.is_available():
        yield
        return
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = \
        False, False, True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---------------------------------------------------------------------------------------------
#                                         Training
# ---------------------------------------------------------------------------------------------
def optimiser(net: Network, lr: float, weight_decay: float, factor: float) -> torch.optim.Optimizer:
    """AdamW with the engine's discriminative rates: each group lr / factor below the one above, head at lr."""
    groups = list(net.groups.values())
    params = [{"params": g.parameters(), "lr": lr / factor ** (len(groups) - i)} for i, g in enumerate(groups)]
    params.append({"params": net.head.parameters(), "lr": lr})
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def set_trainable(net: Network, top_groups: int) -> None:
    """Train the head and the top `top_groups` layer groups; freeze the rest with requires_grad."""
    net.train()
    groups = list(net.groups.values())
    for i, g in enumerate(groups):
        frozen = i < len(groups) - top_groups
        g.requires_grad_(not frozen)
        if frozen:
            g.eval()
    net.head.requires_grad_(True)


@dataclass(frozen=True)
class RefEpoch:
    epoch: int
    train_loss: float     # mean over the epoch's steps
    val_acc: float
    seconds: float        # this epoch, training and evaluation
    elapsed: float        # since `fit` was called (model build included), at the end of this epoch


def fit(model: str, data: ImageSplits, *, size: int, top_groups: Sequence[int], batch_size: int, lr: float,
        weight_decay: float, factor: float, device: torch.device, workers: int, seed: int = 0) -> list[RefEpoch]:
    """Train for len(top_groups) epochs; epoch e trains the head and the top `top_groups[e]` groups."""
    with Measure(device, memory=False) as total, tutorial_backend():
        torch.manual_seed(seed)
        net = build_network(model, data.num_classes, pretrained=True).to(device)
        opt = optimiser(net, lr, weight_decay, factor)
        train_dl = tutorial_loader(data.train_x, data.train_y, model, size, batch_size, shuffle=True,
                                   workers=workers, seed=seed)
        val_dl = tutorial_loader(data.val_x, data.val_y, model, size, batch_size, shuffle=False, workers=workers)
        out: list[RefEpoch] = []
        for epoch, k in enumerate(top_groups):
            with Measure(device, memory=False) as ep:
                set_trainable(net, k)
                losses = []
                for x, y in train_dl:
                    x, y = x.to(device), y.to(device)
                    loss = F.cross_entropy(net(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    losses.append(loss.item())
                acc = accuracy(net, val_dl, device)
            out.append(RefEpoch(epoch, float(np.mean(losses)), acc, ep.seconds, total.lap()))
    return out


@torch.no_grad()
def accuracy(net: nn.Module, loader: DataLoader, device: torch.device) -> float:
    net.eval()
    right = total = 0
    for x, y in loader:
        pred = net(x.to(device)).argmax(1).cpu()
        right += int((pred == y).sum())
        total += len(y)
    return right / max(total, 1)


# ---------------------------------------------------------------------------------------------
#                                        Throughput
# ---------------------------------------------------------------------------------------------
def train_throughput(net: Network, loader: DataLoader, device: torch.device, *, warmup: int, steps: int,
                     lr: float, weight_decay: float, factor: float) -> Measure:
    """Fine-tune everything for `steps` steps after `warmup` untimed ones; loading is inside the timing."""
    with tutorial_backend():
        net.to(device)
        set_trainable(net, len(net.groups))
        opt = optimiser(net, lr, weight_decay, factor)
        batches = _forever(loader)

        def step() -> None:
            x, y = next(batches)
            loss = F.cross_entropy(net(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(warmup):
            step()
        with Measure(device, memory=False, images=steps * loader.batch_size) as m:
            for _ in range(steps):
                step()
    return m


@torch.no_grad()
def infer_throughput(net: Network, loader: DataLoader, device: torch.device, *, warmup: int, batches: int) -> Measure:
    """Backbone features for `batches` batches after `warmup` untimed ones (no_grad, as tutorials write)."""
    with tutorial_backend():
        net.to(device).eval()
        it = _forever(loader)
        for _ in range(warmup):
            net.features(next(it)[0].to(device))
        with Measure(device, memory=False, images=batches * loader.batch_size) as m:
            for _ in range(batches):
                net.features(next(it)[0].to(device))
    return m
