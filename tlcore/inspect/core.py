"""The computations of the Inside-the-CNN page; tensors in, tensors / arrays out."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import Network


def pool(y: torch.Tensor) -> torch.Tensor:
    """One vector per image ("CNN code"): global average over the spatial axes of a feature map, flat
    vectors as they are. The probe lab and the map of CNN codes both read a group's output this way."""
    if y.ndim == 4:
        return F.adaptive_avg_pool2d(y, 1).flatten(1)
    return y.flatten(1)


# --- filters ---------------------------------------------------------------------------------------
def first_conv(net: Network) -> nn.Conv2d:
    """The first convolution that reads the image (3 input channels)."""
    for m in net.groups.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return m
    raise ValueError("this network has no convolution on the RGB image")


def filters(net: Network) -> torch.Tensor:
    """First-layer kernels [C_out, k, k, 3] scaled to [0, 1] together (one scale, so filters compare)."""
    w = first_conv(net).weight.detach().float().cpu()
    w = w - w.mean()
    w = w / (2 * w.abs().max().clamp_min(1e-12)) + 0.5
    return w.permute(0, 2, 3, 1).clamp(0, 1)


def filter_change(before: Network, after: Network) -> torch.Tensor:
    """Per filter: how far fine-tuning moved it, relative to its pretrained norm."""
    a = first_conv(before).weight.detach().float().cpu().flatten(1)
    b = first_conv(after).weight.detach().float().cpu().flatten(1)
    return (b - a).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)


# --- activations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupMaps:
    group: str
    channels: tuple[int, ...]        # the strongest channels, strongest first
    maps: torch.Tensor               # [k, h, w] scaled to [0, 1] per map
    shape: tuple[int, ...]           # the group's whole output shape (C, H, W) or (D,)


@torch.no_grad()
def activations(net: Network, x: torch.Tensor, top: int = 8) -> list[GroupMaps]:
    """For one normalised image [1,3,H,W]: each group's `top` channels by mean activation.
    Groups that end in a flat vector are skipped (there is no map to show)."""
    net.eval()
    out: list[GroupMaps] = []
    y = x
    for name, g in net.groups.items():
        y = g(y)
        if y.ndim != 4:
            continue
        a = y[0].float()
        strength = a.mean(dim=(1, 2))
        idx = strength.argsort(descending=True)[:top]
        m = a[idx]
        lo = m.flatten(1).min(1).values.view(-1, 1, 1)
        hi = m.flatten(1).max(1).values.view(-1, 1, 1)
        out.append(GroupMaps(name, tuple(int(i) for i in idx), ((m - lo) / (hi - lo).clamp_min(1e-12)).cpu(),
                             tuple(a.shape)))
    return out


# --- CNN codes -------------------------------------------------------------------------------------
@torch.no_grad()
def cnn_codes(net: Network, images: torch.Tensor, prep, batch: int = 64) -> np.ndarray:
    """The backbone's pooled output for uint8 images: one "CNN code" per image."""
    net.eval()
    return torch.cat([pool(net.features(prep(images[i:i + batch]))).float().cpu()
                      for i in range(0, len(images), batch)]).numpy()


def embed_2d(codes: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """[N, D] -> [N, 2] with PCA or t-SNE (scikit-learn), after standardising."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    z = StandardScaler().fit_transform(codes)
    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE
        z = PCA(min(50, z.shape[1], len(z)), random_state=seed).fit_transform(z)
        return TSNE(2, perplexity=min(30.0, max(5.0, (len(z) - 1) / 3)), init="pca", random_state=seed).fit_transform(z)
    raise ValueError(f"unknown method {method!r}: pca or tsne")


# --- Grad-CAM --------------------------------------------------------------------------------------
def last_conv_group(net: Network) -> int:
    """Index of the highest group whose output is still a feature map (at a small probe size)."""
    side = 64
    with torch.no_grad():
        p = next(net.parameters())
        y = torch.zeros(1, 3, side, side, device=p.device, dtype=p.dtype)
        last = 0
        for i, g in enumerate(net.groups.values()):
            was = g.training
            g.eval()
            y = g(y)
            g.train(was)
            if y.ndim == 4:
                last = i
    return last


def _split(net: Network, x: torch.Tensor, at: int) -> tuple[torch.Tensor, callable]:
    """(feature map A after group `at`, the rest of the network as a function of A)."""
    a = net.features(x, 0, at + 1)
    return a, lambda m: net.head(net.features(m, at + 1, None))


def grad_cam_weights(net: Network, x: torch.Tensor, target: int, at: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(channel weights alpha_k = spatial mean of d score / d A_k, the feature map A) for one image."""
    net.eval()
    at = last_conv_group(net) if at is None else at
    with torch.no_grad():
        a = net.features(x, 0, at + 1)
    a = a.detach().requires_grad_(True)
    score = net.head(net.features(a, at + 1, None))[0, target]
    (grad,) = torch.autograd.grad(score, a)
    return grad[0].mean(dim=(1, 2)), a.detach()


def grad_cam(net: Network, x: torch.Tensor, target: int | None = None, at: int | None = None
             ) -> tuple[np.ndarray, int, np.ndarray]:
    """(heat map [H, W] in [0, 1] at the input's size, the class explained, the class probabilities)."""
    net.eval()
    with torch.no_grad():
        probs = torch.softmax(net(x).float(), 1)[0]
    target = int(probs.argmax()) if target is None else int(target)
    alpha, a = grad_cam_weights(net, x, target, at)
    cam = F.relu((alpha.view(-1, 1, 1) * a[0]).sum(0))
    cam = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam / cam.max().clamp_min(1e-12)
    return cam.cpu().numpy(), target, probs.cpu().numpy()
