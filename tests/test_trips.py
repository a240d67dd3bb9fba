"""What a student and a teacher tripped over (issue 28): the CLI's help and run list, the Teacher page's
lab rows, claims a 2-core CPU does not keep. Quick: no training beyond a stand-in."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tlcore import __main__ as cli
from tlcore.labs import dann, multitask, negative_transfer
from tlcore.runs import RunStore
from tlcore.train.plan import Plan

ROOT = Path(__file__).resolve().parents[1]



IDENTITY = "0f3c9a1e-identity-token-of-a-browser-7d2b"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_help_shows_numbers_as_numbers_and_switches_as_on_or_off(capsys):
    """1.0 == True and 0.0 == False: a lookup keyed by the booleans called --imbalance 'on'."""
    _, out, _ = _run(capsys, "train", "--help")
    blocks = re.split(r"\n  (?=--)", out.split("options:")[1])
    helps = {b.split()[0].rstrip(","): " ".join(b.split()) for b in blocks if b.startswith("--")}
    for flag, default in (("--imbalance", "1.0"), ("--top-groups", "1"), ("--warmup-frac", "0.0"),
                          ("--augment", "off"), ("--per-class", "unset")):
        assert helps[flag].endswith(f"(default: {default})"), helps[flag]


def _class_runs() -> dict[str, str]:
    """A CLI zip run, one of each lab that names no zoo network, from one browser: kind -> run id."""
    store = RunStore()
    zip_plan = Plan(dataset="folder", dataset_path="/home/teacher/photos/ants_bees.zip", image_size=32)
    return {"train": store.create(zip_plan, owner=IDENTITY),
            "multitask": store.create(multitask.lab_plan(), owner=IDENTITY),
            "dann": store.create(dann.make_plan(), owner=IDENTITY),
            "negative_transfer": store.create(negative_transfer.make_plan(), owner=IDENTITY)}


def test_runs_is_a_readable_table_naming_uploads_and_labs_and_no_one(capsys):
    ids = _class_runs()
    code, out, _ = _run(capsys, "runs")
    assert code == 0 and IDENTITY not in out
    lines = out.splitlines()
    assert len(lines) == 1 + len(ids) and max(map(len, lines)) < 200, max(map(len, lines))
    row = {kind: next(line for line in lines if run_id in line) for kind, run_id in ids.items()}
    assert "ants_bees.zip" in row["train"] and " folder " not in row["train"]
    assert "Multi-task comparison" in row["multitask"] and "small CNN trunk" in row["multitask"]
    assert "efficientnet_lite0" not in row["multitask"] and "feature_extractor" not in row["multitask"]
    assert "Domain adaptation (DANN)" in row["dann"] and "scratch" not in row["dann"]
    assert "Negative transfer" in row["negative_transfer"] and "feature_extractor" not in row["negative_transfer"]
    assert not re.search(r"\bNone\b", out)


def test_runs_json_has_every_stored_field_but_the_owner(capsys):
    ids = _class_runs()
    code, out, _ = _run(capsys, "runs", "--json")
    assert code == 0 and IDENTITY not in out
    rows = {r["id"]: r for r in json.loads(out)}
    assert set(rows) == set(ids.values())
    zip_run = rows[ids["train"]]
    assert "owner" not in zip_run and zip_run["plan"]["dataset_path"].endswith("ants_bees.zip")
    assert zip_run["dataset_shown"] == "ants_bees.zip" and zip_run["network"] == "efficientnet_lite0"
    assert rows[ids["dann"]]["network"] == "small CNN (random init)"


def test_the_teacher_page_calls_lab_runs_by_their_lab_and_network(monkeypatch):
    monkeypatch.setenv("TLCORE_TEACHER_KEY", "a-teacher-key-for-trips-0123")
    ids = _class_runs()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(str(ROOT / "views" / "teacher.py")).run()
    at.text_input[0].set_value("a-teacher-key-for-trips-0123").run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[ids["multitask"], "what"] == "Multi-task comparison"
    assert table.loc[ids["multitask"], "network"] == "small CNN trunk, one head per task"
    assert table.loc[ids["dann"], "network"] == "small CNN (random init)"
    assert table.loc[ids["negative_transfer"], "network"].startswith("efficientnet_lite0 up to stage3")
    assert table.loc[ids["train"], "dataset"] == "ants_bees.zip"
    cells = table.astype(str).to_numpy().ravel()
    assert "None" not in cells and "nan" not in cells   # empty cells read "—"


def test_ray_is_found_by_its_module_not_by_a_command_on_path(monkeypatch):
    """Item 9: with ray installed but no `ray` on PATH, the Ray tests skipped saying "pip install ray"."""
    import importlib.util
    import subprocess

    from conftest import ray_command

    monkeypatch.setenv("PATH", "/nonexistent")
    command = ray_command()
    if importlib.util.find_spec("ray") is None:
        assert command is None
        return
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "version" in done.stdout.lower(), done.stderr[-500:]


def test_a_feature_extractor_run_offers_its_head_as_such_and_the_whole_network():
    """Item 10: the trained model of a frozen-backbone run was its head alone (53 KB), unsaid."""
    import io

    import torch

    from tlcore.artifacts import load_network, saves_head_only, whole_network_bytes
    from tlcore.train.loop import train

    store = RunStore()
    plan = Plan(image_size=32, epochs=1, per_class=20)
    run_id = store.create(plan, owner="someone")
    train(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    assert saves_head_only(store, run_id)
    head = torch.load(store.model_file(run_id), weights_only=True)["state_dict"]
    whole = torch.load(io.BytesIO(whole_network_bytes(store, run_id)), weights_only=True)
    assert whole["kind"] == "network" and len(whole["state_dict"]) > 10 * len(head)
    net, _, _ = load_network(store, run_id)
    for name, value in head.items():   # the head inside the whole file is the trained one
        assert torch.equal(whole["state_dict"][name if name.startswith("head.") else f"head.{name}"], value)
    x = torch.rand(2, 3, 32, 32)
    from tlcore.models import build_network
    rebuilt = build_network(plan.model, len(whole["classes"]), pretrained=False)
    rebuilt.load_state_dict(whole["state_dict"])
    assert torch.allclose(rebuilt.eval()(x), net(x), atol=1e-6)
    finetuned = Plan(image_size=32, epochs=1, per_class=20, strategy="fine_tune_all")
    other = store.create(finetuned, owner="someone")
    train(finetuned, lambda e: store.append(other, e), artifact_dir=store.artifact_dir(other))
    assert not saves_head_only(store, other)


def _finished(plan: Plan, owner: str) -> str:
    """A finished run of `plan` in the store, from the stand-in trainer (no network trained)."""
    from fakes import fake_train
    store = RunStore()
    run_id = store.create(plan, owner=owner)
    fake_train(plan, lambda e: store.append(run_id, e), lambda: False, None)
    return run_id


def test_inside_the_cnn_offers_only_runs_trained_on_the_images_dataset():
    """Item 1: a digits run was offered (and asked) about another dataset's images."""
    from test_app import page

    digits_run = _finished(Plan(image_size=32, dataset="digits"), owner="me")
    at = page("inside", owner="me", dataset="digits_m", image_size="32")
    offered = at.selectbox[0].options
    assert not any(digits_run[-6:] in o for o in offered), offered
    assert any("Only runs trained on" in c.value and "digits" in c.value for c in at.caption)
    at = page("inside", owner="me", image_size="32")   # the digits themselves: the run is offered
    assert any(digits_run[-6:] in o for o in at.selectbox[0].options)


def test_a_run_link_in_a_new_tab_sets_the_controls_to_that_runs_plan():
    """Item 2: /train?run=<id> showed the default plan's controls (Feature extractor, 3 epochs)."""
    from test_app import page

    from tlcore.train.loop import train

    plan = Plan(image_size=32, strategy="gradual_unfreeze", epochs=4, schedule="cosine", per_class=10)
    store = RunStore()
    run_id = store.create(plan, owner="me")
    train(plan, lambda e: store.append(run_id, e), artifact_dir=store.artifact_dir(run_id))
    at = page("train", owner="me", run=run_id)
    assert at.session_state["plan"]["strategy"] == "gradual_unfreeze"
    assert at.number_input(key="ctl.epochs").value == 4
    assert "Gradual" in at.radio(key="ctl.strategy").value or at.radio(key="ctl.strategy").value == "gradual_unfreeze"
    # A link that carries its own plan keeps it (a reload after changing a control).
    at = page("train", owner="me", run=run_id, epochs="6")
    assert at.session_state["plan"]["epochs"] == 6 and at.session_state["plan"]["strategy"] == "feature_extractor"


# --- item 3: time left --------------------------------------------------------------------------------
LITE0_64 = (1.8, 10.6, 6.2, 21.1, 19.7, 3.3)   # Lite0's forward MFLOPs per group at 64 px (stem .. top)
RATE = 46e-6                                    # s per MFLOP-image of a feature pass (measured at 64 px)


def _lite0_world(train: int = 600, val: int = 359, batch: int = 64):
    """Gradual unfreezing on Lite0 as a 2-core Zen 5 runs it at 64 px (measured: a training step costs ~2
    forwards per MFLOP through the top 1x1 convolution, ~4.5 through the stages): the events of epoch 0
    and half of epoch 1, and the seconds really left at that point."""
    from tlcore.train.events import EpochEnded, RunStarted, Step

    plan = Plan(strategy="gradual_unfreeze", epochs=4, batch_size=batch, image_size=64)
    cuts, spe = (6, 5, 4, 3), -(-train // batch)
    started = RunStarted(plan.to_dict(), "cpu", 1, 1, ("stem", "stage1", "stage2", "stage3", "stage4", "top"),
                         train, val, ("a", "b"), cuts=cuts, steps_per_epoch=spe, group_mflops=LITE0_64)

    def step_s(c):
        return batch * RATE * (2.0 if c == 5 else 4.5) * sum(LITE0_64[c:]) if c < 6 else 1e-3

    def feature_s(c):
        return (train + val) * RATE * sum(LITE0_64[:c])

    def eval_s(c):
        return val * RATE * sum(LITE0_64[c:])

    events, t = [], 0.0
    for e, c in enumerate(cuts[:2]):
        t += feature_s(c)
        for k in range(spe if e == 0 else spe // 2):
            events.append(Step(e, e * spe + k, 4 * spe, spe, 1.0, (1e-3,), 0.0, elapsed=t))
            t += step_s(c)
        if e == 0:
            t += eval_s(c)
            events.append(EpochEnded(0, 1.0, 1.0, 0.5, ((1, 0), (0, 1)), (1.0,), (1.0,), (1.0,), 1.0, (), 1.0,
                                     500.0, feature_seconds=feature_s(c)))
    truth = (spe - spe // 2) * step_s(5) + eval_s(5) + sum(feature_s(c) + spe * step_s(c) + eval_s(c) for c in (4, 3))
    return plan, started, events, truth


def test_time_left_in_gradual_unfreezings_second_epoch_is_near_the_truth():
    """Scaled by FLOPs from the head-only top group, the stages still to open came out at half their
    time ("about 17 s left" with 77 s to go); evaluation was not counted at all."""
    from tlcore import progress
    from tlcore.train.events import EpochEnded, Step

    plan, started, events, truth = _lite0_world()
    steps = [e for e in events if isinstance(e, Step)]
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    left = progress.time_left(plan, started, steps, epochs)
    assert 0.8 * truth <= left <= 1.3 * truth, (left, truth)


def test_fine_tuning_from_each_cut_has_a_time_left():
    """"Fine-tune from every cut" showed only its phase: each cut still to come is priced by its work at
    the latest finished cut's seconds per MFLOP-image; the current one by its steps left."""
    from tlcore import progress
    from tlcore.train.events import LabResult, Phase, RunStarted, Step

    plan = Plan(kind="cut_finetune", image_size=64, batch_size=64, options={"epochs": 1})
    started = RunStarted(plan.to_dict(), "cpu", 1, 1, ("stem", "stage1", "stage2", "stage3", "stage4", "top"),
                         300, 359, ("a", "b"), group_mflops=LITE0_64)
    work = [progress._cut_work(i, LITE0_64, 300, 359, 1, True) for i in range(6)]
    events = [started, Phase("cut", 0, 6)]
    assert progress.run_time_left(plan, started, events, [], []) is None   # nothing measured yet: "estimating…"
    secs = [w * 6e-8 for w in work]
    for i in range(2):
        events += [Step(0, 4, 5, 5, 1.0, (1e-3,), 0.0, elapsed=1.0 + i),
                   LabResult("cut_finetune", {"group": started.groups[i], "index": i, "val_acc": 0.5, "epochs": 1,
                                              "trained_groups": 5 - i, "seconds": secs[i]}),
                   Phase("cut", i + 1, 6)]
    assert progress.run_time_left(plan, started, events, [], []) == pytest.approx(sum(secs[2:]))
    events.append(Step(0, 1, 5, 5, 1.0, (1e-3,), 0.0, elapsed=5.0))   # cut 3 has run 2 of its 5 steps
    assert progress.cuts_time_left(plan, started, events) == pytest.approx(0.6 * secs[2] + sum(secs[3:]))
    events.append(LabResult("cut_finetune", {"group": "stage2", "index": 2, "val_acc": 0.5, "epochs": 1,
                                             "trained_groups": 3, "seconds": secs[2]}))
    events += [LabResult("cut_finetune", {"group": g, "index": i, "val_acc": 0.5, "epochs": 1, "trained_groups": 0,
                                          "seconds": secs[i]}) for i, g in ((3, "stage3"), (4, "stage4"), (5, "top"))]
    assert progress.cuts_time_left(plan, started, events) == 0.0


# --- Keras: the code for this plan -------------------------------------------------------------------
def test_the_code_for_a_plan_runs_that_plan_from_python_and_the_shell(tmp_path):
    import shlex

    from tlcore import __main__ as entry
    from tlcore.plan_code import cli_command, python_code

    plan = Plan(image_size=32, epochs=1, per_class=10, strategy="fine_tune_top", top_groups=2, lr=3e-3,
                schedule="cosine", warmup_frac=0.1, augment=True, seed=7)
    code = python_code(plan)
    assert "dataset_path" not in code and "epochs=1" in code and "Plan()" not in code
    space: dict = {}
    exec(compile(code, "plan_code", "exec"), space)   # trains: a second or two at 32 px
    assert space["plan"] == plan and space["net"] is not None
    argv = shlex.split(cli_command(plan))[3:]          # after "python -m tlcore"
    args = entry._parser().parse_args(argv)
    fields = {k: v for k, v in vars(args).items() if k in Plan().to_dict()}
    assert Plan(**fields) == plan
    upload = Plan(dataset="folder", dataset_path="/srv/tlcore/uploads/private/3fa9/zip-1.zip",
                  dataset_name="ants_bees.zip", image_size=32)
    for text in (python_code(upload), cli_command(upload)):
        assert "ants_bees.zip" in text and "/srv/tlcore" not in text


def test_the_train_page_shows_the_code_for_its_plan():
    from test_app import page

    at = page("train", image_size="32", strategy="gradual_unfreeze", epochs="4")
    code = [c.value for c in at.code]
    assert any("strategy='gradual_unfreeze'" in c and "epochs=4" in c for c in code), code
    assert any(c.startswith("python -m tlcore train") and "--epochs 4" in c for c in code), code


# --- Keras: a freeze switch per layer group on the Model page -----------------------------------------
def test_group_switches_keep_a_trained_top_block():
    from tlcore.train.strategies import lowest_trained, toggle_group

    head_only = Plan(image_size=32)
    assert lowest_trained(head_only) is None
    assert toggle_group(head_only, 3, True) == {"strategy": "fine_tune_top", "top_groups": 3}   # stage3 and above
    top3 = Plan(image_size=32, strategy="fine_tune_top", top_groups=3)
    assert toggle_group(top3, 4, False) == {"strategy": "fine_tune_top", "top_groups": 1}       # stage4 and below off
    assert toggle_group(top3, 0, True) == {"strategy": "fine_tune_all"}
    assert toggle_group(Plan(image_size=32, strategy="fine_tune_all"), 5, False) == {"strategy": "feature_extractor"}
    cut = Plan(image_size=32, truncate_after="stage3")   # kept: stem .. stage3
    assert toggle_group(cut, 0, True) == {"strategy": "fine_tune_top", "top_groups": 4}


def test_the_model_pages_switches_set_the_plan_and_the_stack_follows():
    from test_app import page

    at = page("model", image_size="32")
    switches = {t.label: t for t in at.toggle}
    assert set(switches) == set(Plan().kept_groups) and not any(t.value for t in at.toggle)
    switches["stage3"].set_value(True).run()
    assert not at.exception
    assert at.session_state["plan"]["strategy"] == "fine_tune_top" and at.session_state["plan"]["top_groups"] == 3
    assert [t.value for t in at.toggle] == [True, True, True, False, False, False]   # top .. stem
    next(t for t in at.toggle if t.label == "stage4").set_value(False).run()
    assert at.session_state["plan"]["top_groups"] == 1
    assert [t.value for t in at.toggle] == [True, False, False, False, False, False]


# --- Keras: an augmentation preview ---------------------------------------------------------------------
def test_the_augmentation_preview_is_what_training_feeds_the_network():
    import torch

    from tlcore.device import pick
    from tlcore.train.pipeline import Preprocess, what_the_network_sees

    x = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    prep = Preprocess(32, mean, std, pick("cpu"))
    fed = prep(x, augment=True, generator=torch.Generator().manual_seed(5))
    seen = what_the_network_sees(x, 32, True, torch.Generator().manual_seed(5))
    renormalised = prep(seen.float(), augment=False)   # the preview's pixels, normalised as training does
    assert torch.allclose(renormalised, fed, atol=0.6 / 255 / min(std))   # equal up to rounding to uint8
    plain = what_the_network_sees(x, 32, False)
    assert not torch.equal(seen, plain)                                 # crops and flips, not a resize
    again = what_the_network_sees(x, 32, True, torch.Generator().manual_seed(6))
    assert not torch.equal(seen, again)                                 # a new draw differs


def test_the_train_page_previews_the_augmented_images_and_draws_again():
    from test_app import page

    at = page("train", image_size="32", augment="1")
    first = next(c.proto.spec for c in at.get("plotly_chart") if '"type":"image"' in c.proto.spec.replace(" ", ""))
    next(b for b in at.button if b.label == "Draw again").click().run()
    assert not at.exception
    second = next(c.proto.spec for c in at.get("plotly_chart") if '"type":"image"' in c.proto.spec.replace(" ", ""))
    assert first != second
