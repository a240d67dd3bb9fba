"""The frozen prefix's fast inference copy computes what the network computes, for every zoo entry."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from tlcore.device import pick
from tlcore.models import MODELS, build_network
from tlcore.models import fastpath
from tlcore.models.fold import fold_batchnorm
from tlcore.train.features import FrozenPrefix
from tlcore.train.pipeline import Preprocess

FP32 = dataclasses.replace(pick("cpu"), amp_dtype=None)
BF16 = dataclasses.replace(pick("cpu"), amp_dtype=torch.bfloat16)
# Architectures whose convolutions feed a BatchNorm directly; the others have none to fold
# (AlexNet, VGG: no BatchNorm; ConvNeXt: LayerNorm) or only a few (DenseNet normalises before it convolves).
FOLDS = {"efficientnet_lite0", "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0"}
# Convolutions directly followed by their activation, which the fp32 CPU copy fuses when oneDNN is present.
FUSES = (FOLDS | {"alexnet", "vgg16", "vgg19"}) if fastpath.fusion_available() else set()


def _with_real_statistics(net: nn.Module) -> nn.Module:
    """Fresh BatchNorm is the identity, which would hide a wrong fold: give every one a real scale and shift."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
    return net.eval().requires_grad_(False)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fast_copy_of_every_group_reproduces_the_network(name):
    torch.manual_seed(0)
    net = _with_real_statistics(build_network(name, 10, pretrained=False))
    spec = MODELS[name]
    size = max(spec.min_input_size, 64)
    prep = Preprocess(size, spec.mean, spec.std, FP32)
    x = prep(torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8))
    n = len(net.groups)
    fast = FrozenPrefix(net, n, prep, FP32)
    with torch.no_grad():
        want = net.features(x, 0, n)
    got = fast(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    if name in FOLDS:
        assert fast.folded > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in fast.module.modules())
    if name in FUSES:    # the fp32 CPU copy runs each convolution and its activation as one oneDNN call
        assert fast.fused > 0 and fast.mode == "fp32"


def test_bf16_copy_stays_close_to_fp32_and_leaves_the_network_alone():
    torch.manual_seed(0)
    net = _with_real_statistics(build_network("efficientnet_lite0", 10, pretrained=False))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    prep = Preprocess(64, MODELS["efficientnet_lite0"].mean, MODELS["efficientnet_lite0"].std, BF16)
    x = prep(torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8))
    fast = FrozenPrefix(net, 4, prep, BF16)
    got = fast(x)
    with torch.no_grad():
        want = net.features(x, 0, 4)
    assert got.dtype == torch.bfloat16
    assert (got.float() - want).norm() / want.norm() < 0.05
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())   # the original is untouched
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == n_bn > 0        # folded a copy, not it


def test_a_fold_that_does_not_reproduce_the_original_is_refused():
    class Swapped(nn.Module):
        """BatchNorm registered after the convolution but applied before it: folding would be wrong."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv(self.bn(x))

    net = build_network("efficientnet_lite0", 10, pretrained=False)
    net.groups["stem"] = _with_real_statistics(Swapped())
    net.eval()
    prep = Preprocess(32, (0.5,) * 3, (0.5,) * 3, FP32)
    fast = FrozenPrefix(net, 1, prep, FP32)
    assert fast.folded == 0
    x = prep(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net.features(x, 0, 1))
    assert fold_batchnorm(Swapped().eval()) == 1    # the pairing alone is fooled; the check is what catches it
