"""What the Results page needs from a stored run: predictions, the images behind a cell, CSV, the model file."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from tlcore import uploads
from tlcore.errors import TLCoreError
from tlcore.metrics import Report
from tlcore.runs import Run, RunStore

from . import data as ui_data


class ImagesUnavailable(Exception):
    """The images behind a cell cannot be shown; the message says why, in plain words."""


def predictions(store: RunStore, run: Run) -> dict | None:
    path = store.artifact_dir(run.id) / "predictions.pt"
    return torch.load(path, weights_only=True) if path.exists() else None


def no_predictions_reason(run: Run) -> str:
    """Why a run has no saved predictions (so no images behind the cells), said precisely."""
    if run.active:
        return ("This run is still training: its predictions, and so the images behind each cell, are saved "
                "when it ends. Come back once it has finished.")
    if run.status == "stopped":
        if not run.epochs:
            return "This run was stopped before its first epoch ended, so it has no predictions to show."
        return "This run was stopped before it saved its predictions, so there are no images to show."
    if run.status == "failed":
        return "This run failed before it saved its predictions, so there are no images to show."
    return "This run kept no predictions, so there are no images to show."


def cell_images(run: Run, preds: dict, true_class: int, pred_class: int, limit: int = 24,
                loader: Callable = ui_data.load, owner: str | None = None):
    """Validation images whose true class and prediction match the chosen cell, most confident first.

    The images are loaded again from the run's dataset, so first check that it still is the dataset
    the run saw: the reloaded validation labels must equal the stored ones, image for image. Someone
    else's run on their private upload shows no images to `owner` (a shared dataset does)."""
    if (owner is not None and run.plan.dataset == "folder"
            and not uploads.readable(run.plan.dataset_path, owner)):
        raise ImagesUnavailable("These images are private: they belong to another browser's upload. Its owner "
                                "can share them with a link from the Share box.")
    try:
        data = loader(run.plan)
    except TLCoreError as e:   # DownloadRequired offline, DatasetError for a moved or broken folder
        raise ImagesUnavailable(f"The validation images cannot be loaded right now: {e}") from e
    except Exception as e:  # noqa: BLE001 - anything else reading the data: say so, keep the page
        raise ImagesUnavailable(f"The validation images cannot be loaded right now ({type(e).__name__}: {e}).") from e
    true = torch.as_tensor(preds["true"]).flatten().long()
    val_y = torch.as_tensor(data.val_y).flatten().long()
    if val_y.shape != true.shape or not torch.equal(val_y, true) or len(data.val_x) != len(true):
        raise ImagesUnavailable("The images are not available: the dataset has changed since this run, so "
                                "its validation images no longer match the run's predictions.")
    mask = (true == true_class) & (torch.as_tensor(preds["pred"]).flatten() == pred_class)
    idx = torch.nonzero(mask).flatten()
    conf = torch.as_tensor(preds["confidence"]).flatten()
    idx = idx[conf[idx].argsort(descending=True)][:limit]
    return data.val_x[idx], conf[idx]


def model_file(store: RunStore, run: Run) -> Path | None:
    path = store.artifact_dir(run.id) / "model.pt"
    return path if path.exists() else None


def no_model_reason(run: Run) -> str:
    """Why a run has no model file to download."""
    if run.plan.strategy == "pixel_svm":
        return ("No model file: this run is an SVM on raw pixels (no network). The lab keeps its predictions "
                "and metrics, not the fitted scikit-learn classifier.")
    if run.plan.head in ("logreg", "linear_svm"):
        return (f"No model file: this run's head is a scikit-learn classifier ({run.plan.head}) on the frozen "
                "network's features. The lab keeps its predictions and metrics, not the fitted classifier, "
                "and the network itself is the unchanged pretrained one.")
    if run.active:
        return "The trained model can be downloaded once this run has ended."
    return "This run saved no model file (it ended before training finished)."


def metrics_csv(rep: Report) -> bytes:
    rows = rep.rows() + [{"class": f"{k} average", **v} for k, v in rep.averages().items()]
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    return buf.getvalue().encode()


def selected_points(event) -> list[dict]:
    """The points of a chart's selection event (an empty list when nothing is selected)."""
    try:
        points = event.selection.points if event is not None else []
    except (AttributeError, KeyError):
        try:
            points = event["selection"]["points"]
        except (TypeError, KeyError):
            points = []
    return [dict(p) for p in points or []]
