"""The engine on real data: every strategy learns digits, frozen means frozen, events tell the story."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tlcore.models import build_network
from tlcore.runs import RunStore
from tlcore.train.events import EpochEnded, Phase, RunEnded, RunStarted, Step, Unfrozen
from tlcore.train.features import FeatureCache
from tlcore.train.loop import train
from tlcore.train.plan import CPU_IMAGE_SIZE, Plan
from tlcore.train.schedules import multiplier

# Digits are 8x8; 32 px through EfficientNet-Lite0 keeps every run to seconds on two cores.
TINY = Plan(dataset="digits", model="efficientnet_lite0", image_size=32, epochs=3, batch_size=64, lr=3e-3, seed=0)


def run(plan: Plan, **kw):
    events: list = []
    net = train(plan, events.append, **kw)
    return net, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("plan, floor", [
    (TINY.replace(strategy="feature_extractor", lr=1e-2), 0.6),
    (TINY.replace(strategy="feature_extractor", head="logreg"), 0.6),
    (TINY.replace(strategy="fine_tune_top", top_groups=2), 0.6),
    (TINY.replace(strategy="gradual_unfreeze"), 0.6),
    (TINY.replace(strategy="scratch", epochs=4, lr=1e-2, image_size=32), 0.3),
    (TINY.replace(strategy="pixel_svm"), 0.9),
], ids=lambda v: v.strategy + ("+" + v.head if isinstance(v, Plan) and v.head != "linear" else "") if isinstance(v, Plan) else str(v))
def test_each_strategy_learns_digits_well_above_chance(plan, floor):
    _, events = run(plan)
    ended = of(events, RunEnded)
    assert [e.status for e in ended] == ["finished"], ended
    last = of(events, EpochEnded)[-1]
    assert last.val_acc > floor, f"{plan.strategy}: {last.val_acc:.3f} (chance is 0.1)"
    assert sum(map(sum, last.confusion)) == of(events, RunStarted)[0].val_size


def _pretrained(plan: Plan):
    torch.manual_seed(plan.seed)
    return build_network(plan.model, 10, pretrained=True)


@pytest.mark.parametrize("strategy, frozen_groups", [("feature_extractor", None), ("fine_tune_top", 2)])
def test_frozen_weights_are_bit_identical_and_trainable_ones_change(strategy, frozen_groups):
    plan = TINY.replace(strategy=strategy, top_groups=2, epochs=1, bn="frozen")
    net, _ = run(plan)
    ref = _pretrained(plan)
    names = list(net.groups)
    n_frozen = len(names) if frozen_groups is None else len(names) - frozen_groups
    for name in names[:n_frozen]:  # weights *and* BN running statistics
        for (k, a), (_, b) in zip(net.groups[name].state_dict().items(), ref.groups[name].state_dict().items()):
            assert torch.equal(a, b), f"frozen {name}.{k} changed"
    for name in names[n_frozen:]:
        assert any(not torch.equal(a, b) for a, b in zip(net.groups[name].parameters(), ref.groups[name].parameters()))
    assert not torch.equal(net.head[-1].weight if isinstance(net.head, torch.nn.Sequential) else net.head.weight,
                           ref.head[-1].weight if isinstance(ref.head, torch.nn.Sequential) else ref.head.weight)


def test_bn_train_policy_lets_batchnorm_learn_inside_frozen_groups():
    plan = TINY.replace(strategy="fine_tune_top", top_groups=1, epochs=1, bn="train")
    net, _ = run(plan)
    ref = _pretrained(plan)
    bottom = list(net.groups)[1]
    got, want = dict(net.groups[bottom].named_modules()), dict(ref.groups[bottom].named_modules())
    bns = [k for k, m in got.items() if isinstance(m, torch.nn.BatchNorm2d)]
    convs = [k for k, m in got.items() if isinstance(m, torch.nn.Conv2d)]
    assert bns and convs
    # BatchNorm's own scale and shift learned (not just its running statistics) ...
    assert any(not torch.equal(got[k].weight, want[k].weight) or not torch.equal(got[k].bias, want[k].bias)
               for k in bns)
    # ... while the group's convolutions stayed frozen.
    assert all(torch.equal(got[k].weight, want[k].weight) for k in convs)


def test_cpu_trains_in_bf16_only_the_models_that_gain_from_it_and_learns_in_it():
    from tlcore.device import pick
    from tlcore.models import MODELS
    native_bf16 = pick("cpu").amp_dtype is not None
    # 50 images per class keep ResNet-18 from scratch to seconds; it still ends far above 0.3 (0.97 here).
    _, events = run(TINY.replace(model="resnet18", strategy="scratch", epochs=3, lr=3e-3, device="cpu", per_class=50,
                                 batch_size=32))
    assert of(events, EpochEnded)[-1].val_acc > 0.3
    assert ("bf16 inference and training" in of(events, RunStarted)[0].device) == native_bf16
    assert not pick("cpu").for_model(MODELS["efficientnet_lite0"]).train_amp   # depthwise + BN: fp32 is faster


def test_gradual_unfreeze_opens_one_group_per_epoch_from_the_top():
    plan = TINY.replace(strategy="gradual_unfreeze", epochs=3)
    _, events = run(plan)
    groups = of(events, RunStarted)[0].groups
    assert [(e.epoch, e.group) for e in of(events, Unfrozen)] == [(1, groups[-1]), (2, groups[-2])]
    assert [e.trainable_groups for e in of(events, EpochEnded)] == [(), groups[-1:], groups[-2:]]


def test_stlr_and_discriminative_rates_are_what_the_optimiser_used():
    plan = TINY.replace(strategy="fine_tune_all", epochs=1, schedule="stlr", factor=2.6, lr=1e-3, ratio=32, cut_frac=0.1)
    _, events = run(plan)
    steps = of(events, Step)
    assert steps
    for s in steps:
        expected_head = plan.lr * multiplier("stlr", s.step, s.total_steps, cut_frac=0.1, ratio=32)
        assert s.lrs[-1] == pytest.approx(expected_head, rel=1e-9)
        for lower, upper in zip(s.lrs[:-1], s.lrs[1:]):
            assert upper / lower == pytest.approx(2.6, rel=1e-9)
    assert steps[0].lrs[-1] == pytest.approx(plan.lr / 32)


def test_feature_cache_is_hit_by_a_second_identical_run(tmp_path):
    cache = FeatureCache(tmp_path / "features")
    plan = TINY.replace(strategy="feature_extractor", epochs=1)
    _, first = run(plan, feature_cache=cache)
    _, second = run(plan, feature_cache=FeatureCache(tmp_path / "features"))  # new process: disk only
    assert not of(first, EpochEnded)[0].feature_cache_hit
    assert of(second, EpochEnded)[0].feature_cache_hit
    assert any(p.cache_hit for p in of(second, Phase) if p.name == "features")
    assert of(second, EpochEnded)[0].val_acc == pytest.approx(of(first, EpochEnded)[0].val_acc)


def test_a_stop_request_ends_the_run_as_stopped_and_the_store_lists_it(tmp_path):
    store = RunStore(tmp_path / "home")
    plan = TINY.replace(strategy="fine_tune_all", epochs=5)
    run_id = store.create(plan)
    calls = iter(range(10**6))
    train(plan, lambda e: store.append(run_id, e), should_stop=lambda: next(calls) >= 3,
          artifact_dir=store.artifact_dir(run_id))
    loaded = store.load(run_id)
    assert loaded.status == "stopped"
    assert [s.status for s in store.list()] == ["stopped"]
    assert len([e for e in loaded.events if isinstance(e, RunEnded)]) == 1


def test_a_stop_during_feature_extraction_ends_the_run_there(tmp_path):
    plan = TINY.replace(strategy="feature_extractor", image_size=64)
    phases: list = []

    def stop_after_first_batch() -> bool:
        return any(p.name == "features" for p in phases)

    events: list = []
    train(plan, lambda e: (events.append(e), isinstance(e, Phase) and phases.append(e)),
          should_stop=stop_after_first_batch, feature_cache=FeatureCache(tmp_path, 2**30))
    assert [e.status for e in of(events, RunEnded)] == ["stopped"]
    features = [p for p in of(events, Phase) if p.name == "features"]
    assert len(features) == 1 and features[0].done < features[0].total    # one batch, not the whole set
    assert of(events, EpochEnded) == []


def test_a_stopped_run_keeps_the_predictions_of_its_last_finished_epoch(tmp_path):
    plan = TINY.replace(strategy="fine_tune_top", epochs=3)
    events: list = []
    train(plan, events.append, should_stop=lambda: len(of(events, EpochEnded)) >= 1, artifact_dir=tmp_path)
    assert [e.status for e in of(events, RunEnded)] == ["stopped"]
    saved = torch.load(tmp_path / "predictions.pt")
    last = of(events, EpochEnded)[-1]
    assert len(saved["pred"]) == sum(map(sum, last.confusion))
    assert (saved["pred"] == saved["true"]).float().mean().item() == pytest.approx(last.val_acc)


def test_sklearn_head_fits_even_when_the_feature_cache_has_no_room():
    _, events = run(TINY.replace(head="logreg"), feature_cache=FeatureCache(None, 0))
    assert [e.status for e in of(events, RunEnded)] == ["finished"]
    assert of(events, EpochEnded)[-1].val_acc > 0.6


def test_scratch_trains_every_group_at_the_same_rate():
    _, events = run(TINY.replace(strategy="scratch", epochs=1, factor=2.6))
    lrs = of(events, Step)[-1].lrs
    assert max(lrs) == pytest.approx(min(lrs))


def test_a_diverging_run_fails_with_a_message_about_the_learning_rate(tmp_path, monkeypatch):
    import tlcore.train.phases as phases

    def exploding(*args, **kwargs):
        net = build_network(*args, **kwargs)
        for p in net.head.parameters():
            p.data.fill_(float("inf"))
        return net

    monkeypatch.setattr(phases, "build_network", exploding)
    store = RunStore(tmp_path / "home")
    plan = TINY.replace(strategy="feature_extractor", epochs=2)
    run_id = store.create(plan)
    train(plan, lambda e: store.append(run_id, e))
    loaded = store.load(run_id)
    assert loaded.status == "failed"
    assert "learning rate" in loaded.message
    assert [s.status for s in store.list()] == ["failed"]


def test_cli_train_on_digits_prints_one_json_line():
    # No --image-size: the CLI takes the dashboard's default for this machine and records it in the plan.
    out = subprocess.run([sys.executable, "-m", "tlcore", "train", "--dataset", "digits", "--model",
                          "efficientnet_lite0", "--strategy", "feature_extractor", "--epochs", "2", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "finished" and result["val_acc"] > 0.5
    assert {"run_id", "strategy", "val_acc", "macro_f1", "seconds", "images_per_s"} <= set(result)
    assert RunStore().load(result["run_id"]).plan.image_size == CPU_IMAGE_SIZE


def test_cli_rejects_a_bad_plan_in_one_line():
    out = subprocess.run([sys.executable, "-m", "tlcore", "train", "--epochs", "0"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: epochs: must be between 1 and 1000"]
    for bad in (["--strategy", "magic"], ["--epochs", "three"]):
        out = subprocess.run([sys.executable, "-m", "tlcore", "train", *bad], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("error: ") and bad[0] in out.stderr


def test_cli_ctrl_c_stops_the_run_cleanly_and_still_reports_it():
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "tlcore", "train", "--strategy", "fine_tune_all", "--epochs", "50",
                          "--image-size", "32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store, deadline = RunStore(), time.time() + 120
    while time.time() < deadline and not any(r.status == "running" for r in store.list()):
        time.sleep(0.2)
    run_id = store.list()[0].id
    while time.time() < deadline and not store.load(run_id).steps:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "stopped" and store.status(run_id) == "stopped"
