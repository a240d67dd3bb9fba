"""Figures are pure functions of run data: what they draw can be read back from fig.data."""
from __future__ import annotations

import numpy as np
import pytest

from tlcore import plots
from tlcore.metrics import confusion_matrix, report
from tlcore.train.events import EpochEnded, Step, Unfrozen


def _epoch(i):
    return EpochEnded(i, 1.0 - i / 10, 1.1 - i / 10, 0.5 + i / 10, ((2, 1), (0, 3)), (1, .75), (.67, 1), (.8, .86),
                      .83, ("top",), 1.0, 10.0)


def test_confusion_heatmap_shows_counts_or_rows_that_sum_to_one():
    cm = np.array([[5, 1, 0], [2, 2, 4], [0, 0, 9]])
    counts = plots.confusion_heatmap(cm, ["a", "b", "c"])
    np.testing.assert_array_equal(counts.data[0].z, cm)
    norm = plots.confusion_heatmap(cm, ["a", "b", "c"], normalise=True)
    np.testing.assert_allclose(np.asarray(norm.data[0].z).sum(1), 1.0)
    assert np.asarray(norm.data[0].customdata)[1, 2].tolist() == [1, 2]  # a click maps back to (true, pred)


def test_lr_curves_draw_one_line_per_group_and_leave_frozen_steps_blank():
    lrs = np.array([[0.0, 1e-3], [0.0, 1e-3], [1e-4, 1e-3]])
    fig = plots.lr_curves(lrs, ["stage4", "head"])
    assert [t.name for t in fig.data] == ["stage4", "head"]
    assert np.isnan(fig.data[0].y[0]) and fig.data[0].y[2] == pytest.approx(1e-4)


def test_loss_curves_mark_each_unfreezing_with_a_vertical_line():
    steps = [Step(e, 10 * e + i, 30, 10, 1.0, (1e-3,), 5.0) for e in range(3) for i in (0, 9)]
    fig = plots.loss_curves([("run", [_epoch(i) for i in range(3)], steps, [Unfrozen(1, "top"), Unfrozen(2, "stage4")])])
    assert len([s for s in fig.layout.shapes if s.type == "line"]) == 2
    assert max(fig.data[0].x) == pytest.approx(2.9)  # step losses sit inside their epoch


def test_f1_vs_mean_plots_the_metrics_values():
    rep = report(confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 1], 2), ["x", "y"])
    fig = plots.f1_vs_mean(rep)
    np.testing.assert_allclose(fig.data[0].y, rep.pr_mean)
    np.testing.assert_allclose(fig.data[1].y, rep.f1)


def test_layer_stack_colours_follow_the_states():
    fig = plots.layer_stack(["stem", "stage1", "top"], ["frozen", "unfrozen later", "trained"])
    colours = [s.fillcolor for s in fig.layout.shapes]
    assert colours == [plots.STATE_COLOURS[k] for k in ("frozen", "unfrozen later", "trained", "head")]


def test_pr_heatmap_puts_f1_at_0_18_where_the_mean_is_0_525():
    fig = plots.pr_heatmap(n=21)  # grid step 0.05: P=0.1 is column 2, R=0.95 is row 19
    mean, f1 = np.asarray(fig.data[0].z), np.asarray(fig.data[1].z)
    assert mean[19, 2] == pytest.approx(0.525) and round(f1[19, 2], 2) == 0.18


def test_a_clickable_confusion_matrix_lays_one_marker_over_each_cell():
    cm = np.array([[5, 1, 0], [2, 2, 4], [0, 0, 9]])
    fig = plots.confusion_heatmap(cm, ["a", "b", "c"], clickable=True)
    assert fig.data[0].type == "heatmap"
    cells = fig.data[1]
    assert cells.type == "scatter" and cells.mode == "markers" and len(cells.x) == 9
    assert cells.marker.opacity < 0.05  # almost invisible: the heat map shows through
    i = list(zip(cells.y, cells.x)).index(("b", "c"))  # true b, predicted c
    assert list(cells.customdata[i]) == [1, 2]
    assert len(plots.confusion_heatmap(cm, ["a", "b", "c"]).data) == 1  # the live view stays a plain heat map


def test_a_selected_point_maps_back_to_its_cell():
    classes = ["0", "1", "2"]
    assert plots.cell_from_selection([], classes) is None
    assert plots.cell_from_selection([{"customdata": [2, 0], "x": "0", "y": "2"}], classes) == (2, 0)
    # Without customdata the axis labels decide: x is the prediction, y the true class.
    assert plots.cell_from_selection([{"x": "1", "y": "2", "curve_number": 1}], classes) == (2, 1)
    assert plots.cell_from_selection([{"x": 1, "y": 0}], classes) == (0, 1)
    assert plots.cell_from_selection([{"customdata": [7, 0]}, {"x": "nope", "y": "0"}], classes) is None
    # Every marker of the clickable figure maps to the cell it sits on.
    fig = plots.confusion_heatmap(np.eye(3), classes, clickable=True)
    for x, y, custom in zip(fig.data[1].x, fig.data[1].y, fig.data[1].customdata):
        point = {"x": x, "y": y, "customdata": list(custom)}
        assert plots.cell_from_selection([point], classes) == (classes.index(y), classes.index(x))


def test_strategy_grid_outlines_the_datasets_cell_or_column():
    from tlcore.advisor import RULES

    plain = plots.strategy_grid(RULES)
    assert not [s for s in plain.layout.shapes if s.name == "your data"]
    cell = plots.strategy_grid(RULES, "small", "different")
    mark = [s for s in cell.layout.shapes if s.name == "your data"]
    assert len(mark) == 1 and (mark[0].x0, mark[0].x1) == pytest.approx((0.02, 0.98))
    assert (mark[0].y0, mark[0].y1) == pytest.approx((1.02, 1.98))  # row 1: different from ImageNet
    assert any("your data" in a.text and RULES[("small", "different")][0] in a.text for a in cell.layout.annotations)
    column = plots.strategy_grid(RULES, "large")
    mark = [s for s in column.layout.shapes if s.name == "your data"]
    assert len(mark) == 1 and mark[0].x0 == pytest.approx(1.02) and mark[0].line.dash == "dash"
