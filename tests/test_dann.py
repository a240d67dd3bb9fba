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


def _tiny_arms(n: int = 64, size: int = 16):
    """Two made-up domains of random images: enough to check what a step does, not what it learns."""
    from tlcore.data.base import ImageSplits
    from tlcore.labs.dann_arms import small_cnn_arms
    g = torch.Generator().manual_seed(0)
    def split(shift):
        x = (torch.rand(n, 3, size, size, generator=g) * 200 + shift).to(torch.uint8)
        return ImageSplits(x, torch.arange(n) % 10, x[:20], torch.arange(20) % 10, tuple("0123456789"), "made-up")
    return small_cnn_arms(split(0), split(50), size, torch.device("cpu"))


def _grads(arms, lam: float, other: torch.Tensor) -> dict:
    from tlcore.labs.dann_arms import dann_step
    torch.manual_seed(0)
    net = arms.make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)          # lr 0: the step leaves its gradients, moves nothing
    net.train()
    net.grl.lam = lam
    torch.manual_seed(1)                                      # the same dropout masks in every call
    dann_step(net, opt, "dann", arms, torch.arange(16), other)
    return {k: v.grad.clone() for k, v in net.named_parameters()}


def test_a_dann_step_reverses_the_domain_gradient_into_the_features_only():
    arms = _tiny_arms()
    other = torch.arange(16, 32)
    g0, g1, g_plus = _grads(arms, 0.0, other), _grads(arms, 1.0, other), _grads(arms, -1.0, other)
    conv = "features.0.weight"
    d_feat = g_plus[conv] - g0[conv]                          # the domain loss's own gradient at the features
    assert d_feat.abs().max() > 1e-6
    assert torch.allclose(g1[conv] - g0[conv], -d_feat, atol=1e-6)   # reversed, at weight lam
    for k in g0:                                              # the heads learn the same whatever lam is
        if k.startswith(("domain.", "label.")):
            assert torch.allclose(g0[k], g1[k], atol=1e-6), k


def test_each_domain_is_normalised_alone_so_the_label_loss_never_sees_the_other_batch():
    # With one mixed batch, BatchNorm's statistics would tie the digit head's gradient to the target images.
    arms = _tiny_arms()
    a, b = _grads(arms, 0.0, torch.arange(16, 32)), _grads(arms, 0.0, torch.arange(40, 56))
    for k in a:
        if k.startswith("label."):
            assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_an_arm_trains_the_same_alone_or_after_another_so_arms_can_be_compared_or_left_out():
    from tlcore.labs.dann_arms import train_arm
    arms = _tiny_arms()
    plan = dann.make_plan(epochs=2, per_class=5, batch_size=16, image_size=16, device="cpu")
    quiet = lambda e: None   # noqa: E731
    alone = train_arm("dann", plan, arms, quiet, lambda: False).state_dict()
    train_arm("source_only", plan, arms, quiet, lambda: False)
    after = train_arm("dann", plan, arms, quiet, lambda: False, position=(1, 2)).state_dict()
    assert all(torch.equal(alone[k], after[k]) for k in alone)


def test_a_run_counts_its_arms_and_applies_the_lambda_it_draws(tmp_path):
    from tlcore.labs.dann_arms import applied_lambda
    from tlcore.labs.grl import dann_lr
    from tlcore.train.events import Phase, Step
    # Whether DANN helps is the lessons suite's question (tests/lessons/test_dann_lesson.py); this one is quick.
    plan = dann.make_plan(epochs=3, per_class=10, image_size=16, device="cpu", arms=("source_only", "dann"))
    events = []
    dann.run(plan, events.append, lambda: False, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    steps = [e for e in events if isinstance(e, Step)]
    spe = steps[0].steps_per_epoch                            # 100 images in batches of 32: 4 steps an epoch
    assert spe == 4 and steps[-1].total_steps == 2 * 3 * spe and steps[-1].step == 2 * 3 * spe - 1
    lines = [(e.name, e.done, e.total) for e in events if isinstance(e, Phase) and e.name.startswith("arm ")]
    assert lines[0] == ("arm 1 of 2: Source only · epoch 1 of 3", 0, 6)   # what the page's progress line says
    assert lines[-1] == ("arm 2 of 2: DANN · epoch 3 of 3", 5, 6) and len(lines) == 6
    first = steps[0]                                          # the annealed rate, from the arm's first step
    assert first.lrs[0] == pytest.approx(dann_lr(0.0, plan.lr))
    rows = [e.values for e in events if isinstance(e, LabResult) and e.schema == dann.EPOCH]
    total = 3 * spe
    for r in rows:                                            # what the chart draws is what training applied
        p_last = ((r["epoch"] + 1) * spe - 1) / total
        assert r["lambda"] == pytest.approx(applied_lambda(r["arm"], p_last, plan.option("domain_weight")))
    assert rows[-1]["arm"] == "dann" and rows[-1]["lambda"] > 0.9 and rows[0]["lambda"] == 0.0
    emb = torch.load(tmp_path / "embedding.pt")
    assert set(emb) == {"source_only", "dann"} and emb["dann"]["xy"].shape[1] == 2


def test_a_stop_request_ends_the_run_between_two_steps(tmp_path):
    from tlcore.train.events import Step
    plan = dann.make_plan(epochs=3, per_class=10, image_size=16, device="cpu")
    events = []
    dann.run(plan, events.append, lambda: sum(isinstance(e, Step) for e in events) >= 2, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "stopped", events[-1]
    assert not any(isinstance(e, LabResult) and e.schema == dann.FINAL for e in events)


def test_the_page_says_what_the_run_showed_and_when_dann_did_not_help():
    from tlcore.labs.dann_figures import lesson_text
    helped, said = lesson_text({"source_only": {"target_acc": 0.351, "domain_acc": 0.93},
                                "dann": {"target_acc": 0.579, "domain_acc": 0.61},
                                "target_only": {"target_acc": 0.958, "domain_acc": 0.9}})
    assert helped and "lifted target accuracy by +0.228" in said and "fell from 0.93 to 0.61" in said
    assert "reaches 0.958" in said
    helped, said = lesson_text({"source_only": {"target_acc": 0.435, "domain_acc": 0.93},
                                "dann": {"target_acc": 0.429, "domain_acc": 0.92}})
    assert not helped and "did not help" in said and "did not fall" in said and "lifted" not in said


def test_the_page_the_command_line_and_the_lesson_share_one_set_of_defaults():
    import argparse
    p = argparse.ArgumentParser()
    dann._add_arguments(p)
    args = p.parse_args([])
    plan = dann.make_plan()
    assert (plan.epochs, plan.per_class, plan.batch_size, plan.lr) == (
        dann.PAGE_EPOCHS, dann.PAGE_PER_CLASS, dann.PAGE_BATCH, dann.PAGE_LR)
    assert (args.epochs, args.per_class) == (plan.epochs, plan.per_class) and args.batch_size is args.lr is None
    assert plan.option("domain_weight") == 1.0                # the paper's schedule as is: what the page draws


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
