"""Download progress for people: how many bytes of a dataset or weights file have arrived.

torch.hub (weights) and torchvision (datasets) both count bytes into a tqdm-style bar that they
look up by name when a download starts. We put a subclass in its place that also tells a callback
registered for the current thread, and otherwise behaves exactly as before. Per thread, because
one server downloads for several students at once: a page's callback sees only its own download.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator

Progress = Callable[[int, "int | None"], None]   # (bytes so far, bytes in all or None when unknown)
REPORT_EVERY_S = 0.25                             # a browser redraws about this often; the bytes do not need more

_local = threading.local()
_install_lock = threading.Lock()


def _reporting(base: type) -> type:
    class Reporting(base):  # type: ignore[misc, valid-type]
        _tlcore_reporting = True

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._callback: Progress | None = getattr(_local, "callback", None)
            self._total = kwargs.get("total")
            self._done, self._told = 0, 0.0

        def update(self, n: int = 1):
            self._done += n
            now = time.monotonic()
            if self._callback is not None and (now - self._told >= REPORT_EVERY_S or self._done == self._total):
                self._told = now
                self._callback(self._done, self._total)
            return super().update(n)

    Reporting.__name__ = Reporting.__qualname__ = f"Reporting{base.__name__}"
    return Reporting


def install() -> None:
    """Idempotent: wrap the bar class of torch.hub and of torchvision's dataset downloads."""
    import torch.hub
    import torchvision.datasets.utils as tv_utils

    with _install_lock:
        for module in (torch.hub, tv_utils):
            if not getattr(module.tqdm, "_tlcore_reporting", False):
                module.tqdm = _reporting(module.tqdm)


@contextlib.contextmanager
def reporting(callback: Progress) -> Iterator[None]:
    """Within the block, downloads started by this thread report their bytes to `callback`."""
    install()
    previous = getattr(_local, "callback", None)
    _local.callback = callback
    try:
        yield
    finally:
        _local.callback = previous
