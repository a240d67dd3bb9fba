"""A learner's own images: a directory or a .zip of class folders, in either layout.

  <class>/<image>                 we split train/val ourselves (stratified, seeded), or
  train/<class>/<image> + val/<class>/<image>

Zips are read in memory and never extracted, so a hostile archive cannot write anything; it is
still refused with a clear message (path traversal, links, zip bombs) so the learner knows why.
"""
from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import torch

from ..errors import DatasetError
from .base import ImageSplits
from .images import IMAGE_EXTENSIONS, decode, shrink, square
from .splits import stratified_split

MAX_UNPACKED_BYTES = 2 * 2**30
MAX_FILES = 50_000
VAL_DIRS = ("val", "valid", "validation", "test")


@dataclass(frozen=True)
class _Entry:
    parts: tuple[str, ...]           # path inside the archive / folder, split
    read: Callable[[], bytes]


def _zip_entries(path: Path, max_bytes: int, max_files: int) -> list[_Entry]:
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path.name} is not a zip archive")
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"{path.name} is a damaged zip archive ({e})") from None
    files = [i for i in infos if not i.is_dir()]
    if len(files) > max_files:
        raise DatasetError(f"{path.name} holds {len(files):,} files; the limit is {max_files:,}")
    total = sum(i.file_size for i in files)
    if total > max_bytes:
        raise DatasetError(f"{path.name} unpacks to {total / 2**20:,.0f} MiB; the limit is {max_bytes / 2**20:,.0f} MiB")
    for i in infos:
        name = i.filename.replace("\\", "/")
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in PurePosixPath(name).parts:
            raise DatasetError(f"{path.name} is refused: entry {i.filename!r} points outside the archive's folder")
        if stat.S_ISLNK(i.external_attr >> 16):
            raise DatasetError(f"{path.name} is refused: entry {i.filename!r} is a symbolic link")

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            with zf.open(info) as f:  # the declared size can lie: never read past it
                data = f.read(info.file_size + 1)
            if len(data) > info.file_size:
                raise DatasetError(f"{path.name} is refused: entry {info.filename!r} is larger than it declares")
            return data
        return read

    return [_Entry(tuple(PurePosixPath(i.filename.replace("\\", "/")).parts), reader(i)) for i in files]


def _dir_entries(root: Path, max_files: int) -> list[_Entry]:
    out = []
    for dirpath, _dirs, names in os.walk(root):  # does not follow directory links
        for n in names:
            p = Path(dirpath) / n
            if p.is_symlink():
                continue
            out.append(_Entry(p.relative_to(root).parts, p.read_bytes))
            if len(out) > max_files:
                raise DatasetError(f"{root.name} holds more than {max_files:,} files")
    return out


def _visible(entries: Iterable[_Entry]) -> list[_Entry]:
    return [e for e in entries if not any(p.startswith(".") or p == "__MACOSX" for p in e.parts)]


def _strip_wrappers(entries: list[_Entry]) -> list[_Entry]:
    """Drop single top-level folders that only wrap the real layout (e.g. `myset/cats/1.jpg`)."""
    while entries and all(len(e.parts) > 2 for e in entries):
        tops = {e.parts[0] for e in entries}
        if len(tops) != 1 or tops & {"train", *VAL_DIRS}:
            break
        entries = [_Entry(e.parts[1:], e.read) for e in entries]
    return entries


def _decode_all(entries: list[_Entry], side: int, notes: dict[str, int]) -> tuple[list[torch.Tensor], list[str]]:
    images, labels = [], []
    for e in entries:
        if len(e.parts) < 2:
            notes["ignored_outside_class_folders"] = notes.get("ignored_outside_class_folders", 0) + 1
            continue
        if not e.parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            notes["ignored_non_images"] = notes.get("ignored_non_images", 0) + 1
            continue
        try:
            img = decode(e.read())
        except DatasetError:
            raise
        except Exception:  # truncated or corrupt: one bad photo should not sink the dataset
            notes["skipped_unreadable"] = notes.get("skipped_unreadable", 0) + 1
            continue
        images.append(square(img, min(side, *img.size)))  # never upscale at load time
        labels.append(e.parts[0])
    return images, labels


def _stack(images: list[torch.Tensor], side: int) -> torch.Tensor:
    """Same-size stack: images smaller than `side` were kept small; bring all to the common side."""
    common = min(side, *(im.shape[-1] for im in images))
    return torch.stack([im if im.shape[-1] == common else shrink(im[None], common)[0] for im in images])


def load_folder(path: str | Path, *, image_size: int = 224, seed: int = 0, val_fraction: float = 0.2,
                max_bytes: int = MAX_UNPACKED_BYTES, max_files: int = MAX_FILES, name: str = "folder") -> ImageSplits:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    entries = _dir_entries(path, max_files) if path.is_dir() else _zip_entries(path, max_bytes, max_files)
    entries = _strip_wrappers(_visible(entries))
    notes: dict[str, int] = {}
    tops = {e.parts[0] for e in entries if len(e.parts) > 2}
    val_dir = next((d for d in VAL_DIRS if d in tops), None)
    if "train" in tops and val_dir:
        tr_x, tr_c = _decode_all([_Entry(e.parts[1:], e.read) for e in entries if e.parts[0] == "train"], image_size, notes)
        va_x, va_c = _decode_all([_Entry(e.parts[1:], e.read) for e in entries if e.parts[0] == val_dir], image_size, notes)
        classes = tuple(sorted(set(tr_c)))
        _check_classes(classes, tr_c, minimum=1, where="train/")
        unknown = sorted(set(va_c) - set(classes))
        if unknown:
            raise DatasetError(f"{val_dir}/ has classes that train/ lacks: {', '.join(unknown)}")
        if not va_x:
            raise DatasetError(f"{val_dir}/ has no readable images")
        index = {c: i for i, c in enumerate(classes)}
        x = _stack(tr_x + va_x, image_size)
        n = len(tr_x)
        return ImageSplits(x[:n], torch.tensor([index[c] for c in tr_c]), x[n:], torch.tensor([index[c] for c in va_c]),
                           classes, name, notes)
    xs, cs = _decode_all(entries, image_size, notes)
    classes = tuple(sorted(set(cs)))
    _check_classes(classes, cs, minimum=2, where="")
    index = {c: i for i, c in enumerate(classes)}
    x, y = _stack(xs, image_size), torch.tensor([index[c] for c in cs])
    tr, va = stratified_split(y, val_fraction, seed)
    return ImageSplits(x[tr], y[tr], x[va], y[va], classes, name, notes)


def _check_classes(classes: tuple[str, ...], labels: list[str], minimum: int, where: str) -> None:
    if not labels:
        raise DatasetError("no readable images were found: put images in one folder per class")
    if len(classes) < 2:
        raise DatasetError(f"found {len(classes)} class folder{'s' if len(classes) != 1 else ''} in {where or 'the top level'}; "
                           "at least two classes are needed")
    small = [c for c in classes if labels.count(c) < minimum]
    if small:
        raise DatasetError(f"class {small[0]!r} has {labels.count(small[0])} image(s); each class needs at least "
                           f"{minimum} to split into training and validation")
