"""The depth lab's networks: a plain stack of 3x3 convolutions, or the same stack with shortcuts.

`depth` counts weight layers the way He et al. (2016) count them (their "34-layer plain"): a stem
convolution, (depth - 2) / 2 blocks of two 3x3 convolutions, and the linear classifier. Every
convolution keeps the width and the image's side, so depth is the one thing that changes.

A block is pre-activation (He et al., "Identity mappings in deep residual networks", 2016):
[BatchNorm] -> activation -> conv, twice. With shortcuts the block adds its input back, y = x + F(x),
and nothing touches the sum, so the gradient reaches every block through the identity unchanged.
The lecture notes' form applies the activation after the addition, y = sigma(F(x) + x): with ReLU
that passes the gradient where it is positive, but a sigmoid there would multiply the shortcut's
gradient by at most 1/4 at every block, and the lab compares activations. The plain network is the same
layers without the additions: a plain and a residual network of one seed start from the same
weights (but for the scaling below).

Weights start as each activation's textbook initialisation (Kaiming-normal with
`nn.init.calculate_gain`: sqrt(2) for ReLU, 5/3 for tanh, 1 for the sigmoid), so a vanishing
gradient is the activation's doing, not a poor start. Without BatchNorm a residual network's
signal would grow with every block it adds (the variances add), so there each block's last
convolution starts scaled by 1/sqrt(blocks) (Fixup's scaling, Zhang et al. 2019). A plain network
keeps them unscaled: scaled, its signal would shrink at every block instead.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("sigmoid", "tanh", "relu")


def activation(name: str) -> nn.Module:
    return {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[name]()


class Block(nn.Module):
    """Two pre-activation 3x3 convolutions, with the input added back when `shortcut`."""

    def __init__(self, width: int, act: str, batchnorm: bool, shortcut: bool) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.norm1 = nn.BatchNorm2d(width) if batchnorm else nn.Identity()
        self.act1 = activation(act)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=not batchnorm)
        self.norm2 = nn.BatchNorm2d(width) if batchnorm else nn.Identity()
        self.act2 = activation(act)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=not batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv2(self.act2(self.norm2(self.conv1(self.act1(self.norm1(x))))))
        return x + f if self.shortcut else f


class DepthNet(nn.Module):
    """stem conv -> blocks -> [BatchNorm] -> activation -> global average -> linear classifier."""

    def __init__(self, depth: int, width: int, act: str, batchnorm: bool, shortcut: bool, in_channels: int = 3,
                 classes: int = 10) -> None:
        super().__init__()
        self.depth, self.shortcut = depth, shortcut
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=not batchnorm)
        self.blocks = nn.Sequential(*(Block(width, act, batchnorm, shortcut) for _ in range(blocks_of(depth))))
        self.norm = nn.BatchNorm2d(width) if batchnorm else nn.Identity()
        self.act = activation(act)
        self.fc = nn.Linear(width, classes)
        self._init(act, batchnorm, shortcut)

    def _init(self, act: str, batchnorm: bool, shortcut: bool) -> None:
        gain = nn.init.calculate_gain(act)
        for layer in self.weight_layers():
            fan_in = layer.weight[0].numel()
            nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        nn.init.normal_(self.fc.weight, 0.0, 1 / math.sqrt(self.fc.in_features))   # no activation follows it
        if shortcut and not batchnorm:
            with torch.no_grad():
                for block in self.blocks:
                    block.conv2.weight.mul_(1 / math.sqrt(len(self.blocks)))

    def weight_layers(self) -> list[nn.Module]:
        """The `depth` layers with weights, input to output: what the gradient norms are measured on."""
        return [self.stem, *(c for b in self.blocks for c in (b.conv1, b.conv2)), self.fc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(self.blocks(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def blocks_of(depth: int) -> int:
    return (depth - 2) // 2


def grad_rms(net: DepthNet) -> list[float]:
    """Each weight layer's gradient norm per weight, input to output: ||dL/dW|| / sqrt(number of weights)
    (0 where none flowed). Per weight, because the layers differ in size (the stem reads 3 channels, the
    classifier 16 numbers) and SGD moves each weight by its own gradient: this is how fast a layer learns."""
    return [float(layer.weight.grad.norm()) / math.sqrt(layer.weight.numel()) if layer.weight.grad is not None
            else 0.0 for layer in net.weight_layers()]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
