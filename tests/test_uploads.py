"""Uploads stay private: a session reads only its own uploads and datasets explicitly shared with it."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tlcore import uploads
from tlcore.errors import DatasetError


def photo(seed: int = 0) -> bytes:
    """A real little JPEG: webcam shots go through the checked decoder before they are kept."""
    import numpy as np
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((24, 32, 3)) * 255).astype(np.uint8)).save(out, "JPEG")
    return out.getvalue()


def tiny_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for cls in ("cats", "dogs"):
            for i in range(3):
                z.writestr(f"{cls}/{i}.txt", f"{cls}{i}")
    return buf.getvalue()


def test_an_upload_is_named_by_its_file_and_readable_only_by_its_owner(tmp_path):
    ref = uploads.save("alice-token", "Holiday cats.zip", tiny_zip(), root=tmp_path)
    mine = uploads.resolve(ref, "alice-token", root=tmp_path)
    assert mine.name == "Holiday cats.zip" and mine.path.is_file() and not mine.shared
    assert "alice" not in str(mine.path) and "alice" not in ref   # no path or reference names the owner
    with pytest.raises(uploads.UploadNotFound, match="not one of your uploads"):
        uploads.resolve(ref, "bob-token", root=tmp_path)
    assert uploads.readable(mine.path, "alice-token", root=tmp_path)
    assert not uploads.readable(mine.path, "bob-token", root=tmp_path)


def test_a_crafted_reference_or_path_opens_nothing(tmp_path):
    uploads.save("alice-token", "a.zip", tiny_zip(), root=tmp_path)
    uploads.save_shot("alice-token", "smile", photo(), root=tmp_path)
    for crafted in ("../private", "zip-../../x", "share-" + "A" * 30, "cam/../..", "", "zip-0123456789abcdef"):
        with pytest.raises(uploads.UploadNotFound):
            uploads.resolve(crafted, "bob-token", root=tmp_path)
    # Bob's own webcam reference never reaches Alice's shots, and no path inside the area is readable.
    with pytest.raises(uploads.UploadNotFound):
        uploads.resolve(uploads.WEBCAM, "bob-token", root=tmp_path)
    alice_cam = uploads.webcam_dir("alice-token", root=tmp_path)
    assert not uploads.readable(alice_cam, "bob-token", root=tmp_path)
    assert not uploads.readable(tmp_path, "bob-token", root=tmp_path)
    assert not uploads.readable("/etc", "bob-token", root=tmp_path)


def test_a_share_token_is_a_read_only_copy_that_names_no_one(tmp_path):
    ref = uploads.save("alice-token", "cats.zip", tiny_zip(), root=tmp_path)
    token = uploads.share(ref, "alice-token", root=tmp_path)
    assert token.startswith("share-") and len(token) > 25 and "alice" not in token
    assert uploads.share(ref, "alice-token", root=tmp_path) == token   # asking again: the same link
    seen = uploads.resolve(token, "bob-token", root=tmp_path)
    assert seen.shared and seen.name == "cats.zip" and seen.path.read_bytes() == tiny_zip()
    own = uploads.resolve(ref, "alice-token", root=tmp_path).path
    assert Path(seen.path).parent != own.parent   # a separate reference, outside Alice's folder
    assert uploads.readable(seen.path, "bob-token", root=tmp_path)
    assert uploads.reference_of(seen.path, "bob-token", root=tmp_path) == token
    with pytest.raises(uploads.UploadNotFound):   # only the owner can share
        uploads.share(ref, "bob-token", root=tmp_path)


def test_a_webcam_set_is_shared_as_it_is_now(tmp_path):
    for cls in ("left", "right"):
        uploads.save_shot("cam-owner", cls, photo(1), root=tmp_path)
    uploads.name_webcam_set("cam-owner", "My hands", root=tmp_path)
    token = uploads.share(uploads.WEBCAM, "cam-owner", root=tmp_path)
    uploads.save_shot("cam-owner", "left", photo(2), root=tmp_path)
    shared = uploads.resolve(token, "someone", root=tmp_path)
    assert shared.name == "My hands"
    assert sorted(p.name for p in (shared.path / "left").iterdir()) == ["shot_0000.jpg"]


def test_a_rejected_upload_leaves_nothing_and_the_check_sees_the_uploads_name(tmp_path):
    seen = []

    def refuse(path: Path) -> None:
        seen.append(path.name)
        raise DatasetError(f"{path.name} is not a zip archive")
    with pytest.raises(DatasetError, match="^my photos.zip is not a zip archive$"):
        uploads.save("alice-token", "../../my photos.zip", b"junk", check=refuse, root=tmp_path)
    assert seen == ["my photos.zip"]
    assert uploads.mine("alice-token", root=tmp_path) == []
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_mine_lists_your_datasets_by_name(tmp_path):
    uploads.save("me-token", "first.zip", tiny_zip(), root=tmp_path)
    uploads.save_shot("me-token", "a", photo(3), root=tmp_path)
    names = [u.name for u in uploads.mine("me-token", root=tmp_path)]
    assert names == ["first.zip", "webcam shots"]
    assert uploads.mine("other-token", root=tmp_path) == []
