"""The pages, driven headless with Streamlit's AppTest on the offline default (digits + Lite0)."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tlcore.runs import RunStore
from tlcore.train.loop import train
from tlcore.train.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["home", "data", "model", "train", "results", "compare", "metrics_lab", "strategy_guide"]


@pytest.fixture(autouse=True)
def _fresh_services():
    st.cache_resource.clear()  # the store and runner are per server; each test is a new "server"
    yield
    st.cache_resource.clear()


def page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(str(ROOT / "views" / f"{name}.py")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> str:
    return " ".join(el.proto.spec for el in at.get("plotly_chart"))


@pytest.fixture
def finished_run() -> str:
    store = RunStore()
    plan = Plan(image_size=32, epochs=2)
    run_id = store.create(plan, owner="someone")
    train(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    return run_id


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_on_the_offline_default(name):
    page(name)


@pytest.mark.parametrize("name", ["results", "compare"])
def test_pages_that_read_runs_render_a_finished_run(name, finished_run):
    at = page(name)
    assert "Confusion matrix" in charts(at) or "Validation accuracy" in charts(at)


def test_train_page_runs_digits_to_the_end_and_shows_a_confusion_matrix():
    from ui import services

    at = page("train", image_size="32", epochs="2")
    next(b for b in at.button if b.label == "Start training").click().run()
    run_id = at.session_state["run_id"]
    assert services.runner().wait(run_id, timeout=300) == "finished"
    at.run()
    assert not at.exception
    assert any("Run finished" in s.value for s in at.success)
    assert "Confusion matrix" in charts(at)
    assert any(m.label == "Validation accuracy" and float(m.value) > 0.5 for m in at.metric)


def test_metrics_lab_shows_the_mean_and_f1_for_a_lopsided_classifier():
    at = page("metrics_lab")
    values = {m.label: m.value for m in at.metric}
    assert values["Arithmetic mean (P+R)/2"] == "0.525"
    assert values["F1 = 2PR/(P+R)"].startswith("0.18")
    assert any("F1 says **0.18**" in md.value for md in at.markdown)


def test_a_bad_zip_upload_shows_the_engines_error():
    at = page("data")
    at.selectbox[0].set_value("folder").run()
    at.file_uploader[0].set_value(("photos.zip", b"this is not a zip", "application/zip")).run()
    assert any("is not a zip archive" in e.value for e in at.error)


def test_the_plan_round_trips_through_the_url():
    at = page("train", strategy="gradual_unfreeze", epochs="4", lr="0.003")
    assert at.session_state["plan"]["strategy"] == "gradual_unfreeze"
    assert at.session_state["plan"]["epochs"] == 4 and at.session_state["plan"]["lr"] == 0.003
    assert at.query_params["strategy"] == ["gradual_unfreeze"] or at.query_params["strategy"] == "gradual_unfreeze"


def test_a_teacher_link_hides_controls():
    at = page("train", hide="lr,factor")
    labels = {w.label for w in at.select_slider} | {w.label for w in at.number_input}
    assert "Learning rate (head)" not in labels and "Discriminative factor (1 = off)" not in labels


def test_model_page_offers_the_download_and_says_plainly_when_it_cannot(tmp_path, monkeypatch):
    import urllib.error

    import torch

    def offline(*a, **k):
        raise urllib.error.URLError("offline")
    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.setattr(torch.hub, "urlopen", offline)
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        at = page("model", model="resnet18")
        button = next(b for b in at.button if b.label.startswith("Download the weights now"))
        button.click().run()
        assert not at.exception
        assert any("resnet18-f37072fd.pth" in e.value and "download.pytorch.org" in e.value for e in at.error)
    finally:
        torch.hub.set_dir(str(tmp_path / "unused"))
