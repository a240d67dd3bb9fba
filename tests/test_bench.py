"""The benchmark suite: it runs end to end, its reference really trains, its verdicts and comparisons are right."""
from __future__ import annotations

import json

import pytest

from tlcore.bench import cases, harness, reference
from tlcore.bench.__main__ import main
from tlcore.bench.cases import attach_targets
from tlcore.bench.harness import synthetic_fashion
from tlcore.bench.report import Result, compare, json_lines, table
from tlcore.data import DATASETS, load_dataset
from tlcore.device import pick


def test_tiny_suite_runs_a_case_end_to_end_and_prints_one_json_line_per_result(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--tiny", "--cases", "1", "--json", str(out)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines and all(d["case"] == 1 for d in lines)
    for d in lines:
        # A side that did not reach the accuracy goal has no time (how well it trains under load is
        # not what this test checks); the others have both times and their ratio.
        if d["ours"] is not None and d["reference"] is not None:
            assert d["ours"] > 0 and d["reference"] > 0
            # speedup is reference time / our time for a time metric
            assert d["speedup"] == pytest.approx(d["reference"] / d["ours"], rel=1e-3)
        else:
            assert d["speedup"] is None and any("not reached" in n for n in d["notes"])
        assert {"torch", "torchvision", "python", "cpu", "device", "cpu_bf16"} <= set(d["env"])
    probe = next(d for d in lines if d["name"].endswith("epochs"))
    assert probe["ours"] > 0 and probe["reference"] > 0 and probe["details"]["ours_prefix_mode"] in ("fp32", "bf16")
    assert probe["details"]["dataset_mb"] > 0 and probe["details"]["feature_cache_mb"] > 0
    assert any("EXTRAPOLATED" in n for n in probe["notes"])   # tiny runs fewer reference epochs and must say so
    assert [d["name"] for d in json.loads(out.read_text())] == [d["name"] for d in lines]


def test_a_side_that_never_reaches_the_accuracy_goal_is_reported_not_reached():
    # The reference's single epoch stays under the goal, as it does on a loaded machine.
    r = cases.accuracy_row("efficientnet_lite0", 0.3, [(1.0, 0.2), (2.0, 0.5)], [(9.0, 0.12)], {"model": "m"})
    assert (r.ours, r.reference, r.speedup) == (2.0, None, None)
    assert r.details["ours_epochs_to_acc"] == 2 and r.details["ref_epochs_to_acc"] is None
    assert any("the reference did not reach 30%" in n for n in r.notes)
    attach_targets(r, "cpu")
    row = table([r]).splitlines()[-1]
    assert "2.00" in row and "not reached" in row
    assert json.loads(json_lines([r], {})[0])["reference"] is None
    neither = cases.accuracy_row("m", 0.9, [(1.0, 0.2)], [(9.0, 0.1)], {})
    assert neither.ours is None and table([neither]).count("not reached") == 2


def test_the_data_root_is_an_option_not_a_path_inside_the_package(tmp_path, monkeypatch, shared_data):
    monkeypatch.delenv(harness.DATA_ENV, raising=False)
    assert harness.data_roots(None) == [harness.data_dir()]           # the engine's own data folder, nothing else
    monkeypatch.setenv(harness.DATA_ENV, str(tmp_path))
    assert harness.data_roots(None)[0] == tmp_path
    assert harness.data_roots(shared_data)[0] == shared_data         # --data-root wins over the variable
    ctx = harness.Context(pick("cpu"), tmp_path, {}, data_root=shared_data)
    try:
        _, data, source = harness.bench_dataset(ctx, 20, 10)
        assert str(shared_data) in source and data.train_x.shape == (20, 3, 28, 28)
    finally:
        harness.forget_datasets(ctx)


def test_without_fashion_mnist_the_bench_uses_synthetic_images_of_its_shape_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "_fashion_mnist", lambda root=None: None)
    ctx = harness.Context(pick("cpu"), tmp_path, {})
    name, data, source = harness.bench_dataset(ctx, 30, 10)
    try:
        assert source.startswith("synthetic")
        assert data.train_x.shape == (30, 3, 28, 28) and data.val_x.shape == (10, 3, 28, 28)
        assert sorted(data.train_y.tolist()) == sorted(list(range(10)) * 3)
        engine_view = load_dataset(name, image_size=64)            # the engine loads it like any dataset
        assert engine_view.train_x.shape[-1] == 28                    # kept at 28 px; upscaled per batch
    finally:
        harness.forget_datasets(ctx)
    assert name not in DATASETS


def test_reference_loop_trains_the_head_so_its_loss_falls():
    data = synthetic_fashion(60, 20)
    epochs = reference.fit("efficientnet_lite0", data, size=32, top_groups=[0, 0, 0], batch_size=10, lr=1e-2,
                           weight_decay=1e-4, factor=2.6, device="cpu", workers=0)
    assert len(epochs) == 3
    assert epochs[-1].train_loss < epochs[0].train_loss - 0.05
    assert epochs[-1].elapsed > epochs[0].elapsed > 0


def test_reference_unfreezes_groups_from_the_top_by_requires_grad():
    from tlcore.models import build_network

    net = build_network("efficientnet_lite0", 10)
    reference.set_trainable(net, 2)
    trainable = [all(p.requires_grad for p in g.parameters()) for g in net.groups.values()]
    assert trainable == [False] * (len(trainable) - 2) + [True, True]
    assert not list(net.groups.values())[0].training     # frozen BatchNorm stays in inference mode


@pytest.mark.parametrize("seconds, verdict", [(29.0, True), (31.0, False)])
def test_cold_start_target_is_under_30_seconds(seconds, verdict):
    r = Result(5, "digits efficientnet_lite0", "s to JSON line", seconds)
    attach_targets(r, "cpu")
    assert [t.passed for t in r.targets] == [verdict]


def test_cpu_resnet18_inference_target_applies_only_at_224px():
    at_224 = Result(4, "resnet18", "img/s", 16.0, 8.0, rate=True, details={"model": "resnet18", "px": 224})
    at_64 = Result(4, "resnet18", "img/s", 16.0, 8.0, rate=True, details={"model": "resnet18", "px": 64})
    attach_targets(at_224, "cpu")
    attach_targets(at_64, "cpu")
    assert [(t.label, t.threshold, t.passed) for t in at_224.targets] == [("img/s", 15.0, True), ("speedup", 2.0, True)]
    assert at_64.targets == []


def test_compare_reports_better_as_above_one_for_times_and_rates():
    env = {"device": "cpu"}
    before = [{"case": 1, "name": "a", "metric": "s", "ours": 10.0, "higher_is_better": False, "speedup": 5.0,
               "env": env},
              {"case": 4, "name": "b", "metric": "img/s", "ours": 100.0, "higher_is_better": True, "speedup": None,
               "env": env}]
    now = [{**before[0], "ours": 5.0, "speedup": 10.0}, {**before[1], "ours": 50.0},
           {"case": 2, "name": "new", "metric": "img/s", "ours": 1.0, "higher_is_better": True, "env": env}]
    lines = compare(now, before)
    assert "2.00x better now" in lines[0] and "speedup 10.00x vs 5.00x" in lines[0]
    assert "0.50x better now" in lines[1]
    assert "no earlier figure" in lines[2]


def test_unknown_case_numbers_are_refused():
    with pytest.raises(SystemExit):
        main(["--cases", "1,9"])


def test_the_cases_run_in_order_and_the_probe_case_needs_no_imagenet_file():
    assert list(cases.CASES) == sorted(cases.CASES) == [1, 2, 3, 4, 5, 6, 7]
    assert cases.models_used(cases.SIZES["quick"], [6]) == set()   # random weights: its cost is the same


def test_the_reference_is_extrapolated_only_when_it_ran_fewer_epochs():
    assert cases._extrapolation_notes(10, 5.0, 0.5, 10) == []
    [note] = cases._extrapolation_notes(2, 3.0, 1.2, 10)
    assert note.startswith("EXTRAPOLATED: the reference ran 2 of 10 epochs (3.0s)") and "at 1.2s each" in note


def test_the_labs_group_runs_a_lab_and_its_plain_implementation_and_reports_both_figures(tmp_path, capsys):
    """Case 7 at the tiny size (zero-shot only): our run and the plain one, each from a cold process,
    the same lesson figure from both (the same computation), a ratio and the row's target."""
    out = tmp_path / "labs.json"
    assert main(["--tiny", "--cases", "7", "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert row["case"] == 7 and row["name"] == "zero_shot" and row["ours"] > 0 and row["reference"] > 0
    d = row["details"]
    assert d["figure"].startswith("unseen accuracy") and d["ours_value"] == pytest.approx(d["plain_value"], abs=0.05)
    assert row["targets"][0]["label"] == "<30 s"
