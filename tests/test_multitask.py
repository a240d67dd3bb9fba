"""The multi-task lab: two-label data, the shared trunk's gradients, loss weighting, bad input, the page."""
from __future__ import annotations

import json

import pytest
import torch

from tlcore.data.pairs import BRIGHTNESS, load_two_task
from tlcore.errors import PlanError
from tlcore.labs import multitask as mt
from tlcore.labs.multitask_net import multitask_loss, to_input
from tlcore.train.events import LabResult, Metrics, RunEnded
from tlcore.train.plan import Plan


@pytest.fixture(scope="module")
def pairs():
    return load_two_task("digit_pairs", train_pairs=128, val_pairs=600, seed=0)


def _batch(pairs, n=32):
    x = to_input(pairs.train_x[:n])
    return x, {"A": pairs.train_a[:n], "B": pairs.train_b[:n]}, {"A": torch.ones(n, dtype=torch.bool),
                                                                  "B": torch.ones(n, dtype=torch.bool)}


def _step(net, pairs, weights, steps=3, lr=1e-2):
    opt = mt.make_optimizer(net, lr, 1e-4)
    x, y, m = _batch(pairs)
    for _ in range(steps):
        loss, _ = multitask_loss(net, net(x), y, m, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def test_pairs_carry_two_label_sets_and_unrelated_b_is_the_background(pairs):
    assert pairs.train_x.shape[1:] == (3, 16, 16) and pairs.train_x.dtype == torch.uint8
    assert len(pairs.train_a) == len(pairs.train_b) == 128
    assert (pairs.train_a != pairs.train_b).any()
    other = load_two_task("digit_pairs", related=False, train_pairs=128, seed=0)
    assert torch.equal(other.train_x, pairs.train_x)   # same images: only task B's labels change
    assert other.classes_b == BRIGHTNESS and int(other.train_b.max()) < len(BRIGHTNESS)
    dark = other.train_x[other.train_b == 0].float().median()
    light = other.train_x[other.train_b == len(BRIGHTNESS) - 1].float().median()
    assert light > dark


def test_the_shared_trunk_receives_gradients_from_both_heads(pairs):
    x, y, m = _batch(pairs)
    grads = {}
    for task in ("A", "B"):
        net = mt.build_net(4, {"A": 10, "B": 10}, False, seed=0)
        loss, _ = multitask_loss(net, net(x), y, m, {"A": float(task == "A"), "B": float(task == "B")})
        loss.backward()
        grads[task] = torch.cat([p.grad.flatten() for p in net.trunk.parameters()])
        assert grads[task].abs().sum() > 0
        other = "B" if task == "A" else "A"
        assert all(p.grad is None for p in net.heads[other].parameters())
    assert not torch.allclose(grads["A"], grads["B"])


def test_a_task_with_weight_zero_leaves_its_head_bit_identical(pairs):
    net = mt.build_net(4, {"A": 10, "B": 10}, False, seed=0)
    head_b = {k: v.clone() for k, v in net.heads["B"].state_dict().items()}
    trunk = [p.clone() for p in net.trunk.parameters()]
    _step(net, pairs, {"A": 1.0, "B": 0.0})
    assert all(torch.equal(head_b[k], v) for k, v in net.heads["B"].state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(trunk, net.trunk.parameters()))


def test_uncertainty_weighting_learns_its_log_variances(pairs):
    net = mt.build_net(4, {"A": 10, "B": 10}, True, seed=0)
    assert all(float(s.detach()) == 0.0 for s in net.log_vars.values())
    _step(net, pairs, {})
    assert all(float(s.detach()) != 0.0 for s in net.log_vars.values())


def test_unlabelled_b_examples_are_masked_out_of_b_loss(pairs):
    net = mt.build_net(4, {"A": 10, "B": 10}, False, seed=0)
    x, y, m = _batch(pairs, 8)
    logits = net(x)
    m["B"] = torch.tensor([True, True] + [False] * 6)
    _, parts = multitask_loss(net, logits, y, m, {"A": 1.0, "B": 1.0})
    want = torch.nn.functional.cross_entropy(logits["B"][:2], y["B"][:2])
    assert parts["B"] == pytest.approx(float(want.detach()))
    m["B"][:] = False
    _, parts = multitask_loss(net, logits, y, m, {"A": 1.0, "B": 1.0})
    assert "B" not in parts


def test_each_task_loss_is_a_mean_over_a_batch_of_its_own_labelled_pairs(pairs):
    """The multi-task defect's cause: B's loss was a mean over the ~3 labelled pairs that fell into a
    64-pair batch. Now the joint network draws A's batch from all pairs and B's from B's labelled
    ones, every step, both full-sized, and the single-task B network draws the same B batches."""
    data = load_two_task("digit_pairs", train_pairs=400, val_pairs=20, seed=0)
    keep = mt.labelled_b(400, 0.05, 0)
    joint, single_a, single_b = mt.make_arms(mt.lab_plan(pairs=400), data, keep)
    assert [f.tasks for f in joint.feeds] == [("A",), ("B",)]
    for _ in range(30):
        a, b = (f.next(64) for f in joint.feeds)
        assert len(a) == len(b) == 64 and bool(keep[b].all()) and not bool(keep[a].all())
    assert torch.equal(single_b.feeds[0].pool, joint.feeds[1].pool) and single_a.feeds[0].tasks == ("A",)
    # With all of B's labels one batch serves both tasks.
    every = mt.make_arms(mt.lab_plan(pairs=400, b_labels=1.0), data, torch.ones(400, dtype=torch.bool))[0]
    assert [f.tasks for f in every.feeds] == [("A", "B")]


def test_label_share_keeps_that_many_b_labels():
    assert int(mt.labelled_b(2000, 0.05, 0).sum()) == 100
    assert int(mt.labelled_b(50, 0.01, 0).sum()) == 1


@pytest.mark.parametrize("change, field", [
    ({"dataset": "digits"}, "dataset"),
    ({"options": {"b_labels": 0.0}}, "options.b_labels"),
    ({"options": {"b_labels": 1.5}}, "options.b_labels"),
    ({"options": {"w_a": float("nan")}}, "options.w_a"),
    ({"options": {"w_b": float("inf")}}, "options.w_b"),
    ({"options": {"w_a": 0.0, "w_b": 0.0}}, "options.w_b"),
    ({"options": {"weighting": "magic"}}, "options.weighting"),
    ({"options": {"width": 0}}, "options.width"),
    ({"options": {"colour": "red"}}, "options.colour"),
])
def test_bad_input_is_a_plan_error_before_training(change, field):
    with pytest.raises(PlanError) as err:
        Plan(**{"kind": "multitask", "dataset": "digit_pairs", **change})
    assert err.value.field == field


def test_a_run_compares_joint_with_single_task_networks_and_reads_as_findings():
    plan = Plan(kind="multitask", dataset="digit_pairs", epochs=1, lr=3e-3, schedule="one_cycle",
                options={"pairs": 300, "width": 4, "b_labels": 0.1})
    events = []
    mt.run(plan, events.append, lambda: False, None)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "finished", events[-1]
    out = mt.Outcome.of([e for e in events if isinstance(e, LabResult)])
    assert out.single["params"] > out.joint["params"] > 0
    metrics = next(e for e in events if isinstance(e, Metrics)).values
    assert {"joint_A", "joint_B", "single_A", "single_B"} <= set(metrics)
    said = mt.findings(plan.options, out)
    # What the page says is this run's numbers, not a claim: both accuracies of each task, the share kept.
    assert f"{out.joint['A']:.3f} vs {out.single['A']:.3f}" in said[0] and f"{out.joint['B']:.3f}" in said[0]
    assert len(said) == 4 and "10% of its labels (30 of 300 pairs)" in said[2]
    # (How well the networks learn is the lessons suite's: tests/lessons/test_multitask_lesson.py.)


def test_cli_prints_one_json_line(capsys):
    from tlcore.__main__ import main
    code = main(["multitask", "--dataset", "digit_pairs", "--b-labels", "0.05", "--epochs", "1", "--pairs", "200",
                 "--width", "2"])
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(line) == ["kind", "joint", "single", "seconds"] and line["kind"] == "multitask"
    assert set(line["joint"]) == set(line["single"]) == {"A", "B", "params"}


def test_cli_refuses_a_label_share_outside_zero_to_one(capsys):
    from tlcore.__main__ import main
    assert main(["multitask", "--b-labels", "1.5"]) == 2
    assert "b_labels" in capsys.readouterr().err


def _page(name: str, owner: str | None = None):
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest
    root = Path(__file__).resolve().parents[1]
    st.cache_resource.clear()
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    if owner is not None:
        at.session_state["owner"] = owner
    at.run()
    at.switch_page(str(root / "views" / f"{name}.py")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_renders_and_shows_a_finished_run_with_findings_and_compare_lists_its_tasks():
    from tlcore.runs import RunStore
    at = _page("multitask")
    assert any(b.label == "Run joint vs single-task" for b in at.button)
    store = RunStore()
    plan = Plan(kind="multitask", dataset="digit_pairs", epochs=1, lr=3e-3,
                options={"pairs": 200, "width": 2, "b_labels": 0.05, "related": False})
    run_id = store.create(plan, owner="me-test-owner-0000000000")
    mt.run(plan, lambda e: store.append(run_id, e), lambda: False, store.artifact_dir(run_id))
    at = _page("multitask", owner="me-test-owner-0000000000")
    assert any(h.value == "What this run showed" for h in at.subheader)
    # A new session (a reload) shows the controls that run used, not the lab's defaults ...
    assert at.select_slider(key="mt_width").value == 2 and at.select_slider(key="mt_share").value == 0.05
    assert at.radio(key="mt_task_b").value.startswith("background") and at.number_input(key="mt_epochs").value == 1
    # ... and a change made after that keeps, twice in a row.
    for width in (8, 32):
        at.select_slider(key="mt_width").set_value(width).run()
        assert at.select_slider(key="mt_width").value == width
    text = " ".join(m.value for m in at.markdown)
    assert "Shared features" in text and "Unequal amounts of data" in text
    at = _page("compare", owner="me-test-owner-0000000000")
    assert any("Multi-task comparison" in m.value for m in at.markdown)   # the kind's title over its summary rows
    table = next(d.value for d in at.dataframe if "acc_B" in d.value.columns)
    assert set(table["arm"]) == {"joint", "single"}


def test_mnist_pairs_are_built_from_mnist_when_it_is_on_disk(shared_data):
    d = load_two_task("mnist_pairs", train_pairs=40, val_pairs=20, root=shared_data)
    assert d.train_x.shape == (40, 3, 28, 28) and d.val_x.shape == (20, 3, 28, 28)
    assert int(d.train_a.max()) <= 9 and int(d.train_b.max()) <= 9
