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
from ..models import fastpath, quantize
from ..models.fold import fold_batchnorm
from ..paths import cache_dir
from ..settings import read
from .pipeline import Preprocess

FEATURE_VERSION = 5  # bump when the way features are computed changes (2: BatchNorm folded, bf16 weights;
#                     3: fp32 CPU prefixes fused, int8 where it pays; 4: content identity of data and weights;
#                     5: int8 with 8-bit activations and fp32 pooling, its bits in the key)


def _budget_bytes() -> int:
    return read("TLCORE_FEATURE_CACHE_MB") * 2**20


def feature_key(identity: dict, cut: int) -> str:
    """The cache file's name; a folder dataset's keys start with its source tag, so deleting an upload
    finds its features (tlcore.uploads.delete)."""
    from ..data.registry import tag_of
    blob = json.dumps({**identity, "cut": cut, "v": FEATURE_VERSION}, sort_keys=True, default=str)
    tag = tag_of(str(identity.get("data", "")))
    return (f"{tag}-" if tag else "") + hashlib.sha256(blob.encode()).hexdigest()[:24]


def _policy_dtype(policy: DevicePolicy) -> str:
    return str(policy.amp_dtype).replace("torch.", "") if policy.amp_dtype is not None else "fp32"


def feature_identity(*, data_fingerprint: str, model: str, weights: str, truncate_after: str, size: int,
                     policy: DevicePolicy) -> dict:
    """Everything that decides a frozen prefix's numbers, apart from the cut and the prefix's own
    numeric mode at that cut (source_at adds both: prefix_mode, e.g. int8 where it pays)."""
    import torchvision
    return {"data": data_fingerprint, "model": model, "weights": weights, "truncate_after": truncate_after,
            "size": size, "device": policy.device.type, "dtype": _policy_dtype(policy),
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
    channels_last, and the fastest numeric mode this device serves well (`mode`):

    * "bf16": weights stored in bf16, where the policy autocasts (GPUs, CPUs with native bf16).
      Autocast re-casts frozen weights on every batch (it caches casts only for weights that need
      a gradient), so a copy kept in bf16 saves that work as well as the BatchNorm passes.
    * "fp32" on a CPU without bf16: "same" padding made static and each convolution fused with its
      activation in one oneDNN call (models/fastpath.py).
    * "int8" on such a CPU unless TLCORE_CPU_INT8=0, once `calibrate` has quantized the copy on
      the run's own images and found it close to fp32 on images the calibration did not see
      (models/quantize.py). Only for prefixes int8 serves
      (plain convolutions: ResNet, VGG, AlexNet) and passes long enough to repay the calibration.
      Activations get 8 bits everywhere; without VNNI the weights get 7 (quantize.default_bits).

    Only for groups whose function is fixed (frozen, BatchNorm in inference mode). Each rewrite is
    checked against the original in fp32 on a probe batch; one it does not reproduce is undone.
    """

    def __init__(self, net: Network, cut: int, prep: Preprocess, policy: DevicePolicy) -> None:
        self.cut, self.prep, self.policy = cut, prep, policy
        self._groups = list(net.groups.values())[:cut]
        probe, want = _reference_output(net, cut, prep)
        fast = self._copy()
        self.folded = fold_batchnorm(fast)
        if self.folded and not _matches(fast, probe, want):
            fast, self.folded = self._copy(), 0
        self.dtype = policy.amp_dtype
        self.fused = 0
        if self.dtype is not None:
            fast = fast.to(self.dtype)
            if not all(torch.isfinite(p).all() for p in fast.parameters()):   # a folded scale beyond fp16's range
                fast, self.dtype = fast.float(), None
        elif policy.device.type == "cpu":
            fast = self._fp32_rewrites(fast, probe, want)
        self.module = fast.to(policy.device, memory_format=policy.memory_format())
        self.int8: nn.Module | None = None       # the quantized copy, once calibrate() chose it
        self.int8_error: float | None = None     # its measured relative error against fp32
        self.int8_seconds = 0.0                  # what calibrating cost
        self.calibrated = False
        self.int8_candidate = self.dtype is None and int8_suits(self._groups, policy)
        self._params = sum(p.numel() for g in self._groups for p in g.parameters())

    @property
    def mode(self) -> str:
        """The numbers it computes: "int8", "bf16" or "fp32" (part of what a feature cache key must hold)."""
        return "int8" if self.int8 is not None else "bf16" if self.dtype is not None else "fp32"

    def _copy(self) -> nn.Sequential:
        return nn.Sequential(*(copy.deepcopy(g).eval().requires_grad_(False) for g in self._groups))

    def _fp32_rewrites(self, fast: nn.Module, probe: torch.Tensor, want: torch.Tensor) -> nn.Module:
        static, _ = fastpath.static_padding(fast, probe[:1])
        fused, n = fastpath.fuse_activations(static)
        if n and _matches(fused, probe, want):
            self.fused = n
            return fused
        return static if static is not fast and _matches(static, probe, want) else fast

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor, planned_images: int | None = None) -> str:
        """Choose int8 or not for a pass over `planned_images` images (default: len(images)), from a
        few of `images` (uint8, as stored). Returns the mode; a second call changes nothing."""
        if self.calibrated or not self.int8_candidate:
            self.calibrated = True
            return self.mode
        self.calibrated = True
        n = planned_images if planned_images is not None else len(images)
        if not int8_pays_off(n, self.prep.size, self._params) or len(images) < INT8_CALIBRATION + INT8_CHECK:
            return self.mode
        t0 = time.perf_counter()
        cal, check = _spaced(len(images), INT8_CALIBRATION, INT8_CHECK)
        q = quantize.quantize(self._copy(), [self.prep(images[cal]).contiguous()]).module
        x = self.prep(images[check])
        self.int8_error = relative_error(quantize.run(q, x), self.module(x).float())
        if self.int8_error <= INT8_MAX_ERROR:
            self.int8 = q
        self.int8_seconds = time.perf_counter() - t0
        return self.mode

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8 is not None:
            return quantize.run(self.int8, x)
        return self.module(x if self.dtype is None else x.to(self.dtype))


# int8 is chosen only where it repays its calibration: about 2 s on 2 cores at 224 px for ResNet-18
# (observing 16 images, converting, checking 16 more), against ~15 ms saved per 224 px image. Converting
# takes longer for more weights (VGG-16's 138M: about 20x ResNet-18's), so the bar rises with them.
INT8_MIN_WORK = 300        # images at 224 px (or as many pixels at another size) per 12M prefix weights
INT8_CALIBRATION = 16      # images the activation ranges are observed on (32 cost 0.8 s more, no better probe)
INT8_CHECK = 16            # other images the int8 copy is compared with fp32 on
# Relative L2 error of int8 features against fp32 above which int8 is refused: a guard against a
# broken quantization (an outlier channel, a layer int8 mangles), not a proof of probe accuracy. At
# 0.022-0.025 (random-init ResNet-18, 112 px) a probe lost 1.7 points on Fashion-MNIST while the
# pooling was int8 and none once it was fp32 (README, Performance).
INT8_MAX_ERROR = 0.06


def int8_enabled() -> bool:
    """May a CPU without bf16 compute frozen features in int8? TLCORE_CPU_INT8, on by default: a
    probe on int8 features lost at most 0.3 points against fp32 on digits and Fashion-MNIST, with
    VNNI and without (README, Performance)."""
    from ..settings import read
    return read("TLCORE_CPU_INT8")


def int8_suits(groups: list[nn.Module], policy: DevicePolicy) -> bool:
    """May int8 serve these groups on this device? CPU, fp32 policy, x86 engine, int8_enabled(),
    and no layer that int8 serves badly (quantize.unsuited_layer)."""
    return (policy.device.type == "cpu" and policy.amp_dtype is None and int8_enabled()
            and quantize.available() and quantize.unsuited_layer(nn.Sequential(*groups)) is None)


def int8_pays_off(n_images: int, size: int, params: int) -> bool:
    return n_images * (size / 224) ** 2 >= INT8_MIN_WORK * max(1.0, params / 12e6)


def prefix_mode(net: Network, cut: int, policy: DevicePolicy, n_images: int, size: int) -> str:
    """The mode a FrozenPrefix of groups[:cut] aims for over n_images at `size` px, known before
    building it (for a feature-cache key). Where calibration refuses int8 the features are fp32
    under an "int8" key: the refusal is decided by those same images, so the key still fixes them."""
    if policy.amp_dtype is not None:
        return "bf16"
    groups = list(net.groups.values())[:cut]
    params = sum(p.numel() for g in groups for p in g.parameters())
    return "int8" if int8_suits(groups, policy) and int8_pays_off(n_images, size, params) else "fp32"


def prefix_numbers(net: Network, cut: int, policy: DevicePolicy, n_images: int, size: int) -> dict:
    """What a feature-cache key must hold of how the prefix computes: its mode (prefix_mode) and,
    for int8, the bits this CPU's kernels take, so that a cache shared by workers on different CPUs
    keeps their features apart."""
    mode = prefix_mode(net, cut, policy, n_images, size)
    return {"mode": mode, **({"int8_bits": list(quantize.default_bits())} if mode == "int8" else {})}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Mean over images of |got - want| / |want| (L2 over each image's values)."""
    got, want = got.float().flatten(1), want.float().flatten(1)
    return float(((got - want).norm(dim=1) / want.norm(dim=1).clamp_min(1e-12)).mean())


def _spaced(n: int, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k indices spread over range(n) and m others between them: stored datasets are often sorted
    by class, and the first k images would then all be one class."""
    idx = torch.linspace(0, n - 1, k + m).round().long()
    check = torch.zeros(k + m, dtype=torch.bool)
    check[torch.linspace(0, k + m - 1, m).round().long()] = True
    return idx[~check], idx[check]


@torch.no_grad()
def _reference_output(net: Network, cut: int, prep: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """A probe batch and what groups[:cut] compute on it (fp32, inference mode)."""
    g = torch.Generator().manual_seed(0)
    x = prep(torch.randint(0, 256, (2, 3, prep.size, prep.size), dtype=torch.uint8, generator=g)).float()
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        want = net.features(x, 0, cut).float()
    finally:
        for m, training in modes:
            m.training = training
    return x, want


@torch.no_grad()
def _matches(module: nn.Module, x: torch.Tensor, want: torch.Tensor) -> bool:
    """Does a rewritten copy compute what the original computed on the probe batch?"""
    got = module(x).float()
    # A wrong pairing is off by O(1); TF32 convolutions on a GPU by about 1e-3.
    return got.shape == want.shape and bool(
        torch.allclose(got, want, rtol=1e-2, atol=1e-2 * max(float(want.abs().max()), 1e-6)))


@torch.no_grad()
def compute_prefix(net: Network, images: torch.Tensor, cut: int, prep: Preprocess, policy: DevicePolicy,
                   batch_size: int, progress: Callable[[int, int], None] | None = None,
                   prefix: FrozenPrefix | None = None) -> torch.Tensor:
    """groups[:cut] applied to every image, in inference mode, returned as float16 on the CPU.

    The first pass over a prefix decides its mode (FrozenPrefix.calibrate) from these images;
    later passes (the validation split) keep it."""
    prefix = prefix or FrozenPrefix(net, cut, prep, policy)
    prefix.calibrate(images)
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


_NUMEL: dict[tuple, int] = {}


def prefix_numel(net: Network, cut: int, prep: Preprocess) -> int:
    """Values per image at the cut, found with one tiny forward pass, once per architecture, cut and
    size in a process: a first batch of one image is slow on a CPU (its kernels are set up for that
    shape), and a class host's worker asks it before every run."""
    shape = (type(net).__name__, net.group_names, net.feature_dim, cut, prep.size,
             sum(p.numel() for g in list(net.groups.values())[:cut] for p in g.parameters()))
    if shape not in _NUMEL:
        with torch.no_grad():
            probe = torch.zeros(1, 3, prep.size, prep.size, dtype=torch.uint8)
            _NUMEL[shape] = int(net.features(prep(probe), 0, cut).numel())
    return _NUMEL[shape]


# One cache per process, keyed by content: a second run in the same server reuses memory, a new
# process reuses the disk files.
_DEFAULT: dict[str, FeatureCache] = {}


def default_cache() -> FeatureCache:
    root = str(cache_dir() / "features")
    if root not in _DEFAULT:
        _DEFAULT[root] = FeatureCache(Path(root))
    return _DEFAULT[root]
