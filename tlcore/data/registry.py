"""The dataset registry and the one entry point, `load_dataset`."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from collections import OrderedDict
from functools import partial
from pathlib import Path

import torch

from ..errors import DatasetError
from ..paths import cache_dir, data_dir
from .base import DatasetSpec, ImageSplits
from .folder import load_folder
from .sources import ANTS_BEES_URL, load_ants_bees, load_digits, load_torchvision
from .splits import subsample

DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    DATASETS[spec.name] = spec
    return spec


# Availability answers, keyed by (dataset, data root). Asking means constructing the torchvision
# dataset, which reads it all (about a second for MNIST + Fashion-MNIST), and the Data page asks on
# every rerun. Files do not vanish under a running app, so "yes" is kept; "no" is kept briefly so
# a download finished elsewhere (another session, the CLI) shows up within seconds.
_AVAILABLE: dict[tuple[str, str], float] = {}   # key -> monotonic time of a "no"; inf for a "yes"
NEGATIVE_TTL_S = 10.0


def _available_key(name: str, root: Path) -> tuple[str, str]:
    return name, str(Path(root).expanduser().resolve())


def mark_available(name: str, root: Path) -> None:
    """Record that `name` loaded from `root`: later availability checks need not open it again."""
    _AVAILABLE[_available_key(name, root)] = math.inf


def _tv_offline(name: str, cls_name: str, splits) -> "callable":
    def opens(root: Path) -> bool:
        from .sources import _tv_class
        try:
            for kw in splits or ({},):
                _tv_class(cls_name)(root=str(root), download=False, **kw)
            return True
        except Exception:
            return False

    def check(root: Path) -> bool:
        key = _available_key(name, root)
        seen = _AVAILABLE.get(key)
        if seen == math.inf:
            return True
        if seen is not None and time.monotonic() - seen < NEGATIVE_TTL_S:
            return False
        ok = opens(root)
        _AVAILABLE[key] = math.inf if ok else time.monotonic()
        return ok
    return check


def _tv(name, cls_name, title, description, licence, classes, native, url, splits) -> None:
    register(DatasetSpec(name, title, description, "torchvision", licence, tuple(classes), native, url,
                         load=partial(load_torchvision, cls_name, title, url, splits),
                         available_offline=_tv_offline(name, cls_name, splits)))


register(DatasetSpec(
    "digits", "Digits (8x8, bundled)", "1,797 tiny handwritten digits that ship with scikit-learn: works offline.",
    "bundled", "BSD-3 (scikit-learn); UCI ML hand-written digits", tuple(str(i) for i in range(10)), 8, "",
    load=load_digits, available_offline=lambda root: True))
_TRAIN_TEST = ({"train": True}, {"train": False})
_tv("mnist", "MNIST", "MNIST", "70,000 handwritten digits, 28x28 grey.", "CC BY-SA 3.0 (Y. LeCun, C. Cortes)",
    [str(i) for i in range(10)], 28, "https://ossci-datasets.s3.amazonaws.com/mnist/", _TRAIN_TEST)
_tv("fashion_mnist", "FashionMNIST", "Fashion-MNIST", "70,000 Zalando clothing photos in 10 classes, 28x28 grey.",
    "MIT (Zalando Research)", ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                               "Bag", "Ankle boot"], 28,
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", _TRAIN_TEST)
_tv("cifar10", "CIFAR10", "CIFAR-10", "60,000 small colour photos of 10 everyday classes, 32x32.",
    "research use (A. Krizhevsky)", ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                     "truck"], 32, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", _TRAIN_TEST)
_tv("svhn", "SVHN", "SVHN", "House numbers from Street View, 32x32 colour digits.", "non-commercial use (Stanford)",
    [str(i) for i in range(10)], 32, "http://ufldl.stanford.edu/housenumbers/", ({"split": "train"}, {"split": "test"}))
_tv("stl10", "STL10", "STL-10", "13,000 labelled 96x96 photos of 10 classes (ImageNet-like).", "research use (Stanford)",
    ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"], 96,
    "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", ({"split": "train"}, {"split": "test"}))
_tv("flowers102", "Flowers102", "Flowers-102", "102 kinds of British flowers, about 20 photos each for training.",
    "research use (VGG, Oxford)", [], 0, "https://thor.robots.ox.ac.uk/datasets/flowers-102/",
    ({"split": "train"}, {"split": "val"}))
_tv("oxford_pets", "OxfordIIITPet", "Oxford-IIIT Pet", "37 cat and dog breeds, about 100 photos each.",
    "CC BY-SA 4.0 (VGG, Oxford)", [], 0, "https://thor.robots.ox.ac.uk/datasets/pets/",
    ({"split": "trainval"}, {"split": "test"}))
_tv("eurosat", "EuroSAT", "EuroSAT", "27,000 Sentinel-2 satellite tiles of 10 land-use classes, 64x64: far from ImageNet.",
    "MIT (P. Helber et al.)", ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                               "PermanentCrop", "Residential", "River", "SeaLake"], 64,
    "https://huggingface.co/datasets/torchgeo/eurosat/", None)
register(DatasetSpec(
    "ants_bees", "Ants vs bees", "The classic PyTorch transfer-learning tutorial set: about 120 photos of each insect.",
    "url", "research use (PyTorch tutorial, from ImageNet)", ("ants", "bees"), 0, ANTS_BEES_URL,
    load=load_ants_bees, available_offline=lambda root: (Path(root) / "hymenoptera" / "hymenoptera_data").is_dir()))
register(DatasetSpec(
    "folder", "Your images", "A folder or .zip with one sub-folder of images per class (or train/ and val/ inside).",
    "folder", "yours", (), 0, "", load=None, available_offline=lambda root: True))


# --- loading with caches ---------------------------------------------------------------------------
_MEMORY: "OrderedDict[str, ImageSplits]" = OrderedDict()   # keyed by content identity; a few entries
_MEMORY_ENTRIES = 4


def _tree_digest(root: Path) -> str:
    """Every file under `root` by relative path, size and mtime. A directory's own mtime changes only
    when its direct entries do, so a photo added to a class folder would not change it."""
    rows = []
    for dirpath, _dirs, names in os.walk(root):  # does not follow directory links, like the loader
        for n in names:
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except FileNotFoundError:  # removed while we walked: it will not be loaded either
                continue
            rows.append((os.path.relpath(p, root), st.st_size, st.st_mtime_ns))
    return hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()


# The validation images belong to the dataset, not to a plan: every split we make ourselves (digits,
# folders, EuroSAT) uses this seed, so runs with different plan seeds are scored on the same images.
SPLIT_SEED = 0


def _zip_digest(path: Path) -> str:
    """A zip's entries by name, size and CRC-32: its content, read from the central directory alone."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as zf:
            rows = sorted((i.filename, i.file_size, i.CRC) for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        st = path.stat()   # not a readable zip: the loader will say why; key on what we can see
        rows = [("?", st.st_size, st.st_mtime_ns)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _identity(name: str, image_size: int, val_fraction: float, path: Path | None) -> str:
    """The full dataset's content identity: what it is made of, never where a plan's seed points."""
    # v3: folder images are read class by class, and JPEGs decode at a reduced scale where it suffices.
    # v4: content identity for zips, and a split that no longer depends on the plan's seed.
    ident: dict = {"name": name, "size": image_size, "val": val_fraction, "split_seed": SPLIT_SEED, "v": 4}
    if path is not None:
        ident["path"] = str(path.resolve())
        ident["content"] = _tree_digest(path) if path.is_dir() else _zip_digest(path)
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
    return f"{source_tag(path)}-{digest}" if path is not None else digest


def source_tag(path: str | Path) -> str:
    """What every cache file made from a folder dataset starts with (its decoded copy, its features), so
    deleting an upload can delete them too (tlcore.uploads.delete): the hash of where it lies."""
    return "src" + hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12]


def tag_of(fingerprint: str) -> str:
    """The source tag a fingerprint carries ("" for a registry dataset's)."""
    head = fingerprint.split("-", 1)[0]
    return head if head.startswith("src") and head != fingerprint else ""


def subsample_fingerprint(full: str, per_class: int | None, imbalance: float, seed: int) -> str:
    """The training subsample on top of the full dataset's identity (the seed picks which images)."""
    if per_class is None and imbalance == 1.0:
        return full
    blob = json.dumps({"full": full, "per_class": per_class, "imbalance": imbalance, "seed": seed})
    tag = tag_of(full)
    return (f"{tag}-" if tag else "") + hashlib.sha256(blob.encode()).hexdigest()[:24]


def _save_cache(splits: ImageSplits, file: Path) -> None:
    """Write the decoded dataset atomically under a name no other thread or process uses. A cache
    that cannot be written (disk full, read-only) only makes the next load slower: not an error."""
    payload = {k: getattr(splits, k) for k in ("train_x", "train_y", "val_x", "val_y", "classes", "name", "notes")}
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.stem}.", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, file)  # atomic: nothing half-written
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(e, OSError):
            raise


def _full(name: str, image_size: int, val_fraction: float, root: Path, path: Path | None,
          download: bool, display_name: str | None = None) -> ImageSplits:
    """Whole train/val splits at the stored size, from memory, the disk cache, or the source."""
    spec = DATASETS[name]
    key = _identity(name, image_size, val_fraction, path)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    file = cache_dir() / "datasets" / f"{name}-{key}.pt"
    splits = None
    if spec.source != "bundled" and file.exists():
        try:
            splits = ImageSplits(**torch.load(file, weights_only=True))
        except Exception:
            splits = None  # a torn cache file is only a miss
    if splits is None:
        if name == "folder":
            splits = load_folder(path, image_size=image_size, seed=SPLIT_SEED, val_fraction=val_fraction,
                                 display_name=display_name)
        elif spec.source == "bundled":
            splits = spec.load(root, image_size, SPLIT_SEED, val_fraction)
        else:
            splits = spec.load(root, image_size, SPLIT_SEED, val_fraction, download=download)
            mark_available(name, root)  # it is on disk now (perhaps just downloaded)
        if spec.source != "bundled":
            _save_cache(splits, file)
    splits = dataclasses.replace(splits, fingerprint=key)
    _MEMORY[key] = splits
    while len(_MEMORY) > _MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return splits


def load_dataset(name: str, *, image_size: int = 224, per_class: int | None = None, imbalance: float = 1.0,
                 seed: int = 0, val_fraction: float = 0.2, root: Path | str | None = None,
                 path: str | Path | None = None, download: bool = True,
                 display_name: str | None = None) -> ImageSplits:
    """Any registered dataset as ImageSplits. `per_class` and `imbalance` shape the training split
    only, and `seed` only picks which training images they keep: the validation images are the
    dataset's own, whatever the options, so every run on a dataset is scored on the same images.
    `display_name` is what error messages call a folder dataset (an upload's file name); default: the path."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "folder" and not path:
        raise DatasetError("the folder dataset needs a path to a directory or .zip")
    if name == "folder" and not Path(path).exists():   # before anything stats it for the cache key
        raise DatasetError(f"{display_name or path} does not exist")
    full = _full(name, image_size, val_fraction, Path(root) if root else data_dir(), Path(path) if path else None,
                 download, display_name)
    keep = subsample(full.train_y, full.num_classes, per_class, imbalance, seed)
    if len(keep) == len(full.train_y):
        return full
    return dataclasses.replace(full, train_x=full.train_x[keep], train_y=full.train_y[keep],
                               fingerprint=subsample_fingerprint(full.fingerprint, per_class, imbalance, seed),
                               whole=full, rows=keep)


def load_plan_data(plan, progress=None, *, root: Path | str | None = None) -> ImageSplits:
    """The one map from a plan to its data: every page, the job queue and the engine call this.

    `progress(done, total)` hears the bytes of a first-use download."""
    from .. import downloads

    with downloads.reporting(progress) if progress is not None else contextlib.nullcontext():
        data = load_dataset(plan.dataset, image_size=plan.resolved_image_size(), per_class=plan.per_class,
                            imbalance=plan.imbalance, seed=plan.seed, path=plan.dataset_path or None, root=root,
                            display_name=plan.dataset_name or None)
    if plan.dataset_name:
        data = dataclasses.replace(data, name=plan.dataset_name)
    return data


def class_counts(y: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(torch.as_tensor(y), minlength=num_classes).tolist()


def sample_grid(splits: ImageSplits, per_class: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `per_class` training images of each class, for a preview grid."""
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(splits.num_classes):
        idx = torch.nonzero(splits.train_y == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    idx = torch.cat(picks)
    return splits.train_x[idx], splits.train_y[idx]


def dataset_rows(root: Path | str | None = None) -> list[dict]:
    root = Path(root) if root else data_dir()
    return [{"name": s.name, "title": s.title, "source": s.source, "classes": len(s.classes) or "?",
             "native_px": s.native_size or "varies", "offline": "yes" if s.available_offline(root) else "needs download",
             "licence": s.licence} for s in DATASETS.values()]
