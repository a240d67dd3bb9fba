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
    state = _hub_state_dict(spec)
    dropped = tuple(f"{path}." for path, _why in spec.dropped)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(dropped)})


def _bare(spec: ModelSpec, pretrained: bool) -> nn.Module:
    model = spec.build()
    if pretrained:
        _load_pretrained(spec, model)
    return model


def _groups(spec: ModelSpec, model: nn.Module) -> "OrderedDict[str, nn.Module]":
    return OrderedDict((g, nn.Sequential(*(_module(model, p) for p in paths))) for g, paths in spec.groups)


def kept_groups(name: str, truncate_after: str = "") -> tuple[str, ...]:
    """The layer groups a network keeps: all of them, or those up to and including `truncate_after`
    (the lecture notes' "remove the higher conv layers too" for small data unlike ImageNet)."""
    names = MODELS[name].group_names
    if not truncate_after:
        return names
    if truncate_after not in names:
        raise ValueError(f"{name} has no layer group {truncate_after!r}; its groups are {', '.join(names)}")
    return names[:names.index(truncate_after) + 1]


def _truncate(groups: "OrderedDict[str, nn.Module]", keep: tuple[str, ...], side: int) -> tuple[OrderedDict, int]:
    """Drop the groups above `keep`; a kept top that still outputs a feature map gets global average
    pooling so the head sees one vector per image. Returns the groups and the head's input width."""
    kept = OrderedDict((g, groups[g]) for g in keep)
    with torch.no_grad():
        was = [(m, m.training) for m in kept.values()]
        for m, _ in was:
            m.eval()
        y = torch.zeros(1, 3, side, side)
        for g in kept.values():
            y = g(y)
        for m, training in was:
            m.train(training)
    top = keep[-1]
    if y.ndim == 4:
        kept[top] = nn.Sequential(*kept[top], nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        return kept, int(y.shape[1])
    return kept, int(y.flatten(1).shape[1])


def _aux_head(spec: ModelSpec, model: nn.Module, num_classes: int) -> nn.Module | None:
    """The auxiliary classifier with its pretrained convolutions and a new last layer for our classes."""
    if not spec.aux:
        return None
    aux = model.get_submodule(spec.aux)
    fc = aux.fc
    aux.fc = make_head("linear", fc.in_features, num_classes)
    return aux


def build_network(name: str, num_classes: int, *, pretrained: bool = True, head: str = "linear",
                  truncate_after: str = "") -> Network:
    """The backbone cut into its layer groups with a new head for `num_classes`.

    pretrained=False gives the same architecture with random weights: the train-from-scratch baseline.
    `truncate_after` keeps only the groups up to that one and puts the head on its pooled output.
    """
    spec = MODELS[name]
    keep = kept_groups(name, truncate_after)
    model = _bare(spec, pretrained)
    groups, dim = _groups(spec, model), spec.feature_dim
    if len(keep) < len(groups):
        groups, dim = _truncate(groups, keep, max(spec.min_input_size, 64))
    aux = _aux_head(spec, model, num_classes) if spec.aux_after in keep else None
    return Network(groups, make_head(head, dim, num_classes), dim, aux=aux,
                   aux_after=keep.index(spec.aux_after) if aux is not None else -1, aux_weight=spec.aux_weight,
                   aux_min_side=spec.aux_min_side)


def weights_identity(name: str, pretrained: bool = True) -> str:
    """Which weights a network starts from, as a cache key can hold it: torchvision's weights enum
    member, the shipped file's content hash, or "random" (features of random weights are never cached)."""
    spec = MODELS[name]
    if not pretrained:
        return "random"
    if spec.weights is not None:
        return f"torchvision:{spec.weights}"
    if spec.shipped_path is not None:
        path = Path(spec.shipped_path())
        st = path.stat()
        return f"file:{_file_sha256(str(path), st.st_size, st.st_mtime_ns)}"
    return f"shipped:{name}"


@lru_cache(maxsize=None)
def _file_sha256(path: str, _size: int, _mtime_ns: int) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@lru_cache(maxsize=256)
def group_mflops(name: str, side: int, truncate_after: str = "") -> tuple[float, ...]:
    """Forward MFLOPs per image of each kept layer group at `side` px, counted on the meta device
    (shapes only: no memory, no compute). The progress line scales measured step times with it."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = MODELS[name]
    with torch.device("meta"):
        model = spec.build().eval()
        x = torch.empty(1, 3, side, side)
    out = []
    groups = _groups(spec, model)
    for g in kept_groups(name, truncate_after):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            x = groups[g](x)
        out.append(counter.get_total_flops() / 1e6)
    return tuple(out)


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
