"""Zero-shot lab (direct attribute prediction): the scoring rule, the scrambled table, the plan's checks,
and a small real run on digits. The lesson (unseen classes well above guessing, lower when the table
is scrambled) is the lessons suite's (tests/lessons/test_zero_shot_lesson.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlcore.errors import PlanError
from tlcore.kinds import run_plan
from tlcore.labs import zero_shot as zs
from tlcore.train.events import LabResult, RunEnded


def _rows(events, schema) -> list[dict]:
    return [e.values for e in events if isinstance(e, LabResult) and e.schema == schema]


def test_scrambling_gives_every_class_another_class_row_the_same_way_for_a_seed():
    for seed in range(20):
        perm = zs.scramble(10, seed)
        assert sorted(perm) == list(range(10)) and (perm != np.arange(10)).all()
    assert (zs.scramble(10, 3) == zs.scramble(10, 3)).all()


def test_an_image_goes_to_the_unseen_class_whose_description_its_attributes_match():
    table = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0]])   # classes 2 and 3 unseen
    probs = [np.array([0.9, 0.1]), np.array([0.8, 0.2]), None]      # attribute 3 has no classifier
    scores = zs.dap_scores(probs, table, prior=np.array([0.5, 0.5, 1.0]), unseen=[2, 3])
    assert scores.argmax(1).tolist() == [0, 1]   # image 0 has both attributes (class 2), image 1 neither (class 3)


def test_a_rare_attribute_counts_for_more_than_a_common_one():
    # One image, attribute 0 present (p = 0.9), attribute 1 absent (p = 0.1). Class A claims attribute 0,
    # class B claims attribute 1. Attribute 0 is rare among the seen classes, so A wins by more than
    # it would if attribute 0 were common.
    table = np.array([[1, 0], [0, 1]])
    probs = [np.array([0.9]), np.array([0.1])]
    rare = zs.dap_scores(probs, table, np.array([0.1, 0.5]), [0, 1])
    common = zs.dap_scores(probs, table, np.array([0.9, 0.5]), [0, 1])
    assert rare[0, 0] - rare[0, 1] > common[0, 0] - common[0, 1]


@pytest.mark.parametrize("opts, field", [
    ({"unseen": [3]}, "options.unseen"), ({"unseen": [3, 3]}, "options.unseen"),
    ({"unseen": [3, 10]}, "options.unseen"),
    ({"table": [[0] * 8] * 9}, "options.table"), ({"table": [[0] * 7] * 10}, "options.table"),
    ({"table": [[2] * 8] * 10}, "options.table"), ({"table": [[0] * 8] * 10}, "options.table"),
    ({"attributes": []}, "options.attributes"), ({"attributes": ["a", "A"] + ["x"] * 6}, "options.attributes"),
    ({"scrambles": 2}, "options.scrambles")])
def test_bad_tables_and_unseen_lists_are_refused_by_name(opts, field):
    with pytest.raises(PlanError) as e:
        zs.lab_plan(**opts)
    assert e.value.field == field


def test_only_datasets_with_a_table_can_run_it():
    with pytest.raises(PlanError, match="attributes"):
        zs.lab_plan(dataset="cifar10")


def test_unseen_classes_are_given_by_name_or_index():
    assert zs.unseen_indices("digits", "3, 8") == [3, 8]
    assert zs.unseen_indices("fashion_mnist", "Sandal,Shirt") == [5, 6]
    with pytest.raises(PlanError):
        zs.unseen_indices("digits", "3,eight")


def test_a_run_never_trains_on_an_unseen_class_and_scores_both_tables(tmp_path):
    # An attribute only the unseen classes have (the last column) cannot be learned: it is reported unused.
    o = zs.default_options("digits")
    table = [row + [1 if c in (3, 8) else 0] for c, row in enumerate(o["table"])]
    plan = zs.lab_plan(image_size=32, attributes=o["attributes"] + ["only unseen"], table=table)
    events: list = []
    run_plan(plan, events.append, artifact_dir=tmp_path)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    tables = {r["table"]: r for r in _rows(events, zs.TABLE)}
    assert set(tables) == {"yours", "scrambled"}
    assert tables["yours"]["chance"] == 0.5 and tables["yours"]["unseen"] == 2
    classes = _rows(events, zs.CLASS)
    assert {(c["table"], c["cls"]) for c in classes} == {(t, c) for t in ("yours", "scrambled") for c in ("3", "8")}
    assert sum(c["images"] for c in classes if c["table"] == "yours") == tables["yours"]["images"]
    # every image of 3 and 8 in the dataset is a test image: none was trained on
    assert tables["yours"]["images"] == 183 + 174
    used = {a["attribute"]: a["used"] for a in _rows(events, zs.ATTRIBUTE)}
    assert used["only unseen"] is False and used["closed loop"] is True


def test_the_seen_training_split_holds_no_unseen_image():
    from types import SimpleNamespace

    import torch
    d = SimpleNamespace(train_y=torch.tensor([0, 1, 2, 3, 2]), val_y=torch.tensor([3, 0]))
    codes = SimpleNamespace(prepared=SimpleNamespace(data=d), train=np.arange(5.0)[:, None],
                            val=np.array([[10.0], [11.0]]))
    tr, tr_y, te, te_y = zs.split(codes, [2, 3])
    assert tr_y.tolist() == [0, 1] and te_y.tolist() == [2, 3, 2, 3] and te[:, 0].tolist() == [2.0, 3.0, 4.0, 10.0]


def test_the_command_line_refuses_an_unknown_class_in_one_line(capsys):
    from tlcore.__main__ import main
    assert main(["zero-shot", "--unseen", "3,x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'x'" in err, err


def test_the_page_runs_the_table_the_learner_edited():
    import time

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tlcore.train.plan import Plan
    from ui import services
    root = Path(__file__).resolve().parents[1]
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
        at.run()
        at.switch_page(str(root / "views" / "zero_shot.py")).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.multiselect(key="zs_unseen:digits").value == ["3", "8"]
        at.text_input(key="zs_new").input("thick stroke").run()
        next(b for b in at.button if b.label == "Add the attribute").click().run()
        assert at.session_state["zs_table:digits"]["attributes"][-1] == "thick stroke"
        next(b for b in at.button if b.label.startswith("Recognise")).click().run()
        store, end = services.store(), time.monotonic() + 120
        while not (store.list() and store.list()[0].status not in ("queued", "running")):
            assert time.monotonic() < end, "the page's run did not end"
            time.sleep(0.2)
        [run] = store.list()
        o = Plan.from_json(run.plan_json).options
        assert o["attributes"][-1] == "thick stroke" and o["unseen"] == [3, 8]
        assert all(row[-1] == 0 for row in o["table"])
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.get("plotly_chart")) == 2
        assert any("not learnable" in c.proto.spec for c in at.get("plotly_chart"))   # nobody has "thick stroke"
    finally:
        st.cache_resource.clear()


def _results(yours: float, scrambled: float) -> list:
    rows = [LabResult(zs.TABLE, {"table": t, "acc": a, "chance": 0.5, "unseen": 2, "images": 100})
            for t, a in (("yours", yours), ("scrambled", scrambled))]
    return rows + [LabResult(zs.ATTRIBUTE, {"attribute": "loop", "used": True, "seen_with": 2, "unseen_acc": 0.7})]


@pytest.mark.parametrize("yours, scrambled, said", [(0.78, 0.55, "did the work"), (0.78, 0.76, "carried little"),
                                                     (0.52, 0.74, "higher than your table")])
def test_the_findings_say_which_way_the_scrambled_table_went(yours, scrambled, said):
    lines = zs.findings(_results(yours, scrambled))
    assert said in " ".join(lines)
    assert ("not clearly better than guessing" in " ".join(lines)) == (yours <= 0.55)
