"""The zoo: real weights really load, layer groups are the whole backbone in forward order."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tlcore.errors import DownloadRequired
from tlcore.models import MODELS, build_network, imagenet_network, model_card, weights_status
from tlcore.models.build import _groups

CAT_CLASSES = set(range(281, 286))          # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}            # espresso, cup, coffee mug


def _imagenet_input(img: np.ndarray, spec) -> torch.Tensor:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    s = spec.input_size / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - spec.input_size) // 2, (x.shape[-1] - spec.input_size) // 2
    x = x[..., top:top + spec.input_size, left:left + spec.input_size]
    return (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)


def test_efficientnet_lite0_weights_really_recognise_a_cat_and_a_coffee():
    skd = pytest.importorskip("skimage.data")
    spec = MODELS["efficientnet_lite0"]
    net = imagenet_network("efficientnet_lite0").eval()
    with torch.no_grad():
        cat = net(_imagenet_input(skd.chelsea(), spec)).topk(3).indices[0].tolist()
        coffee = net(_imagenet_input(skd.coffee(), spec)).topk(3).indices[0].tolist()
    assert CAT_CLASSES & set(cat), cat
    assert COFFEE_CLASSES & set(coffee), coffee


def test_random_init_is_not_the_pretrained_network():
    a = build_network("efficientnet_lite0", 3, pretrained=True)
    b = build_network("efficientnet_lite0", 3, pretrained=False)
    assert not torch.equal(a.groups["stem"][0].weight, b.groups["stem"][0].weight)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_layer_groups_cover_every_backbone_parameter_once_in_forward_order(name):
    spec = MODELS[name]
    torch.manual_seed(0)
    model = spec.build().eval()
    groups = _groups(spec, model)
    head = model.get_submodule(spec.head)
    in_groups = [id(p) for g in groups.values() for p in g.parameters()]
    assert len(in_groups) == len(set(in_groups)), "a parameter sits in two groups"
    aux = model.get_submodule(spec.aux) if spec.aux else torch.nn.Module()   # a separate training-time head
    backbone = {id(p) for p in model.parameters()} - {id(p) for p in head.parameters()} - \
        {id(p) for p in aux.parameters()}
    assert set(in_groups) == backbone
    # Forward order: running the groups then the original classifier reproduces the original model.
    side = max(spec.min_input_size, 80)
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        y = x
        for g in groups.values():
            y = g(y)
        assert y.shape == (1, spec.feature_dim)
        torch.testing.assert_close(head(y), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(n for n in MODELS if MODELS[n].weights is not None))
def test_model_card_numbers_come_from_the_weights_and_match_the_model(name):
    card = model_card(name)
    assert card["params"] == MODELS[name].meta["params"]
    assert 40 < card["top1"] < 90 and card["size_mb"] > 1 and card["depth"] >= 8


def test_new_head_starts_near_zero():
    net = build_network("efficientnet_lite0", 5, head="mlp").eval()
    with torch.no_grad():
        logits = net(torch.rand(4, 3, 64, 64))
    assert logits.shape == (4, 5) and logits.abs().max() < 0.05


@pytest.fixture
def hub_dir(tmp_path):
    """A private torch.hub cache for one test; the process's own one comes back afterwards."""
    original = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        yield tmp_path / "hub"
    finally:
        torch.hub.set_dir(original)


def _offline(monkeypatch):
    def no_network(*a, **k):
        raise urllib.error.URLError("offline")
    monkeypatch.setattr("urllib.request.urlopen", no_network)


def _checkpoint(hub_dir, name):
    ckpt = hub_dir / "checkpoints" / MODELS[name].weights.url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    return ckpt


def test_torchvision_weights_load_offline_from_a_preseeded_hub_cache(hub_dir, monkeypatch):
    spec = MODELS["resnet18"]
    assert weights_status("resnet18") == "needs download"
    torch.manual_seed(1)
    saved = spec.build().state_dict()
    torch.save(saved, _checkpoint(hub_dir, "resnet18"))
    _offline(monkeypatch)
    assert weights_status("resnet18") == "cached"
    net = build_network("resnet18", 4, pretrained=True)
    assert torch.equal(net.groups["stem"][0].weight, saved["conv1.weight"])
    assert torch.equal(net.groups["stage4"][0][1].bn2.weight, saved["layer4.1.bn2.weight"])


def test_missing_weights_offline_name_the_file_and_where_it_comes_from(hub_dir, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(DownloadRequired) as err:
        build_network("resnet18", 4)
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg and "https://download.pytorch.org/models/" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("damage", [b"not a checkpoint", b"PK\x03\x04" + bytes(64)])
def test_a_damaged_cached_checkpoint_says_so_and_names_the_file(hub_dir, monkeypatch, damage):
    ckpt = _checkpoint(hub_dir, "resnet18")
    ckpt.write_bytes(damage)
    _offline(monkeypatch)
    with pytest.raises(DownloadRequired) as err:
        build_network("resnet18", 4)
    msg = str(err.value)
    assert "damaged" in msg and str(ckpt) in msg and "delete" in msg
    assert "needs a download" not in msg and "\n" not in msg



def test_inception_v3_trains_its_auxiliary_head_only_at_its_own_input_size():
    from tlcore.train.phases import Source, forward_train, prepare
    from tlcore.train.plan import Plan

    net = build_network("inception_v3", 3, pretrained=False).train()
    assert net.aux is not None and net.aux.fc.out_features == 3 and net.group_names[net.aux_after] == "mixed6"
    for side, has_aux in ((299, True), (96, False)):
        p = prepare(Plan(model="inception_v3", image_size=side, strategy="scratch", epochs=1, per_class=2), lambda e: None)
        x = torch.randint(0, 255, (2, 3, side, side), dtype=torch.uint8)
        logits, aux = forward_train(net, Source(0, x, x, False), torch.arange(2), p, torch.Generator())
        assert logits.shape == (2, 3) and (aux is not None) == has_aux
