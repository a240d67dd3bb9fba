"""The forgetting lab: bad settings get one clear message; the old skill is measured as defined (the
untouched network keeps all of it, and outputs stored at a cut read as a whole pass does); each arm
trains what it says (BatchNorm statistics only: not one backbone weight changes, while the statistics
do); a small real run reports every arm and epoch, agrees with the plain reference
(forgetting_plain), and the page draws a finished run. (The lessons suite runs the page defaults over
seeds.)"""
import argparse

import pytest
import torch

from tlcore.errors import PlanError
from tlcore.kinds import kind_of
from tlcore.labs import forgetting as fg
from tlcore.labs import old_skill
from tlcore.models.build import imagenet_network
from tlcore.train.events import LabResult, RunEnded
from tlcore.train.phases import prepare
from tlcore.train.strategies import _BN

TINY = dict(per_class=5, image_size=32, epochs=1, batch_size=16)


def test_the_kind_is_registered_and_counts_arms():
    kind = kind_of("forgetting")
    assert kind.results == (fg.EPOCH, fg.ARM) and kind.unit == "arm"


def test_bad_settings_get_one_clear_message():
    with pytest.raises(PlanError, match="bn_stats"):
        fg.make_plan(bn_stats="sometimes")
    with pytest.raises(PlanError, match="measure"):
        fg.make_plan(measure="vibes")
    with pytest.raises(PlanError, match="1 to 10"):
        fg.make_plan(epochs=40)
    with pytest.raises(PlanError, match="random weights know nothing"):
        fg.make_plan().replace(strategy="scratch")
    with pytest.raises(PlanError, match="takes: bn_stats, measure"):
        fg.make_plan().replace(options={"lr": 1})


def test_the_page_the_cli_and_the_lesson_share_one_set_of_defaults():
    p = argparse.ArgumentParser()
    fg._add_arguments(p)
    a = p.parse_args([])
    plan = fg.make_plan()
    d = fg.DEFAULTS
    assert (plan.per_class, plan.image_size, plan.epochs, plan.option("bn_stats")) == \
        (a.per_class, a.image_size, a.epochs, a.bn_stats) == (d["per_class"], d["image_size"], d["epochs"],
                                                              d["bn_stats"])


def test_each_arm_trains_what_its_title_says():
    plan = fg.make_plan()
    got = {a: fg.arm_plan(plan, a) for a in fg.ARMS}
    assert (got["aggressive"].strategy, got["aggressive"].lr, got["aggressive"].factor) == ("fine_tune_all", fg.HIGH, 1.0)
    assert (got["cautious"].strategy, got["cautious"].lr) == ("fine_tune_all", fg.LOW)
    assert (got["discriminative"].factor, got["gradual"].strategy) == (fg.FACTOR, "gradual_unfreeze")
    assert got["bn_only"].strategy == "feature_extractor"
    assert {p.schedule for p in got.values()} == {"constant"}     # only what the arm is about differs
    assert len({(p.batch_size, p.per_class, p.seed, p.image_size) for p in got.values()}) == 1


def test_the_crops_are_fixed_and_the_untouched_network_keeps_every_answer():
    a, b = old_skill.photo_crops(3, 64, seed=0), old_skill.photo_crops(3, 64, seed=0)
    assert a.shape == (3 * len(old_skill.PHOTOS), 3, 64, 64) and a.dtype == torch.uint8 and torch.equal(a, b)
    prepared = prepare(fg.make_plan(**TINY), lambda e: None)
    original = imagenet_network("efficientnet_lite0").eval()
    skill = fg.imagenet_answers(original, prepared, crops_per_photo=3)
    assert skill.kept(original) == 1.0
    assert len(set(skill.answers.tolist())) > 3           # the crops are not all one ImageNet class
    for m in original.modules():                          # ImageNet's statistics replaced by fresh ones
        if isinstance(m, _BN):
            m.reset_running_stats()
    assert skill.kept(original) < 0.5


def test_outputs_stored_at_a_cut_read_as_a_whole_pass_does():
    prepared = prepare(fg.make_plan(**TINY), lambda e: None)
    original = imagenet_network("efficientnet_lite0").eval()
    n = len(original.group_names)
    skill = fg.imagenet_answers(original, prepared, crops_per_photo=3, keep=(3, 5, n))
    assert sorted(skill.stored) == [3, 5, n] and fg.frozen_cuts(fg.make_plan(epochs=4), n) == (3, 4, 5, 6)
    for cut in (0, 3, 5, n):                  # the untouched network, from the images or from a stored cut
        assert torch.equal(skill.predictions(original, cut), skill.answers)
    with torch.no_grad():                     # change the groups above cut 3: the stored outputs below still hold
        for p in original.groups["stage3"].parameters():
            p.mul_(1.5)
    whole, stored = skill.predictions(original, 0), skill.predictions(original, 3)
    assert (whole != skill.answers).any()
    # the same function; the stored path runs the changed groups plainly, the whole pass through a fused
    # fp32 copy, so a near-tie may round the other way: at most one crop of 24
    assert int((whole != stored).sum()) <= 1


def test_bn_only_changes_no_backbone_weight_but_the_statistics_and_the_gradual_arm_keeps_the_stem(tmp_path):
    prepared = prepare(fg.make_plan(**TINY), lambda e: None)
    original = imagenet_network("efficientnet_lite0").eval()
    skill = fg.imagenet_answers(original, prepared, crops_per_photo=2)
    before = {k: v.clone() for k, v in original.state_dict().items() if not k.startswith("head")}
    events = []
    row, net = fg.train_arm(0, "bn_only", prepared, skill, "frozen", events.append, lambda: False, 0.0)
    after = {k: v for k, v in net.state_dict().items() if not k.startswith("head")}
    weights = [k for k in before if not any(s in k for s in ("running_", "num_batches"))]
    stats = [k for k in before if "running_mean" in k]
    assert all(torch.equal(before[k], after[k]) for k in weights)          # bit for bit
    assert sum(not torch.equal(before[k], after[k]) for k in stats) == len(stats)   # every BN layer followed the digits
    assert 0.0 <= row["skill_kept"] <= 1.0
    # gradual unfreezing's first epoch trains the head alone: every backbone weight and statistic stays
    row, net = fg.train_arm(3, "gradual", prepared, skill, "updated", events.append, lambda: False, 0.0)
    after = {k: v for k, v in net.state_dict().items() if not k.startswith("head")}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert row["skill_kept"] == 1.0


def test_a_small_run_reports_every_arm_and_epoch_and_the_page_draws_it(tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from tlcore.runs import RunStore
    monkeypatch.setattr(old_skill, "CROPS_PER_PHOTO", 2)
    monkeypatch.setattr(fg.old_skill, "CROPS_PER_PHOTO", 2)
    plan = fg.make_plan(**TINY).replace(device="cpu")
    store = RunStore()
    shown = fg.make_plan()                 # what the page shows at its defaults: this small run's events under it
    run_id = store.create(shown, owner="someone")
    fg.run(plan, lambda e: store.append(run_id, e), lambda: False, tmp_path)
    run = store.load(run_id)
    assert run.status == "finished", run.message
    curves = fg.curves(run)
    assert set(curves) == set(fg.ARMS) and all(len(v) == 1 for v in curves.values())
    assert len(fg.findings(fg.finals(run))) == 3
    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(str(root / "views" / "forgetting.py")).run()
    at.session_state["fg_runs"] = {shown.to_json(): run_id}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    assert "Kept the least:" in text and "BatchNorm statistics alone" in text
    assert "Learned vs kept" in " ".join(el.proto.spec for el in at.get("plotly_chart"))


def test_sequential_measures_the_first_task_learned_in_the_run_while_a_second_trains(tmp_path):
    with pytest.raises(PlanError, match="another dataset"):
        fg.make_plan(measure="sequential").replace(options={"measure": "sequential", "second": "digits"})
    with pytest.raises(PlanError, match="dataset name"):
        fg.make_plan().replace(options={"second": "no_such_set"})
    plan = fg.make_plan(measure="sequential", **TINY).replace(device="cpu")
    events = []
    fg.run(plan, events.append, lambda: False, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    first = next(e.values["first_task_acc"] for e in events if type(e).__name__ == "Metrics")
    rows = {e.values["arm"]: e.values for e in events if isinstance(e, LabResult) and e.schema == fg.EPOCH}
    assert set(rows) == set(fg.ARMS)
    # gradual unfreezing's first epoch trains the second task's head alone: the first task is untouched
    assert rows["gradual"]["skill_kept"] == pytest.approx(first)
    assert first > 0.1                                     # the first task was learned (ten classes)


def test_the_fast_path_agrees_with_the_plain_reference(tmp_path, monkeypatch):
    """The lab against forgetting_plain (whole network from raw images everywhere) on a tiny run. The arms
    that train from raw images in both (all but gradual) take the very same steps: the same target
    accuracy, exactly; their skill is read through a fused fp32 copy against the plain network, the same
    function up to rounding, so a near-tie may flip: within one crop. Gradual trains on cached features,
    which the engine stores in float16 (computed in bf16 where the CPU has it), against fp32 in the plain
    run: within 0.03 of target accuracy (11 of 359 images) and two crops."""
    from tlcore.labs import forgetting_plain
    monkeypatch.setattr(old_skill, "CROPS_PER_PHOTO", 2)
    plan = fg.make_plan(per_class=5, image_size=32, epochs=2, batch_size=16).replace(device="cpu")
    events = []
    fg.run(plan, events.append, lambda: False, tmp_path)
    fast = {e.values["arm"]: e.values for e in events if isinstance(e, LabResult) and e.schema == fg.ARM}
    plain = forgetting_plain.run(plan)
    crop = 1 / (2 * len(old_skill.PHOTOS))
    assert set(fast) == set(plain) == set(fg.ARMS)
    for arm in fg.ARMS:
        f, p = fast[arm], plain[arm]
        if arm == "gradual":
            assert abs(f["target_acc"] - p["target_acc"]) <= 0.03, (f, p)
            assert abs(f["skill_kept"] - p["skill_kept"]) <= 2 * crop + 1e-9, (f, p)
        else:
            assert f["target_acc"] == p["target_acc"], (arm, f, p)
            assert abs(f["skill_kept"] - p["skill_kept"]) <= crop + 1e-9, (arm, f, p)
