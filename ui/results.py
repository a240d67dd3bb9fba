"""What the Results page needs from a stored run: predictions, the images behind a cell, CSV."""
from __future__ import annotations

import io

import pandas as pd
import torch

from tlcore.metrics import Report
from tlcore.runs import Run, RunStore

from . import data as ui_data


def predictions(store: RunStore, run: Run) -> dict | None:
    path = store.artifact_dir(run.id) / "predictions.pt"
    return torch.load(path, weights_only=True) if path.exists() else None


def cell_images(run: Run, preds: dict, true_class: int, pred_class: int, limit: int = 24):
    """Validation images whose true class and prediction match the chosen cell, most confident first."""
    mask = (preds["true"] == true_class) & (preds["pred"] == pred_class)
    idx = torch.nonzero(mask).flatten()
    conf = preds["confidence"][idx]
    idx = idx[conf.argsort(descending=True)][:limit]
    data = ui_data.load(run.plan)
    return data.val_x[idx], preds["confidence"][idx]


def metrics_csv(rep: Report) -> bytes:
    rows = rep.rows() + [{"class": f"{k} average", **v} for k, v in rep.averages().items()]
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    return buf.getvalue().encode()
