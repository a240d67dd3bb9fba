"""The negative transfer lab: its checks say what to change before anything trains, its verdicts say
"helped" or "hurt" only beyond the spread over seeds and against the stronger arm without a source,
and one small real comparison keeps Wang et al.'s gap. (The page's AppTest draws a finished run;
the lessons suite runs the page defaults.)"""
import argparse

import pytest

from tlcore.errors import PlanError
from tlcore.kinds import kind_of
from tlcore.labs import negative_transfer as nt


def test_the_kind_is_registered_and_its_progress_counts_seeds_times_arms():
    kind = kind_of("negative_transfer")
    assert set(kind.results) == {nt.RUN, nt.GAP, nt.SWEEP}
    assert kind.results[-1] == nt.RUN and kind.unit == "arm run"    # one RUN row per seed and arm


def test_bad_settings_get_one_clear_message():
    with pytest.raises(PlanError, match="from 5 to 50 images per class"):
        nt.make_plan(per_class=3)
    with pytest.raises(PlanError, match="the other half of the data is the sources'"):
        nt.make_plan(per_class=nt.MAX_PER_CLASS + 1)
    with pytest.raises(PlanError, match="from 1 to 10"):
        nt.make_plan(seeds=0)
    assert nt.make_plan(per_class=20, seeds=2).option("seeds") == 2


def test_the_page_the_cli_and_the_lesson_share_one_set_of_defaults():
    plan = nt.make_plan()
    d = nt.DEFAULTS
    assert (plan.dataset, plan.per_class, plan.option("seeds"), plan.image_size, plan.seed) == \
        (d["dataset"], d["per_class"], d["seeds"], d["image_size"], d["seed"])
    p = argparse.ArgumentParser()
    nt._add_arguments(p)
    a = p.parse_args([])
    assert (a.dataset, a.per_class, a.seeds, a.image_size, a.seed) == \
        (d["dataset"], d["per_class"], d["seeds"], d["image_size"], d["seed"])


def test_a_source_is_judged_against_the_stronger_baseline_seed_by_seed():
    accs = {"scratch": {0: 0.80, 1: 0.82, 2: 0.81}, "pixel_svm": {0: 0.90, 1: 0.91, 2: 0.92},
            "imagenet": {0: 0.95, 1: 0.95, 2: 0.96},       # beats the SVM on every seed, by ~4 points
            "misleading": {0: 0.85, 1: 0.86, 2: 0.88},     # beats the scratch CNN, loses to the SVM
            "random_init": {0: 0.88, 1: 0.93, 2: 0.90}}    # about the SVM, noisily
    base, rows = nt.verdicts(accs)
    by = {r["source"]: r for r in rows}
    assert base == "pixel_svm"
    assert by["imagenet"]["verdict"] == "helped" and by["imagenet"]["gap"] == pytest.approx(-0.0433, abs=1e-4)
    assert by["misleading"]["verdict"] == "hurt"           # not "helped", as the weaker baseline would say
    assert by["random_init"]["verdict"] == "within spread"
    assert by["imagenet"]["spread"] == pytest.approx(0.01)


def test_one_seed_has_no_spread_and_a_tie_is_no_verdict():
    assert nt.judge([0.02]) == "hurt" and nt.judge([-0.02]) == "helped" and nt.judge([0.0]) == "within spread"
    assert nt.judge([0.03, -0.01]) == "within spread"    # mean 0.01, spread 0.04


def test_the_sign_flip_is_said_where_the_verdict_changes():
    rows = [{"per_class": 5, "gap": 0.03, "spread": 0.01, "verdict": "hurt"},
            {"per_class": 10, "gap": 0.0, "spread": 0.02, "verdict": "within spread"},
            {"per_class": 20, "gap": -0.02, "spread": 0.01, "verdict": "helped"}]
    text = nt.flip_sentence("related", rows)
    assert text.startswith(nt.TITLES["related"])
    assert "between 5 and 10 per class" in text and "between 10 and 20 per class" in text
    assert "20/class helped (-0.020)" in text


def test_the_whole_comparison_runs_and_its_gaps_are_wang_et_als_definition(tmp_path, monkeypatch):
    # Real digits, the bundled Lite0, two seeds; the sources' training, the scratch CNN and the sweep shortened.
    import statistics

    from tlcore.labs import photo_sources
    from tlcore.train.events import LabResult, RunEnded
    monkeypatch.setattr(photo_sources, "EPOCHS", 1)
    monkeypatch.setattr(nt, "SCRATCH_EPOCHS", 1)
    monkeypatch.setattr(nt, "SWEEP_PER_CLASS", (5,))
    plan = nt.make_plan(per_class=5, seeds=2, image_size=32).replace(device="cpu")
    events = []
    nt.run(plan, events.append, lambda: False, tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    runs = [e.values for e in events if isinstance(e, LabResult) and e.schema == nt.RUN]
    assert sorted((v["arm"], v["seed"]) for v in runs) == sorted((a, s) for a in nt.ARMS for s in (0, 1))
    acc = {(v["arm"], v["seed"]): v["target_acc"] for v in runs}
    gaps = {e.values["source"]: e.values for e in events if isinstance(e, LabResult) and e.schema == nt.GAP}
    assert set(gaps) == set(nt.SOURCES)
    for src, g in gaps.items():
        # target error with the source minus target error without it, averaged over the seeds
        want = statistics.mean((1 - acc[src, s]) - (1 - acc["scratch", s]) for s in (0, 1))
        assert g["gap_vs_scratch"] == pytest.approx(want) and g["seeds"] == 2
    sweep = [e.values for e in events if isinstance(e, LabResult) and e.schema == nt.SWEEP]
    # every source's sweep arm at the run's own per-class count is the comparison's arm
    for src in nt.SOURCES:
        assert {(v["seed"], v[f"{src}_acc"]) for v in sweep} == {(s, acc[src, s]) for s in (0, 1)}
    assert statistics.mean(acc["imagenet", s] for s in (0, 1)) > 0.5    # ten classes: chance is 0.1


def test_the_page_says_per_source_what_the_run_showed_and_where_the_sign_flips():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from tlcore.runs import RunStore
    from tlcore.train.events import LabResult, RunEnded
    root = Path(__file__).resolve().parents[1]
    store = RunStore()
    plan = nt.make_plan()
    run_id = store.create(plan, owner="someone")
    accs = {"scratch": (0.90, 0.91, 0.92), "pixel_svm": (0.94, 0.94, 0.95), "related": (0.97, 0.96, 0.97),
            "imagenet": (0.95, 0.93, 0.94), "misleading": (0.90, 0.91, 0.91), "random_init": (0.92, 0.92, 0.93)}
    for arm, per in accs.items():
        for seed, a in enumerate(per):
            store.append(run_id, LabResult(nt.RUN, {"arm": arm, "seed": seed, "target_acc": a}))
    for n, im in ((5, 0.85), (20, 0.97)):
        for seed in range(3):
            store.append(run_id, LabResult(nt.SWEEP, {"per_class": n, "seed": seed, "related_acc": im + 0.001 * seed,
                                                      "imagenet_acc": 0.90, "misleading_acc": 0.80,
                                                      "random_init_acc": 0.85, "pixel_svm_acc": 0.90}))
    store.append(run_id, RunEnded("finished", "", 30.0))
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(str(root / "views" / "negative_transfer.py")).run()
    at.session_state["nt_runs"] = {plan.to_json(): run_id}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    assert "stronger arm without a source, **SVM on pixels**" in text
    assert f"**{nt.TITLES['related']}** helped: mean gap -0.023" in text
    assert f"**{nt.TITLES['misleading']}** hurt: mean gap +0.037" in text
    assert f"**{nt.TITLES['imagenet']}** neither helped nor hurt" in text
    assert f"{nt.TITLES['related']} against the pixel SVM, by images per class: 5/class hurt" in text
    assert "20/class helped" in text and "between 5 and 20 per class" in text
    assert "64 px helped" in text                        # the measured image sizes, in words
    assert "18 arm runs" in " ".join(p.proto.text for p in at.get("progress"))   # seeds x arms
