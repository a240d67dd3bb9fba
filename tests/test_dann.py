"""The domain adaptation lab: the gradient reversal layer, the digits-on-photos target, DANN itself."""
from __future__ import annotations

import math

import pytest
import torch

from tlcore.data import load_dataset
from tlcore.data import shifted
from tlcore.errors import PlanError
from tlcore.labs import dann
from tlcore.labs.grl import dann_lambda, reverse_gradient
from tlcore.train.events import LabResult, RunEnded


def test_the_gradient_reversal_layer_passes_forward_and_negates_and_scales_the_gradient():
    torch.manual_seed(0)
    x = torch.randn(5, 4, dtype=torch.double, requires_grad=True)
    w = torch.randn(4, dtype=torch.double)
    f = lambda t: (torch.tanh(t) * w).sum()   # noqa: E731
    assert torch.equal(reverse_gradient(x, 0.7), x)
    (g_rev,) = torch.autograd.grad(f(reverse_gradient(x, 0.7)), x)
    # the gradient of f itself, by central differences
    eps, num = 1e-6, torch.zeros_like(x)
    with torch.no_grad():
        for i in range(x.numel()):
            d = torch.zeros_like(x).view(-1)
            d[i] = eps
            d = d.view_as(x)
            num.view(-1)[i] = (f(x + d) - f(x - d)) / (2 * eps)
    assert torch.allclose(g_rev, -0.7 * num, atol=1e-8)


def test_the_lambda_schedule_is_the_papers():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert 0.999 < dann_lambda(1.0) < 1.0


def test_the_target_never_puts_a_training_photos_patch_into_its_test_part():
    assert not set(shifted.TRAIN_PHOTOS) & set(shifted.TEST_PHOTOS)
    digits = load_dataset("digits", image_size=8)
    up = torch.nn.functional.interpolate(digits.val_x[:40].float(), size=(28, 28)).to(torch.uint8)
    out = shifted.blend(up, shifted.TEST_PHOTOS, seed=3)
    assert set(out.photo) <= set(shifted.TEST_PHOTOS)
    for i in range(len(up)):   # each image really is |patch - digit| of the photo it names
        img = torch.from_numpy(shifted.photo(out.photo[i])).permute(2, 0, 1)
        r, c = out.box[i].tolist()
        patch = img[:, r:r + 28, c:c + 28]
        assert torch.equal(out.images[i], (patch.short() - up[i].short()).abs().to(torch.uint8))
    # ... and the registered dataset is deterministic, the same digits and labels as the source
    a, b = load_dataset("digits_m", image_size=28), shifted.load_digits_m(None, 28, 0, 0.2)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, digits.val_y)
    assert a.train_x.shape[1:] == (3, 28, 28)


def test_bad_inputs_get_one_clear_message_before_training():
    with pytest.raises(PlanError, match="other classes"):
        dann.make_plan("digits", "fashion_mnist")
    with pytest.raises(PlanError, match="at least 5 images per class"):
        dann.make_plan(per_class=3)
    with pytest.raises(PlanError, match="16 to 64 px"):
        dann.make_plan(image_size=8)
    with pytest.raises(PlanError, match="16 to 64 px"):
        dann.make_plan(image_size=128)
    with pytest.raises(PlanError, match="another dataset"):
        dann.make_plan("digits", "digits")


def test_a_short_dann_run_beats_source_only_on_the_target(tmp_path):
    # Fixed seed, one thread's worth of deterministic CPU kernels; 16 px keeps it short.
    plan = dann.make_plan(epochs=8, per_class=20, batch_size=32, image_size=16, lr=0.05, device="cpu",
                          arms=("source_only", "dann"))
    events = []
    dann.run(plan, events.append, lambda: False, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    final = {e.values["arm"]: e.values for e in events if isinstance(e, LabResult) and e.schema == dann.FINAL}
    assert final["dann"]["target_acc"] > final["source_only"]["target_acc"]
    assert final["source_only"]["source_acc"] > 0.5   # it did learn the source
    live = [e for e in events if isinstance(e, LabResult) and e.schema == dann.EPOCH]
    assert len(live) == 16 and all(0 <= e.values["domain_acc"] <= 1 for e in live)
    emb = torch.load(tmp_path / "embedding.pt")
    assert set(emb) == {"source_only", "dann"} and emb["dann"]["xy"].shape[1] == 2


def test_a_zoo_backbone_is_checked_group_by_group_before_training():
    with pytest.raises(PlanError, match="has the groups stem, stage1"):
        dann.make_plan(backbone="efficientnet_lite0", head_at="layer9")
    plan = dann.make_plan(backbone="efficientnet_lite0")
    assert plan.model == "efficientnet_lite0" and plan.option("head_at") == "stage4"
    with pytest.raises(PlanError, match="network backbone takes"):
        plan.replace(options={**plan.options, "size": 32})


def test_a_zoo_backbone_dann_run_trains_one_group_over_a_frozen_prefix_computed_once(tmp_path, monkeypatch):
    # The bundled EfficientNet-Lite0, its stem..stage2 frozen, stage3 trained under the two heads.
    from tlcore.train import features
    passes, trained = [], {}
    real_prefix, real_train = features.compute_prefix, dann.train_arm
    monkeypatch.setattr(features, "compute_prefix", lambda *a, **k: passes.append(a[1].shape[0]) or real_prefix(*a, **k))
    monkeypatch.setattr(dann, "train_arm", lambda arm, *a, **k: trained.setdefault(arm, real_train(arm, *a, **k)))
    plan = dann.make_plan(backbone="efficientnet_lite0", head_at="stage3", epochs=4, per_class=30, batch_size=32,
                          image_size=32, device="cpu")
    events = []
    dann.run(plan, events.append, lambda: False, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    final = {e.values["arm"]: e.values for e in events if isinstance(e, LabResult) and e.schema == dann.FINAL}
    assert set(final) == set(dann.ARMS)
    assert final["source_only"]["source_acc"] > 0.5      # ten classes: chance is 0.1
    assert final["target_only"]["target_acc"] > 0.25
    assert len(passes) == 4                              # both splits of both domains, once for all three arms
    # Each arm trained its own copy of stage3: its weights moved away from the pretrained ones.
    from tlcore.models import build_network
    pretrained = build_network("efficientnet_lite0", 10).groups["stage3"].state_dict()
    for arm, net in trained.items():
        got = net.features[0].state_dict()
        assert any(not torch.equal(got[k], pretrained[k]) for k in pretrained if got[k].is_floating_point()), arm
    emb = torch.load(tmp_path / "embedding.pt")
    assert emb["dann"]["xy"].shape[1] == 2 and set(emb["dann"]["domain"].tolist()) == {0, 1}
