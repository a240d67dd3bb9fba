"""The gradient reversal layer of Ganin & Lempitsky (2015): the identity on the way forward, and on
the way back the gradient times -lambda. Put before a domain classifier, it makes the features
below it learn to *confuse* that classifier while the classifier itself learns to tell the
domains apart."""
from __future__ import annotations

import math

import torch
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = float(lam)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lam * grad, None


def reverse_gradient(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    return _Reverse.apply(x, lam)


class GradientReversal(nn.Module):
    """`lam` is set from outside as training goes (see `dann_lambda`)."""

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        self.lam = lam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.lam)


def dann_lambda(p: float, gamma: float = 10.0) -> float:
    """The paper's schedule over training progress p in [0, 1]: 2 / (1 + exp(-gamma p)) - 1, from 0
    (the domain classifier is still guessing; its gradients would be noise) up towards 1."""
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def dann_lr(p: float, lr0: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """The paper's annealed learning rate: lr0 / (1 + alpha p) ** beta."""
    return lr0 / (1.0 + alpha * p) ** beta
