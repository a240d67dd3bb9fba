"""Few-shot lab: the learners, the draws, the plan's checks and a small real run (digits, and a folder
of two shots a class, like a webcam set). The lesson itself (prototypes first at k = 1, trained
learners first at k = 20) is the lessons suite's (tests/lessons/test_few_shot_lesson.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcore.errors import PlanError
from tlcore.kinds import run_plan
from tlcore.labs import few_shot as fs
from tlcore.train.events import LabResult, RunEnded

QUICK = {"ks": [1, 2], "draws": 2, "steps": 3}


def _run(plan, tmp_path) -> list:
    events: list = []
    run_plan(plan, events.append, artifact_dir=tmp_path / "art")
    return events


def _rows(events, schema) -> list[dict]:
    return [e.values for e in events if isinstance(e, LabResult) and e.schema == schema]


def test_prototypes_give_each_image_the_class_whose_mean_direction_is_nearest():
    train = np.array([[1.0, 0.0], [3.0, 0.2], [0.0, 1.0], [0.1, 5.0]])
    y = np.array([0, 0, 1, 1])
    # By direction, not length: (10, 1) is long but points at class 0; (0.2, 0.3) is short and leans to class 1.
    test = np.array([[10.0, 1.0], [0.2, 0.3], [0.5, 0.4]])
    assert fs.prototype_predict(train, y, test, 2).tolist() == [0, 1, 0]


def test_draws_differ_by_k_draw_and_seed_and_repeat_exactly():
    seeds = {fs.draw_seed(s, k, r) for s in range(3) for k in (1, 2, 5) for r in range(5)}
    assert len(seeds) == 45
    assert fs.draw_seed(1, 5, 2) == fs.draw_seed(1, 5, 2)


def test_ks_above_the_smallest_class_are_skipped_and_said():
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    assert fs.ks_to_run([1, 2, 5], y, 3) == ([1], [2, 5], 1)


@pytest.mark.parametrize("opts, field", [({"ks": [2, 1]}, "options.ks"), ({"ks": [0, 1]}, "options.ks"),
                                         ({"ks": []}, "options.ks"), ({"draws": 0}, "options.draws"),
                                         ({"steps": True}, "options.steps"), ({"shots": 1}, "options.shots")])
def test_bad_options_are_refused_by_name(opts, field):
    with pytest.raises(PlanError) as e:
        fs.lab_plan(**opts)
    assert e.value.field == field


def test_the_lab_draws_its_own_images_and_reads_the_top_group():
    plan = fs.lab_plan()
    with pytest.raises(PlanError, match="imbalance"):
        plan.replace(imbalance=2.0)
    with pytest.raises(PlanError, match="strategy"):
        plan.replace(strategy="feature_extractor")


def test_a_small_run_scores_every_learner_on_every_draw_and_repeats_exactly(tmp_path):
    plan = fs.lab_plan(image_size=32, **QUICK)
    events = _run(plan, tmp_path / "a")
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    draws = _rows(events, fs.DRAW)
    assert [(d["k"], d["draw"]) for d in draws] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    arms = _rows(events, fs.ARM)
    assert len(arms) == 2 * len(fs.ARMS)
    for a in arms:
        vals = [d[a["arm"]] for d in draws if d["k"] == a["k"]]
        assert a["mean"] == pytest.approx(np.mean(vals)) and a["low"] == min(vals) and a["high"] == max(vals)
        assert 0.0 <= a["low"] <= a["high"] <= 1.0
    # 10 classes: every learner beats guessing by far even from one image a class at 32 px
    assert all(d[a] > 0.2 for d in draws for a in fs.ARMS), draws
    # the second run reads the cached features, and each draw's fine-tuning starts from the pretrained top group
    again = _rows(_run(plan, tmp_path / "b"), fs.DRAW)
    assert again == draws


def test_a_stop_request_ends_the_run_as_stopped(tmp_path):
    events: list = []
    asked = {"n": 0}

    def stop() -> bool:
        asked["n"] += 1
        return asked["n"] > 6
    run_plan(fs.lab_plan(image_size=32, **QUICK), events.append, stop, tmp_path)
    assert events[-1].status == "stopped"


def _shots(root: Path, per_class: int = 2) -> Path:
    """A webcam-like set: three classes of `per_class` photos each (plain colours with a stripe)."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            a = np.clip(np.array(colour) + rng.integers(-20, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
            a[10 + 8 * c:14 + 8 * c] = 255
            Image.fromarray(a).save(root / f"class{c}" / f"{i}.png")
    return root


def test_a_class_from_one_snapshot_two_shots_a_class_learn_one_shot_and_say_what_was_skipped(tmp_path):
    folder = _shots(tmp_path / "cam")
    plan = fs.lab_plan(dataset="folder", dataset_path=str(folder), dataset_name="my webcam shots",
                       image_size=32, ks=[1, 2, 5], draws=2, steps=3)
    events = _run(plan, tmp_path)
    assert events[-1].status == "finished", events[-1]
    setup = _rows(events, fs.SETUP)[0]
    assert setup["smallest_class"] == 1 and setup["skipped"] == "2,5"
    assert {a["k"] for a in _rows(events, fs.ARM)} == {1}


def test_the_command_line_refuses_bad_input_in_one_line(capsys):
    from tlcore.__main__ import main
    assert main(["few-shot", "--ks", "5,1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "options.ks" in err, err


def _wait_for_runs(store, timeout_s: float = 120.0) -> list:
    import time
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        runs = store.list()
        if runs and all(r.status not in ("queued", "running") for r in runs):
            return runs
        time.sleep(0.2)
    raise AssertionError("the page's run did not end")


def test_the_page_queues_its_controls_plan_and_draws_the_finished_run():
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from ui import services
    root = Path(__file__).resolve().parents[1]
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
        at.query_params["per_class"] = "10"   # the Data page's images per class bound the pool drawn from
        at.run()
        at.switch_page(str(root / "views" / "few_shot.py")).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["fs_ks"] == fs.DEFAULTS["ks"] and at.session_state["fs_draws"] == fs.DEFAULTS["draws"]
        at.session_state["fs_ks"], at.session_state["fs_draws"], at.session_state["fs_steps"] = [1], 1, 10
        at.run()
        next(b for b in at.button if b.label.startswith("Learn from")).click().run()
        [run] = _wait_for_runs(services.store())
        assert run.kind == fs.KIND and run.status == "finished"
        from tlcore.train.plan import Plan
        plan = Plan.from_json(run.plan_json)
        assert plan.options == {"ks": [1], "draws": 1, "steps": 10} and plan.per_class == 10
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.get("plotly_chart")) == 2
        assert any("guessing would get 0.100" in m.value for m in at.markdown)
    finally:
        st.cache_resource.clear()


def test_the_findings_name_the_best_learner_at_each_end_from_the_run():
    def arm(a, k, mean, low, high):
        return LabResult(fs.ARM, {"arm": a, "k": k, "mean": mean, "sd": 0.01, "low": low, "high": high, "draws": 3})
    means = {"prototypes": (0.6, 0.8), "logreg": (0.4, 0.9), "fine_tune": (0.45, 0.85), "pixels": (0.5, 0.7)}
    results = [arm(a, k, m, m - (0.1 if k == 1 else 0.01), m + (0.1 if k == 1 else 0.01))
               for a, (m1, m20) in means.items() for k, m in ((1, m1), (20, m20))]
    lines = fs.findings(results, 10)
    assert "reached 0.600" in lines[0] and "guessing would get 0.100" in lines[0]
    assert lines[1].startswith("At k = 1 the best learner was nearest class mean")
    assert lines[2].startswith("At k = 20 the best was logistic regression")
    assert "4 of 4 learners" in lines[3]


def test_the_findings_say_when_the_prototypes_stay_best_without_naming_them_twice():
    rows = [LabResult(fs.ARM, {"arm": a, "k": k, "mean": m, "sd": 0.0, "low": m, "high": m, "draws": 1})
            for a, m in (("prototypes", 0.99), ("logreg", 0.9), ("fine_tune", 0.95), ("pixels", 0.3)) for k in (1, 20)]
    line = fs.findings(rows, 6)[2]
    assert line.startswith("At k = 20 the prototypes were still the best (0.990)") and "had" not in line
