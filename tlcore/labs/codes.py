"""Frozen CNN codes for the labs that learn from very few labels (few-shot) or none (zero-shot).

Both read the pretrained network the same way: the input of its top layer group is computed once
over both splits and cached by the engine (`phases.source_at`, keyed by data, weights, image size and
cut), so a second run, another seed or the other lab skips the backbone. From that cached map, the top
group gives the "CNN codes" (its pooled output), and few-shot fine-tuning trains the top group itself
on it: no lab runs the frozen groups again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import PlanError
from ..inspect.core import pool
from ..models.base import Network
from ..train.features import default_cache
from ..train.phases import Prepared, Source, build, source_at

CODE_BATCH = 512   # cached maps through the top group per batch: bounds memory on a large upload


@dataclass(frozen=True)
class Codes:
    prepared: Prepared
    net: Network            # pretrained, inference mode, on the device
    maps: Source            # the top group's input over both splits (cached)
    layer: str              # the group whose pooled output `train` / `val` are
    train: np.ndarray       # [n_train, dim] float32
    val: np.ndarray


def check_plan(plan, kind: str) -> None:
    """Both labs read the cached input of the top group: the plan must say exactly that."""
    if plan.strategy != "fine_tune_top" or plan.top_groups != 1 or plan.truncate_after:
        raise PlanError("strategy", f"the {kind} lab reads the pretrained network's top layer group: "
                                    "strategy fine_tune_top, top_groups 1, no truncation")
    if plan.augment or plan.bn != "frozen":
        raise PlanError("augment" if plan.augment else "bn",
                        f"the {kind} lab caches the frozen groups' outputs once: no augmentation, BatchNorm frozen")


@torch.no_grad()
def through(net: Network, start: int, stop: int | None, x: torch.Tensor) -> torch.Tensor:
    """groups[start:stop] over cached maps, batch by batch, pooled to one vector per image (CPU float32)."""
    net.eval()
    return torch.cat([pool(net.features(x[i:i + CODE_BATCH].float(), start, stop)).float().cpu()
                      for i in range(0, len(x), CODE_BATCH)]) if len(x) else torch.zeros(0, 0)


def frozen_codes(prepared: Prepared, emit, should_stop, layer: str = "top") -> Codes:
    """The pretrained network's pooled output of `layer` (the top group, or the group just below it)
    over both splits, from the cached input of the top group."""
    net = build(prepared, emit).eval()
    names = net.group_names
    if layer not in names[-2:]:
        raise PlanError("options.layer", f"codes are read at {names[-1]} or {names[-2]}, not {layer!r}")
    cut = len(names) - 1
    maps = source_at(net, cut, prepared, default_cache(), emit, should_stop)
    if not maps.cached:   # too large for the cache's budget: the plan's limits keep labs within it
        raise PlanError("per_class", "these images are too many to cache the frozen features; "
                                     "choose fewer images per class")
    if layer == names[-1]:
        tr, va = through(net, cut, None, maps.train), through(net, cut, None, maps.val)
    else:
        tr, va = pool(maps.train.float()).cpu(), pool(maps.val.float()).cpu()
    return Codes(prepared, net, maps, layer, tr.numpy(), va.numpy())
