"""Loaders for each kind of source. Each returns full ImageSplits at the stored size."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError, DownloadRequired
from .base import ImageSplits
from .folder import load_folder
from .images import common_side, shrink, square, stack_square, to_rgb, to_rgb_tensor
from .splits import stratified_split

ANTS_BEES_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
# What a failed fetch raises: no network (URLError, HTTPError and timeouts are all OSError), a
# checksum mismatch (torchvision's RuntimeError), an archive torn in transit. Nothing broader.
DOWNLOAD_ERRORS = (OSError, RuntimeError, zipfile.BadZipFile, tarfile.TarError, EOFError)


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
    except DOWNLOAD_ERRORS as e:  # "not here and cannot fetch"; anything else is a bug and must show
        raise DownloadRequired(title, source, type(e).__name__) from None


def _arrays(ds, cls_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if cls_name in ("MNIST", "FashionMNIST"):
        return to_rgb_tensor(ds.data), torch.as_tensor(ds.targets).long()
    if cls_name == "CIFAR10":
        return to_rgb_tensor(ds.data, channels_last=True), torch.as_tensor(ds.targets).long()
    if cls_name in ("SVHN", "STL10"):
        return to_rgb_tensor(ds.data), torch.as_tensor(ds.labels).long()
    raise KeyError(cls_name)


def _decode_each(ds, image_size: int) -> tuple[list[torch.Tensor], list[int]]:
    """Datasets of image files: decode each once (at load, never in the epoch loop), square and at
    most `image_size`; the common side is chosen once every image of the dataset has been seen."""
    xs, ys = [], []
    for i in range(len(ds)):
        img, label = ds[i]
        img = to_rgb(img)
        xs.append(square(img, min(image_size, *img.size)))
        ys.append(int(label))
    return xs, ys


def _decoded(datasets: list, image_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) per dataset, all stored at one side: min(requested, median native side over all of them)."""
    parts = [_decode_each(ds, image_size) for ds in datasets]
    side = common_side([x.shape[-1] for xs, _ in parts for x in xs], image_size)
    return [(stack_square(xs, side), torch.tensor(ys)) for xs, ys in parts]


def load_torchvision(cls_name: str, title: str, source: str, splits: tuple[dict, dict] | None,
                     root: Path, image_size: int, seed: int, val_fraction: float, download: bool = True) -> ImageSplits:
    root = Path(root)
    if splits is None:  # one split only (EuroSAT): we split it ourselves
        ds = _open(cls_name, title, source, root, download)
        [(x, y)] = _decoded([ds], image_size)
        tr, va = stratified_split(y, val_fraction, seed)
        return ImageSplits(x[tr], y[tr], x[va], y[va], tuple(ds.classes), cls_name.lower())
    datasets = [_open(cls_name, title, source, root, download, **kw) for kw in splits]
    try:
        parts = [_arrays(ds, cls_name) for ds in datasets]
        parts = [(shrink(x, image_size), y) for x, y in parts]
    except KeyError:  # not held as arrays: decode the files, both splits at one common side
        parts = _decoded(datasets, image_size)
    (trx, try_), (vax, vay) = parts
    side = min(trx.shape[-1], vax.shape[-1])
    trx, vax = shrink(trx, side), shrink(vax, side)
    ds = datasets[0]
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
        except DOWNLOAD_ERRORS as e:
            raise DownloadRequired("ants_bees", ANTS_BEES_URL, type(e).__name__) from None
    if not folder.is_dir():
        raise DatasetError(f"the ants/bees archive did not contain {folder.name}/")
    return load_folder(folder, image_size=image_size, seed=seed, val_fraction=val_fraction, name="ants_bees")
