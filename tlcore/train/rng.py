"""A run's randomness is its own: explicit generators, never torch's global RNG while training.

Two runs may train at once in one process (threads of a notebook, a CLI, a test), so anything that
draws during training (shuffling, augmentation, dropout) draws from generators the run made from
its seed. Building a network is the one place that must use the global RNG (torchvision's
initialisers do); it happens under a lock, inside a forked RNG state seeded from the plan.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch
from torch import nn

_GLOBAL_RNG = threading.Lock()

# Offsets keep the streams apart: the same seed must not give shuffling and dropout the same draws.
SHUFFLE, DROPOUT, INIT = 0, 2, 3


@contextlib.contextmanager
def seeded(seed: int, stream: int = INIT) -> Iterator[None]:
    """Run a block that uses torch's global RNG (model constructors) reproducibly and without
    disturbing anyone else's draws: one block at a time, the global state restored afterwards."""
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 8 + stream)
        yield


def generator(seed: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 8 + stream)


class SeededDropout(nn.Module):
    """nn.Dropout that draws its mask from a generator given at run time (see `use_generator`)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self._gen: torch.Generator | None = None   # not a buffer: copies and state dicts ignore it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self._gen)
        return x * keep / (1 - self.p)

    def __deepcopy__(self, memo):   # torch.Generator cannot be deep-copied; a copy gets none
        new = SeededDropout(self.p)
        new.training = self.training
        return new


def seed_dropout(net: nn.Module, gen: torch.Generator) -> int:
    """Swap every nn.Dropout in `net` for a SeededDropout drawing from `gen`; returns how many."""
    swapped = 0
    for module in net.modules():
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                new = SeededDropout(child.p)
                new.training = child.training
                setattr(module, name, new)
                child = new
            if isinstance(child, SeededDropout):
                child._gen = gen
                swapped += 1
    return swapped
