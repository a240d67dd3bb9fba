"""The frozen prefix on a CPU without bf16: static padding, fused fp32, int8 where it holds up, and the switches."""
from __future__ import annotations

import dataclasses
from collections import OrderedDict

import pytest
import torch
from torch import nn

from tlcore import device
from tlcore.bench.report import cpu_bf16_state
from tlcore.device import pick
from tlcore.models import MODELS, build_network, quantize
from tlcore.models.base import Network
from tlcore.models.fastpath import static_padding
from tlcore.train import features
from tlcore.train.features import FrozenPrefix, compute_prefix, prefix_mode, relative_error
from tlcore.train.pipeline import Preprocess

FP32 = dataclasses.replace(pick("cpu"), amp_dtype=None, train_amp=False)
BIG_RUN = 10**6   # planned images: enough that int8 always pays, so small test images can decide it
needs_x86 = pytest.mark.skipif(not quantize.available(), reason="this torch has no x86 quantized engine")


def _images(n: int, side: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)


def _with_statistics(net: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval().requires_grad_(False)


def _resnet18(size: int = 32) -> tuple[Network, Preprocess]:
    torch.manual_seed(0)
    spec = MODELS["resnet18"]
    return _with_statistics(build_network("resnet18", 10, pretrained=False)), Preprocess(size, spec.mean, spec.std, FP32)


def _fp32(net: Network, prep: Preprocess, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.features(prep(images), 0, len(net.groups))


def test_same_padding_becomes_static_and_computes_the_same():
    net = build_network("efficientnet_lite0", 10, pretrained=False).eval()
    x = torch.randn(2, 3, 48, 48)
    static, n = static_padding(net.groups["stem"], x)
    assert n == 1
    with torch.no_grad():
        torch.testing.assert_close(static(x), net.groups["stem"](x))


@pytest.fixture
def int8_on(monkeypatch):
    monkeypatch.setenv("TLCORE_CPU_INT8", "1")


@needs_x86
def test_int8_prefix_of_a_resnet_stays_close_to_fp32(int8_on):
    net, prep = _resnet18()
    images = _images(64)
    prefix = FrozenPrefix(net, len(net.groups), prep, FP32)
    assert prefix.calibrate(images, planned_images=BIG_RUN) == "int8" == prefix.mode
    got = compute_prefix(net, images, len(net.groups), prep, FP32, 32, prefix=prefix)
    assert relative_error(got, _fp32(net, prep, images)) < features.INT8_MAX_ERROR
    assert prefix.int8_error is not None and prefix.int8_error < features.INT8_MAX_ERROR


class _Outlier(nn.Module):
    """One channel 10^4 times the other before a ReLU, both equally weighted after it: one int8 scale
    for the whole activation rounds the small channel to zero, so half the output is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(2, 4, 1)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([[1e4, 0.0, 0.0], [0.0, 1.0, 0.0]]).view(2, 3, 1, 1))
            self.conv1.bias.zero_()
            self.conv2.weight.copy_(torch.tensor([[1e-4, 1.0]] * 4).view(4, 2, 1, 1))
            self.conv2.bias.zero_()

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


@needs_x86
def test_int8_is_refused_where_it_would_lose_accuracy(int8_on):
    net = Network(OrderedDict(body=_Outlier(), top=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))),
                  nn.Linear(4, 2), 4).eval().requires_grad_(False)
    prep = Preprocess(16, (0.5,) * 3, (0.5,) * 3, FP32)
    images = _images(64, 16)
    prefix = FrozenPrefix(net, 2, prep, FP32)
    assert prefix.int8_candidate
    assert prefix.calibrate(images, planned_images=BIG_RUN) == "fp32"
    assert prefix.int8_error > features.INT8_MAX_ERROR      # it was tried, measured, and refused
    got = compute_prefix(net, images, 2, prep, FP32, 32, prefix=prefix)
    assert relative_error(got, _fp32(net, prep, images)) < 1e-3


@needs_x86
def test_the_first_pass_decides_and_the_validation_pass_keeps_it(monkeypatch, int8_on):
    monkeypatch.setattr(features, "INT8_MIN_WORK", 0)     # tiny images: let int8 "pay" at this size
    net, prep = _resnet18()
    prefix = FrozenPrefix(net, len(net.groups), prep, FP32)
    compute_prefix(net, _images(64), len(net.groups), prep, FP32, 32, prefix=prefix)
    chosen = prefix.int8
    assert prefix.mode == "int8" and chosen is not None
    compute_prefix(net, _images(20, seed=1), len(net.groups), prep, FP32, 32, prefix=prefix)
    assert prefix.int8 is chosen


def test_a_short_pass_does_not_pay_for_calibration(int8_on):
    net, prep = _resnet18()
    prefix = FrozenPrefix(net, len(net.groups), prep, FP32)
    assert prefix.calibrate(_images(64)) == "fp32" and prefix.int8_error is None
    assert prefix_mode(net, len(net.groups), FP32, 64, 32) == "fp32"
    assert prefix_mode(net, len(net.groups), FP32, 600, 224) == ("int8" if quantize.available() else "fp32")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny"])
def test_int8_is_not_tried_on_layers_it_serves_badly(name, int8_on):
    net = build_network(name, 10, pretrained=False).eval()
    assert quantize.unsuited_layer(net) is not None
    assert prefix_mode(net, len(net.groups), FP32, BIG_RUN, 224) == "fp32"


def test_int8_is_on_by_default_and_switch_0_keeps_fp32(monkeypatch):
    monkeypatch.delenv("TLCORE_CPU_INT8", raising=False)
    net, prep = _resnet18()
    assert FrozenPrefix(net, len(net.groups), prep, FP32).int8_candidate == quantize.available()
    monkeypatch.setenv("TLCORE_CPU_INT8", "0")
    never = FrozenPrefix(net, len(net.groups), prep, FP32)
    assert not never.int8_candidate
    assert never.calibrate(_images(64), planned_images=BIG_RUN) == "fp32"
    assert prefix_mode(net, len(net.groups), FP32, BIG_RUN, 224) == "fp32"


def _int_weights(q: nn.Module) -> list[torch.Tensor]:
    out = []
    for m in q.modules():
        w = getattr(m, "weight", None)
        w = w() if callable(w) else w     # quantized conv / linear modules expose weight()
        if isinstance(w, torch.Tensor) and w.is_quantized:
            out.append(w.int_repr())
    return out


@needs_x86
@pytest.mark.parametrize("vnni", [True, False])
def test_int8_weights_keep_7_bits_where_the_cpu_has_no_vnni(monkeypatch, vnni):
    # Pre-VNNI kernels add pairs of uint8 x int8 products in 16 bits: 8-bit activations need weights
    # within +-64 there, or the sums saturate. With VNNI both get 8 bits.
    monkeypatch.setattr(device, "cpu_has_vnni", lambda: vnni)
    assert quantize.default_bits() == ((8, 8) if vnni else (8, 7))
    net, prep = _resnet18()
    q = quantize.quantize(nn.Sequential(*net.groups.values()).eval(), [prep(_images(8))]).module
    weights = _int_weights(q)
    assert weights
    largest = max(int(w.abs().max()) for w in weights)
    # Symmetric scales put a channel's largest weight at +-63.5 steps, which rounds to 64: 2 x 255 x 64
    # still fits in 16 bits.
    assert largest >= 127 if vnni else largest == 64
    with pytest.raises(ValueError, match="bits"):
        quantize.qconfig_mapping((7, 7))


def test_bf16_switch_forces_the_path_of_a_cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(device, "_cpu_has_bf16", lambda: True)      # pretend this CPU has AVX512-BF16
    monkeypatch.delenv("TLCORE_CPU_BF16", raising=False)
    native = pick("cpu")
    assert native.amp_dtype == torch.bfloat16 and "bf16" in native.name
    assert cpu_bf16_state() == "native"
    monkeypatch.setenv("TLCORE_CPU_BF16", "0")
    forced = pick("cpu")
    assert forced.amp_dtype is None and not forced.train_amp and "bf16" not in forced.name
    assert cpu_bf16_state().startswith("forced off")
    net, _ = _resnet18()
    spec = MODELS["resnet18"]
    monkeypatch.setenv("TLCORE_CPU_INT8", "0")
    prefix = FrozenPrefix(net, 2, Preprocess(32, spec.mean, spec.std, forced), forced)
    assert prefix.mode == "fp32" and not prefix.int8_candidate
    monkeypatch.setenv("TLCORE_CPU_INT8", "1")
    assert FrozenPrefix(net, 2, Preprocess(32, spec.mean, spec.std, forced), forced).int8_candidate == \
        quantize.available()
    assert prefix_mode(net, 2, native, BIG_RUN, 224) == "bf16"
