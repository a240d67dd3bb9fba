"""Fold inference-mode BatchNorm into the convolution before it (for frozen layers only).

In eval mode a BatchNorm is a fixed per-channel scale and shift, so it can be merged into the
weights and bias of the convolution that feeds it: one pass over memory instead of two. The
frozen prefix of a network is evaluated many times and never trained, so it is worth it there.
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d among its parent's children, in place.

    Children are paired in registration order, which is forward order in the zoo's architectures
    (torchvision's blocks, our EfficientNet-Lite0). Callers must check the folded copy against the
    original, because nothing here can prove that order for an arbitrary module. Returns the
    number of pairs folded.
    """
    folded = 0
    names = list(module._modules)
    for a, b in zip(names, names[1:]):
        conv, bn = module._modules[a], module._modules[b]
        if (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and conv.out_channels == bn.num_features
                and not conv.training and not bn.training and bn.track_running_stats):
            module._modules[a] = fuse_conv_bn_eval(conv, bn)
            module._modules[b] = nn.Identity()
            folded += 1
    for child in module.children():
        folded += fold_batchnorm(child)
    return folded
