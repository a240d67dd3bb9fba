"""Datasets come out the same way from every source; bad archives fail clearly and write nothing."""
from __future__ import annotations

import io
import stat
import urllib.error
import zipfile

import pytest
import torch
from PIL import Image

from tlcore.data import DATASETS, class_counts, dataset_rows, load_dataset, load_folder
from tlcore.errors import DatasetError, DownloadRequired


# --- the registry ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_describes_itself(name):
    spec = DATASETS[name]
    assert spec.description and spec.licence and spec.title
    assert spec.source in ("bundled", "torchvision", "url", "folder")
    assert spec.source == "bundled" or spec.source == "folder" or spec.download_from.startswith("http")


def test_digits_is_listed_as_available_offline():
    rows = {r["name"]: r for r in dataset_rows()}
    assert rows["digits"]["offline"] == "yes"


# --- digits and the options ----------------------------------------------------------------------------
def test_digits_loads_offline_with_the_right_counts():
    d = load_dataset("digits", image_size=224)
    assert len(d.train_y) + len(d.val_y) == 1797
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape[1:] == (3, 8, 8)  # stored at native size
    assert d.classes == tuple("0123456789")


def test_split_is_stratified_and_seeded():
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val_y, b.val_y) and torch.equal(a.val_x, b.val_x)
    assert not torch.equal(a.val_x, c.val_x)
    counts = torch.bincount(a.val_y, minlength=10).float()
    totals = counts + torch.bincount(a.train_y, minlength=10).float()
    assert ((counts / totals - 0.2).abs() < 0.02).all()


def test_images_per_class_gives_exactly_that_many_training_images():
    d = load_dataset("digits", per_class=12, seed=3)
    assert class_counts(d.train_y, 10) == [12] * 10
    assert len(d.val_y) == len(load_dataset("digits").val_y)  # validation untouched


def test_imbalance_makes_the_largest_class_that_many_times_the_smallest():
    d = load_dataset("digits", per_class=40, imbalance=10.0)
    counts = class_counts(d.train_y, 10)
    assert counts[0] == 40 and counts[-1] == 4
    assert counts == sorted(counts, reverse=True)


# --- torchvision sets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, classes", [("mnist", 10), ("fashion_mnist", 10)])
def test_torchvision_sets_load_from_shared_data_at_28_px(name, classes, shared_data):
    d = load_dataset(name, image_size=224, root=shared_data, download=False)
    assert (len(d.train_y), len(d.val_y)) == (60000, 10000)
    assert d.train_x.shape[1:] == (3, 28, 28) and d.train_x.dtype == torch.uint8
    assert len(d.classes) == classes and int(d.train_y.max()) == classes - 1


def test_a_missing_dataset_offline_says_which_and_from_where(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise urllib.error.URLError("offline")
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(DownloadRequired) as err:
        load_dataset("cifar10", root=tmp_path)
    msg = str(err.value)
    assert "CIFAR-10" in msg and "https://www.cs.toronto.edu/" in msg and "\n" not in msg


# --- the folder loader -------------------------------------------------------------------------------
def _png(color, mode="RGB", size=(20, 16), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format=fmt)
    return buf.getvalue()


def _zip(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _class_folders(prefix="", n=5) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        files[f"{prefix}cats/c{i}.png"] = _png((200, 30, 30))
        files[f"{prefix}dogs/d{i}.jpg"] = _png((30, 30, 200), fmt="JPEG")
    return files


def test_folder_zip_with_class_folders_is_split_by_us(tmp_path):
    d = load_folder(_zip(tmp_path / "pets.zip", _class_folders("pets/", n=5)), image_size=64)
    assert d.classes == ("cats", "dogs")
    assert len(d.train_y) + len(d.val_y) == 10 and set(d.val_y.tolist()) == {0, 1}
    assert d.train_x.shape[1:] == (3, 16, 16)  # never upscaled at load time


def test_folder_zip_with_train_and_val_folders_keeps_them(tmp_path):
    files = {**_class_folders("train/", n=3), **_class_folders("val/", n=2)}
    d = load_folder(_zip(tmp_path / "tv.zip", files), image_size=12)
    assert (len(d.train_y), len(d.val_y)) == (6, 4) and d.train_x.shape[1:] == (3, 12, 12)


def test_grey_rgba_palette_and_gif_images_become_rgb(tmp_path):
    files = {"a/grey.png": _png(128, "L"), "a/alpha.png": _png((1, 2, 3, 0), "RGBA"),
             "b/anim.gif": _png(5, "P", fmt="GIF"), "b/x.webp": _png((9, 9, 9), fmt="WEBP"),
             "a/more.bmp": _png((4, 4, 4), fmt="BMP"), "b/last.png": _png((7, 7, 7))}
    d = load_folder(_zip(tmp_path / "modes.zip", files), image_size=32)
    assert d.train_x.shape[1] == 3 and len(d.train_y) + len(d.val_y) == 6


def test_unreadable_images_are_skipped_and_non_images_ignored_and_counted(tmp_path):
    files = _class_folders(n=3)
    files["cats/broken.png"] = _png((1, 1, 1))[:40]
    files["dogs/notes.txt"] = b"hello"
    d = load_folder(_zip(tmp_path / "mixed.zip", files), image_size=32)
    assert d.notes == {"skipped_unreadable": 1, "ignored_non_images": 1}
    assert len(d.train_y) + len(d.val_y) == 6


def test_directory_input_works_like_a_zip(tmp_path):
    for name, data in _class_folders(n=3).items():
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / name).write_bytes(data)
    assert load_folder(tmp_path / "imgs", image_size=32).classes == ("cats", "dogs")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _evil_zip(path, name, data=b"x", symlink=False):
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in _class_folders(n=2).items():
            zf.writestr(k, v)
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: _write(p, b"not a zip at all"), "is not a zip archive"),
    (lambda p: _write(p, _zip(p, _class_folders()).read_bytes()[:-30]), "is not a zip archive|damaged"),
    (lambda p: _evil_zip(p, "../../escaped.png", _png(1, "L")), "outside the archive"),
    (lambda p: _evil_zip(p, "/etc/escaped.png", _png(1, "L")), "outside the archive"),
    (lambda p: _evil_zip(p, "cats/link.png", b"/etc/passwd", symlink=True), "symbolic link"),
    (lambda p: _zip(p, {"only/a.png": _png(1, "L"), "only/b.png": _png(2, "L")}), "at least two classes"),
    (lambda p: _zip(p, {"a/1.png": _png(1, "L"), "a/2.png": _png(1, "L"), "b/1.png": _png(1, "L")}),
     "'b' has 1 image"),
    (lambda p: _zip(p, {"a/1.txt": b"x", "b/2.txt": b"y"}), "no readable images"),
])
def test_each_bad_archive_gets_its_own_clear_error(tmp_path, make, message):
    target = tmp_path / "target"
    target.mkdir()
    archive = make(target / "upload.zip")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(DatasetError, match=message):
        load_folder(archive, image_size=32)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not list(tmp_path.parent.glob("escaped*"))


def test_zip_bombs_are_refused_by_size_and_by_file_count(tmp_path):
    path = _zip(tmp_path / "big.zip", {**_class_folders(n=3), "cats/zeros.png": b"\0" * 200_000})
    with pytest.raises(DatasetError, match="unpacks to"):
        load_folder(path, max_bytes=100_000)
    with pytest.raises(DatasetError, match="holds 7 files"):
        load_folder(path, max_files=5)
