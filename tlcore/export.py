"""Export a finished run's network for use elsewhere, and predict with it here.

An export is the trained network with its preprocessing inside: it takes a uint8 RGB image tensor
[B, 3, S, S] at the run's image size S and returns class probabilities [B, classes]. Beside it, a
JSON file names the classes (in output order), the input it expects and the plan that trained it.

Every export is checked before it is offered: the written file is loaded back (torch.jit.load;
onnxruntime, or the ONNX checker where onnxruntime is missing), run on validation images, and its
probabilities compared with the engine's on the same images. A file that fails the check is
deleted and the reason raised (`ExportError`), so a broken file is never left behind.

Runs without a network layer to export say so (`NotExportable`): an SVM on raw pixels, or a
scikit-learn head (the lab keeps their predictions and metrics, not the fitted classifier).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .errors import TLCoreError

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
CHECK_IMAGES = 32          # validation images each export is checked on
TOLERANCE = 1e-3           # largest difference in any probability the check accepts


class ExportError(TLCoreError):
    """The export could not be made, or failed its check; no file was left behind."""


class NotExportable(TLCoreError):
    """The run has no network to export; the message says what it has instead."""


class Packaged(nn.Module):
    """uint8 [B,3,S,S] -> probabilities: the engine's normalisation, the groups, the head, softmax."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        std_t = torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).view(1, 3, 1, 1))
        self.register_buffer("shift", (-torch.tensor(mean, dtype=torch.float32) / std_t).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() * self.scale + self.shift
        return torch.softmax(self.net(x), dim=1)


def exportable_reason(plan) -> str | None:
    """None when the run's model can be exported, else what can be said instead, plainly."""
    if plan.strategy == "pixel_svm":
        return ("An SVM on raw pixels has no network to export, and the lab does not keep the fitted scikit-learn "
                "classifier (only its predictions and metrics), so there is nothing to export for this run.")
    if plan.head in ("logreg", "linear_svm"):
        return (f"This run's head is a scikit-learn {plan.head} on the pretrained network's features. The lab keeps "
                "its predictions and metrics but not the fitted classifier, so it cannot be exported; train the "
                "same plan with a linear head to get an exportable network.")
    return None


@dataclass(frozen=True)
class Loaded:
    """A finished run's network, ready to predict: packaged with its preprocessing, in eval mode."""
    model: Packaged
    plan: object
    classes: tuple[str, ...]
    size: int


def load(store, run_id: str) -> Loaded:
    from .artifacts import NoNetwork, load_network
    from .models import MODELS
    run = store.load(run_id, with_steps=False)
    if run.active:   # its model file is not there yet, or is the last epoch's and still changing
        raise NotExportable(f"run {run_id} is still {run.status}: export it once it has ended")
    reason = exportable_reason(run.plan)
    if reason:
        raise NotExportable(reason)
    if run.plan.kind != "train":
        raise NotExportable(f"run {run_id} is a {run.plan.kind} run: only training runs leave a network to export")
    try:
        net, plan, classes = load_network(store, run_id)
    except NoNetwork as e:
        raise NotExportable(str(e)) from None
    spec = MODELS[plan.model]
    return Loaded(Packaged(net, spec.mean, spec.std).eval(), plan, classes, plan.resolved_image_size())


def check_images(store, loaded: Loaded, n: int = CHECK_IMAGES) -> torch.Tensor:
    """Up to `n` of the run's validation images at its size (uint8), or random images when its data
    cannot be loaded here."""
    from .data import load_plan_data
    from .data.images import stack_square
    try:
        val = load_plan_data(loaded.plan).val_x[:n]
        return stack_square(list(val), loaded.size)
    except Exception:  # noqa: BLE001 - the check still runs, on images it makes
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (min(n, 8), 3, loaded.size, loaded.size), dtype=torch.uint8, generator=g)


@dataclass(frozen=True)
class Exported:
    path: Path
    meta_path: Path
    format: str
    checked_on: int               # images the export was checked on
    max_difference: float         # largest |p_export - p_engine| over them
    agreement: float              # share of those images whose top class agrees


def engine_probabilities(loaded: Loaded, images: torch.Tensor) -> torch.Tensor:
    """What the engine itself predicts for uint8 images: its own preprocessing (tlcore.train.pipeline),
    then the network, on the CPU. The reference every export is checked against."""
    from .device import pick
    from .models import MODELS
    from .train.pipeline import Preprocess
    spec = MODELS[loaded.plan.model]
    prep = Preprocess(loaded.size, spec.mean, spec.std, pick("cpu"))
    with torch.no_grad():
        return loaded.model.net(prep(images).contiguous()).float().softmax(1)


def _metadata(loaded: Loaded, fmt: str) -> dict:
    return {"format": fmt, "classes": list(loaded.classes),
            "input": {"dtype": "uint8", "shape": ["batch", 3, loaded.size, loaded.size], "channels": "RGB",
                      "note": "resize to the size first (shorter side, then centre crop); normalisation is inside"},
            "output": {"kind": "probabilities", "shape": ["batch", len(loaded.classes)]},
            "plan": loaded.plan.to_dict()}


def _write_torchscript(model: Packaged, example: torch.Tensor, path: Path) -> None:
    import warnings
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # tracing at one fixed size is what we mean: the input size is part of it
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(path))


def _write_onnx(model: Packaged, example: torch.Tensor, path: Path) -> None:
    """torch's TorchScript-based exporter (opset 17) where this torch still has it: about 5x faster
    than the dynamo exporter on these networks (12 s vs 60 s for EfficientNet-Lite0 on a loaded 2-core
    CPU). The dynamo exporter (needs onnxscript) is the fallback."""
    import warnings
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["images"],
                              output_names=["probabilities"], dynamic_axes={"images": {0: "batch"},
                                                                            "probabilities": {0: "batch"}},
                              opset_version=17)
            return
        except Exception:  # noqa: BLE001 - no legacy exporter in this torch, or it cannot trace this network
            _remove(path)
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        except ImportError:
            raise ExportError("ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript") \
                from None
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                    output_names=["probabilities"], dynamic_shapes={"images": {0: batch}},
                                    verbose=False)
    program.save(str(path))


def _run_torchscript(path: Path, images: torch.Tensor) -> torch.Tensor:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return m(images)


def _run_onnx(path: Path, images: torch.Tensor) -> torch.Tensor:
    import onnx
    onnx.checker.check_model(str(path))
    try:
        import onnxruntime as ort
    except ImportError:   # the checker passed; run it on onnx's reference evaluator instead
        from onnx.reference import ReferenceEvaluator
        out = ReferenceEvaluator(str(path)).run(None, {"images": images.numpy()})[0]
        return torch.from_numpy(out)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def export(store, run_id: str, fmt: str, out_dir: Path | str | None = None) -> Exported:
    """Write the run's network in `fmt` (and its JSON), check it, and return where it lies."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    loaded = load(store, run_id)
    out = Path(out_dir) if out_dir is not None else store.artifact_dir(run_id) / "export"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{run_id}{SUFFIX[fmt]}"
    meta_path = out / f"{run_id}-{fmt}.json"
    tmp = path.with_name(path.name + ".partial")
    images = check_images(store, loaded)
    expected = engine_probabilities(loaded, images)
    try:
        (_write_torchscript if fmt == "torchscript" else _write_onnx)(loaded.model, images[:2], tmp)
        got = (_run_torchscript if fmt == "torchscript" else _run_onnx)(tmp, images)
    except ExportError:
        _remove(tmp)
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the exporter or the runtime: no file, one message
        _remove(tmp)
        raise ExportError(f"the {fmt} export failed ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                          "no file was written") from e
    if got.shape != expected.shape:
        _remove(tmp)
        raise ExportError(f"the {fmt} export gave outputs of shape {tuple(got.shape)}, not {tuple(expected.shape)}; "
                          "no file was kept")
    diff = float((got.float() - expected).abs().max())
    agree = float((got.argmax(1) == expected.argmax(1)).float().mean())
    if not diff <= TOLERANCE:
        _remove(tmp)
        raise ExportError(f"the {fmt} export does not match the trained network: its probabilities differ by up to "
                          f"{diff:.2g} on {len(images)} validation images (top class agrees on {agree:.0%}); "
                          "no file was kept")
    os.replace(tmp, path)
    meta = _metadata(loaded, fmt) | {"check": {"images": len(images), "max_difference": diff, "agreement": agree}}
    meta_path.write_text(json.dumps(meta, indent=2))
    return Exported(path, meta_path, fmt, len(images), diff, agree)


def _remove(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


# --- predicting on new images ----------------------------------------------------------------------
# One checked decoder for every image a person hands in (tlcore.data.images.read_checked).
from .data.images import MAX_FILE_BYTES, MAX_PIXELS, BadImage, read_checked as read_image  # noqa: E402,F401


def predict(loaded: Loaded, images: torch.Tensor, k: int = 3) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) for each uint8 [3,S,S] image in `images` [B,3,S,S]."""
    with torch.no_grad():
        probs = loaded.model(images)
    k = max(1, min(k, probs.shape[1]))
    top = probs.topk(k, dim=1)
    return [[(loaded.classes[int(i)], float(p)) for p, i in zip(ps, ids)] for ps, ids in zip(top.values, top.indices)]
