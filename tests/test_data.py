"""Datasets come out the same way from every source; bad archives fail clearly and write nothing."""
from __future__ import annotations

import io
import os
import stat
import struct
import threading
import urllib.error
import zipfile
import zlib
from pathlib import Path

import numpy as np

import pytest
import torch
from PIL import Image

import tlcore.data.registry as registry
import tlcore.data.sources as sources
from tlcore.data import DATASETS, class_counts, dataset_rows, load_dataset, load_folder, validate_archive
from tlcore.data.images import decode, to_rgb
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


def test_split_is_stratified_and_the_datasets_own_whatever_the_plans_seed():
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val_y, b.val_y) and torch.equal(a.val_x, b.val_x)
    assert torch.equal(a.val_x, c.val_x)   # the seed shapes training, never which images score it
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


BAD_ARCHIVES = [
    (lambda p: _write(p, b"not a zip at all"), "is not a zip archive"),
    (lambda p: _write(p, _zip(p, _class_folders()).read_bytes()[:-30]), "is a damaged zip archive"),
    (lambda p: _write(p, b"PK\x03\x04" + bytes(200)), "is a damaged zip archive"),
    (lambda p: _write(p, b""), "is not a zip archive"),
    (lambda p: _evil_zip(p, "../../escaped.png", _png(1, "L")), "outside the archive"),
    (lambda p: _evil_zip(p, "/etc/escaped.png", _png(1, "L")), "outside the archive"),
    (lambda p: _evil_zip(p, "cats/link.png", b"/etc/passwd", symlink=True), "symbolic link"),
    (lambda p: _zip(p, {"only/a.png": _png(1, "L"), "only/b.png": _png(2, "L")}), "at least two classes"),
    (lambda p: _zip(p, {"a/1.png": _png(1, "L"), "a/2.png": _png(1, "L"), "b/1.png": _png(1, "L")}),
     "'b' has 1 image"),
    (lambda p: _zip(p, {"a/1.txt": b"x", "b/2.txt": b"y"}), "no readable images"),
]


@pytest.mark.parametrize("make, message", BAD_ARCHIVES)
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


def test_damaged_and_not_a_zip_get_different_messages(tmp_path):
    torn = _write(tmp_path / "torn.zip", _zip(tmp_path / "ok.zip", _class_folders()).read_bytes()[:-30])
    with pytest.raises(DatasetError) as err:
        load_folder(torn)
    assert "damaged" in str(err.value) and "not a zip" not in str(err.value)
    with pytest.raises(DatasetError) as err:
        load_folder(_write(tmp_path / "photo.zip", _png((1, 2, 3))))
    assert "is not a zip archive" in str(err.value)


# --- stored size --------------------------------------------------------------------------------------
def test_one_small_image_does_not_shrink_the_dataset(tmp_path):
    files = {f"cats/c{i}.png": _png((200, 30, 30), size=(64, 64)) for i in range(5)}
    files.update({f"dogs/d{i}.png": _png((30, 30, 200), size=(64, 64)) for i in range(4)})
    files["dogs/tiny.png"] = _png((30, 30, 200), size=(10, 10))
    d = load_folder(_zip(tmp_path / "mixed.zip", files), image_size=32)
    assert d.train_x.shape[1:] == (3, 32, 32) and d.val_x.shape[1:] == (3, 32, 32)
    assert (d.train_x[:, 2] > 190).sum() + (d.train_x[:, 0] > 190).sum() > 0  # colours survive the resize


def test_mixed_sizes_are_stored_at_the_median_native_side_below_the_request(tmp_path):
    files = {f"cats/c{i}.png": _png((200, 30, 30), size=(s, s)) for i, s in enumerate((12, 20, 20))}
    files.update({f"dogs/d{i}.png": _png((30, 30, 200), size=(s, s)) for i, s in enumerate((20, 40, 80))})
    d = load_folder(_zip(tmp_path / "sizes.zip", files), image_size=64)
    assert d.image_size == 20  # the median; the 12 px one is enlarged, 40 and 80 px ones shrunk


def test_image_file_datasets_from_torchvision_use_the_median_side_too():
    big, tiny = Image.new("RGB", (48, 40), (9, 9, 9)), Image.new("RGBA", (6, 6), (9, 9, 9, 0))
    train, val = [(big, 0)] * 4 + [(tiny, 1)], [(big, 1), (big, 0)]
    (trx, try_), (vax, _) = sources._decoded([train, val], 32)
    assert trx.shape[1:] == vax.shape[1:] == (3, 32, 32) and try_.tolist() == [0, 0, 0, 0, 1]
    assert trx[-1].min() == 255  # transparent is white, even from torchvision's PIL images


# --- wrappers, empty classes ------------------------------------------------------------------------
@pytest.mark.parametrize("stray", ["myset/README.txt", "README.txt"])
def test_a_stray_file_beside_the_class_folders_does_not_stop_the_wrapper_being_stripped(tmp_path, stray):
    files = {**_class_folders("myset/", n=3), stray: b"my cats and dogs"}
    d = load_folder(_zip(tmp_path / "wrapped.zip", files), image_size=16)
    assert d.classes == ("cats", "dogs") and d.notes == {"ignored_non_images": 1}


def test_a_stray_image_at_wrapper_level_is_counted_as_outside_the_class_folders(tmp_path):
    files = {**_class_folders("myset/", n=3), "myset/cover.png": _png((1, 1, 1))}
    d = load_folder(_zip(tmp_path / "wrapped.zip", files), image_size=16)
    assert d.classes == ("cats", "dogs") and d.notes == {"ignored_outside_class_folders": 1}


def test_a_class_whose_images_are_all_unreadable_is_counted(tmp_path):
    files = {**_class_folders(n=3), "birds/b0.png": b"\x89PNG broken", "birds/b1.jpg": b"nope"}
    d = load_folder(_zip(tmp_path / "birds.zip", files), image_size=16)
    assert d.classes == ("cats", "dogs")
    assert d.notes == {"skipped_unreadable": 2, "empty_classes": 1}


def test_losing_a_class_to_unreadable_images_names_it(tmp_path):
    files = {f"cats/c{i}.png": _png((200, 30, 30)) for i in range(3)}
    files.update({"dogs/d0.png": b"\x89PNG broken", "dogs/d1.png": _png((1, 1, 1))[:40]})
    with pytest.raises(DatasetError, match="at least two classes.*no readable images in: dogs"):
        load_folder(_zip(tmp_path / "dogs.zip", files), image_size=16)


def test_a_validation_class_that_training_lacks_is_named(tmp_path):
    files = {**_class_folders("train/", n=2), **_class_folders("val/", n=1), "val/birds/b.png": _png((5, 5, 5))}
    with pytest.raises(DatasetError, match="val/ has classes that train/ lacks: birds"):
        load_folder(_zip(tmp_path / "tv.zip", files), image_size=16)


def test_a_training_class_lost_to_unreadable_images_is_named_when_val_has_it(tmp_path):
    files = {**_class_folders("train/", n=2), **_class_folders("val/", n=1),
             "train/birds/b.png": b"\x89PNG broken", "val/birds/b.png": _png((5, 5, 5))}
    with pytest.raises(DatasetError, match="lacks: birds .train/birds had no readable images"):
        load_folder(_zip(tmp_path / "tv.zip", files), image_size=16)


# --- colour conversions -----------------------------------------------------------------------------
def _encoded(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save)
    return buf.getvalue()


def test_16_bit_grey_is_scaled_to_8_bit_not_saturated():
    grey = np.array([[0, 16384, 32768, 65535]] * 4, dtype=np.uint16)
    rgb = np.asarray(decode(_encoded(Image.fromarray(grey))))
    assert rgb[0, :, 0].tolist() == [0, 64, 128, 255] and (rgb[..., 0] == rgb[..., 2]).all()
    wide = np.asarray(to_rgb(Image.fromarray(grey.astype(np.int32))))  # mode "I", as older Pillow opens them
    assert wide[0, :, 0].tolist() == [0, 64, 128, 255]


@pytest.mark.parametrize("img, expected", [
    (Image.new("RGBA", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
    (Image.new("RGBA", (4, 4), (0, 0, 0, 255)), (0, 0, 0)),
    (Image.new("RGBA", (4, 4), (0, 0, 0, 128)), (127, 127, 127)),
    (Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),
])
def test_transparency_is_composited_onto_white(img, expected):
    assert tuple(decode(_encoded(img)).getpixel((1, 1))) == expected


def test_palette_transparency_is_composited_onto_white():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 200, 10, 10])
    img.putpixel((0, 0), 1)
    rgb = decode(_encoded(img, transparency=0))
    assert rgb.getpixel((1, 1)) == (255, 255, 255) and rgb.getpixel((0, 0)) == (200, 10, 10)


# --- the decoded-dataset cache ----------------------------------------------------------------------
def _image_dir(root, n=3):
    for name, data in _class_folders(n=n).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_an_image_added_to_a_class_folder_is_not_hidden_by_the_cache(tmp_path):
    root = _image_dir(tmp_path / "shots")
    before = load_dataset("folder", path=root, image_size=16)
    top = os.stat(root).st_mtime_ns
    (root / "cats" / "new.png").write_bytes(_png((200, 30, 30)))
    assert os.stat(root).st_mtime_ns == top  # the top folder itself did not change
    registry._MEMORY.clear()                 # the disk cache must see it too, not only memory
    after = load_dataset("folder", path=root, image_size=16)
    assert len(after.train_y) + len(after.val_y) == len(before.train_y) + len(before.val_y) + 1
    (root / "dogs" / "d0.jpg").write_bytes(_png((30, 200, 30)))  # a shot retaken: same name, new content
    again = load_dataset("folder", path=root, image_size=16)
    assert not torch.equal(torch.cat([again.train_x, again.val_x]), torch.cat([after.train_x, after.val_x]))


def test_a_cache_that_cannot_be_written_leaves_no_temp_file_and_does_not_fail_the_load(tmp_path, monkeypatch):
    def disk_full(obj, f, *a, **k):
        f.write(b"partial") if hasattr(f, "write") else Path(f).write_bytes(b"partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(registry.torch, "save", disk_full)
    d = load_dataset("folder", path=_zip(tmp_path / "pets.zip", _class_folders(n=3)), image_size=16)
    assert d.classes == ("cats", "dogs")
    cache = registry.cache_dir() / "datasets"
    assert not [p for p in cache.iterdir() if p.suffix != ".pt"] and not list(cache.glob("*.pt"))


def test_concurrent_loads_write_the_cache_through_different_temp_files(tmp_path, monkeypatch):
    path, names, errors = _zip(tmp_path / "pets.zip", _class_folders(n=3)), [], []
    both_saving = threading.Barrier(2, timeout=20)
    real_save = torch.save

    def save(obj, f, *a, **k):
        names.append(str(getattr(f, "name", f)))
        both_saving.wait()  # two sessions of one Streamlit process, saving at the same moment
        real_save(obj, f, *a, **k)
    monkeypatch.setattr(registry.torch, "save", save)

    def load():
        try:
            load_dataset("folder", path=path, image_size=16)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(names)) == 2
    cache = registry.cache_dir() / "datasets"
    assert [p.suffix for p in cache.iterdir()] == [".pt"]


# --- availability --------------------------------------------------------------------------------
class _FakeSet:
    opened = 0
    present = True

    def __init__(self, root, download, **kw):
        type(self).opened += 1
        if not type(self).present:
            raise RuntimeError("Dataset not found. You can use download=True to download it")


def test_availability_is_remembered_rather_than_reloaded(tmp_path, monkeypatch):
    fake = type("Fake", (_FakeSet,), {"opened": 0, "present": True})
    monkeypatch.setattr(sources, "_tv_class", lambda name: fake)
    check = DATASETS["mnist"].available_offline
    assert check(tmp_path) and check(tmp_path) and check(str(tmp_path))
    assert fake.opened == 2  # train and test, once


def test_unavailability_is_remembered_only_briefly(tmp_path, monkeypatch):
    fake = type("Fake", (_FakeSet,), {"opened": 0, "present": False})
    monkeypatch.setattr(sources, "_tv_class", lambda name: fake)
    clock = [1000.0]
    monkeypatch.setattr(registry.time, "monotonic", lambda: clock[0])
    check = DATASETS["fashion_mnist"].available_offline
    assert not check(tmp_path) and not check(tmp_path)
    assert fake.opened == 1
    fake.present = True          # downloaded by someone else meanwhile
    clock[0] += registry.NEGATIVE_TTL_S + 1
    assert check(tmp_path) and fake.opened == 3


def test_a_successful_load_marks_the_dataset_available(shared_data, monkeypatch):
    load_dataset("mnist", root=shared_data, image_size=28, download=False)

    def must_not_open(name):
        raise AssertionError("availability was known: the dataset should not be opened again")
    monkeypatch.setattr(sources, "_tv_class", must_not_open)
    assert DATASETS["mnist"].available_offline(shared_data)


def test_a_genuine_bug_during_a_download_is_not_reported_as_a_missing_download(tmp_path, monkeypatch):
    class Buggy:
        def __init__(self, root, download, **kw):
            if not download:
                raise RuntimeError("Dataset not found")
            raise TypeError("a bug in our code, not a missing file")
    monkeypatch.setattr(sources, "_tv_class", lambda name: Buggy)
    with pytest.raises(TypeError, match="a bug"):
        load_dataset("cifar10", root=tmp_path)


# --- hostile archives: memory stays bounded, messages name the upload ----------------------------------
def _png_bomb(w: int, h: int) -> bytes:
    """A valid grey PNG of w x h black pixels: a few KB that decode to w*h bytes (three times that as RGB)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    z, left, block = zlib.compressobj(6), (w + 1) * h, bytes(2**20)
    body = bytearray()
    while left > 0:
        body += z.compress(block[:min(left, len(block))])
        left -= len(block)
    body += z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", bytes(body)) + chunk(b"IEND", b""))


def _zip_with_bomb_entry(path, mib: int):
    """Class folders plus `cats/bomb.png`: `mib` MiB of zeros, about 1 MB compressed."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in _class_folders(n=3).items():
            zf.writestr(k, v)
        with zf.open("cats/bomb.png", "w", force_zip64=True) as f:
            block = bytes(2**20)
            for _ in range(mib):
                f.write(block)
    return path


@pytest.mark.parametrize("check", ["load_folder", "validate_archive"])
def test_a_huge_entry_is_refused_before_its_bytes_are_read(tmp_path, check):
    import tracemalloc
    path = _zip_with_bomb_entry(tmp_path / "pets.zip", mib=256)
    assert path.stat().st_size < 4 * 2**20
    fn = load_folder if check == "load_folder" else validate_archive
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError) as err:
            fn(path, image_size=16) if check == "load_folder" else fn(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated while refusing a 256 MiB entry"
    msg = str(err.value)
    assert "'cats/bomb.png'" in msg and "256 MiB" in msg and "64 MiB" in msg and "\n" not in msg


def test_an_image_declaring_too_many_pixels_is_refused_without_decoding_it(tmp_path, monkeypatch):
    """9000 x 9000 is under PIL's own bomb limit, so PIL alone would decode it (81 MB grey, 243 MB as RGB)."""
    from PIL import ImageFile
    decoded, real_load = [], ImageFile.ImageFile.load

    def load(self, *a, **k):
        decoded.append(self.size[0] * self.size[1])
        return real_load(self, *a, **k)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    path = _zip(tmp_path / "pets.zip", {**_class_folders(n=3), "cats/huge.png": _png_bomb(9000, 9000)})
    for fn in (validate_archive, load_folder):
        with pytest.raises(DatasetError) as err:
            fn(path, display_name="holiday.zip")
        assert str(err.value).startswith("holiday.zip is refused: 'cats/huge.png' is 9,000 x 9,000 pixels")
        assert "at most 67 million" in str(err.value)
    assert max(decoded, default=0) <= 20 * 16


def test_images_over_the_total_pixel_cap_are_refused(tmp_path):
    path = _zip(tmp_path / "pets.zip", _class_folders(n=5))   # ten 20 x 16 images: 3,200 pixels
    assert len(load_folder(path, image_size=16, max_pixels=3200).classes) == 2
    for fn in (load_folder, validate_archive):
        with pytest.raises(DatasetError, match="pets.zip is refused: its images hold more than 3,000 pixels together"):
            fn(path, max_pixels=3000)


def test_validate_archive_reads_headers_only_and_describes_the_dataset(tmp_path, monkeypatch):
    from PIL import ImageFile
    files = {**_class_folders(n=4), "cats/broken.png": b"\x89PNG not really", "README.txt": b"hi"}
    path = _zip(tmp_path / "pets.zip", files)

    def no_decoding(self, *a, **k):
        raise AssertionError("validate_archive decoded pixels")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    summary = validate_archive(path)
    assert summary.classes == ("cats", "dogs") and summary.train_counts == (4, 4) and summary.val_counts is None
    assert summary.notes == {"skipped_unreadable": 1, "ignored_non_images": 1} and summary.images == 8
    tv = validate_archive(_zip(tmp_path / "tv.zip", {**_class_folders("train/", n=3), **_class_folders("val/", n=2)}))
    assert tv.train_counts == (3, 3) and tv.val_counts == (2, 2)


@pytest.mark.parametrize("make, message", BAD_ARCHIVES)
def test_validate_archive_refuses_what_load_folder_refuses(tmp_path, make, message):
    archive = make(tmp_path / "upload.zip")
    with pytest.raises(DatasetError, match=message):
        validate_archive(archive)


@pytest.mark.parametrize("make, message", BAD_ARCHIVES)
def test_every_archive_error_names_the_upload_not_the_stored_file(tmp_path, make, message):
    archive = make(tmp_path / ".3f9a2c71e0.part")   # how an upload waits on disk to be checked
    for fn in (load_folder, validate_archive):
        with pytest.raises(DatasetError) as err:
            fn(archive, display_name="holiday photos.zip")
        assert str(err.value).startswith("holiday photos.zip") and ".part" not in str(err.value)


@pytest.mark.parametrize("names, found", [
    ([f"photo{i}.png" for i in range(10)], "found 10 images but no class folders"),
    ([f"{d}/photo{i}.png" for d in ("train", "val") for i in range(5)], "train/ and val/ hold images but no class"),
])
def test_images_without_class_folders_are_told_to_go_in_one_folder_per_class(tmp_path, names, found):
    path = _zip(tmp_path / "flat.zip", {n: _png((10 * i, 30, 30)) for i, n in enumerate(names)})
    for fn in (load_folder, validate_archive):
        with pytest.raises(DatasetError) as err:
            fn(path)
        msg = str(err.value)
        assert msg.startswith("flat.zip: ") and found in msg and "put each class in its own folder" in msg
        assert "cats/1.jpg" in msg and "no readable images" not in msg


def test_a_missing_path_is_a_dataset_error_naming_it(tmp_path):
    missing = tmp_path / "nope.zip"
    with pytest.raises(DatasetError, match=f"^{missing} does not exist$"):
        load_dataset("folder", path=missing)
    with pytest.raises(DatasetError, match="^my upload.zip does not exist$"):
        load_dataset("folder", path=missing, display_name="my upload.zip")


def test_a_file_named_like_an_image_is_parsed_only_as_an_image_format(tmp_path):
    tiff = io.BytesIO()
    Image.new("RGB", (20, 16), (1, 2, 3)).save(tiff, format="TIFF")   # PIL reads TIFF, but it is not on our list
    d = load_folder(_zip(tmp_path / "pets.zip", {**_class_folders(n=3), "cats/x.png": tiff.getvalue()}), image_size=16)
    assert d.notes == {"skipped_unreadable": 1} and len(d.train_y) + len(d.val_y) == 6
