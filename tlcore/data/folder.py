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
from typing import Callable, Iterable, Sequence

import torch

from ..errors import DatasetError
from .base import ImageSplits
from .images import IMAGE_EXTENSIONS, common_side, decode, square, stack_square
from .splits import stratified_split

MAX_UNPACKED_BYTES = 2 * 2**30
MAX_FILES = 50_000
VAL_DIRS = ("val", "valid", "validation", "test")


@dataclass(frozen=True)
class _Entry:
    parts: tuple[str, ...]           # path inside the archive / folder, split
    read: Callable[[], bytes]


def _looks_like_zip(path: Path) -> bool:
    """Starts with a zip signature: a file that does but cannot be read is damaged (a torn upload),
    which is worth telling apart from a file that was never a zip."""
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


def _open_zip(path: Path) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    if not zipfile.is_zipfile(path):
        if _looks_like_zip(path):
            raise DatasetError(f"{path.name} is a damaged zip archive: its table of contents is missing "
                               "(was the upload or download cut short?)")
        raise DatasetError(f"{path.name} is not a zip archive")
    try:
        zf = zipfile.ZipFile(path)
        return zf, zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise DatasetError(f"{path.name} is a damaged zip archive: {e}") from None


def _zip_entries(path: Path, max_bytes: int, max_files: int) -> list[_Entry]:
    zf, infos = _open_zip(path)
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
    """Drop single top-level folders that only wrap the real layout (e.g. `myset/cats/1.jpg`).

    Loose files beside the layout (`myset/README.txt`, a `notes.txt` next to `myset/`) do not stop
    the stripping: they stay loose files, which `_decode_all` ignores and counts."""
    while True:
        nested = [e for e in entries if len(e.parts) > 1]
        tops = {e.parts[0] for e in nested}
        if len(tops) != 1 or tops & {"train", *VAL_DIRS} or not any(len(e.parts) > 2 for e in nested):
            return entries
        entries = [e if len(e.parts) == 1 else _Entry(e.parts[1:], e.read) for e in entries]


def _count(notes: dict[str, int], key: str) -> None:
    notes[key] = notes.get(key, 0) + 1


def _ignore_loose(e: _Entry, notes: dict[str, int]) -> None:
    """A file outside any class folder: a stray image is named as such, anything else is a non-image."""
    _count(notes, "ignored_outside_class_folders" if _is_image_name(e) else "ignored_non_images")


def _is_image_name(e: _Entry) -> bool:
    return e.parts[-1].lower().endswith(IMAGE_EXTENSIONS)


def _decode_all(entries: list[_Entry], side: int, notes: dict[str, int]
                ) -> tuple[list[torch.Tensor], list[str], set[str]]:
    """Readable images (square, at most `side`), their class folder names, and every class folder
    that held image files (so a class whose images were all unreadable can be named)."""
    images, labels, folders = [], [], set()
    for e in entries:
        if len(e.parts) < 2:
            _ignore_loose(e, notes)
            continue
        if not _is_image_name(e):
            _count(notes, "ignored_non_images")
            continue
        folders.add(e.parts[0])
        try:
            img = decode(e.read())
        except DatasetError:
            raise
        except Exception:  # truncated or corrupt: one bad photo should not sink the dataset
            _count(notes, "skipped_unreadable")
            continue
        images.append(square(img, min(side, *img.size)))  # the common side is chosen once all are seen
        labels.append(e.parts[0])
    return images, labels, folders


def _stack(images: list[torch.Tensor], side: int) -> torch.Tensor:
    """Same-size stack at min(requested, median native side): images were kept at min(side, native),
    and the median of those is the same number, so no decode has to be repeated."""
    return stack_square(images, common_side([im.shape[-1] for im in images], side))


def _note_empty(empty: list[str], notes: dict[str, int]) -> None:
    if empty:
        notes["empty_classes"] = notes.get("empty_classes", 0) + len(empty)


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
        return _load_train_val(entries, val_dir, image_size, name, notes)
    xs, cs, folders = _decode_all(entries, image_size, notes)
    classes = tuple(sorted(set(cs)))
    empty = sorted(folders - set(cs))
    _check_classes(classes, cs, minimum=2, where="", empty=empty)
    _note_empty(empty, notes)
    index = {c: i for i, c in enumerate(classes)}
    x, y = _stack(xs, image_size), torch.tensor([index[c] for c in cs])
    tr, va = stratified_split(y, val_fraction, seed)
    return ImageSplits(x[tr], y[tr], x[va], y[va], classes, name, notes)


def _inside(entries: list[_Entry], top: str) -> list[_Entry]:
    return [_Entry(e.parts[1:], e.read) for e in entries if len(e.parts) > 1 and e.parts[0] == top]


def _load_train_val(entries: list[_Entry], val_dir: str, image_size: int, name: str,
                    notes: dict[str, int]) -> ImageSplits:
    for e in entries:
        if len(e.parts) == 1:
            _ignore_loose(e, notes)
    tr_x, tr_c, tr_folders = _decode_all(_inside(entries, "train"), image_size, notes)
    va_x, va_c, va_folders = _decode_all(_inside(entries, val_dir), image_size, notes)
    classes = tuple(sorted(set(tr_c)))
    tr_empty = sorted(tr_folders - set(tr_c))
    _check_classes(classes, tr_c, minimum=1, where="train/", empty=tr_empty)
    # A validation class the model never trains on cannot be scored: name it rather than drop it.
    unknown = sorted((va_folders | set(va_c)) - set(classes))
    if unknown:
        unreadable = [c for c in unknown if c in tr_empty]
        why = f" (train/{', train/'.join(unreadable)} had no readable images)" if unreadable else ""
        raise DatasetError(f"{val_dir}/ has classes that train/ lacks: {', '.join(unknown)}{why}")
    if not va_x:
        raise DatasetError(f"{val_dir}/ has no readable images")
    _note_empty(tr_empty + sorted(va_folders - set(va_c)), notes)
    index = {c: i for i, c in enumerate(classes)}
    x = _stack(tr_x + va_x, image_size)
    n = len(tr_x)
    return ImageSplits(x[:n], torch.tensor([index[c] for c in tr_c]), x[n:], torch.tensor([index[c] for c in va_c]),
                       classes, name, notes)


def _check_classes(classes: tuple[str, ...], labels: list[str], minimum: int, where: str,
                   empty: Sequence[str] = ()) -> None:
    """`empty`: class folders that held image files but none readable, named when they cost a class."""
    unreadable = f" (no readable images in: {', '.join(empty)})" if empty else ""
    if not labels:
        raise DatasetError(f"no readable images were found: put images in one folder per class{unreadable}")
    if len(classes) < 2:
        raise DatasetError(f"found {len(classes)} class folder{'s' if len(classes) != 1 else ''} with readable images "
                           f"in {where or 'the top level'}; at least two classes are needed{unreadable}")
    small = [c for c in classes if labels.count(c) < minimum]
    if small:
        raise DatasetError(f"class {small[0]!r} has {labels.count(small[0])} image(s); each class needs at least "
                           f"{minimum} to split into training and validation")
