"""The learning-rate chart labels every decade on its log axis, the top one included."""
from __future__ import annotations

import numpy as np

from tlcore import plots


def test_the_learning_rate_axis_labels_every_decade_up_to_the_top():
    lrs = np.array([[0.0, 2e-5, 3e-4], [1e-6, 4e-5, 8e-4]])   # a frozen step, then three groups
    axis = plots.lr_curves(lrs, ["stem", "stage1", "head"]).layout.yaxis
    assert axis.type == "log"
    assert list(axis.ticktext) == ["1e-6", "1e-5", "1e-4", "1e-3"]
    assert list(axis.tickvals) == [1e-6, 1e-5, 1e-4, 1e-3]
    lo, hi = axis.range
    assert lo <= -6 and hi >= -3   # the whole top decade (up to 1e-3) is on the axis


def test_decade_ticks_cope_with_nothing_to_draw():
    assert plots.log_decade_ticks([0.0, np.nan]) == {}
    assert plots.log_decade_ticks([1e-3])["ticktext"] == ["1e-3", "1e-2"]
