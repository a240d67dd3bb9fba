"""Model specs and the one network shape the engine trains: ordered layer groups, then a head."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch import nn

HeadKind = Literal["linear", "mlp"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine and the model card need to know about one zoo entry.

    `groups` lists the layer groups bottom -> top as (name, module paths in the torchvision model,
    in forward order). A path may also be one of the stand-ins "@flatten" / "@relu" for a functional
    op of the original forward (e.g. ResNet's torch.flatten) so that running the groups in order
    reproduces the original network exactly. The last group ends with a flat feature vector of
    `feature_dim` values; `head` is the path of the original classifier our head replaces.
    """

    name: str
    family: str
    title: str
    build: Callable[[], nn.Module]               # bare architecture, random weights, ImageNet head
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    head: str
    feature_dim: int
    weights: Any = None                          # torchvision WeightsEnum member, or None (shipped file)
    load_shipped: Callable[[nn.Module], None] | None = None  # loads a file a package ships
    input_size: int = 224
    min_input_size: int = 32
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    meta: dict[str, Any] = field(default_factory=dict)  # params, top1, file_size_mb, depth, categories
    # Train in bf16 autocast on a CPU with native bf16 (AVX512-BF16/AMX)? Yes for plain and ConvNeXt
    # convolutions (1.3-1.7x); no for inverted residuals, whose depthwise + BatchNorm backward is
    # 30-40% slower in bf16 there (2-core Zen 4, torch 2.14, 96 px, batch 16; see DevicePolicy.for_model).
    cpu_bf16_training: bool = True
    # Where the shipped weights file lies (for its content hash in cache keys); None for torchvision's.
    shipped_path: Callable[[], str] | None = None
    # Modules of the original model that are neither in a group nor the head, on purpose, each with why:
    # their state-dict entries are dropped when pretrained weights load (GoogLeNet's untrained aux heads).
    dropped: tuple[tuple[str, str], ...] = ()
    # An auxiliary classifier used as an extra training loss (Inception v3): its module path, the group
    # after which it taps the features, its loss weight, and the smallest feature-map side it accepts.
    aux: str = ""
    aux_after: str = ""
    aux_weight: float = 0.4
    aux_min_side: int = 0

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g for g, _ in self.groups)


class Network(nn.Module):
    """A backbone cut into ordered layer groups, plus a head.

    `features(x, start, stop)` runs groups[start:stop]; the engine uses it to compute a frozen
    prefix once and train only what follows.
    """

    def __init__(self, groups: "OrderedDict[str, nn.Module]", head: nn.Module, feature_dim: int,
                 aux: nn.Module | None = None, aux_after: int = -1, aux_weight: float = 0.0,
                 aux_min_side: int = 0) -> None:
        super().__init__()
        self.groups = nn.ModuleDict(groups)
        self.head = head
        self.feature_dim = feature_dim
        # Inception's auxiliary classifier: taps the output of group `aux_after`; training only.
        self.aux = aux
        self.aux_after, self.aux_weight, self.aux_min_side = aux_after, aux_weight, aux_min_side

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self.groups.keys())

    def features(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for g in list(self.groups.values())[start:stop]:
            x = g(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
