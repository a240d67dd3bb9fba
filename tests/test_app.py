"""The pages, driven headless with Streamlit's AppTest on the offline default (digits + Lite0)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tlcore.runs import RunStore
from tlcore.train.loop import train
from tlcore.train.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["home", "data", "model", "train", "results", "compare", "metrics_lab", "strategy_guide"]



def page(name: str, owner: str | None = None, **query: str) -> AppTest:
    """Open a page as a browser would; `owner` stands for the id a returning browser's cookie carries."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if owner is not None:
        at.session_state["owner"] = owner
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


@pytest.mark.parametrize("name, chart", [("results", "Confusion matrix"), ("compare", "Validation accuracy")])
def test_pages_that_read_runs_render_a_finished_run(name, chart, finished_run):
    at = page(name)
    assert chart in charts(at)


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
    # A feature extractor's epoch trains only the head on stored features: no bare "Images/s" for it.
    labels = {m.label for m in at.metric}
    assert "Images/s" not in labels
    assert labels & {"Head images/s (on stored features)", "Head steps/s", "Backbone images/s (feature pass)"}
    assert any(el.proto.text.startswith("Finished: 2 of 2 epochs") for el in at.get("progress"))


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
    # Named as the learner's file, not the temporary one the server wrote it to.
    assert any(e.value.startswith("photos.zip is not a zip archive") for e in at.error), [e.value for e in at.error]


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


def shown_texts(at: AppTest) -> list[str]:
    """Every text field of every element on the page (ids left out): what a learner can read."""
    def walk(node):
        yield node
        for child in getattr(node, "children", {}).values():
            yield from walk(child)
    return [v for n in walk(at._tree) if not getattr(n, "children", None) and n.proto is not None
            for f, v in n.proto.ListFields() if isinstance(v, str) and f.name != "id"]


def test_train_page_shows_no_stray_none():
    """A bare expression in a page is written out by Streamlit's "magic": it once put "None" under Start/Stop."""
    at = page("train")
    assert not [t for t in shown_texts(at) if t.strip("`* \n") == "None"]   # magic writes it as `None`


def test_train_page_forgets_a_run_that_does_not_exist():
    at = page("train", run="bogus")
    assert any("no longer exists" in i.value for i in at.info)
    assert at.session_state["run_id"] is None and "run" not in at.query_params
    at.run()
    assert not at.exception


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
    at = page("compare", owner="me1")
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

    at = page("data", owner="cam1")
    at.selectbox[0].set_value("folder").run()
    from test_uploads import photo   # real JPEGs: a shot goes through the checked decoder before it is kept
    at.camera_input[0].set_value(("shot.jpg", photo(0), "image/jpeg")).run()
    assert any("now has 1 shot" in s.value for s in at.success)
    at.run()  # any rerun: the camera still holds the same photo
    next(t for t in at.text_input if t.label.startswith("Class name")).set_value("class_b").run()
    assert ui_data.webcam_counts("cam1") == {"class_a": 1}
    at.camera_input[0].set_value(("shot.jpg", photo(1), "image/jpeg")).run()
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
    model = next(p for label, p in buttons.items() if label.startswith("Download the trained"))
    whole = next(p for label, p in buttons.items() if label.startswith("Download the whole network"))
    csv = buttons["Download metrics (CSV)"]
    for file in (model, whole):   # the model's bytes are not in memory: a callable reads them on click
        assert csv.url and not file.url
        assert file.ignore_rerun  # a click must not rerun the page: that replaced the file's link mid-download


def test_a_logreg_run_says_why_there_is_no_model_file():
    store = RunStore()
    plan = Plan(image_size=32, head="logreg", per_class=20)
    run_id = store.create(plan, owner="someone")
    train(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    at = page("results")
    assert not [b for b in at.download_button if b.label.startswith(("Download the trained", "Download the whole"))]
    assert any("scikit-learn" in c.value for c in at.caption)


def test_a_link_cannot_point_the_dataset_at_any_server_folder(tmp_path):
    from ui import data as ui_data

    # Not a folder elsewhere on the server, and not a folder inside the uploads area either:
    # a link names an upload only by its reference (see test_uploads_stay_private).
    for folder in (tmp_path, ui_data.uploads_root() / "private"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params.update(dataset="folder", dataset_path=str(folder))
        at.run()  # the page the link opens (Home) says so
        assert not at.exception
        assert any("Ignored the link's dataset folder" in w.value for w in at.warning)
        assert "dataset_path" not in at.query_params
        assert at.session_state["plan"]["dataset_path"] == "" and at.session_state["plan"]["dataset"] == "digits"


def test_the_strategy_guide_marks_your_datas_place_on_the_grid():
    at = page("strategy_guide")
    assert "your data" in charts(at)


# --- issues 9 and 10: controls that keep their value, links that are checked, identity, uploads --
def open_link(name: str, owner: str | None = None, **query: str) -> AppTest:
    """Open a link straight onto a page (what a student clicking a teacher's link does)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if owner is not None:
        at.session_state["owner"] = owner
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(views(name)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def qp(at: AppTest, name: str) -> str | None:
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def control(at: AppTest, label: str):
    for kind in ("radio", "selectbox", "number_input", "slider", "select_slider", "toggle"):
        for w in getattr(at, kind):
            if w.label == label:
                return w
    raise KeyError(label)


def change_twice(at: AppTest, rows) -> None:
    """Change every control in `rows` (field, label, first, second) twice in a row, one rerun per change;
    each keeps the second value, in the widget, the plan and the address bar."""
    for i in (2, 3):
        for _field, label, *values in rows:
            control(at, label).set_value(values[i - 2])
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    for name, label, _first, second in rows:
        assert control(at, label).value == second, label
        assert at.session_state["plan"][name] == second, name
        assert qp(at, name) == (None if second == state_default(name) else str(second)), name


def state_default(name: str):
    from ui import state
    return state.default_plan().to_dict()[name]


TRAIN_TWICE = [
    ("strategy", "Strategy", "fine_tune_all", "scratch"),
    ("head", "Head", "mlp", "linear"),
    ("bn", "BatchNorm in frozen groups", "train", "frozen"),
    ("augment", "Augment (random crops and flips on the device)", True, False),
    ("epochs", "Epochs", 5, 7),
    ("batch_size", "Batch size", 32, 128),
    ("lr", "Learning rate (head)", 3e-4, 3e-3),
    ("optimizer", "Optimiser", "sgd", "adamw"),
    ("factor", "Discriminative factor (1 = off)", 3.0, 4.5),
    ("cut_frac", "STLR cut_frac (warm-up share)", 0.2, 0.3),
    ("ratio", "STLR ratio (peak ÷ lowest)", 10.0, 20.0),
    ("seed", "Seed", 5, 6),
]


def test_every_train_control_keeps_a_second_change_in_a_row():
    at = page("train", image_size="32")
    change_twice(at, TRAIN_TWICE)
    change_twice(at, [("strategy", "Strategy", "gradual_unfreeze", "fine_tune_top"),
                      ("schedule", "Schedule", "constant", "cosine")])
    change_twice(at, [("top_groups", "Top layer groups to fine-tune", 2, 3),
                      ("warmup_frac", "Warm-up share", 0.1, 0.2)])
    # A reload (the same address) and the share link both give back exactly this plan.
    final = dict(at.session_state["plan"])
    params = {k: qp(at, k) for k in at.query_params}
    again = page("train", **params)
    assert dict(again.session_state["plan"]) == final
    assert control(again, "Epochs").value == 7 and control(again, "Strategy").value == "fine_tune_top"


def test_every_data_and_model_control_keeps_a_second_change_in_a_row():
    at = page("data")
    change_twice(at, [("per_class", "Images per class for training (0 = all)", 50, 100),
                      ("imbalance", "Class imbalance (largest ÷ smallest class)", 2.0, 3.5),
                      ("image_size", "Image size fed to the model (px)", 64, 128)])
    navigate(at, "model")
    change_twice(at, [("model", "Pretrained CNN", "resnet18", "mobilenet_v2"),
                      ("strategy", "Strategy", "fine_tune_all", "scratch")])
    navigate(at, "train")   # the other pages show what was chosen, and keep the data settings
    assert control(at, "Strategy").value == "scratch"
    assert at.session_state["plan"]["per_class"] == 100 and at.session_state["plan"]["image_size"] == 128


def test_a_lesson_link_keeps_hidden_values_while_visible_controls_change_twice():
    at = page("train", hide="epochs,seed", epochs="4", seed="9", image_size="32")
    change_twice(at, [("lr", "Learning rate (head)", 3e-4, 3e-3), ("optimizer", "Optimiser", "sgd", "adamw")])
    assert at.session_state["plan"]["epochs"] == 4 and qp(at, "epochs") == "4" and qp(at, "seed") == "9"
    assert qp(at, "hide") == "epochs,seed"
    locked = page("train", lesson="1", epochs="4", image_size="32")
    assert all(w.disabled for w in [*locked.number_input, *locked.radio, *locked.selectbox])
    assert control(locked, "Epochs").value == 4


@pytest.mark.parametrize("name, query, ignored", [
    ("train", {"seed": "-1", "factor": "20", "ratio": "5000", "epochs": "0", "batch_size": "4096",
               "hide": "batch_size"}, ["seed", "factor", "ratio", "epochs", "batch_size"]),
    ("train", {"seed": str(2**32), "lr": "5", "strategy": "nope", "cut_frac": "0.9"},
     ["seed", "lr", "strategy", "cut_frac"]),
    ("data", {"per_class": "20000", "image_size": "512", "imbalance": "50", "augment": "maybe"},
     ["per_class", "image_size", "imbalance", "augment"]),
])
def test_a_crafted_link_is_checked_against_the_controls_bounds(name, query, ignored):
    at = open_link(name, **({"image_size": "32"} | query))
    notes = " ".join(w.value for w in at.warning)
    for field in ignored:
        assert f"Ignored the link's value for {field}" in notes, (field, notes)
        assert at.session_state["plan"][field] == state_default(field), field


def test_a_seed_the_control_can_show_is_taken_from_the_link():
    at = page("train", seed="2000000", image_size="32")
    assert at.session_state["plan"]["seed"] == 2000000 and control(at, "Seed").value == 2000000


@pytest.mark.parametrize("name", ["data", "train"])
def test_a_link_to_a_missing_upload_says_so_without_a_traceback(name):
    from ui import data as ui_data

    missing = str(ui_data.uploads_root() / "nope.zip")
    at = open_link(name, dataset="folder", dataset_path=missing)
    assert any("Ignored the link's dataset" in w.value for w in at.warning)
    assert at.session_state["plan"]["dataset"] == "digits"
    assert not any(missing in e.value for e in at.error)
    at = open_link(name, dataset="folder", upload="zip-0123456789abcdef")
    assert any("not one of your uploads" in w.value for w in at.warning)


def image_zip(classes=("cats", "dogs"), per_class: int = 4) -> bytes:
    import io
    import zipfile

    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for c, cls in enumerate(classes):
            for i in range(per_class):
                img = io.BytesIO()
                Image.new("RGB", (16, 16), (40 * i, 200 * c, 90)).save(img, "PNG")
                z.writestr(f"{cls}/{i}.png", img.getvalue())
    return buf.getvalue()


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    control(at, "Dataset").set_value("folder").run()
    at.file_uploader[0].set_value((name, data, "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_long_old_me_link_then_an_upload_works():
    at = upload(page("data", me="x" * 300), "mine.zip", image_zip())
    assert "me" not in at.query_params
    assert at.session_state["plan"]["dataset"] == "folder" and not at.error


def test_an_old_me_link_grants_no_identity():
    from tlcore.train.events import RunEnded

    store = RunStore()
    victim = store.create(Plan(image_size=32), owner="victim1")
    store.append(victim, RunEnded("finished", seconds=1.0))
    at = page("compare", me="victim1")
    assert "me" not in at.query_params and at.session_state["owner"] != "victim1"
    assert next(m for m in at.multiselect if m.label == "Your runs to delete").options == []


def test_a_first_visit_gets_a_private_token_kept_in_a_cookie(monkeypatch):
    from ui import services

    at = page("home")
    me = at.session_state["owner"]
    assert services._TOKEN.fullmatch(me)
    scripts = [el.proto.body for el in at.get("html")]
    assert any("document.cookie" in s and me in s and "SameSite=Strict" in s for s in scripts)
    assert me not in " ".join(f"{k}={v}" for k, v in at.query_params.items())
    monkeypatch.setattr(services, "_cookie", lambda: "returning-browser-token-123456")
    back = page("home")   # the next visit: the cookie says who this is, and nothing is written again
    assert back.session_state["owner"] == "returning-browser-token-123456"
    assert not any("document.cookie" in el.proto.body for el in back.get("html"))


def test_a_signed_in_account_is_the_owner_when_the_host_configures_login():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.user = {"is_logged_in": True, "sub": "student-7", "iss": "https://idp.example"}
    at.run()
    owner = at.session_state["owner"]
    assert owner.startswith("oidc-") and "student-7" not in owner
    assert not any("document.cookie" in el.proto.body for el in at.get("html"))


def test_uploads_stay_private_and_are_shared_only_on_purpose():
    from types import SimpleNamespace
    from urllib.parse import parse_qsl, urlsplit

    from ui import results as ui_results

    alice = upload(page("data", owner="alice-browser-token-000001"), "holiday_cats.zip", image_zip())
    plan = dict(alice.session_state["plan"])
    assert plan["dataset"] == "folder" and plan["dataset_name"] == "holiday_cats.zip"
    ref = qp(alice, "upload")
    assert ref.startswith("zip-") and "dataset_path" not in alice.query_params
    assert "alice" not in plan["dataset_path"]
    assert not any("upload=" in c.value for c in alice.code)   # not shared unless she says so
    # Bob opens Alice's address bar, or crafts a link to her file: neither opens it.
    for query in ({"upload": ref}, {"dataset_path": plan["dataset_path"]}):
        bob = open_link("data", owner="bob-browser-token-0000001", dataset="folder", **query)
        assert any("Ignored the link's dataset" in w.value for w in bob.warning)
        assert bob.session_state["plan"]["dataset"] == "digits"
    private_run = SimpleNamespace(plan=Plan(**plan))
    with pytest.raises(ui_results.ImagesUnavailable, match="private"):
        ui_results.cell_images(private_run, {}, 0, 0, owner="bob-browser-token-0000001")
    # Alice shares on purpose: the link carries a token that names no one, and Carol can train on it.
    next(t for t in alice.toggle if t.label.startswith("Include my images")).set_value(True).run()
    link = next(c.value for c in alice.code if "upload=" in c.value)
    query = dict(parse_qsl(urlsplit(link).query))
    assert query["upload"].startswith("share-") and "alice" not in link
    carol = open_link("strategy_guide", owner="carol-browser-token-00001", **query)
    assert carol.session_state["plan"]["dataset_name"] == "holiday_cats.zip"
    assert any("Your data: holiday_cats.zip" in h.value for h in carol.subheader)


def finished_runs_on_two_datasets(owner: str) -> tuple[str, str]:
    from tlcore.train.events import EpochEnded, RunEnded

    store = RunStore()
    ids = []
    for plan in (Plan(image_size=32), Plan(image_size=32, dataset="folder", dataset_path="/x/a.zip",
                                           dataset_name="holiday_cats.zip")):
        run_id = store.create(plan, owner=owner)
        store.append(run_id, EpochEnded(0, 1.0, 1.0, 0.5, ((1, 0), (0, 1)), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0),
                                        0.5, (), 1.0, 10.0))
        store.append(run_id, RunEnded("finished", seconds=1.0))
        ids.append(run_id)
    return ids[0], ids[1]


def test_compare_names_uploads_and_does_not_mix_datasets_by_default():
    digits_run, upload_run = finished_runs_on_two_datasets("cmp-owner-token-000000001")
    at = page("compare", owner="cmp-owner-token-000000001")
    chosen = next(m for m in at.multiselect if m.label == "Runs to compare")
    assert chosen.value == [upload_run]   # the latest run's dataset only
    assert "holiday_cats.zip" in chosen.format_func(upload_run) and "folder" not in chosen.format_func(upload_run)
    table = at.dataframe[0].value
    assert list(table["dataset"]) == ["holiday_cats.zip"]
    chosen.set_value([upload_run, digits_run]).run()
    assert any("different datasets" in w.value for w in at.warning)


def test_your_images_without_an_upload_says_what_to_upload():
    at = page("data")
    control(at, "Dataset").set_value("folder").run()
    assert any("No images yet" in i.value and ".zip" in i.value for i in at.info)
    assert "Training images per class" not in charts(at)   # not the digits preview any more


def test_the_strategy_guide_says_how_many_images_it_really_probes():
    at = page("strategy_guide", per_class="20", image_size="32")
    text = " ".join(m.value for m in at.markdown)
    assert "all 200 training images" in text and "400" not in text


def test_a_pixel_svm_run_is_shown_as_an_svm():
    store = RunStore()
    plan = Plan(strategy="pixel_svm", image_size=32, per_class=20)
    run_id = store.create(plan, owner="someone")
    train(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    at = page("train", run=run_id)
    assert any("raw pixels" in h.value and "efficientnet" not in h.value for h in at.subheader)
    assert not [m for m in at.metric if m.label == "Epoch"]
    assert "Loss" not in charts(at) and "Confusion matrix" in charts(at)
    texts = [el.proto.text for el in at.get("progress")]
    assert any(t.startswith("Finished") for t in texts) and not any("Fitting" in t for t in texts)


def test_a_failed_run_shows_its_banner_without_a_stale_progress_bar():
    from tlcore.train.events import Phase, RunEnded

    store = RunStore()
    run_id = store.create(Plan(image_size=32), owner="someone")
    store.append(run_id, Phase("features", 3, 10))
    store.append(run_id, RunEnded("failed", "interrupted: the server restarted before this run finished"))
    at = page("train", run=run_id)
    assert any("interrupted" in e.value for e in at.error)
    assert not at.get("progress")


def test_a_watching_tab_reads_only_the_new_events(monkeypatch):
    from tlcore.train.events import RunStarted, Step
    from ui import services

    store = services.store()
    plan = Plan(image_size=32, epochs=2)
    run_id = store.create(plan, owner="watcher-token-00000000001")
    store.append(run_id, RunStarted(plan.to_dict(), "cpu", 10, 10, ("a", "b"), 64, 16, ("x", "y"),
                                    steps_per_epoch=4))
    store.append(run_id, Step(0, 0, 8, 4, 1.0, (0.0, 0.0, 1e-3), 100.0))
    full_loads, since = [], []
    load, events_since = RunStore.load, RunStore.events_since
    monkeypatch.setattr(RunStore, "load", lambda self, rid, with_steps=True: (
        full_loads.append(rid) if with_steps else None, load(self, rid, with_steps=with_steps))[1])
    monkeypatch.setattr(RunStore, "events_since", lambda self, rid, seq=-1: (
        since.append(seq), events_since(self, rid, seq))[1])
    at = page("train", owner="watcher-token-00000000001", run=run_id)
    store.append(run_id, Step(0, 1, 8, 4, 0.9, (0.0, 0.0, 1e-3), 100.0))
    at.run()
    assert not at.exception
    assert any("step 2/8" in el.proto.text for el in at.get("progress"))
    assert run_id not in full_loads        # never every step again
    assert since == [-1, 1]               # the second look asks only for what came after event 1


def test_the_model_page_drops_the_higher_groups_and_greys_them_out():
    at = page("model")
    pick = next(s for s in at.selectbox if s.label == "Keep the layer groups up to")
    pick.set_value("stage2").run()
    assert not at.exception
    assert at.session_state["plan"]["truncate_after"] == "stage2"
    spec = charts(at)
    assert "removed" in spec and "stage3" in spec
    next(r for r in at.radio if r.label == "Strategy").set_value("fine_tune_all").run()
    assert at.session_state["plan"]["truncate_after"] == ""   # a strategy that trains everything keeps every group


def test_a_link_cannot_turn_the_train_page_into_another_kind_of_run():
    at = open_link("train", kind="similarity", options='{"x": 1}', image_size="32")
    assert at.session_state["plan"]["kind"] == "train" and at.session_state["plan"]["options"] == {}
    warnings = " ".join(w.value for w in at.warning)
    assert "Ignored the link's value for kind" in warnings and "Ignored the link's value for options" in warnings


def test_the_strategy_guides_similarity_probe_runs_through_the_job_queue():
    from ui import services

    at = page("strategy_guide", image_size="32", per_class="20")
    next(b for b in at.button if b.label == "Estimate similarity").click().run()
    [run_id] = at.session_state["similarity_runs"].values()
    assert services.store().load(run_id).plan.kind == "similarity"
    assert services.runner().wait(run_id, timeout=300) == "finished"
    at.run()
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert float(values["Linear probe on CNN codes"]) > 0.3 and values["Verdict"] in ("similar", "different")


# --- learning-rate finder, one-cycle, export and predict (issue 15) --------------------------------
def test_train_page_lr_finder_runs_through_the_queue_and_one_click_sets_the_plans_lr():
    from ui import services

    at = page("train", image_size="32", per_class="8", batch_size="16")
    next(b for b in at.button if b.label == "Run the learning-rate finder").click().run()
    run_id = at.session_state["lr_find_run"]
    assert services.runner().wait(run_id, timeout=300) == "finished"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Learning-rate finder" in charts(at)
    valley = next(b for b in at.button if b.label.startswith("valley: "))
    lr = float(valley.label.split(": ")[1].split()[0])
    valley.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["plan"]["lr"] == lr
    q = at.query_params["lr"]
    assert float(q if isinstance(q, str) else q[0]) == lr   # the address bar's plan follows
    assert next(s for s in at.select_slider if s.label == "Learning rate (head)").value == lr
    # the value sticks: another rerun keeps it, and a change elsewhere does not undo it
    at.run()
    assert next(s for s in at.select_slider if s.label == "Learning rate (head)").value == lr
    next(n for n in at.number_input if n.label == "Epochs").set_value(2).run()
    assert at.session_state["plan"]["lr"] == lr and at.session_state["plan"]["epochs"] == 2
    # a reload (a new session of the same person) shows the sweep again, for the same model and data
    again = page("train", owner=at.session_state["owner"], image_size="32", per_class="8", batch_size="16")
    assert again.session_state["lr_find_run"] == run_id and "Learning-rate finder" in charts(again)


def test_train_both_queues_the_suggestion_and_the_rate_in_use_and_draws_them_on_one_chart():
    """fastai's habit after lr_find, in one click: both runs queued, their curves overlaid, each labelled."""
    from ui import lr_find as ui_lr_find, services
    from tlcore.labs import lr_find

    at = page("train", image_size="32", per_class="8", batch_size="16", epochs="1", lr="0.001")
    next(b for b in at.button if b.label == "Run the learning-rate finder").click().run()
    assert services.runner().wait(at.session_state["lr_find_run"], timeout=300) == "finished"
    at.run()
    first = next(b for b in at.button if b.label.endswith("(default)"))
    assert first.label.startswith(lr_find.SUGGESTION_TITLES[lr_find.DEFAULT])
    suggested = float(first.label.split(": ")[1].split()[0])
    both = next(b for b in at.button if b.label.startswith("Train both"))
    both.click().run()
    ids = at.session_state[ui_lr_find.COMPARE_KEY]
    plans = [services.store().load(i).plan for i in ids]
    assert [p.lr for p in plans] == [suggested, 0.001]
    assert plans[0].replace(lr=0.001) == plans[1]          # only the rate differs
    for i in ids:
        assert services.runner().wait(i, timeout=300) == "finished"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    spec = charts(at)
    assert f"suggested lr {suggested:g}" in spec and "your lr 0.001" in spec   # both runs on the chart
    text = " ".join(m.value for m in at.markdown)
    assert f"suggested lr {suggested:g}" in text and "your lr 0.001" in text and "validation accuracy" in text


def test_a_reload_of_the_train_page_follows_your_training_run_not_a_sweep_or_a_lab():
    from tlcore.train.plan import Plan
    from ui import services

    store, owner = services.store(), "me-test-owner-reload-00000000"
    train_id = store.create(Plan(dataset="digits", image_size=32), owner=owner)       # queued, never started
    store.create(Plan(kind="lr_find", dataset="digits", image_size=32), owner=owner)  # newer, also queued
    at = page("train", owner=owner)
    assert at.session_state["run_id"] == train_id


def test_a_queued_run_shows_its_place_and_no_charts_until_it_starts():
    """In a class most pages wait in the queue: they say so and draw nothing else (issue 29)."""
    from tlcore.train.plan import Plan
    from ui import services

    store, owner = services.store(), "me-test-owner-queued-000000000"
    store.create(Plan(dataset="digits", image_size=32), owner=owner)   # queued, never started
    at = page("train", owner=owner)
    assert any("Waiting" in m.value for m in at.info), [m.value for m in at.info]
    run_charts = [c.key for c in at.get("plotly_chart") if str(c.key).startswith(("loss-", "cm-", "acc-"))]
    assert run_charts == []


def test_train_page_one_cycle_shows_its_parameters_and_the_planned_momentum():
    at = page("train", schedule="one_cycle", image_size="32")
    labels = {s.label for s in at.slider} | {n.label for n in at.number_input} | {s.label for s in at.select_slider}
    assert {"One-cycle warm-up share (pct_start)", "One-cycle div (peak ÷ starting lr)",
            "Momentum / beta1 at the peak rate"} <= labels
    assert "beta1" in charts(at)
    next(s for s in at.slider if s.label == "One-cycle warm-up share (pct_start)").set_value(0.4).run()
    assert at.session_state["plan"]["pct_start"] == pytest.approx(0.4)


def test_results_page_exports_a_checked_model_and_offers_predict(finished_run):
    at = page("results")
    assert any(h.value == "Predict on new images" for h in at.subheader)
    next(b for b in at.button if b.label == "Export as torchscript").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value.startswith("Checked on") for s in at.success), [e.value for e in at.error]
# --- issue 13: the domain adaptation lab ----------------------------------------------------------
def test_the_domain_adaptation_page_renders_and_draws_a_finished_runs_curves_and_embedding():
    import torch
    from tlcore.labs import dann
    from tlcore.train.events import LabResult, RunEnded

    at = page("domain_adaptation")
    assert not at.exception and any(b.label == "Run the three trainings" for b in at.button)
    store = RunStore()
    plan = dann.make_plan(epochs=8, per_class=60)        # what the page's controls make by default
    run_id = store.create(plan, owner="someone")
    for arm in dann.ARMS:
        for epoch in range(2):
            store.append(run_id, LabResult(dann.EPOCH, {"arm": arm, "epoch": epoch, "source_acc": 0.9, "target_acc": 0.4,
                                                        "domain_acc": 0.6, "lambda": 0.5}))
        store.append(run_id, LabResult(dann.FINAL, {"arm": arm, "source_acc": 0.9, "target_acc": 0.3 + 0.1 * (arm != "source_only"),
                                                    "domain_acc": 0.6, "seconds": 1.0}))
    emb = {"xy": torch.randn(8, 2), "domain": torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), "label": torch.arange(8)}
    store.artifact_dir(run_id).mkdir(parents=True, exist_ok=True)
    torch.save({"source_only": emb, "dann": emb}, store.artifact_dir(run_id) / "embedding.pt")
    store.append(run_id, RunEnded("finished", "", 3.0))
    at.session_state["dann_runs"] = {plan.to_json(): run_id}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    drawn = charts(at)
    assert "Target accuracy" in drawn and "Domain accuracy" in drawn and "After: DANN" in drawn
    assert any("DANN scores 0.400" in i.value for i in at.info)


def test_a_reload_of_a_lab_page_shows_its_last_run_with_the_controls_that_made_it():
    from tlcore.labs import dann
    from tlcore.labs import negative_transfer as nt
    from tlcore.train.events import LabResult, RunEnded

    store, owner = RunStore(), "me-test-owner-lab-reload-0000"
    plan = dann.make_plan(epochs=5, per_class=30, backbone="efficientnet_lite0", head_at="stage3")
    run_id = store.create(plan, owner=owner)
    for arm in dann.ARMS:
        store.append(run_id, LabResult(dann.FINAL, {"arm": arm, "source_acc": 0.9, "domain_acc": 0.6, "seconds": 1.0,
                                                    "target_acc": 0.3 + 0.1 * (arm != "source_only")}))
    store.append(run_id, RunEnded("finished", "", 3.0))
    at = page("domain_adaptation", owner=owner)            # a new session: nothing in it yet
    assert not at.exception, [e.value for e in at.exception]
    assert at.slider(key="dann_epochs").value == 5 and at.slider(key="dann_per_class").value == 30
    assert at.radio(key="dann_network").value == "backbone" and at.selectbox(key="dann_head_at").value == "stage3"
    assert any("DANN scores 0.400" in i.value for i in at.info)
    at.slider(key="dann_epochs").set_value(6).run()         # another plan: none of its runs yet ...
    assert not any("DANN scores" in i.value for i in at.info)
    at.slider(key="dann_epochs").set_value(7).run()
    assert at.slider(key="dann_epochs").value == 7          # ... and the second change keeps too
    nt_plan = nt.make_plan(per_class=35, seeds=2)
    nt_id = store.create(nt_plan, owner=owner)
    store.append(nt_id, RunEnded("finished", "", 3.0))
    at = page("negative_transfer", owner=owner)
    assert at.slider(key="nt_per_class").value == 35 and at.slider(key="nt_seeds").value == 2
    assert at.session_state["nt_runs"][nt_plan.to_json()] == nt_id


def test_the_negative_transfer_page_renders_a_finished_comparison_and_the_guide_links_to_it():
    from tlcore.labs import negative_transfer as nt
    from tlcore.train.events import LabResult, RunEnded

    at = page("negative_transfer")
    assert not at.exception and any(b.label == "Run the comparison" for b in at.button)
    store = RunStore()
    plan = nt.make_plan()          # the page's default controls
    run_id = store.create(plan, owner="someone")
    store.append(run_id, LabResult(nt.RUN, {"arm": "imagenet", "seed": 0, "target_acc": 0.6}))
    store.append(run_id, LabResult(nt.GAP, {"source": "misleading", "acc_mean": 0.5, "acc_std": 0.02, "gap_vs_scratch": 0.2,
                                            "gap_vs_pixel_svm": 0.3, "gap_std": 0.01, "seeds": 3}))
    store.append(run_id, RunEnded("finished", "", 3.0))
    at.session_state["nt_runs"] = {plan.to_json(): run_id}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("hurt" in m.value and "+0.200" in m.value for m in at.markdown)
    guide = page("strategy_guide")
    assert not guide.exception


def test_where_to_transfer_runs_a_probe_through_the_queue_and_draws_the_curve():
    from ui import services

    at = page("where_to_transfer", image_size="32", per_class="8")
    assert "No probe has finished" in " ".join(i.value for i in at.info)
    next(b for b in at.button if b.label == "Run the probe").click().run()
    [run_id] = at.session_state["probe_runs"].values()
    assert services.store().load(run_id).plan.kind == "probe"
    assert services.runner().wait(run_id, timeout=300) == "finished"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Linear probe accuracy against depth" in charts(at) and "raw pixels" in charts(at)
    assert "best features come from" in " ".join(m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Train with this cut").click().run()
    assert at.session_state["plan"]["kind"] == "train"


def test_inside_the_cnn_renders_filters_codes_and_grad_cam_for_a_trained_run(finished_run):
    at = page("inside", image_size="32")
    assert "Pretrained (ImageNet)" in charts(at) and "Pretrained backbone" in charts(at)
    at.selectbox[0].select(finished_run).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Grad-CAM" in charts(at) and "This run's backbone" in charts(at)
