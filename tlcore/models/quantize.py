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
import functools
import time
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from .. import device
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


@functools.cache   # one observer class, however many mappings are made
def _sampled_histogram_observer():
    from torch.ao.quantization.observer import HistogramObserver

    class SampledHistogramObserver(HistogramObserver):
        """PyTorch's histogram observer fed every SAMPLE_STRIDE-th activation value and the extremes.
        Histogramming every value took a quarter of calibrating (1 of 4 s for ResNet-18 at 224 px
        on a 2-core Zen 3); the ranges chosen from the sample gave the same error (0.0238)."""

        def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
            x = x_orig.detach()
            if x.numel() >= 64 * SAMPLE_STRIDE:
                # every 11th value (prime to every width and channel count, so no column or channel
                # is skipped; 7 aliased with 7 px maps) and the extremes, which set the histogram's span
                x = torch.cat([x.reshape(-1)[::SAMPLE_STRIDE], torch.stack(torch.aminmax(x))])
            super().forward(x)
            return x_orig

    return SampledHistogramObserver


SAMPLE_STRIDE = 11


def default_bits() -> tuple[int, int]:
    """(activation bits, weight bits) this CPU's int8 kernels serve without saturating.

    Before VNNI (AVX2, AVX-512 without VNNI) int8 kernels add each pair of uint8 x int8 products in
    16 bits, which overflows at full range (2 x 255 x 127 > 32767), so one bit has to go. PyTorch's
    default gives up an activation bit (reduce_range); here the weights give it up instead
    (2 x 255 x 64 fits): they have a scale per output channel, the activations one per tensor.
    With VNNI the sums are 32-bit and both keep 8 bits."""
    return (8, 8) if device.cpu_has_vnni() else (8, 7)


def qconfig_mapping(bits: tuple[int, int]):
    """PyTorch's x86 mapping with `bits` = (activation bits, weight bits), each 8 or 7."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    act, weight = bits
    if (act, weight) not in ((8, 8), (8, 7), (7, 8)):
        raise ValueError(f"int8 bits (activations, weights) must be (8, 8), (8, 7) or (7, 8), not {bits}")
    w = 2 ** (weight - 1)
    mapping = get_default_qconfig_mapping("x86").set_global(QConfig(
        activation=_sampled_histogram_observer().with_args(dtype=torch.quint8, reduce_range=act == 7),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                  quant_min=-w, quant_max=w - 1)))
    # The features themselves stay fp32: an int8 average pool rounds each mean back onto its input's
    # 8-bit grid, and pooling costs nothing next to the convolutions before it. That rounding was what
    # cost a probe on Fashion-MNIST most (README, Performance).
    return mapping.set_object_type(nn.AdaptiveAvgPool2d, None).set_object_type(nn.Flatten, None)


def quantize(module: nn.Module, batches: list[torch.Tensor], bits: tuple[int, int] | None = None) -> Calibration:
    """int8 copy of an eval-mode `module` (fp32, NCHW inputs), calibrated on `batches`, with
    `bits` = (activation bits, weight bits), by default what this CPU serves (default_bits)."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    bits = default_bits() if bits is None else bits
    module = static_padding(module, batches[0][:1])[0].eval()
    t0 = time.perf_counter()
    with _quiet(), x86_engine():
        observed = prepare_fx(module, qconfig_mapping(bits), example_inputs=(batches[0][:1],))
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
