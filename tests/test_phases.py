"""The engine's second version: phases with one exit path, exact caches, reproducible runs, plan kinds."""
from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcore.labs import run_plan
from tlcore.data import load_dataset
from tlcore.errors import PlanError
from tlcore.models import build_network
from tlcore.train.events import EpochEnded, LabResult, Metrics, Phase, RunEnded, RunStarted, Step, from_dict, \
    register_schema, to_dict
from tlcore.train.features import FeatureCache
from tlcore.train.loop import train
from tlcore.train.phases import Prepared, build, cache_identity, evaluate, prepare, source_at
from tlcore.train.plan import Plan
from tlcore.train.strategies import apply_cut

TINY = Plan(dataset="digits", model="efficientnet_lite0", image_size=32, epochs=2, batch_size=64, lr=3e-3, seed=0)


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


# --- one exit path ---------------------------------------------------------------------------------
def test_a_stop_during_the_second_cuts_feature_pass_keeps_the_first_epochs_results(tmp_path):
    plan = TINY.replace(strategy="gradual_unfreeze", epochs=3, per_class=20, batch_size=32)
    events: list = []

    def stop_in_epoch_2_features() -> bool:
        return bool(of(events, EpochEnded)) and any(e.name == "features" and not e.cache_hit
                                                    for e in events[events.index(of(events, EpochEnded)[0]):]
                                                    if isinstance(e, Phase))

    train(plan, events.append, stop_in_epoch_2_features, tmp_path, feature_cache=FeatureCache(tmp_path / "f", 2**30))
    assert [e.status for e in of(events, RunEnded)] == ["stopped"]
    assert len(of(events, EpochEnded)) == 1
    first = of(events, EpochEnded)[0]
    saved = torch.load(tmp_path / "predictions.pt")
    assert torch.equal(torch.as_tensor(first.confusion).sum(), torch.tensor(len(saved["pred"])))
    cm = torch.zeros_like(torch.as_tensor(first.confusion))
    for t, p in zip(saved["true"].tolist(), saved["pred"].tolist()):
        cm[t, p] += 1
    assert cm.tolist() == [list(r) for r in first.confusion]   # epoch 1's matrix, from the saved predictions
    # ... and the saved model is epoch 1's: it predicts exactly those images' classes again.
    model = torch.load(tmp_path / "model.pt")
    net = build_network(plan.model, 10)
    net.load_state_dict(model["state_dict"])
    prepared = prepare(plan, lambda e: None)
    net = net.to(prepared.policy.device).eval()
    # Through epoch 1's cut, as the run evaluated it: on a bf16 CPU the frozen prefix runs in bf16, and
    # a whole-network fp32 pass would disagree on the near-ties of a one-epoch model.
    cut = of(events, RunStarted)[0].cuts[0]
    ev = evaluate(net, source_at(net, cut, prepared, FeatureCache(None, 0), lambda e: None), prepared)
    assert (ev.pred == saved["pred"]).float().mean() > 0.98   # up to ties at half precision


def test_every_ending_emits_exactly_one_run_ended(tmp_path):
    for should_stop in (lambda: False, lambda: True):
        events: list = []
        train(TINY.replace(epochs=1, per_class=10), events.append, should_stop, tmp_path)
        assert len(of(events, RunEnded)) == 1


def test_a_bug_inside_a_phase_fails_the_run_once_and_keeps_its_trace(tmp_path, monkeypatch):
    import tlcore.train.loop as loop

    def broken(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(loop, "evaluate", broken)
    events: list = []
    assert train(TINY.replace(epochs=1, per_class=10), events.append, artifact_dir=tmp_path) is None
    [ended] = of(events, RunEnded)
    assert ended.status == "failed" and "ZeroDivisionError: boom" in ended.message
    assert "evaluate" in (tmp_path / "error.txt").read_text() or "broken" in (tmp_path / "error.txt").read_text()


# --- one data identity -----------------------------------------------------------------------------
def _photo_folder(root: Path, colour_of_first: int) -> Path:
    rng = np.random.default_rng(0)
    for c, base in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            arr = np.clip(np.array(base) + rng.integers(-20, 20, (20, 20, 3)), 0, 255).astype(np.uint8)
            if c == "red" and i == 0:
                arr[:] = colour_of_first
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def test_replacing_one_photo_in_a_class_folder_recomputes_the_features(tmp_path):
    folder = _photo_folder(tmp_path / "photos", 10)
    plan = TINY.replace(dataset="folder", dataset_path=str(folder), epochs=1, batch_size=4)
    cache = FeatureCache(tmp_path / "features", 2**30)
    _, first = None, []
    train(plan, first.append, feature_cache=cache)
    again: list = []
    train(plan, again.append, feature_cache=cache)
    assert of(again, EpochEnded)[0].feature_cache_hit           # nothing changed: the cache serves it
    photo = folder / "red" / "0.png"
    Image.fromarray(np.full((20, 20, 3), 250, np.uint8)).save(photo)   # same name, same folder, new pixels
    os.utime(folder, ns=(folder.stat().st_atime_ns, folder.stat().st_mtime_ns))  # the top folder looks untouched
    changed: list = []
    train(plan, changed.append, feature_cache=cache)
    assert not of(changed, EpochEnded)[0].feature_cache_hit


def test_a_zip_is_identified_by_its_contents_not_its_name(tmp_path):
    def make(path: Path, shade: int) -> Path:
        with zipfile.ZipFile(path, "w") as zf:
            for c in ("a", "b"):
                for i in range(4):
                    img = Image.fromarray(np.full((12, 12, 3), shade + (40 if c == "b" else 0) + i, np.uint8))
                    import io
                    buf = io.BytesIO()
                    img.save(buf, "PNG")
                    zf.writestr(f"{c}/{i}.png", buf.getvalue())
        return path
    one = load_dataset("folder", image_size=12, path=make(tmp_path / "x.zip", 10)).fingerprint
    same = load_dataset("folder", image_size=12, path=make(tmp_path / "x.zip", 10)).fingerprint
    other = load_dataset("folder", image_size=12, path=make(tmp_path / "x.zip", 90)).fingerprint
    assert one == same != other


def test_other_weights_give_another_feature_key():
    p = prepare(TINY, lambda e: None)
    mine = cache_identity(p)
    assert mine["weights"].startswith("file:")       # the shipped Lite0 file, by content hash
    other = Prepared(p.plan.replace(model="resnet18"), p.data, p.policy, p.spec, p.size, p.prep)
    assert cache_identity(other)["weights"] == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    scratch = Prepared(p.plan.replace(strategy="scratch"), p.data, p.policy, p.spec, p.size, p.prep)
    assert cache_identity(scratch)["weights"] == "random"
    assert {"data", "size", "dtype", "torch", "torchvision", "truncate_after"} <= set(mine)


# --- the validation set belongs to the dataset -----------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"per_class": 20}, {"per_class": 30, "imbalance": 3.0}])
def test_the_seed_never_changes_the_validation_images(options, tmp_path):
    a = load_dataset("digits", image_size=8, seed=1, **options)
    b = load_dataset("digits", image_size=8, seed=2, **options)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.val_y, b.val_y)
    folder = _photo_folder(tmp_path / "p", 10)
    fa = load_dataset("folder", image_size=16, seed=1, path=folder)
    fb = load_dataset("folder", image_size=16, seed=7, path=folder)
    assert torch.equal(fa.val_x, fb.val_x)


def test_the_seed_still_picks_the_training_subsample():
    a = load_dataset("digits", image_size=8, seed=1, per_class=20)
    b = load_dataset("digits", image_size=8, seed=2, per_class=20)
    assert not torch.equal(a.train_x, b.train_x) and a.fingerprint != b.fingerprint


# --- reproducible runs -----------------------------------------------------------------------------
def _story(events):
    """Losses by step (Step events are throttled by time, so compare the steps both reported) and
    each epoch's losses, accuracy and confusion matrix."""
    return ({s.step: s.loss for s in of(events, Step)},
            [(e.train_loss, e.val_loss, e.val_acc, e.confusion) for e in of(events, EpochEnded)])


def _same_story(a, b) -> None:
    (steps_a, epochs_a), (steps_b, epochs_b) = _story(a), _story(b)
    common = sorted(set(steps_a) & set(steps_b))
    assert common and [steps_a[s] for s in common] == [steps_b[s] for s in common]
    assert epochs_a == epochs_b


def test_the_same_plan_twice_gives_the_same_run_even_beside_another_run_in_a_thread(tmp_path):
    # Dropout (MLP head), augmentation and shuffling all draw: from the run's own generators.
    plan = TINY.replace(strategy="fine_tune_top", top_groups=1, head="mlp", augment=True, epochs=2, seed=3,
                        per_class=12, batch_size=16)
    solo: list = []
    train(plan, solo.append)
    side, beside = [], []
    other = threading.Thread(target=train, args=(plan.replace(seed=11, strategy="scratch"), side.append))
    other.start()
    train(plan, beside.append)
    other.join()
    _same_story(solo, beside)
    assert [e.status for e in of(side, RunEnded)] == ["finished"]


# --- plan kinds and result schemas -----------------------------------------------------------------
def test_an_unknown_kind_is_a_plan_error():
    with pytest.raises(PlanError, match="kind"):
        Plan(kind="telepathy")
    with pytest.raises(PlanError, match="options"):
        Plan(options={"surprise": 1})


def test_result_rows_are_checked_against_their_schema_and_survive_the_store():
    register_schema("test.row", {"group": str, "dim": int, "val_acc": float})
    row = LabResult("test.row", {"group": "stem", "dim": 32, "val_acc": 1})
    assert from_dict(to_dict(row)) == row
    for bad in ({"group": "stem", "dim": 32}, {"group": "stem", "dim": "32", "val_acc": 0.5},
                {"group": "stem", "dim": 32, "val_acc": 0.5, "extra": 1}):
        with pytest.raises(ValueError):
            LabResult("test.row", bad)
    with pytest.raises(ValueError):
        LabResult("no.such.schema", {})
    with pytest.raises(ValueError):
        Metrics({"val_acc": "high"})


# --- drop the higher groups ------------------------------------------------------------------------
def test_truncating_after_a_middle_group_trains_a_head_on_its_pooled_output():
    plan = TINY.replace(truncate_after="stage2", epochs=1, lr=1e-2)
    events: list = []
    net = train(plan, events.append)
    started = of(events, RunStarted)[0]
    assert started.groups == ("stem", "stage1", "stage2")
    assert net.head.in_features == 40            # Lite0's stage2 has 40 channels
    assert of(events, EpochEnded)[-1].val_acc > 0.2   # chance is 0.1
    with pytest.raises(PlanError, match="top_groups"):
        Plan(strategy="fine_tune_top", truncate_after="stage1", top_groups=3)
    with pytest.raises(PlanError, match="truncate_after"):
        Plan(truncate_after="stage9")
    with pytest.raises(PlanError, match="truncate_after"):
        Plan(strategy="fine_tune_all", truncate_after="stage1")


def test_run_started_says_what_the_progress_line_needs():
    events: list = []
    train(TINY.replace(strategy="gradual_unfreeze", epochs=3, per_class=10, batch_size=16), events.append)
    s = of(events, RunStarted)[0]
    assert s.cuts == (6, 5, 4) and s.steps_per_epoch > 0 and len(s.group_mflops) == 6
    assert s.dataset_name == "Digits (8x8, bundled)"
    steps = of(events, Step)
    assert all(b.elapsed >= a.elapsed for a, b in zip(steps, steps[1:]))
    first = of(events, EpochEnded)[0]
    assert first.feature_seconds > 0 and first.feature_images_per_s > 0 and first.steps_per_s > 0


def test_the_similarity_probe_is_a_run_of_its_own_kind_through_the_queue(tmp_path):
    from tlcore.jobs import JobRunner
    from tlcore.runs import RunStore

    runner = JobRunner(RunStore(tmp_path), max_concurrent=1, train_fn=run_plan)
    run_id = runner.submit(Plan(kind="similarity", image_size=32, per_class=20), owner="me")
    assert runner.wait(run_id, 300) == "finished"
    run = runner.store.load(run_id)
    [row] = run.results
    assert row.schema == "similarity" and row.values["samples"] == 200
    assert run.metrics["cnn_accuracy"] > 0.3 and run.metrics["pixel_accuracy"] > 0.3   # chance is 0.1
    runner.shutdown()


def test_identical_features_asked_for_by_two_students_at_once_are_computed_once(tmp_path):
    plan = TINY.replace(epochs=1, per_class=15)
    results: list[list] = [[], []]

    def student(i: int) -> None:   # separate caches over one folder: like two worker processes
        train(plan, results[i].append, feature_cache=FeatureCache(tmp_path / "shared", 2**30))

    threads = [threading.Thread(target=student, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hits = [of(r, EpochEnded)[0].feature_cache_hit for r in results]
    assert sorted(hits) == [False, True]
    assert of(results[0], EpochEnded)[0].val_acc == of(results[1], EpochEnded)[0].val_acc


@pytest.mark.parametrize("strategy", ["feature_extractor", "fine_tune_top"])
def test_a_runs_network_loads_back_and_predicts_what_the_run_saved(strategy, tmp_path):
    from tlcore.artifacts import NoNetwork, load_network
    from tlcore.runs import RunStore

    store = RunStore(tmp_path)
    plan = TINY.replace(strategy=strategy, epochs=1, per_class=15)
    run_id = store.create(plan, owner="me")
    train(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    net, got_plan, classes = load_network(store, run_id)
    assert got_plan == plan and classes == tuple("0123456789")
    prepared = prepare(plan, lambda e: None)
    cut = store.load(run_id).started.cuts[0]   # the run's own path (its frozen prefix's numeric mode included)
    ev = evaluate(net, source_at(net, cut, prepared, FeatureCache(None, 0), lambda e: None), prepared)
    saved = store.predictions(run_id)
    assert (ev.pred == saved["pred"]).float().mean() > 0.98   # up to ties at half precision
    svm = store.create(plan.replace(strategy="pixel_svm"), owner="me")
    with pytest.raises(NoNetwork, match="raw pixels"):
        load_network(store, svm)


def test_a_class_of_subsamples_computes_the_whole_datasets_features_once_and_each_reads_its_own_rows(tmp_path):
    """Students of one class differ by seed and images per class: the first computes the frozen features
    of the whole dataset, every other one reads its rows of them, and trains on exactly the features it
    would have computed for its own images."""
    cache = FeatureCache(tmp_path / "features")
    plan = Plan(dataset="digits", strategy="feature_extractor", image_size=32, epochs=1, per_class=20, seed=1)
    first = prepare(plan, lambda e: None, lambda: False)
    net = build(first)
    n = len(net.group_names)
    apply_cut(net, n, plan.bn)   # as training does: every group frozen, in inference mode
    events: list = []
    shared = source_at(net, n, first, cache, events.append, share_whole=True)
    assert not shared.cache_hit and shared.train.shape[0] == len(first.data.train_y)
    other = prepare(plan.replace(seed=2, per_class=30), lambda e: None, lambda: False)
    again = source_at(net, n, other, cache, events.append, share_whole=True)
    assert again.cache_hit and again.feature_seconds == 0.0   # the whole's features, computed by the first
    alone = source_at(net, n, other, FeatureCache(tmp_path / "alone"), lambda e: None)   # the old road
    assert again.train.shape == alone.train.shape
    torch.testing.assert_close(again.train, alone.train, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again.val, alone.val, rtol=1e-4, atol=1e-5)
