"""Every page of the app opens, with no exception, whatever kind of run is the newest finished one in
the store: a classmate's probe, multi-task or cut-finetune run on a shared host is what a student
sees first (the Results page assumed a training run and crashed on those)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tlcore.kinds import KINDS
from tlcore.labs import run_plan
from tlcore.runs import RunStore
from tlcore.train.plan import Plan

ROOT = Path(__file__).resolve().parents[1]

# One small real run of every kind (digits at 32 px, a few images per class, one epoch or pass).
SMALL = dict(dataset="digits", image_size=32, per_class=8, batch_size=16, seed=0)
PLANS = {
    "train": Plan(**SMALL, epochs=1),
    "probe": Plan(**SMALL, kind="probe"),
    "cut_finetune": Plan(**{**SMALL, "per_class": 4}, kind="cut_finetune", strategy="fine_tune_top",
                         options={"epochs": 1}),
    "lr_find": Plan(**SMALL, kind="lr_find", options={"num_it": 20}),
    "similarity": Plan(**SMALL, kind="similarity"),
    "multitask": Plan(kind="multitask", dataset="digit_pairs", epochs=1, options={"pairs": 200}),
    "dann": Plan(dataset="digits", per_class=10, epochs=1, batch_size=32, kind="dann"),
    "negative_transfer": Plan(dataset="digits", per_class=5, image_size=32, kind="negative_transfer",
                              options={"seeds": 1}),
    "few_shot": Plan(dataset="digits", image_size=32, kind="few_shot", strategy="fine_tune_top",
                     options={"ks": [1], "draws": 1, "steps": 2}),
    "zero_shot": Plan(dataset="digits", image_size=32, kind="zero_shot", strategy="fine_tune_top"),
    "depth": Plan(dataset="digits", per_class=8, batch_size=16, epochs=1, kind="depth",
                  options={"depth": 8, "width": 4, "arms": ["relu", "relu+residual"]}),
    "forgetting": Plan(dataset="digits", per_class=5, image_size=32, epochs=1, batch_size=16, kind="forgetting",
                       strategy="fine_tune_all", options={"bn_stats": "frozen"}),
}


def _pages() -> list[str]:
    """app.PAGES, read from app.py (the teacher's page is added when a key is set: it is set here)."""
    import re
    text = (ROOT / "app.py").read_text()
    return re.findall(r'st\.Page\("views/(\w+)\.py"', text)


def test_a_run_of_every_registered_kind_is_covered():
    assert set(PLANS) == set(KINDS)


@pytest.fixture(scope="module")
def homes(tmp_path_factory) -> dict[str, Path]:
    """A store per kind, holding one finished run of that kind (the caches are shared)."""
    root = tmp_path_factory.mktemp("kinds")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLCORE_CACHE_DIR", str(root / "cache"))
        mp.setenv("TLCORE_DATA_DIR", str(root / "data"))
        out = {}
        for kind, plan in PLANS.items():
            home = root / kind
            mp.setenv("TLCORE_HOME", str(home))
            store = RunStore()
            run_id = store.create(plan, owner="classmate")
            run_plan(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
            assert store.status(run_id) == "finished", (kind, store.load(run_id).message)
            out[kind] = home
    return out


@pytest.mark.parametrize("kind", sorted(PLANS))
def test_every_page_opens_when_the_newest_run_is_of_this_kind(kind, homes, monkeypatch):
    monkeypatch.setenv("TLCORE_HOME", str(homes[kind]))
    monkeypatch.setenv("TLCORE_CACHE_DIR", str(homes[kind].parent / "cache"))
    monkeypatch.setenv("TLCORE_DATA_DIR", str(homes[kind].parent / "data"))
    monkeypatch.setenv("TLCORE_TEACHER_KEY", "a-teacher-key-for-tests-0123456789")
    failures = {}
    for name in _pages() + ["teacher"]:
        st.cache_resource.clear()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page(str(ROOT / "views" / f"{name}.py")).run()
        if at.exception:
            failures[name] = [e.value for e in at.exception]
    st.cache_resource.clear()
    assert not failures, failures


def _live_view(run_id: str) -> None:
    import streamlit as st   # AppTest runs this function's body as a script of its own

    from ui import widgets

    widgets.live(run_id, lambda run: st.caption(f"{len(run.results)} result rows"), what="The lab")


@pytest.mark.parametrize("kind", sorted(k for k in PLANS if KINDS[k].unit))
def test_a_finished_lab_runs_live_view_counts_what_it_ran(kind, homes, monkeypatch):
    """The ended line counts the lab's summary rows in its kind's unit: labs emit no epochs, and it
    once said "Finished: 0 of 8 epochs" after every arm had trained."""
    monkeypatch.setenv("TLCORE_HOME", str(homes[kind]))
    st.cache_resource.clear()
    [summary] = RunStore().list()
    at = AppTest.from_function(_live_view, args=(summary.id,), default_timeout=60)
    at.run()
    st.cache_resource.clear()
    assert not at.exception, [e.value for e in at.exception]
    [bar] = at.get("progress")
    assert bar.proto.text.startswith("Finished: ") and f" {KINDS[kind].unit}" in bar.proto.text, bar.proto.text
    assert not bar.proto.text.startswith("Finished: 0 "), bar.proto.text
    assert any("result rows" in c.value for c in at.caption)   # the page's own part is drawn below
