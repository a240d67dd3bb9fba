"""Where to transfer (the layer probe) and the Inside-the-CNN computations."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from tlcore import inspect as insp
from tlcore.kinds import run_plan
from tlcore.labs import probe
from tlcore.models import MODELS, build_network
from tlcore.train.events import LabResult
from tlcore.train.plan import Plan


@pytest.fixture
def quick_init(monkeypatch):
    """Random weights drawn cheaply: VGG's normal_ over 100M weights is most of its build time on one core."""
    def fill(t, *a, **k):
        with torch.no_grad():
            return t.uniform_(-0.05, 0.05)
    for name in ("normal_", "kaiming_normal_", "trunc_normal_", "kaiming_uniform_", "xavier_uniform_"):
        monkeypatch.setattr(torch.nn.init, name, fill)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_hooked_pass_pools_every_group_as_one_cut_at_a_time_does(name, quick_init):
    torch.manual_seed(0)
    net = build_network(name, 3, pretrained=False).eval()
    side = max(MODELS[name].min_input_size, 32)
    x = torch.randn(2, 3, side, side)
    once = probe.pooled_all_groups(net, x)
    naive = probe.pooled_one_cut_at_a_time(net, x)
    assert len(once) == len(net.group_names)
    for g, a, b in zip(net.group_names, once, naive):
        assert a.shape == b.shape and a.ndim == 2, g
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), g
    assert once[-1].shape[1] == net.feature_dim


def _probe_plan(**kw) -> Plan:
    return Plan(kind="probe", image_size=32, **{"per_class": 12, **kw})


def test_the_inference_copy_pools_every_group_as_the_network_does(quick_init):
    """The probe's pass runs on the engine's folded and fused fp32 copy of the groups: the same pooled
    features, group by group, to float rounding (folding BatchNorm reorders a multiply-add)."""
    from tlcore.device import pick
    from tlcore.train.pipeline import Preprocess
    policy = pick("cpu")
    for name, pretrained in (("efficientnet_lite0", True), ("resnet18", False)):
        torch.manual_seed(0)
        net = build_network(name, 3, pretrained=pretrained).eval().to(memory_format=policy.memory_format())
        spec = MODELS[name]
        prep = Preprocess(max(spec.min_input_size, 32), spec.mean, spec.std, policy)
        copy = probe.inference_groups(net, prep, policy)
        assert copy is not None and len(copy) == len(net.group_names), name
        images = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        fast = probe.pooled_features(net, images, prep, 4, groups=copy)
        plain = probe.pooled_features(net, images, prep, 4)
        for g, a, b in zip(net.group_names, fast, plain):
            assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max())), (name, g)


def test_the_fast_fit_picks_the_plain_grid_searchs_c_and_accuracy_on_digits():
    """fit_probe runs fit_probe_plain's folds and fits (GridSearchCV, kept as the reference) with each
    fold scaled once for the four C: the same numbers exactly, C and accuracy, for a low, a middle and
    the top group and two seeds. Both on one BLAS thread here, as the probe fits (on two the plain
    search takes 20x longer; measured equal there too: 36 of 36 groups x seeds of the lesson at 96
    and 32 px)."""
    from tlcore.train.phases import build, prepare
    prepared = prepare(_probe_plan(per_class=30), lambda e: None)
    net = build(prepared).eval()
    tr, va, _s, _hit = probe.group_features(net, prepared, lambda e: None, lambda: False)
    ty, vy = prepared.data.train_y.numpy(), prepared.data.val_y.numpy()
    for seed in (0, 1):
        for g in (0, 3, len(tr) - 1):        # 32, 112 and 1280 features
            name, a, b = net.group_names[g], tr[g], va[g]
            fast = probe.fit_probe(a.numpy(), ty, b.numpy(), vy, seed)
            with probe.one_blas_thread():
                plain = probe.fit_probe_plain(a.numpy(), ty, b.numpy(), vy, seed)
            assert fast == plain, (seed, name)


def test_a_second_probe_reads_the_pooled_features_from_the_cache():
    from tlcore.train.phases import build, prepare
    prepared = prepare(_probe_plan(), lambda e: None)
    net = build(prepared).eval()
    tr1, va1, s1, hit1 = probe.group_features(net, prepared, lambda e: None, lambda: False)
    tr2, va2, s2, hit2 = probe.group_features(net, prepared, lambda e: None, lambda: False)
    assert not hit1 and hit2 and s2 == 0.0
    assert all(torch.equal(a, b) for a, b in zip(tr1 + va1, tr2 + va2))


def test_the_probe_refuses_options_it_does_not_know():
    from tlcore.errors import PlanError
    with pytest.raises(PlanError):
        Plan(kind="probe", options={"x": 1})
    with pytest.raises(PlanError):
        Plan(kind="probe", strategy="fine_tune_all")


def _zip(path) -> None:
    rng = np.random.default_rng(0)
    from PIL import Image
    with zipfile.ZipFile(path, "w") as zf:
        for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
            for i in range(8):
                img = np.clip(np.array(colour) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                zf.writestr(f"class{c}/{i}.png", buf.getvalue())


@pytest.mark.parametrize("source", ["digits", "zip"])
def test_the_command_line_prints_one_json_line_with_every_group_above_chance_on_digits(capsys, tmp_path, source):
    from tlcore.__main__ import main
    args = ["probe", "--model", "efficientnet_lite0", "--image-size", "32"]
    if source == "zip":
        _zip(tmp_path / "colours.zip")
        args += ["--dataset", "folder", "--dataset-path", str(tmp_path / "colours.zip")]
    else:
        args += ["--dataset", "digits", "--per-class", "12"]
    assert main(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(line) == ["kind", "dataset", "model", "groups", "best_group", "pixel_svm", "seconds"]
    assert line["kind"] == "probe" and line["dataset"] == ("folder" if source == "zip" else "digits")
    assert [g["group"] for g in line["groups"]] == list(MODELS["efficientnet_lite0"].group_names)
    assert all(set(g) == {"group", "dim", "val_acc"} and g["val_acc"] is not None for g in line["groups"])
    assert line["groups"][0]["dim"] == 32 and line["best_group"] in {g["group"] for g in line["groups"]}
    assert 0 <= line["pixel_svm"] <= 1 and line["seconds"] > 0
    if source == "digits":   # ten classes: chance is 0.1, and every group's probe must beat it
        assert all(g["val_acc"] > 0.2 for g in line["groups"]) and line["pixel_svm"] > 0.2, line


# --- Inside the CNN --------------------------------------------------------------------------------
def test_grad_cam_channel_weights_match_finite_differences():
    torch.manual_seed(0)
    net = build_network("resnet18", 4, pretrained=False).eval().double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    at = insp.last_conv_group(net)
    alpha, a = insp.grad_cam_weights(net, x, target=2, at=at)
    h, w = a.shape[-2:]
    eps = 1e-4

    def score(m):
        with torch.no_grad():
            return float(net.head(net.features(m, at + 1, None))[0, 2])
    for k in [0, 7, 100, int(alpha.abs().argmax())]:
        bump = torch.zeros_like(a)
        bump[0, k] = eps
        fd = (score(a + bump) - score(a - bump)) / (2 * eps) / (h * w)
        assert abs(fd - float(alpha[k])) <= 1e-6 + 1e-4 * abs(float(alpha[k])), k
    cam, target, probs = insp.grad_cam(net, x, target=2, at=at)
    assert cam.shape == (64, 64) and target == 2 and 0 <= cam.min() and cam.max() <= 1 + 1e-9
    assert abs(probs.sum() - 1) < 1e-6


def test_filters_activations_and_codes_have_the_shapes_the_page_draws():
    torch.manual_seed(0)
    net = build_network("efficientnet_lite0", 3, pretrained=False).eval()
    f = insp.filters(net)
    assert f.shape[1:] == (3, 3, 3) and 0 <= float(f.min()) and float(f.max()) <= 1
    other = build_network("efficientnet_lite0", 3, pretrained=False).eval()
    change = insp.filter_change(net, other)
    assert change.shape == (f.shape[0],) and float(insp.filter_change(net, net).abs().max()) == 0
    maps = insp.activations(net, torch.randn(1, 3, 64, 64), top=4)
    assert [m.group for m in maps] == list(net.group_names[:-1])   # the top ends in a flat vector
    assert all(m.maps.shape[0] == 4 and float(m.maps.max()) <= 1 for m in maps)
    codes = np.random.default_rng(0).normal(size=(40, 16))
    for method in ("pca", "tsne"):
        assert insp.embed_2d(codes, method).shape == (40, 2)


def test_fine_tuning_per_cut_keeps_the_cuts_done_when_stopped():
    from tlcore.labs.probe_finetune import SCHEMA
    events = []
    stop = lambda: any(isinstance(e, LabResult) for e in events)   # stop once the first cut has its result
    plan = Plan(kind="cut_finetune", strategy="fine_tune_top", image_size=32, per_class=4, batch_size=16,
                options={"epochs": 1})
    run_plan(plan, events.append, stop)
    rows = [e.values for e in events if isinstance(e, LabResult) and e.schema == SCHEMA]
    assert events[-1].status == "stopped" and len(rows) == 1
    assert rows[0]["group"] == "stem" and rows[0]["trained_groups"] == 5 and 0 <= rows[0]["val_acc"] <= 1
