"""Export and Predict: a finished run's network leaves as a checked file (TorchScript, ONNX) that
takes uint8 images and gives probabilities, and predicts on new images whatever their format."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tlcore import __main__ as cli
from tlcore import export
from tlcore.kinds import run_plan
from tlcore.runs import RunStore
from tlcore.train.plan import Plan

TINY = dict(dataset="digits", image_size=32, per_class=8, batch_size=32, epochs=1, seed=0)


def _run(store: RunStore, **changes) -> str:
    plan = Plan(**{**TINY, **changes})
    run_id = store.create(plan, owner="test")
    run_plan(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    assert store.status(run_id) == "finished"
    return run_id


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run for the module (its own store), and its network loaded."""
    store = RunStore(tmp_path_factory.mktemp("store"))
    run_id = _run(store)
    return store, run_id, export.load(store, run_id)


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG") if mode else Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_each_format_exports_a_checked_file_that_predicts_like_the_engine(trained, fmt, tmp_path):
    store, run_id, loaded = trained
    done = export.export(store, run_id, fmt, tmp_path)
    assert done.path.exists() and done.path.suffix == export.SUFFIX[fmt]
    assert not list(tmp_path.glob("*.partial"))
    meta = json.loads(done.meta_path.read_text())
    assert meta["classes"] == list(loaded.classes)
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["shape"][1:] == [3, 32, 32]
    assert meta["plan"]["model"] == "efficientnet_lite0" and done.max_difference <= export.TOLERANCE
    # load the file back ourselves, as a user would, and compare with the engine on validation images
    images = export.check_images(store, loaded, 8)
    if fmt == "torchscript":
        probs = torch.jit.load(str(done.path))(images)
    else:
        ort = pytest.importorskip("onnxruntime")
        sess = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
        probs = torch.from_numpy(sess.run(None, {"images": images.numpy()})[0])
    engine = export.engine_probabilities(loaded, images)
    torch.testing.assert_close(probs, engine, atol=1e-4, rtol=1e-4)
    assert torch.allclose(probs.sum(1), torch.ones(len(images)), atol=1e-4)


def test_a_failed_check_leaves_no_file_and_says_why(trained, tmp_path, monkeypatch):
    store, run_id, _ = trained
    monkeypatch.setattr(export, "_run_torchscript", lambda path, images: torch.zeros(len(images), 10))
    with pytest.raises(export.ExportError, match="does not match"):
        export.export(store, run_id, "torchscript", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_sklearn_and_pixel_runs_say_plainly_what_cannot_be_exported(tmp_path):
    store = RunStore(tmp_path)
    svm = _run(store, strategy="pixel_svm")
    with pytest.raises(export.NotExportable, match="no network to export"):
        export.export(store, svm, "onnx")
    assert export.exportable_reason(Plan(head="logreg")).startswith("This run's head is a scikit-learn logreg")


def test_predict_reads_grey_16_bit_cmyk_and_transparent_images_and_refuses_the_rest(trained):
    _, _, loaded = trained
    rng = np.random.default_rng(0)
    rgb = _png((rng.random((40, 50, 3)) * 255).astype(np.uint8))
    grey16 = _png((np.linspace(0, 65535, 40 * 50).reshape(40, 50)).astype(np.uint16))
    cmyk = io.BytesIO()
    Image.new("CMYK", (30, 30), (0, 255, 255, 0)).save(cmyk, "JPEG")   # pure red in CMYK
    rgba = _png(np.zeros((20, 20, 4), np.uint8))                         # fully transparent: white
    for data in (rgb, grey16, cmyk.getvalue(), rgba):
        x = export.read_image(data, loaded.size)
        assert x.dtype == torch.uint8 and x.shape == (3, 32, 32)
    red = export.read_image(cmyk.getvalue(), 32).float().mean((1, 2))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    g = export.read_image(grey16, 32)
    assert g.max() > 200 and g.min() < 60          # scaled to 8 bit, not clipped to white
    assert export.read_image(rgba, 32).min() == 255
    with pytest.raises(export.BadImage, match="not an image"):
        export.read_image(b"hello, not a picture", 32, "notes.txt")
    with pytest.raises(export.BadImage, match="empty"):
        export.read_image(b"", 32)
    huge = io.BytesIO()
    Image.new("L", (8000, 6000)).save(huge, "PNG")
    with pytest.raises(export.BadImage, match="megapixels"):
        export.read_image(huge.getvalue(), 32, "huge.png")
    top = export.predict(loaded, export.read_image(rgb, 32)[None], k=3)[0]
    assert len(top) == 3 and [c for c, _ in top][0] in loaded.classes
    assert top[0][1] >= top[1][1] >= top[2][1] and 0 < sum(p for _, p in top) <= 1 + 1e-6


def test_export_and_predict_on_the_command_line(trained, capsys, tmp_path, monkeypatch):
    store, run_id, _ = trained
    monkeypatch.setenv("TLCORE_HOME", str(store.root))
    img = tmp_path / "img.png"
    img.write_bytes(_png((np.random.default_rng(1).random((24, 24, 3)) * 255).astype(np.uint8)))
    code = cli.main(["predict", run_id, str(img), "--top", "2"])
    line = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(line) == 1
    d = json.loads(line[0])
    assert d["run_id"] == run_id and len(d["predictions"][0]["top"]) == 2
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    assert cli.main(["predict", run_id, str(bad)]) == 2
    assert "not an image" in json.loads(capsys.readouterr().out)["predictions"][0]["error"]
    code = cli.main(["export", run_id, "--format", "torchscript", "--out", str(tmp_path / "out")])
    d = json.loads(capsys.readouterr().out.strip())
    assert code == 0 and d["agreement"] == 1.0 and (tmp_path / "out" / f"{run_id}.pt").exists()
    assert cli.main(["export", "no-such-run"]) == 2
