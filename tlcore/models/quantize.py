"""Post-training int8 quantization of a frozen prefix, for CPUs without native bf16.

Where a CPU has no bf16 arithmetic (AVX2 or AVX-512 without AVX512-BF16), fp32 is all the frozen
features get, and a 224 px backbone pass is what a linear probe spends its time on. PyTorch's
"x86" quantized engine (fbgemm and oneDNN int8 kernels) runs plain convolutions about twice as fast
there. The prefix is quantized with FX graph mode from a copy of its layer groups: the FX pass
fuses conv + BatchNorm + ReLU itself, observes activation ranges on a few batches of the run's own
images, then converts. Nothing here decides whether int8 is used; `features.FrozenPrefix` does,
from the accuracy it measures on images the calibration did not see.

FX's tracer patches nn.Module.__call__ for the whole process while it traces, so quantizing must
not happen while another thread of the same process runs a network: the job queue runs each run in
a worker process of its own, which makes that so; a notebook running two runs in threads at once
(ThreadBackend) on a CPU where int8 is on would not be safe.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..device import cpu_has_vnni
from .fastpath import static_padding

# Layers int8 does not serve here (2-core Zen 3, AVX2, torch 2.14.1, 224 px, measured against the
# fused fp32 copy): depthwise convolutions (EfficientNet-Lite0 ran 8x slower in int8, and 0.37 off
# fp32), SiLU / sigmoid gates (EfficientNet-B0's squeeze-excite came out unusable), hardswish
# (MobileNetV3), LayerNorm and GELU (ConvNeXt), each left in fp32 between a dequantize and a quantize
# or served by slow kernels. ResNet-18/50 and AlexNet ran 1.8-3x faster at 0.02-0.03 relative error.
UNSUITED = (nn.SiLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.LayerNorm, nn.GELU)


def unsuited_layer(module: nn.Module) -> str | None:
    """The first layer that rules int8 out for `module`, or None when int8 may serve it."""
    for m in module.modules():
        if isinstance(m, UNSUITED):
            return type(m).__name__
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            return "grouped (depthwise) Conv2d"
        if type(m).__name__ in ("SqueezeExcitation", "StochasticDepth"):
            return type(m).__name__
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torch.ao.quantization warns that it moves to torchao; the FX path still works in this torch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def x86_engine() -> Iterator[None]:
    """The quantized engine as a context: other code in the process may want another one."""
    saved = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"
    try:
        yield
    finally:
        torch.backends.quantized.engine = saved


def available() -> bool:
    return "x86" in torch.backends.quantized.supported_engines


@dataclass
class Calibration:
    """What quantizing took: the int8 module, and the seconds spent observing and converting."""
    module: nn.Module
    observe_s: float
    convert_s: float


def qconfig_mapping(full_range: bool):
    """PyTorch's x86 mapping, with 8-bit instead of 7-bit activations where the CPU has VNNI.

    The default observes activations with reduce_range=True: one bit is given up so that the
    16-bit pairwise sums of pre-VNNI int8 kernels cannot saturate. With VNNI the sums are 32-bit,
    and the lost bit is what moved a probe on ResNet-18 features most (benchmarks/int8_probe.py)."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver, PerChannelMinMaxObserver

    mapping = get_default_qconfig_mapping("x86")
    if full_range:
        mapping.set_global(QConfig(
            activation=HistogramObserver.with_args(dtype=torch.quint8, reduce_range=False),
            weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)))
    return mapping


def quantize(module: nn.Module, batches: list[torch.Tensor], full_range: bool | None = None) -> Calibration:
    """int8 copy of an eval-mode `module` (fp32, NCHW inputs), calibrated on `batches`; 8-bit
    activations where the CPU has VNNI unless `full_range` says otherwise."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    full_range = cpu_has_vnni() if full_range is None else full_range
    module = static_padding(module, batches[0][:1])[0].eval()
    t0 = time.perf_counter()
    with _quiet(), x86_engine():
        observed = prepare_fx(module, qconfig_mapping(full_range), example_inputs=(batches[0][:1],))
        with torch.no_grad():
            for b in batches:
                observed(b)
        t1 = time.perf_counter()
        q = convert_fx(observed)
    return Calibration(q, t1 - t0, time.perf_counter() - t1)


def run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward an int8 module from `quantize` under the engine it was built for."""
    with _quiet(), x86_engine(), torch.no_grad():
        return module(x.contiguous())
