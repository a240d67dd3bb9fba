"""A learner's own images: a directory or a .zip of class folders, in either layout.

  <class>/<image>                 we split train/val ourselves (stratified, seeded), or
  train/<class>/<image> + val/<class>/<image>

Zips are never extracted: each entry is streamed from the archive when it is needed, so a hostile
archive cannot write anything. It is still refused with a clear message (path traversal, links,
zip bombs, images whose header declares too many pixels) so the learner knows why. Memory stays
bounded by the caps below: one entry's bytes and one image's pixels at a time, whatever the archive
declares, and every image is decoded once.

`validate_archive` is the cheap check an upload form runs: structure, class folders and image
headers, no decoding. `load_folder` decodes. Both name the dataset by `display_name` (what the
learner called it) in every message, not by the file it happens to be stored in.
"""
from __future__ import annotations

import io
import os
import stat
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence

import torch
from PIL import Image

from ..errors import DatasetError
from .base import ImageSplits
from .images import IMAGE_EXTENSIONS, common_side, square, stack_square, to_rgb
from .splits import stratified_split

MAX_UNPACKED_BYTES = 2 * 2**30       # the whole archive, as declared
MAX_FILES = 50_000
MAX_ENTRY_BYTES = 64 * 2**20         # one image file: a 24-megapixel PNG is about 50 MiB
MAX_IMAGE_PIXELS = 2**26             # one image (8192 x 8192): decoding it takes about 3 bytes a pixel
MAX_TOTAL_PIXELS = 2**32             # every image together: bounds the time decoding takes
VAL_DIRS = ("val", "valid", "validation", "test")
# What PIL may parse: the formats IMAGE_EXTENSIONS name (its JPEG opener also reads a camera's
# multi-picture MPO), never whatever plugin a file's first bytes pick (EPS would start Ghostscript).
PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")


@dataclass(frozen=True)
class Caps:
    """What one dataset may hold; anything over a cap is refused before it costs memory."""
    bytes: int = MAX_UNPACKED_BYTES
    files: int = MAX_FILES
    entry_bytes: int = MAX_ENTRY_BYTES
    image_pixels: int = MAX_IMAGE_PIXELS
    total_pixels: int = MAX_TOTAL_PIXELS


@dataclass(frozen=True)
class ArchiveSummary:
    """What validate_archive found: enough for an upload form to describe the dataset."""
    classes: tuple[str, ...]
    train_counts: tuple[int, ...]           # images with a readable header per class (train/ in that layout)
    val_counts: tuple[int, ...] | None      # per class in val/; None when we split train/val ourselves
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return sum(self.train_counts) + sum(self.val_counts or ())


@dataclass(frozen=True)
class _Entry:
    parts: tuple[str, ...]           # path inside the archive / folder, split
    size: int                        # bytes it declares (zip) or has (file)
    open: Callable[[], BinaryIO]     # a fresh binary stream over its bytes


@dataclass
class _Layout:
    """Image files by class folder; `val` is None when we split train/val ourselves."""
    train: dict[str, list[_Entry]]
    val: dict[str, list[_Entry]] | None
    val_dir: str
    notes: dict[str, int]
    loose_images: int                # image files outside any class folder


def _pixels(n: int) -> str:
    return f"{n / 1e6:,.0f} million" if n >= 10**7 else f"{n:,}"


def _shown(name: str) -> str:
    """An entry name as a message shows it: quoted, escaped, and short (names are attacker-chosen)."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


# --- sources: a zip or a directory, as a list of entries ----------------------------------------
def _looks_like_zip(path: Path) -> bool:
    """Starts with a zip signature: a file that does but cannot be read is damaged (a torn upload),
    which is worth telling apart from a file that was never a zip."""
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


def _open_zip(path: Path, label: str) -> zipfile.ZipFile:
    if not zipfile.is_zipfile(path):
        if _looks_like_zip(path):
            raise DatasetError(f"{label} is a damaged zip archive: its table of contents is missing "
                               "(was the upload or download cut short?)")
        raise DatasetError(f"{label} is not a zip archive")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise DatasetError(f"{label} is a damaged zip archive: {e}") from None


def _check_zip(infos: list[zipfile.ZipInfo], label: str, caps: Caps) -> list[zipfile.ZipInfo]:
    files = [i for i in infos if not i.is_dir()]
    if len(files) > caps.files:
        raise DatasetError(f"{label} holds {len(files):,} files; the limit is {caps.files:,}")
    total = sum(i.file_size for i in files)
    if total > caps.bytes:
        raise DatasetError(f"{label} unpacks to {total / 2**20:,.0f} MiB; the limit is {caps.bytes / 2**20:,.0f} MiB")
    for i in infos:
        name = i.filename.replace("\\", "/")
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in PurePosixPath(name).parts:
            raise DatasetError(f"{label} is refused: entry {_shown(i.filename)} points outside the archive's folder")
        if stat.S_ISLNK(i.external_attr >> 16):
            raise DatasetError(f"{label} is refused: entry {_shown(i.filename)} is a symbolic link")
    return files


def _zip_entries(zf: zipfile.ZipFile, label: str, caps: Caps) -> list[_Entry]:
    def opener(info: zipfile.ZipInfo) -> Callable[[], BinaryIO]:
        return lambda: zf.open(info)   # zipfile never yields more than the entry declares
    return [_Entry(tuple(PurePosixPath(i.filename.replace("\\", "/")).parts), i.file_size, opener(i))
            for i in _check_zip(zf.infolist(), label, caps)]


def _dir_entries(root: Path, label: str, caps: Caps) -> list[_Entry]:
    out = []
    for dirpath, _dirs, names in os.walk(root):  # does not follow directory links
        for n in names:
            p = Path(dirpath) / n
            try:
                if p.is_symlink():
                    continue
                size = p.stat().st_size
            except OSError:  # gone while we walked: it will not be loaded either
                continue
            out.append(_Entry(p.relative_to(root).parts, size, lambda p=p: open(p, "rb")))
            if len(out) > caps.files:
                raise DatasetError(f"{label} holds more than {caps.files:,} files; the limit is {caps.files:,}")
    return out


@contextmanager
def _entries(path: Path, label: str, caps: Caps) -> Iterator[list[_Entry]]:
    """The files of a directory or zip; a zip stays open (and is closed) around the caller's work."""
    if path.is_dir():
        yield _dir_entries(path, label, caps)
        return
    with _open_zip(path, label) as zf:
        yield _zip_entries(zf, label, caps)


# --- layout: which files are which class's images ----------------------------------------------
def _visible(entries: Iterable[_Entry]) -> list[_Entry]:
    return [e for e in entries if not any(p.startswith(".") or p == "__MACOSX" for p in e.parts)]


def _moved(e: _Entry, parts: tuple[str, ...]) -> _Entry:
    return _Entry(parts, e.size, e.open)


def _strip_wrappers(entries: list[_Entry]) -> list[_Entry]:
    """Drop single top-level folders that only wrap the real layout (e.g. `myset/cats/1.jpg`).

    Loose files beside the layout (`myset/README.txt`, a `notes.txt` next to `myset/`) do not stop
    the stripping: they stay loose files, which are ignored and counted."""
    while True:
        nested = [e for e in entries if len(e.parts) > 1]
        tops = {e.parts[0] for e in nested}
        if len(tops) != 1 or tops & {"train", *VAL_DIRS} or not any(len(e.parts) > 2 for e in nested):
            return entries
        entries = [e if len(e.parts) == 1 else _moved(e, e.parts[1:]) for e in entries]


def _count(notes: dict[str, int], key: str, n: int = 1) -> None:
    if n:
        notes[key] = notes.get(key, 0) + n


def _is_image_name(e: _Entry) -> bool:
    return e.parts[-1].lower().endswith(IMAGE_EXTENSIONS)


def _by_class(entries: Iterable[_Entry], notes: dict[str, int]) -> tuple[dict[str, list[_Entry]], int]:
    """Image files grouped by their top folder, and how many images lay outside any folder.
    Files outside a folder and non-images are ignored and counted."""
    classes: dict[str, list[_Entry]] = {}
    loose = 0
    for e in entries:
        if len(e.parts) < 2:
            loose += _is_image_name(e)
            _count(notes, "ignored_outside_class_folders" if _is_image_name(e) else "ignored_non_images")
        elif not _is_image_name(e):
            _count(notes, "ignored_non_images")
        else:
            classes.setdefault(e.parts[0], []).append(e)
    return dict(sorted(classes.items())), loose


def _inside(entries: list[_Entry], top: str) -> list[_Entry]:
    return [_moved(e, e.parts[1:]) for e in entries if len(e.parts) > 1 and e.parts[0] == top]


def _layout(entries: list[_Entry], label: str, caps: Caps) -> _Layout:
    entries = _strip_wrappers(_visible(entries))
    notes: dict[str, int] = {}
    tops = {e.parts[0] for e in entries if len(e.parts) > 2}
    val_dir = next((d for d in VAL_DIRS if d in tops), None)
    if "train" in tops and val_dir:
        for e in entries:
            if len(e.parts) == 1:
                _count(notes, "ignored_outside_class_folders" if _is_image_name(e) else "ignored_non_images")
        train, loose = _by_class(_inside(entries, "train"), notes)
        val, _ = _by_class(_inside(entries, val_dir), notes)
        layout = _Layout(train, val, val_dir, notes, loose)
    else:
        train, loose = _by_class(entries, notes)
        layout = _Layout(train, None, "", notes, loose)
    _check_layout(layout, label, caps)
    return layout


def _check_layout(layout: _Layout, label: str, caps: Caps) -> None:
    """Refusals that need no image read: loose images with no class folder, an oversized entry."""
    if not layout.train and layout.loose_images:
        n = layout.loose_images
        raise DatasetError(f"{label}: found {n:,} image{'s' if n != 1 else ''} but no class folders: put each class "
                           "in its own folder (for example cats/1.jpg and dogs/1.jpg)")
    if layout.val is None and "train" in layout.train and set(layout.train) <= {"train", *VAL_DIRS}:
        # train/ and val/ holding images directly would otherwise become two classes named after them
        tops = sorted(layout.train)
        raise DatasetError(f"{label}: {'/ and '.join(tops)}/ {'hold' if len(tops) > 1 else 'holds'} images but no class "
                           "folders: put each class in its own folder inside (for example train/cats/1.jpg and "
                           "train/dogs/1.jpg)")
    for group in (layout.train, layout.val or {}):
        for files in group.values():
            for e in files:
                if e.size > caps.entry_bytes:
                    raise DatasetError(f"{label} is refused: {_shown('/'.join(e.parts))} unpacks to "
                                       f"{e.size / 2**20:,.0f} MiB, and one image may take at most "
                                       f"{caps.entry_bytes / 2**20:,.0f} MiB")


# --- images: headers and decoding -----------------------------------------------------------------
class _Pixels:
    """Checks each image's declared size against the caps before anything decodes it."""

    def __init__(self, label: str, caps: Caps) -> None:
        self.label, self.caps, self.total = label, caps, 0

    def admit(self, img: Image.Image, name: str) -> None:
        w, h = img.size
        if w * h > self.caps.image_pixels:
            raise DatasetError(f"{self.label} is refused: {_shown(name)} is {w:,} x {h:,} pixels, and one image may "
                               f"have at most {_pixels(self.caps.image_pixels)}: shrink it first")
        self.total += w * h
        if self.total > self.caps.total_pixels:
            raise DatasetError(f"{self.label} is refused: its images hold more than {_pixels(self.caps.total_pixels)} "
                               "pixels together: use fewer or smaller photos")


def _open_image(f: BinaryIO, name: str, pixels: _Pixels) -> Image.Image:
    """The image's header, checked against the caps; raises OSError/ValueError for unreadable files."""
    try:
        img = Image.open(f, formats=PIL_FORMATS)
    except Image.DecompressionBombError:   # PIL's own limit, above ours: the same refusal
        raise DatasetError(f"{pixels.label} is refused: {_shown(name)} declares more pixels than "
                           f"{_pixels(pixels.caps.image_pixels)}") from None
    pixels.admit(img, name)
    return img


def _read(e: _Entry, cap: int) -> bytes:
    with e.open() as f:
        data = f.read(cap + 1)   # a file that grew since it was listed is still read only this far
    if len(data) > cap:
        raise ValueError("larger than it declared")
    return data


def _decode(e: _Entry, side: int, pixels: _Pixels) -> torch.Tensor:
    """One image file -> square uint8 [3, s, s] with s = min(side, its shorter side). JPEGs decode
    straight at a reduced scale when that still leaves at least `side` pixels."""
    name = "/".join(e.parts)
    img = _open_image(io.BytesIO(_read(e, pixels.caps.entry_bytes)), name, pixels)
    img.seek(0)
    if img.format in ("JPEG", "MPO"):
        img.draft("RGB", (side, side))
    img.load()  # forces the full decode so a truncated file fails here, not later
    img = to_rgb(img)
    return square(img, min(side, *img.size))


def _decode_all(classes: dict[str, list[_Entry]], side: int, notes: dict[str, int], pixels: _Pixels
                ) -> tuple[list[torch.Tensor], list[str]]:
    """Readable images (square, at most `side`) and their class folder names."""
    images, labels = [], []
    for cls, files in classes.items():
        for e in files:
            try:
                img = _decode(e, side, pixels)
            except DatasetError:
                raise
            except Exception:  # truncated or corrupt: one bad photo should not sink the dataset
                _count(notes, "skipped_unreadable")
                continue
            images.append(img)  # the common side is chosen once all are seen
            labels.append(cls)
    return images, labels


def _headers(classes: dict[str, list[_Entry]], notes: dict[str, int], pixels: _Pixels) -> list[str]:
    """The class of every image whose header reads (no pixel is decoded)."""
    labels = []
    for cls, files in classes.items():
        for e in files:
            try:
                with e.open() as f:
                    _open_image(f, "/".join(e.parts), pixels)
            except DatasetError:
                raise
            except Exception:
                _count(notes, "skipped_unreadable")
                continue
            labels.append(cls)
    return labels


def _stack(images: list[torch.Tensor], side: int) -> torch.Tensor:
    """Same-size stack at min(requested, median native side): images were kept at min(side, native),
    and the median of those is the same number, so no decode has to be repeated."""
    return stack_square(images, common_side([im.shape[-1] for im in images], side))


# --- the two entry points -------------------------------------------------------------------------
def _label(path: Path, display_name: str | None) -> str:
    if not path.exists():
        raise DatasetError(f"{display_name or path} does not exist")
    return display_name or path.name


def _caps(max_bytes: int, max_files: int, max_entry_bytes: int, max_image_pixels: int, max_pixels: int) -> Caps:
    return Caps(max_bytes, max_files, max_entry_bytes, max_image_pixels, max_pixels)


def validate_archive(path: str | Path, *, display_name: str | None = None, max_bytes: int = MAX_UNPACKED_BYTES,
                     max_files: int = MAX_FILES, max_entry_bytes: int = MAX_ENTRY_BYTES,
                     max_image_pixels: int = MAX_IMAGE_PIXELS, max_pixels: int = MAX_TOTAL_PIXELS) -> ArchiveSummary:
    """Would `load_folder` accept this? Checks structure, class folders and every image's header
    without decoding a pixel: what an upload form runs before keeping a file. DatasetError if not.

    An image whose header reads but whose pixels do not is found only by load_folder (and skipped)."""
    path = Path(path)
    label = _label(path, display_name)
    caps = _caps(max_bytes, max_files, max_entry_bytes, max_image_pixels, max_pixels)
    with _entries(path, label, caps) as entries:
        layout = _layout(entries, label, caps)
        pixels = _Pixels(label, caps)
        train = _headers(layout.train, layout.notes, pixels)
        val = _headers(layout.val, layout.notes, pixels) if layout.val is not None else None
    classes = _check_split(layout, train, val, label)
    return ArchiveSummary(classes, tuple(train.count(c) for c in classes),
                          None if val is None else tuple(val.count(c) for c in classes), layout.notes)


def load_folder(path: str | Path, *, image_size: int = 224, seed: int = 0, val_fraction: float = 0.2,
                max_bytes: int = MAX_UNPACKED_BYTES, max_files: int = MAX_FILES, name: str = "folder",
                display_name: str | None = None, max_entry_bytes: int = MAX_ENTRY_BYTES,
                max_image_pixels: int = MAX_IMAGE_PIXELS, max_pixels: int = MAX_TOTAL_PIXELS) -> ImageSplits:
    """Decode a directory or zip of class folders into ImageSplits. `name` goes into the result;
    `display_name` (default: the file's name) is what every error message calls the dataset."""
    path = Path(path)
    label = _label(path, display_name)
    caps = _caps(max_bytes, max_files, max_entry_bytes, max_image_pixels, max_pixels)
    with _entries(path, label, caps) as entries:
        layout = _layout(entries, label, caps)
        notes, pixels = layout.notes, _Pixels(label, caps)
        tr_x, tr_c = _decode_all(layout.train, image_size, notes, pixels)
        va_x, va_c = _decode_all(layout.val, image_size, notes, pixels) if layout.val is not None else ([], None)
    classes = _check_split(layout, tr_c, va_c, label)
    index = {c: i for i, c in enumerate(classes)}
    if va_c is None:
        x, y = _stack(tr_x, image_size), torch.tensor([index[c] for c in tr_c])
        tr, va = stratified_split(y, val_fraction, seed)
        return ImageSplits(x[tr], y[tr], x[va], y[va], classes, name, notes)
    x = _stack(tr_x + va_x, image_size)
    n = len(tr_x)
    return ImageSplits(x[:n], torch.tensor([index[c] for c in tr_c]), x[n:], torch.tensor([index[c] for c in va_c]),
                       classes, name, notes)


# --- class checks, shared by both -----------------------------------------------------------------
def _check_split(layout: _Layout, train: list[str], val: list[str] | None, label: str) -> tuple[str, ...]:
    """The classes, once the readable images (`train`, `val`: one class name per image) make a
    usable dataset; counts classes that lost every image in `layout.notes`."""
    classes = tuple(sorted(set(train)))
    tr_empty = sorted(set(layout.train) - set(train))
    if val is None:
        _check_classes(classes, train, minimum=2, where="", empty=tr_empty, label=label)
        _count(layout.notes, "empty_classes", len(tr_empty))
        return classes
    _check_classes(classes, train, minimum=1, where="train/", empty=tr_empty, label=label)
    # A validation class the model never trains on cannot be scored: name it rather than drop it.
    d = layout.val_dir
    unknown = sorted((set(layout.val or {}) | set(val)) - set(classes))
    if unknown:
        unreadable = [c for c in unknown if c in tr_empty]
        why = f" (train/{', train/'.join(unreadable)} had no readable images)" if unreadable else ""
        raise DatasetError(f"{label}: {d}/ has classes that train/ lacks: {', '.join(unknown)}{why}")
    if not val:
        raise DatasetError(f"{label}: {d}/ has no readable images")
    _count(layout.notes, "empty_classes", len(tr_empty) + len(set(layout.val or {}) - set(val)))
    return classes


def _check_classes(classes: tuple[str, ...], labels: list[str], minimum: int, where: str,
                   empty: Sequence[str] = (), label: str = "") -> None:
    """`empty`: class folders that held image files but none readable, named when they cost a class."""
    unreadable = f" (no readable images in: {', '.join(empty)})" if empty else ""
    if not labels:
        raise DatasetError(f"{label}: no readable images were found: put images in one folder per class{unreadable}")
    if len(classes) < 2:
        raise DatasetError(f"{label}: found {len(classes)} class folder{'s' if len(classes) != 1 else ''} with "
                           f"readable images in {where or 'the top level'}; at least two classes are needed"
                           f"{unreadable}")
    small = [c for c in classes if labels.count(c) < minimum]
    if small:
        raise DatasetError(f"{label}: class {small[0]!r} has {labels.count(small[0])} image(s); each class needs at "
                           f"least {minimum} to split into training and validation")
