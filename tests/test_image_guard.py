"""Every image a person hands the server goes through one checked decoder (tlcore.data.images.read_checked):
size and pixel caps read from the header before any pixel is decoded, one plain line per bad file."""
from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tlcore import uploads
from tlcore.data import images
from tlcore.errors import DatasetError

ROOT = Path(__file__).resolve().parents[1]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes whose header declares width x height grey pixels (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def _jpeg(w: int = 64, h: int = 48) -> bytes:
    out = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)).save(out, "JPEG")
    return out.getvalue()


def test_no_page_or_widget_decodes_an_image_itself():
    """Inside the CNN decoded uploads with a bare Image.open in the UI process; only tlcore decodes now."""
    offenders = [f"{p.relative_to(ROOT)}:{i}" for folder in ("views", "ui") for p in sorted((ROOT / folder).glob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"Image\.open\(", line)]
    assert offenders == []


@pytest.mark.parametrize("side", [12_000, 20_000])
def test_a_huge_image_is_refused_from_its_header_before_any_pixel_is_decoded(side, monkeypatch):
    def no_decoding(self):
        raise AssertionError("a pixel was decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(images.BadImage) as err:
        images.read_checked(png_claiming(side, side), 224, "bomb.png")
    assert "megapixels" in str(err.value) and "\n" not in str(err.value)
    assert side * side > images.MAX_PIXELS


@pytest.mark.parametrize("data, says", [
    (b"just some text, not an image", "not an image"),
    (b"", "empty"),
    (_jpeg()[:-200], "truncated or damaged"),
    (b"%PDF-1.4\n" + b"0" * 500, "not an image"),
])
def test_a_bad_file_gives_one_plain_line(data, says):
    with pytest.raises(images.BadImage, match=says) as err:
        images.read_checked(data, 64, "upload.bin")
    assert "\n" not in str(err.value) and "upload.bin" in str(err.value)


def test_a_large_allowed_photo_is_reduced_before_it_is_converted_and_comes_out_square():
    big = Image.fromarray(np.tile(np.arange(4000, dtype=np.uint16) % 256, (3000, 1)).astype(np.uint8), "L")
    out = io.BytesIO()
    big.save(out, "PNG")
    x = images.read_checked(out.getvalue(), 96, "big.png")
    assert x.shape == (3, 96, 96) and x.dtype.is_floating_point is False
    assert images.read_checked(_jpeg(), 32).shape == (3, 32, 32)


def test_a_webcam_shot_that_is_not_a_photo_is_refused_and_nothing_is_kept(tmp_path):
    with pytest.raises(DatasetError):
        uploads.save_shot("me", "cats", b"<script>not a photo</script>", root=tmp_path)
    assert uploads.webcam_counts("me", root=tmp_path) == {}
    assert uploads.save_shot("me", "cats", _jpeg(), root=tmp_path) == 1
