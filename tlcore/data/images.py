"""Decode and resize once, at load time: everything downstream sees uint8 [N,3,S,S] tensors."""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def decode(data: bytes) -> Image.Image:
    """Bytes -> RGB PIL image (first frame of a GIF; grey, palette and RGBA become RGB).

    Raises OSError/ValueError for unreadable or truncated files; callers count and skip those.
    """
    img = Image.open(io.BytesIO(data))
    img.seek(0)
    img.load()  # forces the full decode so a truncated file fails here, not later
    if img.mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "LA", "PA") else img.convert("RGB")
    return img


def square(img: Image.Image, side: int) -> torch.Tensor:
    """Resize the shorter side to `side` and centre-crop: uint8 [3, side, side]."""
    w, h = img.size
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
    left, top = (nw - side) // 2, (nh - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def shrink(x: torch.Tensor, side: int, chunk: int = 2048) -> torch.Tensor:
    """uint8 [N,3,H,W] -> at most `side` px (square: shorter side then centre crop). Never upscales:
    the engine upscales per batch on the device so the stored dataset stays small."""
    h, w = x.shape[-2:]
    if max(h, w) <= side and h == w:
        return x
    target = min(side, h, w)
    out = []
    for start in range(0, x.shape[0], chunk):
        b = x[start:start + chunk].float()
        scale = target / min(h, w)
        nh, nw = max(target, round(h * scale)), max(target, round(w * scale))
        b = F.interpolate(b, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - target) // 2, (nw - target) // 2
        out.append(b[..., top:top + target, left:left + target].round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def to_rgb_tensor(x: torch.Tensor | np.ndarray, channels_last: bool = False) -> torch.Tensor:
    """Arrays as torchvision keeps them (N,H,W grey / N,H,W,3 / N,3,H,W) -> uint8 [N,3,H,W]."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.to(torch.uint8)
    if t.ndim == 3:
        return t[:, None].expand(-1, 3, -1, -1).contiguous()
    if channels_last:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()
