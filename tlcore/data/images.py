"""Decode and resize once, at load time: everything downstream sees uint8 [N,3,S,S] tensors.

`read_checked` is the one door for an image a person hands the server (Predict, Inside the CNN,
a webcam shot): its size and pixel count are read from the header and checked before any pixel is
decoded, JPEGs decode straight at a reduced scale, large images are reduced before they are
converted, and whatever cannot be read ends in one plain `BadImage` line, never a traceback.
"""
from __future__ import annotations

import io
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# What a person may hand the server: the formats browsers and cameras make (no PSD, EPS, ... parsers; JPEG opens MPO too).
PERSON_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
MAX_FILE_BYTES = 25 * 2**20
# A decoded image holds at most 4 bytes a pixel (RGBA): 40 MP is at most 160 MB, once, per image.
MAX_PIXELS = 40_000_000


class BadImage(DatasetError):
    """A file a person gave that is not an image this lab reads; the message says why, in one line."""


def _header(data: bytes, name: str) -> Image.Image:
    """The image's header only (no pixel decoded), checked against the byte and pixel caps."""
    if not data:
        raise BadImage(f"{name} is empty")
    if len(data) > MAX_FILE_BYTES:
        raise BadImage(f"{name} is {len(data) / 2**20:,.1f} MB: files up to {MAX_FILE_BYTES // 2**20} MB are read")
    try:
        with warnings.catch_warnings():   # PIL's warning fires below its error; our own cap, just below, is lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=PERSON_FORMATS)
    except Image.DecompressionBombError:
        raise BadImage(f"{name} declares more pixels than this lab reads ({MAX_PIXELS / 1e6:.0f} megapixels): "
                       "shrink it first") from None
    except Exception:  # noqa: BLE001 - any parser failure on hostile bytes is "not an image we read"
        raise BadImage(f"{name} is not an image this lab can read (JPEG, PNG, WebP, BMP, GIF, TIFF)") from None
    w, h = img.size
    if w * h > MAX_PIXELS or w < 1 or h < 1:
        raise BadImage(f"{name} is {w:,} x {h:,} pixels; images up to {MAX_PIXELS / 1e6:.0f} megapixels are read: "
                       "shrink it first")
    return img


def read_checked(data: bytes, size: int, name: str = "the file") -> torch.Tensor:
    """Bytes of an image file from a person -> uint8 [3, size, size] RGB, as the datasets are made
    (shorter side resized, centre crop). Greyscale, palette, CMYK, 16-bit and transparent images are
    converted the way a viewer shows them; what cannot be read raises BadImage with the reason."""
    img = _header(data, name)
    try:
        img.seek(0)
        if img.format in ("JPEG", "MPO"):
            img.draft("RGB", (size, size))   # decode at a reduced scale when it still leaves enough pixels
        img.load()
        factor = min(img.size) // (2 * size)
        if factor >= 2:   # reduce before converting: the conversions then copy a small image, not the big one
            try:
                img = img.reduce(factor)
            except (ValueError, NotImplementedError):
                pass      # a mode reduce() does not take (16-bit grey): converted at full size, within the cap
        rgb = to_rgb(img)
    except Exception as e:  # noqa: BLE001 - truncated or damaged data: one line, no traceback
        raise BadImage(f"{name} could not be decoded ({type(e).__name__}); it may be truncated or damaged") from None
    return square(rgb, size)


def check_photo(data: bytes, name: str = "the photo") -> None:
    """BadImage unless `data` is an image `read_checked` decodes (a webcam shot, before it is kept)."""
    read_checked(data, 8, name)


def decode(data: bytes) -> Image.Image:
    """Bytes -> RGB PIL image (first frame of a GIF; grey, palette and RGBA become RGB), for files the
    engine already vetted (folder.py checks each header first). Raises OSError/ValueError when unreadable.
    """
    img = Image.open(io.BytesIO(data))
    img.seek(0)
    img.load()  # forces the full decode so a truncated file fails here, not later
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB as a person would see it: 16-bit grey scaled to 8 bit, transparency on white."""
    if img.mode.startswith("I"):
        # 16-bit grey ("I;16", or "I" from older Pillow): convert() clips at 255, turning most pixels white.
        grey = np.asarray(img).astype(np.float64).clip(0, 65535) / 257
        img = Image.fromarray(grey.round().astype(np.uint8), "L")
    if "A" in img.getbands() or "transparency" in img.info:
        # Dropping alpha would show whatever colour hides under transparent pixels (often black);
        # viewers and browsers show them over a light page, so composite onto white.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


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


def resize_square(x: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 [3,S,S] -> [3,side,side], shrinking (antialiased) or enlarging as needed."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    y = F.interpolate(x[None].float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return y[0].round().clamp(0, 255).to(torch.uint8)


def common_side(sides: Sequence[int], requested: int) -> int:
    """The side a dataset of differently sized images is stored at: the smaller of the requested
    size and the median native side, so one tiny image cannot shrink all the others."""
    ordered = sorted(sides)
    return max(1, min(requested, ordered[(len(ordered) - 1) // 2]))


def stack_square(images: Sequence[torch.Tensor], side: int) -> torch.Tensor:
    """Square uint8 images of any sides -> one uint8 [N,3,side,side] tensor."""
    return torch.stack([resize_square(im, side) for im in images])


def to_rgb_tensor(x: torch.Tensor | np.ndarray, channels_last: bool = False) -> torch.Tensor:
    """Arrays as torchvision keeps them (N,H,W grey / N,H,W,3 / N,3,H,W) -> uint8 [N,3,H,W]."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.to(torch.uint8)
    if t.ndim == 3:
        return t[:, None].expand(-1, 3, -1, -1).contiguous()
    if channels_last:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()
