"""The frozen prefix, computed once: outputs of groups[:cut] cached in memory and on disk.

Key = everything that determines the numbers (dataset and its options, model, weights, image
size, cut). A second run with the same key skips the backbone entirely; that is what makes a
linear probe take seconds. Stored as float16: ample precision for training a head on, half the bytes.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..device import DevicePolicy
from ..models.base import Network
from ..models.fold import fold_batchnorm
from ..paths import cache_dir
from ..settings import read
from .pipeline import Preprocess

FEATURE_VERSION = 3  # bump when the way features are computed changes (3: content identity of data and weights)


def _budget_bytes() -> int:
    return read("TLCORE_FEATURE_CACHE_MB") * 2**20


def feature_key(identity: dict, cut: int) -> str:
    blob = json.dumps({**identity, "cut": cut, "v": FEATURE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def prefix_mode(policy: DevicePolicy) -> str:
    """The numeric mode a frozen prefix computes in on this policy ("fp32", "bf16", ...): features
    from one mode are not another's, so it is part of every feature key."""
    return str(policy.amp_dtype).replace("torch.", "") if policy.amp_dtype is not None else "fp32"


def feature_identity(*, data_fingerprint: str, model: str, weights: str, truncate_after: str, size: int,
                     policy: DevicePolicy) -> dict:
    """Everything that decides a frozen prefix's numbers, apart from the cut (feature_key adds it)."""
    import torchvision
    return {"data": data_fingerprint, "model": model, "weights": weights, "truncate_after": truncate_after,
            "size": size, "device": policy.device.type, "mode": prefix_mode(policy),
            "torch": torch.__version__, "torchvision": torchvision.__version__}


class FeatureCache:
    """Keyed LRU in memory (bounded by bytes) backed by .pt files; both survive across runs."""

    def __init__(self, root: Path | None = None, budget_bytes: int | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "features"
        self.budget = budget_bytes if budget_bytes is not None else _budget_bytes()
        self._mem: "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()
        self._lock = threading.Lock()   # one cache serves every job thread of a server

    def get(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
        path = self.root / f"{key}.pt"
        if path.exists():
            try:
                pair = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a torn or stale file is just a miss
                return None
            self._remember(key, (pair["train"], pair["val"]))
            return pair["train"], pair["val"]
        return None

    def put(self, key: str, train: torch.Tensor, val: torch.Tensor) -> None:
        train, val = train.cpu(), val.cpu()
        self._remember(key, (train, val))
        if train.nbytes + val.nbytes <= self.budget:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                torch.save({"train": train, "val": val}, tmp)
                os.replace(tmp, self.root / f"{key}.pt")  # atomic: readers never see half a file
            finally:
                tmp.unlink(missing_ok=True)

    def _remember(self, key: str, pair: tuple[torch.Tensor, torch.Tensor]) -> None:
        with self._lock:
            self._mem[key] = pair
            self._mem.move_to_end(key)
            while sum(a.nbytes + b.nbytes for a, b in self._mem.values()) > self.budget and len(self._mem) > 1:
                self._mem.popitem(last=False)

    def fits(self, n_images: int, per_image_numel: int) -> bool:
        return n_images * per_image_numel * 2 <= self.budget

    @contextlib.contextmanager
    def computing(self, key: str, should_stop: Callable[[], bool] = lambda: False, poll_s: float = 0.2):
        """Hold the right to compute `key`: several runs (threads, worker processes, other servers on a
        shared cache folder) asking for the same features compute them once; the others wait here,
        then find them with get(). A stop request ends the wait (should_stop raising is honoured)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key}.lock", "a+") as f:
            while not _try_lock(f):
                if should_stop():
                    from .scope import Stopped
                    raise Stopped()
                time.sleep(poll_s)
            try:
                yield
            finally:
                _unlock(f)


def _try_lock(f) -> bool:
    try:
        import fcntl
    except ImportError:   # Windows: no advisory locks here; two runs may then both compute (correct, slower)
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(f) -> None:
    try:
        import fcntl
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except ImportError:
        pass


class FrozenPrefix:
    """groups[:cut] as a separate, inference-only copy: BatchNorm folded into the convolutions,
    weights stored in the policy's inference dtype, channels_last.

    Autocast re-casts frozen weights on every batch (it caches casts only for weights that need a
    gradient), so a copy kept in bf16 saves that work as well as the BatchNorm passes. Only for
    groups whose function is fixed (frozen, BatchNorm in inference mode). The fold is checked
    against the original in fp32 on a probe batch; an architecture it does not reproduce keeps
    its BatchNorm layers.
    """

    def __init__(self, net: Network, cut: int, prep: Preprocess, policy: DevicePolicy) -> None:
        fast = nn.Sequential(*(copy.deepcopy(g).eval().requires_grad_(False) for g in list(net.groups.values())[:cut]))
        self.folded = fold_batchnorm(fast)
        if self.folded and not _same_function(net, cut, fast, prep):
            fast = nn.Sequential(*(copy.deepcopy(g).eval().requires_grad_(False)
                                   for g in list(net.groups.values())[:cut]))
            self.folded = 0
        self.dtype = policy.amp_dtype
        if self.dtype is not None:
            fast = fast.to(self.dtype)
            if not all(torch.isfinite(p).all() for p in fast.parameters()):   # a folded scale beyond fp16's range
                fast, self.dtype = fast.float(), None
        self.module = fast.to(policy.device, memory_format=policy.memory_format())

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x if self.dtype is None else x.to(self.dtype))


@torch.no_grad()
def _same_function(net: Network, cut: int, folded: nn.Module, prep: Preprocess) -> bool:
    """Does the folded copy compute what groups[:cut] compute (fp32, inference mode)?"""
    g = torch.Generator().manual_seed(0)
    x = prep(torch.randint(0, 256, (2, 3, prep.size, prep.size), dtype=torch.uint8, generator=g)).float()
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        want = net.features(x, 0, cut).float()
    finally:
        for m, training in modes:
            m.training = training
    got = folded(x).float()
    # A wrong pairing is off by O(1); TF32 convolutions on a GPU by about 1e-3.
    return bool(torch.allclose(got, want, rtol=1e-2, atol=1e-2 * max(float(want.abs().max()), 1e-6)))


@torch.no_grad()
def compute_prefix(net: Network, images: torch.Tensor, cut: int, prep: Preprocess, policy: DevicePolicy,
                   batch_size: int, progress: Callable[[int, int], None] | None = None,
                   prefix: FrozenPrefix | None = None) -> torch.Tensor:
    """groups[:cut] applied to every image, in inference mode, returned as float16 on the CPU."""
    prefix = prefix or FrozenPrefix(net, cut, prep, policy)
    out: list[torch.Tensor] = []
    n = images.shape[0]
    for start in range(0, n, batch_size):
        f = prefix(prep(images[start:start + batch_size]))
        out.append(f.to("cpu", torch.float16))
        if progress is not None:
            progress(min(start + batch_size, n), n)
    if policy.is_cuda:
        torch.cuda.synchronize()
    return torch.cat(out)


def prefix_numel(net: Network, cut: int, prep: Preprocess) -> int:
    """Values per image at the cut, found with one tiny forward pass."""
    with torch.no_grad():
        probe = torch.zeros(1, 3, prep.size, prep.size, dtype=torch.uint8)
        return int(net.features(prep(probe), 0, cut).numel())


# One cache per process, keyed by content: a second run in the same server reuses memory, a new
# process reuses the disk files.
_DEFAULT: dict[str, FeatureCache] = {}


def default_cache() -> FeatureCache:
    root = str(cache_dir() / "features")
    if root not in _DEFAULT:
        _DEFAULT[root] = FeatureCache(Path(root))
    return _DEFAULT[root]
