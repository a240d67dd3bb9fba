"""The multi-task lab's network: one shared trunk, one head per task, and the two ways to weigh
the tasks' losses (fixed weights, or Kendall, Gal and Cipolla's learned uncertainty weighting).

The trunk is a small CNN whose width is the lab's "is the network big enough?" control: with
width w its last layer has 4*w channels, kept on a 2x2 grid of positions (16*w features), because
"left digit" and "right digit" are questions about where things are, which a global average would
throw away. Each head is one linear layer over that grid. What the trunk learns for one task is
then there for the other as it is: the digit detectors task A's many labels train work on the right
half too, and task B's head only has to learn where to read them. (A shared fully connected layer
between the grid and the heads, as before, was trained by A to read the left half alone; task B
with 5% of its labels then gained little from the sharing.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TASKS = ("A", "B")


GRID = 2   # positions per side the trunk keeps for the heads


class Trunk(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        # Pooling after the first block: the 16 px canvas at 8 px still holds both digits, at a quarter of the work.
        self.conv = nn.Sequential(*block(3, w), nn.MaxPool2d(2), *block(w, 2 * w), *block(2 * w, 4 * w),
                                  nn.AdaptiveAvgPool2d(GRID), nn.Flatten())
        self.features = 4 * w * GRID * GRID

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MultiTaskNet(nn.Module):
    """A trunk and a linear head for each task in `classes` ({"A": 10, "B": 4}, or one task for a
    single-task network). `uncertainty`: one learned log-variance s_i per task (Kendall et al. 2018)."""

    def __init__(self, width: int, classes: dict[str, int], uncertainty: bool = False) -> None:
        super().__init__()
        self.trunk = Trunk(width)
        self.heads = nn.ModuleDict({t: nn.Linear(self.trunk.features, n) for t, n in classes.items()})
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in classes}) if uncertainty else None

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)
        return {t: head(z) for t, head in self.heads.items()}


def to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> the network's input (BatchNorm follows, so a rough centring suffices)."""
    return (x.float() - 64.0) / 80.0


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def multitask_loss(net: MultiTaskNet, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                   masks: dict[str, torch.Tensor], weights: dict[str, float]
                   ) -> tuple[torch.Tensor | None, dict[str, float]]:
    """The loss to step on and each task's mean cross-entropy over its labelled examples.

    Fixed: sum of w_i * L_i. Uncertainty: sum of exp(-s_i) * L_i + s_i. A task leaves the sum
    (not just multiplied by 0) when its weight is 0 or the batch holds none of its labels: its head
    then gets no gradient at all, so the optimiser leaves it exactly as it was (weight decay too).
    Returns (None, ...) when no task contributes."""
    total, parts = None, {}
    for t in net.tasks:
        keep = masks[t]
        if not bool(keep.any()) or (net.log_vars is None and weights.get(t, 1.0) == 0.0):
            continue
        loss = F.cross_entropy(logits[t][keep].float(), targets[t][keep])
        parts[t] = float(loss.detach())
        if net.log_vars is not None:
            s = net.log_vars[t]
            term = torch.exp(-s) * loss + s
        else:
            term = weights.get(t, 1.0) * loss
        total = term if total is None else total + term
    return total, parts


def sigma(log_var: float) -> float:
    """The task's learned sigma from s = log sigma^2."""
    return math.exp(0.5 * log_var)
