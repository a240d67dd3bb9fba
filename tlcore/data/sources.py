"""Loaders for each kind of source. Each returns full ImageSplits at the stored size."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError, DownloadRequired
from .base import ImageSplits
from .folder import load_folder
from .images import shrink, square, to_rgb_tensor
from .splits import stratified_split

ANTS_BEES_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"


def load_digits(root: Path, image_size: int, seed: int, val_fraction: float, path: Any = None) -> ImageSplits:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    # 0..16 intensities, ink bright on dark: scale to 0..255 so they look like MNIST.
    x = to_rgb_tensor(torch.from_numpy(np.round(d.images * (255 / 16)).astype(np.uint8)))
    y = torch.from_numpy(d.target).long()
    x = shrink(x, image_size)
    tr, va = stratified_split(y, val_fraction, seed)
    return ImageSplits(x[tr], y[tr], x[va], y[va], tuple(str(i) for i in range(10)), "digits")


# --- torchvision ---------------------------------------------------------------------------------
def _tv_class(name: str):
    import torchvision.datasets as tvd
    return getattr(tvd, name)


def _open(cls_name: str, title: str, source: str, root: Path, download: bool, **kw):
    cls = _tv_class(cls_name)
    try:
        return cls(root=str(root), download=False, **kw)
    except (RuntimeError, FileNotFoundError, OSError):
        if not download:
            raise DownloadRequired(title, source) from None
    try:
        return cls(root=str(root), download=True, **kw)
    except Exception as e:  # URLError, HTTPError, checksum errors: all mean "not here and cannot fetch"
        raise DownloadRequired(title, source, type(e).__name__) from None


def _arrays(ds, cls_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if cls_name in ("MNIST", "FashionMNIST"):
        return to_rgb_tensor(ds.data), torch.as_tensor(ds.targets).long()
    if cls_name == "CIFAR10":
        return to_rgb_tensor(ds.data, channels_last=True), torch.as_tensor(ds.targets).long()
    if cls_name in ("SVHN", "STL10"):
        return to_rgb_tensor(ds.data), torch.as_tensor(ds.labels).long()
    raise KeyError(cls_name)


def _decoded(ds, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Datasets of image files: decode each once (at load, never in the epoch loop)."""
    xs, ys = [], []
    for i in range(len(ds)):
        img, label = ds[i]
        img = img.convert("RGB")
        xs.append(square(img, min(image_size, *img.size)))
        ys.append(int(label))
    side = min(x.shape[-1] for x in xs)
    return torch.stack([x if x.shape[-1] == side else shrink(x[None], side)[0] for x in xs]), torch.tensor(ys)


def load_torchvision(cls_name: str, title: str, source: str, splits: tuple[dict, dict] | None,
                     root: Path, image_size: int, seed: int, val_fraction: float, download: bool = True) -> ImageSplits:
    root = Path(root)
    if splits is None:  # one split only (EuroSAT): we split it ourselves
        ds = _open(cls_name, title, source, root, download)
        x, y = _decoded(ds, image_size)
        tr, va = stratified_split(y, val_fraction, seed)
        return ImageSplits(x[tr], y[tr], x[va], y[va], tuple(ds.classes), cls_name.lower())
    parts = []
    for kw in splits:
        ds = _open(cls_name, title, source, root, download, **kw)
        try:
            x, y = _arrays(ds, cls_name)
            x = shrink(x, image_size)
        except KeyError:
            x, y = _decoded(ds, image_size)
        parts.append((x, y, ds))
    (trx, try_, ds), (vax, vay, _) = parts
    side = min(trx.shape[-1], vax.shape[-1])
    trx, vax = shrink(trx, side), shrink(vax, side)
    classes = getattr(ds, "classes", None) or [str(i) for i in range(int(max(try_.max(), vay.max())) + 1)]
    return ImageSplits(trx, try_, vax, vay, tuple(str(c) for c in classes), cls_name.lower())


def load_ants_bees(root: Path, image_size: int, seed: int, val_fraction: float, download: bool = True) -> ImageSplits:
    folder = Path(root) / "hymenoptera" / "hymenoptera_data"
    if not folder.is_dir():
        if not download:
            raise DownloadRequired("ants_bees", ANTS_BEES_URL)
        from torchvision.datasets.utils import download_and_extract_archive
        try:
            download_and_extract_archive(ANTS_BEES_URL, str(Path(root) / "hymenoptera"))
        except Exception as e:
            raise DownloadRequired("ants_bees", ANTS_BEES_URL, type(e).__name__) from None
    if not folder.is_dir():
        raise DatasetError(f"the ants/bees archive did not contain {folder.name}/")
    return load_folder(folder, image_size=image_size, seed=seed, val_fraction=val_fraction, name="ants_bees")
