"""The depth lab: its networks (plain and residual share their weights, a residual block adds its input),
the gradient measurement, the run's rows, bad input, the command line, the page, and the zoo's structure
read from the architectures. How the gradients and losses come out at the page's defaults is the
lessons suite's (tests/lessons/test_depth_lesson.py)."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from tlcore.errors import PlanError
from tlcore.inspect import branches
from tlcore.labs import depth as dl
from tlcore.labs import depth_figures as figs
from tlcore.labs.depth_net import DepthNet, grad_rms
from tlcore.models import MODELS
from tlcore.train.events import LabResult, Metrics, RunEnded
from tlcore.train.plan import Plan

TINY = dict(epochs=1, depth=8, width=4)


def _run(plan, should_stop=lambda: False):
    events: list = []
    dl.run(plan, events.append, should_stop, None)
    return events


@pytest.fixture(scope="module")
def small_run():
    events = _run(dl.lab_plan(**TINY, arms=["sigmoid", "relu+bn", "relu+bn+residual"]))
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    return events


@pytest.mark.parametrize("options, field", [
    ({"depth": 7}, "options.depth"),
    ({"depth": 9}, "options.depth"),        # odd: no whole number of two-convolution blocks
    ({"depth": 52}, "options.depth"),
    ({"depth": 20.0}, "options.depth"),
    ({"width": 0}, "options.width"),
    ({"arms": []}, "options.arms"),
    ({"arms": ["swish"]}, "options.arms"),
    ({"arms": ["residual+relu"]}, "options.arms"),
    ({"arms": ["relu", "relu"]}, "options.arms"),
    ({"arms": "relu"}, "options.arms"),
    ({"arms": [c for c in dl.arm_codes()][:dl.MAX_ARMS + 1]}, "options.arms"),
    ({"colour": "red"}, "options.colour"),
])
def test_bad_options_are_a_plan_error_naming_the_field(options, field):
    with pytest.raises(PlanError) as err:
        Plan(kind="depth", dataset="digits", options=options)
    assert err.value.field == field


def test_only_small_grey_image_sets_are_accepted():
    with pytest.raises(PlanError) as err:
        Plan(kind="depth", dataset="digit_pairs")
    assert err.value.field == "dataset"


def test_depth_counts_weight_layers_and_plain_and_residual_start_from_the_same_weights():
    for depth in (8, 20, 50):
        net = dl.build(dl.ArmSpec("relu", True, False), depth, 8, seed=0, classes=10)
        assert len(net.weight_layers()) == depth
    plain = dl.build(dl.ArmSpec("relu", True, False), 12, 8, seed=3, classes=10)
    residual = dl.build(dl.ArmSpec("relu", True, True), 12, 8, seed=3, classes=10)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), residual.state_dict().values()))


def test_a_residual_block_adds_its_input_back_and_a_plain_one_does_not():
    x = torch.randn(4, 3, 8, 8)
    for act in ("sigmoid", "relu"):
        nets = {res: DepthNet(8, 6, act, batchnorm=False, shortcut=res) for res in (False, True)}
        for net in nets.values():
            with torch.no_grad():
                for block in net.blocks:   # F(x) = 0: a residual block is then the identity, a plain one outputs 0
                    block.conv2.weight.zero_()
                    block.conv2.bias.zero_()
        h = torch.randn(4, 6, 8, 8)
        assert torch.equal(nets[True].blocks[0](h), h)
        assert torch.count_nonzero(nets[False].blocks[0](h)) == 0
        assert nets[True](x).shape == (4, 10)


def test_gradient_norms_are_per_weight_one_per_layer_and_read_before_clipping():
    net = DepthNet(10, 4, "tanh", batchnorm=False, shortcut=False)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    F.cross_entropy(net(x), y).backward()
    rms = grad_rms(net)
    assert len(rms) == 10
    for layer, value in zip(net.weight_layers(), rms):
        assert value == pytest.approx(float(layer.weight.grad.norm()) / math.sqrt(layer.weight.numel()))
    assert dl.orders(1e-3, 1e-1) == pytest.approx(-2.0)
    assert dl.orders(0.0, 1.0) < -44   # an underflowed gradient reads as below any float32, not as an error


def test_a_run_records_every_layers_gradient_at_the_start_and_during_training(small_run):
    results = [e for e in small_run if isinstance(e, LabResult)]
    grads = dl.grad_rows(results)
    assert list(grads) == ["sigmoid", "relu+bn", "relu+bn+residual"]
    spe = 1438 // 64
    for steps in grads.values():
        assert sorted(steps) == list(dl.snapshot_steps(spe)) and min(steps) == 0
        assert all(len(norms) == 8 for norms in steps.values())
    rows = dl.arm_rows(results)
    for code, row in rows.items():
        first = grads[code][0]
        assert row["orders"] == pytest.approx(dl.orders(first[0], first[-2]))   # first vs last convolution
        assert 0 <= row["train_error"] <= 1 and row["params"] > 0
    curves = dl.curve_rows(results)
    assert all(pts[-1]["step"] == spe - 1 for pts in curves.values())
    metrics = next(e for e in small_run if isinstance(e, Metrics)).values
    assert metrics["relu+bn train_loss"] == rows["relu+bn"]["train_loss"]


def test_runs_are_deterministic_given_the_seed():
    plan = dl.lab_plan(**TINY, arms=["relu+residual"], seed=5)
    a, b = ([e.values for e in _run(plan) if isinstance(e, LabResult)] for _ in range(2))
    assert [r for r in a if "seconds" not in r] == [r for r in b if "seconds" not in r]
    arm_a, arm_b = a[-1], b[-1]
    assert {k: v for k, v in arm_a.items() if k != "seconds"} == {k: v for k, v in arm_b.items() if k != "seconds"}


def test_a_stop_ends_the_run_as_stopped_with_the_networks_already_trained():
    calls = {"n": 0}

    def after_a_while() -> bool:
        calls["n"] += 1
        return calls["n"] > 40
    events = _run(dl.lab_plan(**TINY, arms=["relu", "relu+residual"]), after_a_while)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "stopped"
    assert len(dl.arm_rows([e for e in events if isinstance(e, LabResult)])) < 2


def test_findings_say_what_the_numbers_say():
    rows = {"relu+bn": {"depth": 20, "orders": 1.3, "grad_first": 0.05, "train_loss": 0.06, "train_error": 0.01},
            "relu+bn+residual": {"depth": 20, "orders": 0.5, "grad_first": 0.01, "train_loss": 0.01,
                                 "train_error": 0.0},
            "sigmoid": {"depth": 20, "orders": -12.4, "grad_first": 1e-15, "train_loss": 2.3026, "train_error": 0.9}}
    said = dl.findings(rows, 176)
    assert "1.3 orders of magnitude above" in said[0] and "grew towards the input" in said[0]
    assert "12.4 orders of magnitude below" in said[2] and "learned nothing" in said[2]
    assert "0.010 against 0.060" in said[3] and "easier to train" in said[3]


def test_figures_draw_every_network_on_a_log_scale(small_run):
    results = [e for e in small_run if isinstance(e, LabResult)]
    fig = figs.gradients_at_start(results)
    assert fig.layout.yaxis.type == "log" and len(fig.data) == 3 and len(fig.data[0].y) == 8
    assert len(figs.gradients_over_training(results, "relu+bn").data) == len(dl.snapshot_steps(1438 // 64))
    curves = figs.training_curves(results)
    assert [t.line.dash for t in curves.data] == ["dash", "dash", "solid"]


def test_cli_prints_one_json_line_with_per_layer_gradients_and_the_final_loss(capsys):
    from tlcore.__main__ import main
    assert main(["depth", "--depth", "8", "--width", "4", "--epochs", "1", "--activation", "sigmoid",
                 "--residual"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["kind"] == "depth" and line["arm"] == "sigmoid+residual" and line["depth"] == 8
    assert len(line["grad_rms_init"]) == len(line["grad_rms_end"]) == 8
    assert 0 < line["final_train_loss"] < 10


def test_cli_refuses_an_odd_depth_in_one_line(capsys):
    from tlcore.__main__ import main
    assert main(["depth", "--depth", "9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "options.depth" in err[0] and "even" in err[0]


# --- the zoo's networks, read from the architectures -------------------------------------------------
@pytest.mark.parametrize("name", branches.NETWORKS)
def test_structure_counts_every_parameter_the_weights_declare(name):
    s = branches.structure(name)
    assert s.total_params == MODELS[name].meta["params"]   # torchvision's own count, not typed here
    for b in s.blocks:
        if b.branches:
            assert sum(br.params for br in b.branches) == b.params
            assert b.paths >= len(b.branches) >= 2


def test_every_resnet_block_has_two_paths_one_of_them_the_shortcut():
    s = branches.structure("resnet18")
    blocks = [b for b in s.blocks if b.merge]
    assert len(blocks) == 8 and all(b.merge == "add" and b.paths == 2 for b in blocks)
    shortcuts = [b.branches[1] for b in blocks]
    assert sum(br.ops == () for br in shortcuts) == 5            # identity where the map keeps its size
    assert sum(br.ops == ("1x1 conv /2",) for br in shortcuts) == 3   # a projection where it halves
    assert s.paths == 2 ** 8


def test_inception_modules_show_their_parallel_convolutions_and_pooling():
    g = {b.name: b for b in branches.structure("googlenet").blocks}
    labels = [br.label for br in g["inception3a"].branches]
    assert labels[0] == "1x1 conv" and labels[-1] == "3x3 max pool → 1x1 conv" and len(labels) == 4
    v3 = {b.name: b for b in branches.structure("inception_v3").blocks}
    assert "1x1 conv → 5x5 conv" in [br.label for br in v3["Mixed_5b"].branches]
    assert v3["Mixed_7b"].paths == 6   # two of its branches split into 1x3 and 3x1 side by side
    assert any("(1x3 conv | 3x1 conv)" in br.label for br in v3["Mixed_7b"].branches)


def test_page_shows_a_finished_run_and_the_zoo(tmp_path, monkeypatch):
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tlcore.runs import RunStore
    monkeypatch.setenv("TLCORE_HOME", str(tmp_path))
    root = Path(__file__).resolve().parents[1]
    store = RunStore()
    plan = dl.lab_plan(**{**TINY, "width": 8}, arms=["sigmoid", "relu+bn+residual"])   # widths the page offers
    run_id = store.create(plan, owner="me-test-owner-0000000000")
    dl.run(plan, lambda e: store.append(run_id, e), lambda: False, store.artifact_dir(run_id))
    st.cache_resource.clear()
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.session_state["owner"] = "me-test-owner-0000000000"
    at.run()
    at.switch_page(str(root / "views" / "depth.py")).run()
    st.cache_resource.clear()
    assert not at.exception, [e.value for e in at.exception]
    # A new session shows the controls of the run it shows, not the lab's defaults.
    assert at.slider(key="dp_depth").value == 8
    assert at.multiselect(key="dp_arms").value == ["sigmoid", "relu+bn+residual"]
    assert [h.value for h in at.subheader][:3] == ["Gradients by depth", "Plain vs residual at equal depth",
                                                   "What your run showed"]
    text = " ".join(m.value for m in at.markdown)
    assert "**sigmoid · plain** (8 layers)" in text and "256 different paths" in text
    # The zoo: Inception v3's Mixed_7b, its branches and their parameters, as the architecture builds them.
    at.selectbox(key="dp_zoo").set_value("inception_v3").run()
    at.selectbox(key="dp_block_inception_v3").set_value("Mixed_7b").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[-1].value
    assert "1x1 conv → (1x3 conv | 3x1 conv)" in list(table["branch"]) and table["parameters"].sum() == 5044608
