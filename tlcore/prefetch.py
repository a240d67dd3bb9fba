"""A teacher preparing a host: fetch datasets and weights into their caches before the class comes,
so no student waits on a download (`python -m tlcore prefetch fashion_mnist resnet18 ...`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from . import downloads
from .errors import TLCoreError

Progress = Callable[[str, int, "int | None"], None]   # (what, bytes so far, bytes in all or None)


class UnknownName(TLCoreError):
    pass


@dataclass(frozen=True)
class Fetched:
    name: str
    what: str          # "dataset" or "model"
    status: str        # "downloaded", "already here", "bundled", "failed"
    seconds: float
    message: str = ""


def _dataset(name: str, progress: Progress) -> str:
    from .data import DATASETS, load_dataset
    from .train.plan import default_image_size
    spec = DATASETS[name]
    if spec.source == "bundled":
        return "bundled"
    if name == "folder":
        raise UnknownName("folder is a learner's own images: there is nothing to prefetch")
    from .paths import data_dir
    was_here = spec.available_offline(data_dir())
    with downloads.reporting(lambda done, total: progress(name, done, total)):
        # Decoded at the size the dashboard uses here, so the first run does not decode it either.
        load_dataset(name, image_size=default_image_size() or 224)
    return "already here" if was_here else "downloaded"


def _model(name: str, progress: Progress) -> str:
    from .models import download_weights, weights_status
    status = weights_status(name)
    if status != "needs download":
        return {"bundled": "bundled", "cached": "already here"}[status]
    with downloads.reporting(lambda done, total: progress(name, done, total)):
        download_weights(name)
    return "downloaded"


def prefetch(names: list[str], progress: Progress = lambda *a: None) -> list[Fetched]:
    """Fetch each dataset or model named; one that cannot be fetched is reported, the others go on."""
    from .data import DATASETS
    from .models import MODELS
    unknown = [n for n in names if n not in DATASETS and n not in MODELS]
    if unknown:
        raise UnknownName(f"{', '.join(unknown)}: not a dataset or a model (see `python -m tlcore datasets` "
                          "and `python -m tlcore models`)")
    out = []
    for name in names:
        what = "dataset" if name in DATASETS else "model"
        t = time.perf_counter()
        try:
            status, message = (_dataset if what == "dataset" else _model)(name, progress), ""
        except TLCoreError as e:
            status, message = "failed", str(e)
        out.append(Fetched(name, what, status, round(time.perf_counter() - t, 2), message))
    return out
