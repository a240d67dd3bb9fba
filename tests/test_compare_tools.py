"""What people expect from TensorBoard and Weights & Biases on Compare (issue 28): smoothing and a log scale
on the loss curves, the curves as CSV, each run's settings as columns, a sortable table of the class's runs."""
from __future__ import annotations

import io

import pandas as pd
import pytest

from tlcore import plots, runlist
from tlcore.runs import RunStore
from tlcore.train.loop import train
from tlcore.train.plan import Plan



def test_smoothing_is_tensorboards_debiased_moving_average():
    values = [1.0, 0.0, 1.0, 0.0]
    assert plots.smoothed(values, 0.0) == values
    s = plots.smoothed(values, 0.5)
    assert s[0] == pytest.approx(1.0)                    # debiased: the first point is not pulled to 0
    assert s[1] == pytest.approx((0.5 * 0.5 + 0) / 0.75)  # (0.5 * 1 * 0.5 + 0.5 * 0) / (1 - 0.25)
    assert max(s[1:]) - min(s[1:]) < max(values) - min(values)   # smoother than the raw values
    with pytest.raises(ValueError):
        plots.smoothed(values, 1.0)


@pytest.fixture
def two_runs():
    store = RunStore()
    ids = []
    for plan in (Plan(image_size=32, epochs=2, per_class=20, lr=3e-3, seed=1),
                 Plan(image_size=32, epochs=1, per_class=20, schedule="cosine", strategy="fine_tune_all")):
        run_id = store.create(plan, owner="me")
        train(plan, lambda e, r=run_id: store.append(r, e), artifact_dir=store.artifact_dir(run_id))
        ids.append(run_id)
    return store, ids


def test_the_loss_chart_smooths_and_goes_log_and_the_curves_go_to_csv(two_runs):
    store, ids = two_runs
    runs = [store.load(i) for i in ids]
    curves = [(r.name, r.epochs, r.steps, r.unfrozen) for r in runs]
    fig = plots.loss_curves(curves, smoothing=0.9, log_y=True)
    assert fig.layout.yaxis.type == "log"
    names = [t.name for t in fig.data]
    assert sum("smoothed 0.9" in n for n in names) == 2
    raw = next(t for t in fig.data if t.name.endswith("step loss"))
    smooth = next(t for t in fig.data if "smoothed" in t.name)
    assert list(smooth.y) == pytest.approx(plots.smoothed(list(raw.y), 0.9))
    table = pd.read_csv(io.StringIO(pd.DataFrame(runlist.curves_rows(runs)).to_csv(index=False)))
    assert set(table["run"]) == {r.name for r in runs}
    first = table[table["run"] == runs[0].name]
    assert len(first[first["series"] == "step loss"]) == len(runs[0].steps)
    assert list(first[first["series"] == "validation accuracy"]["value"]) == pytest.approx(
        [e.val_acc for e in runs[0].epochs])


def test_compare_shows_each_runs_settings_and_the_class_table_sorts_as_numbers(two_runs):
    from test_app import page

    _, ids = two_runs
    at = page("compare", owner="me")
    at.multiselect[0].set_value(ids).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.columns[:8]) == ["run", "dataset", "strategy", "lr", "epochs", "schedule", "image_size", "seed"]
    assert sorted(table["lr"]) == pytest.approx(sorted([3e-3, 1e-3]))
    assert sorted(table["schedule"]) == ["cosine", "stlr"] and sorted(table["epochs"]) == [1, 2]
    everyone = next(d.value for d in at.dataframe if "network" in d.value.columns)
    assert everyone["val_acc"].dtype.kind == "f" and everyone["lr"].dtype.kind == "f"   # numbers sort as numbers
    assert any(b.label == "Download the curves (CSV)" for b in at.download_button)
