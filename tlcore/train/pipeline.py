"""Batches from uint8 tensors to normalised model input, on the device, whole batches at a time.

Images stay stored small (uint8, native size); upscaling, augmentation and normalisation happen
here per batch so no per-image Python runs inside the epoch loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..device import DevicePolicy


class Preprocess:
    """uint8 [B,3,h,w] (any device) -> float [B,3,size,size] normalised, on the policy's device."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...], policy: DevicePolicy) -> None:
        self.size, self.policy = size, policy
        dev = policy.device
        # Fold /255 into the normalisation: one multiply-add per pixel.
        self.scale = (1.0 / (255.0 * torch.tensor(std, device=dev))).view(1, 3, 1, 1)
        self.shift = (-torch.tensor(mean, device=dev) / torch.tensor(std, device=dev)).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor, *, augment: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        x = geometry(x.to(self.policy.device, non_blocking=True).float(), self.size, augment, generator)
        x = x * self.scale + self.shift
        return x.contiguous(memory_format=self.policy.memory_format())


def geometry(x: torch.Tensor, size: int, augment: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """float [B,3,h,w] -> [B,3,size,size]: a random crop and flip per image when augmenting, else a resize."""
    if augment:
        return random_resized_crop_flip(x, size, generator)
    if x.shape[-1] != size or x.shape[-2] != size:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
    return x


def what_the_network_sees(x: torch.Tensor, size: int, augment: bool,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B,3,h,w] -> uint8 [B,3,size,size]: the training batch's pixels before normalisation (which
    only rescales each channel), through the very crops, flips and resizing training applies."""
    return geometry(x.float(), size, augment, generator).clamp(0, 255).round().to(torch.uint8)


def random_resized_crop_flip(x: torch.Tensor, size: int, generator: torch.Generator | None = None,
                             scale: tuple[float, float] = (0.35, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """RandomResizedCrop + horizontal flip for a whole batch in one grid_sample.

    Each sample gets its own crop (area fraction in `scale`, aspect in `ratio`) and a coin-flip
    mirror, expressed as an affine sampling grid, so the batch costs one kernel, not B crops.
    """
    b = x.shape[0]
    r = torch.rand(b, 5, generator=generator).to(x.device)
    area = scale[0] + (scale[1] - scale[0]) * r[:, 0]
    log_r = torch.log(torch.tensor(ratio))
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * r[:, 1].cpu()).to(x.device)
    sx = torch.sqrt(area * aspect).clamp(max=1.0)
    sy = torch.sqrt(area / aspect).clamp(max=1.0)
    tx = (1 - sx) * (2 * r[:, 2] - 1)
    ty = (1 - sy) * (2 * r[:, 3] - 1)
    flip = torch.where(r[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = sx * flip
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
