"""One builder for every zoo entry: bare architecture -> weights -> layer groups -> head."""
from __future__ import annotations

import os
import urllib.error
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import DamagedDownload, DownloadRequired
from .base import ModelSpec, Network
from .heads import make_head
from .registry import MODELS

WeightsStatus = Literal["bundled", "cached", "needs download"]

# Stand-ins for functional ops in the original forward() (see ModelSpec's docstring).
_STAND_INS = {"@flatten": lambda: nn.Flatten(1), "@relu": lambda: nn.ReLU(), "@avgpool": lambda: nn.AdaptiveAvgPool2d(1)}


def _module(model: nn.Module, path: str) -> nn.Module:
    if path in _STAND_INS:
        return _STAND_INS[path]()
    return model.get_submodule(path)


def _checkpoint_path(spec: ModelSpec) -> Path | None:
    if spec.weights is None:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(spec.weights.url)


def weights_status(name: str) -> WeightsStatus:
    spec = MODELS[name]
    if spec.load_shipped is not None:
        return "bundled"
    path = _checkpoint_path(spec)
    return "cached" if path is not None and path.exists() else "needs download"


def _hub_state_dict(spec: ModelSpec) -> dict:
    name, path = os.path.basename(spec.weights.url), _checkpoint_path(spec)
    what = f"{spec.title} ImageNet weights ({name})"
    try:  # torch.hub's cache first, the download (with a progress bar) only when absent
        return spec.weights.get_state_dict(progress=True, check_hash=False)
    except Exception as e:
        if path.is_file():
            # torch.hub only moves a finished download into place, so a file there that will not load
            # is damaged (a disk error, a copy cut short): downloading again cannot help until it goes.
            raise DamagedDownload(what, str(path), type(e).__name__) from None
        if not isinstance(e, (urllib.error.URLError, OSError, RuntimeError)):
            raise  # not a failed download: a bug, which must show as one
        raise DownloadRequired(what, spec.weights.url, f"expected in {path.parent}: {type(e).__name__}") from None


def download_weights(name: str) -> None:
    """Fetch a zoo entry's ImageNet weights into torch.hub's cache now (a no-op when they are here);
    wrap in `tlcore.downloads.reporting` to follow the bytes."""
    spec = MODELS[name]
    if weights_status(name) == "needs download":
        _hub_state_dict(spec)


def _load_pretrained(spec: ModelSpec, model: nn.Module) -> None:
    if spec.load_shipped is not None:
        spec.load_shipped(model)
        return
    model.load_state_dict(_hub_state_dict(spec))


def _bare(spec: ModelSpec, pretrained: bool) -> nn.Module:
    model = spec.build()
    if pretrained:
        _load_pretrained(spec, model)
    return model


def _groups(spec: ModelSpec, model: nn.Module) -> "OrderedDict[str, nn.Module]":
    return OrderedDict((g, nn.Sequential(*(_module(model, p) for p in paths))) for g, paths in spec.groups)


def build_network(name: str, num_classes: int, *, pretrained: bool = True, head: str = "linear") -> Network:
    """The backbone cut into its layer groups with a new head for `num_classes`.

    pretrained=False gives the same architecture with random weights: the train-from-scratch baseline.
    """
    spec = MODELS[name]
    model = _bare(spec, pretrained)
    return Network(_groups(spec, model), make_head(head, spec.feature_dim, num_classes), spec.feature_dim)


def imagenet_network(name: str, *, pretrained: bool = True) -> Network:
    """Same groups, with the original 1000-class ImageNet classifier as the head."""
    spec = MODELS[name]
    model = _bare(spec, pretrained)
    return Network(_groups(spec, model), model.get_submodule(spec.head), spec.feature_dim)


@lru_cache(maxsize=None)
def _counts(name: str) -> tuple[int, int]:
    """(parameters, depth) of the full ImageNet model; depth counts conv and linear layers.

    Built on the meta device: shapes only, so counting VGG's 138 M parameters costs no memory or init time."""
    with torch.device("meta"):
        model = MODELS[name].build()
    params = sum(p.numel() for p in model.parameters())
    depth = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    return params, depth


def model_card(name: str) -> dict:
    spec = MODELS[name]
    params, depth = _counts(name)
    return {"name": name, "title": spec.title, "family": spec.family, "params": params, "depth": depth,
            "top1": spec.meta.get("top1"), "input_size": spec.input_size, "min_input_size": spec.min_input_size,
            "size_mb": spec.meta.get("file_size_mb"), "groups": list(spec.group_names),
            "weights": spec.meta.get("weights"), "source": spec.meta.get("url"), "status": weights_status(name)}


def model_rows() -> list[dict]:
    rows = []
    for name in MODELS:
        c = model_card(name)
        rows.append({"name": name, "title": c["title"], "params_M": round(c["params"] / 1e6, 1), "depth": c["depth"],
                     "top1": c["top1"], "input": c["input_size"], "size_MB": c["size_mb"], "weights": c["status"]})
    return rows
