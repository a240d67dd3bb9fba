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
    saved = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        at = page("model", model="resnet18")
        button = next(b for b in at.button if b.label.startswith("Download the weights now"))
        button.click().run()
        assert not at.exception
        assert any("resnet18-f37072fd.pth" in e.value and "download.pytorch.org" in e.value for e in at.error)
    finally:
        torch.hub.set_dir(saved)


# --- review fixes ---------------------------------------------------------------------------------
def views(name: str) -> str:
    return str(ROOT / "views" / f"{name}.py")


def navigate(at: AppTest, name: str) -> AppTest:
    """Go to another page the way a browser does: Streamlit clears the query parameters on the way."""
    at.query_params.clear()
    at.switch_page(views(name)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_results_confusion_matrix_is_clickable(finished_run):
    import json

    at = page("results")
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    cm = next(f for f in figs if "Confusion matrix" in json.dumps(f["layout"].get("title", "")))
    kinds = [t["type"] for t in cm["data"]]
    assert kinds[0] == "heatmap" and "scatter" in kinds  # the cells' markers take the clicks
    assert not at.info  # the images behind the default cell are shown, not an apology


def test_teacher_settings_and_the_plan_survive_page_changes():
    at = page("home", hide="lr,factor", lesson="1", epochs="4")
    assert at.query_params.get("epochs") == "4"  # Home writes the plan back too
    navigate(at, "train")
    labels = {w.label for w in at.select_slider} | {w.label for w in at.number_input}
    assert "Learning rate (head)" not in labels and "Discriminative factor (1 = off)" not in labels
    assert all(w.disabled for w in at.number_input)  # lesson=1 still locks the plan
    assert at.query_params.get("hide") == "lr,factor" and at.query_params.get("lesson") == "1"
    assert at.query_params.get("epochs") == "4"
    navigate(at, "metrics_lab")
    assert at.query_params.get("hide") == "lr,factor" and at.query_params.get("epochs") == "4"


def test_the_share_link_carries_the_plan_and_lesson_but_never_who_you_are():
    from tlcore.train.plan import Plan
    from ui import state

    link = state.share_link(Plan(epochs=4, image_size=32), {"hide": "lr,factor", "lesson": "1", "me": "x"},
                            "http://lab/train")
    assert link.startswith("http://lab/train?") and "epochs=4" in link and "hide=lr,factor" in link
    assert "lesson=1" in link and "me=" not in link
    for name in ("train", "data"):
        at = page(name, me="teacher42", epochs="4", hide="lr")
        at.query_params["run"] = "20240101-000000-abcdef"
        at.run()
        links = [c.value for c in at.code]
        assert any("epochs=4" in v and "hide=lr" in v for v in links), links
        assert not any("me=" in v or "run=" in v or "teacher42" in v for v in links)
        assert any("not the address bar" in c.value for c in at.caption)


def test_train_page_forgets_a_run_that_does_not_exist():
    at = page("train", run="bogus")
    assert any("no longer exists" in i.value for i in at.info)
    assert at.session_state["run_id"] is None and "run" not in at.query_params
    at.run()
    assert not at.exception


def test_time_left_counts_only_the_training_still_to_do():
    from tlcore.train.events import Step
    from ui import widgets

    last = Step(epoch=0, step=9, total_steps=110, steps_per_epoch=11, loss=1.0, lrs=(1e-3,), images_per_s=100.0)
    assert widgets.time_left(last, batch_size=64, train_size=1000) == pytest.approx(100 * 64 / 100)
    assert widgets.time_left(last, batch_size=64, train_size=32) == pytest.approx(100 * 32 / 100)  # one small batch
    assert widgets.time_left(Step(0, 9, 110, 11, 1.0, (1e-3,), 0.0), 64, 1000) is None
    done = Step(epoch=9, step=109, total_steps=110, steps_per_epoch=11, loss=1.0, lrs=(1e-3,), images_per_s=50.0)
    assert widgets.time_left(done, 64, 1000) == 0


def test_compare_deletes_any_of_your_runs_and_stops_active_ones():
    from tlcore.train.events import Phase, RunEnded
    from ui import services

    services.runner()  # the server's runner exists before these runs, as it would on a live server
    store = services.store()
    plan = Plan(image_size=32)
    done = store.create(plan, owner="me1")
    store.append(done, RunEnded("finished", seconds=1.0))
    busy = store.create(plan, owner="me1")
    store.append(busy, Phase("data", 0, 1))  # queued, as if another server process held it
    theirs = store.create(plan, owner="someone")
    store.append(theirs, RunEnded("finished", seconds=1.0))
    at = page("compare", me="me1")
    box = next(m for m in at.multiselect if m.label == "Your runs to delete")
    assert len(box.options) == 2  # both of mine (not picked for comparison), never someone else's
    box.set_value([done, busy]).run()
    next(b for b in at.button if b.label == "Delete selected runs").click().run()
    assert not at.exception
    ids = {r.id for r in store.list()}
    assert done not in ids and busy in ids and theirs in ids
    assert any("Deleted run" in s.value for s in at.success)
    assert any("stopping now" in w.value for w in at.warning)


def test_a_webcam_photo_is_saved_once():
    from ui import data as ui_data

    at = page("data", me="cam1")
    at.selectbox[0].set_value("folder").run()
    at.camera_input[0].set_value(("shot.jpg", b"\xff\xd8 one photo", "image/jpeg")).run()
    assert any("now has 1 shot" in s.value for s in at.success)
    at.run()  # any rerun: the camera still holds the same photo
    next(t for t in at.text_input if t.label.startswith("Class name")).set_value("class_b").run()
    assert ui_data.webcam_counts("cam1") == {"class_a": 1}
    at.camera_input[0].set_value(("shot.jpg", b"\xff\xd8 another photo", "image/jpeg")).run()
    assert ui_data.webcam_counts("cam1") == {"class_a": 1, "class_b": 1}


def test_a_teacher_link_hides_the_data_size_controls():
    at = page("data", hide="per_class,imbalance,image_size")
    labels = {w.label for w in at.number_input} | {w.label for w in at.slider} | {w.label for w in at.selectbox}
    assert "Dataset" in labels
    assert not labels & {"Images per class for training (0 = all)", "Class imbalance (largest ÷ smallest class)",
                         "Image size fed to the model (px)"}


def test_the_model_page_changes_the_strategy_and_the_stack_follows():
    import json

    def states(at):
        stack = next(json.loads(el.proto.spec) for el in at.get("plotly_chart") if "Layer groups" in el.proto.spec)
        return {t["name"] for t in stack["data"]}

    at = page("model")
    assert "frozen" in states(at) and "trained" not in states(at)  # feature extractor: all frozen
    strategy = next(r for r in at.radio if r.label == "Strategy")
    strategy.set_value("fine_tune_top").run()
    assert at.session_state["plan"]["strategy"] == "fine_tune_top"
    next(s for s in at.slider if s.label == "Top layer groups to fine-tune").set_value(2).run()
    assert at.session_state["plan"]["top_groups"] == 2
    assert {"frozen", "trained"} <= states(at)
    next(r for r in at.radio if r.label == "Strategy").set_value("fine_tune_all").run()
    assert "frozen" not in states(at)
    navigate(at, "train")  # the Train page shows the same plan
    assert next(r for r in at.radio if r.label == "Strategy").value == "fine_tune_all"


def test_cell_images_refuse_a_dataset_that_changed_or_cannot_load():
    from types import SimpleNamespace

    import torch

    from tlcore.errors import DownloadRequired
    from ui import results as ui_results

    run = SimpleNamespace(plan=Plan(image_size=32))
    preds = {"true": torch.tensor([0, 1, 1]), "pred": torch.tensor([0, 0, 1]),
             "confidence": torch.tensor([0.9, 0.6, 0.8])}
    same = SimpleNamespace(val_y=torch.tensor([0, 1, 1]), val_x=torch.arange(3).view(3, 1, 1, 1))
    images, conf = ui_results.cell_images(run, preds, 1, 0, loader=lambda plan: same)
    assert images.flatten().tolist() == [1] and conf.tolist() == pytest.approx([0.6])
    for changed in (SimpleNamespace(val_y=torch.tensor([1, 1, 0]), val_x=torch.zeros(3, 1, 1, 1)),
                    SimpleNamespace(val_y=torch.tensor([0, 1]), val_x=torch.zeros(2, 1, 1, 1))):
        with pytest.raises(ui_results.ImagesUnavailable, match="dataset has changed"):
            ui_results.cell_images(run, preds, 1, 0, loader=lambda plan, d=changed: d)

    def offline(plan):
        raise DownloadRequired("CIFAR-10", "https://www.cs.toronto.edu/~kriz/")
    with pytest.raises(ui_results.ImagesUnavailable, match="needs a download"):
        ui_results.cell_images(run, preds, 1, 0, loader=offline)


def test_no_predictions_says_why():
    from tlcore.runs import Run
    from tlcore.train.events import RunEnded
    from ui import results as ui_results

    def run(status, events=()):
        return Run("r1", 0.0, "me", "", Plan(), status, "", tuple(events))
    assert "still training" in ui_results.no_predictions_reason(run("running"))
    assert "before its first epoch ended" in ui_results.no_predictions_reason(run("stopped", [RunEnded("stopped")]))
    assert "scikit-learn" in ui_results.no_model_reason(Run("r2", 0.0, "me", "", Plan(head="logreg"), "finished",
                                                             "", ()))
    assert "raw pixels" in ui_results.no_model_reason(Run("r3", 0.0, "me", "", Plan(strategy="pixel_svm"),
                                                          "finished", "", ()))


def test_the_model_file_is_read_only_when_downloaded(finished_run):
    at = page("results")
    buttons = {b.label: b.proto for b in at.download_button}
    model = next(p for label, p in buttons.items() if label.startswith("Download the trained model"))
    csv = buttons["Download metrics (CSV)"]
    assert csv.url and not model.url  # the model's bytes are not in memory: a callable reads them on click


def test_a_logreg_run_says_why_there_is_no_model_file():
    store = RunStore()
    plan = Plan(image_size=32, head="logreg", per_class=20)
    run_id = store.create(plan, owner="someone")
    train(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    at = page("results")
    assert not [b for b in at.download_button if b.label.startswith("Download the trained model")]
    assert any("scikit-learn" in c.value for c in at.caption)


def test_a_link_cannot_point_the_dataset_at_any_server_folder(tmp_path):
    from ui import data as ui_data, state

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(dataset="folder", dataset_path=str(tmp_path))
    at.run()  # the page the link opens (Home) says so
    assert any("Ignored the link's dataset folder" in w.value for w in at.warning)
    assert "dataset_path" not in at.query_params
    assert at.session_state["plan"]["dataset_path"] == "" and at.session_state["plan"]["dataset"] == "digits"
    inside = ui_data.uploads_root() / "abc" / "1234.zip"
    assert state.upload_path_allowed(str(inside))
    assert not state.upload_path_allowed(str(ui_data.uploads_root() / ".." / "elsewhere"))
    assert not state.upload_path_allowed("/etc")


def test_the_strategy_guide_marks_your_datas_place_on_the_grid():
    at = page("strategy_guide")
    assert "your data" in charts(at)
