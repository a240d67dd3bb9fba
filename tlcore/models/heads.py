"""New task-specific layers on top of a backbone."""
from __future__ import annotations

from torch import nn

MLP_HIDDEN = 256


def make_head(kind: str, in_features: int, num_classes: int) -> nn.Module:
    """A linear layer or a small MLP. The output layer starts near zero, so the first steps see
    near-uniform predictions and small gradients instead of random large ones flowing back into
    pretrained layers (the lecture notes' advice for replaced FC layers)."""
    if kind == "linear":
        out = head = nn.Linear(in_features, num_classes)
    elif kind == "mlp":
        out = nn.Linear(MLP_HIDDEN, num_classes)
        head = nn.Sequential(nn.Linear(in_features, MLP_HIDDEN), nn.ReLU(), nn.Dropout(0.2), out)
    else:
        raise ValueError(f"unknown head {kind!r}; choose linear or mlp")
    nn.init.normal_(out.weight, std=1e-3)
    nn.init.zeros_(out.bias)
    return head
