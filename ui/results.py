"""What the Results page needs from a stored run: predictions, the images behind a cell, CSV, the model file."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import pandas as pd

from tlcore import artifacts, uploads
from tlcore.kinds import KINDS
from tlcore.artifacts import ImagesUnavailable, no_predictions_reason  # noqa: F401  (the page's names)
from tlcore.metrics import Report
from tlcore.runs import Run, RunStore

from . import data as ui_data


def predictions(store: RunStore, run: Run) -> dict | None:
    return store.predictions(run.id)


def cell_images(run: Run, preds: dict, true_class: int, pred_class: int, limit: int = 24,
                loader: Callable = ui_data.load, owner: str | None = None):
    """The validation images behind a cell (tlcore.artifacts.cell_images, with the page's loader).
    Someone else's run on their private upload shows no images to `owner` (a shared dataset does)."""
    if (owner is not None and run.plan.dataset == "folder"
            and not uploads.readable(run.plan.dataset_path, owner)):
        raise ImagesUnavailable("These images are private: they belong to another browser's upload. Its owner "
                                "can share them with a link from the Share box.")
    return artifacts.cell_images(run, preds, true_class, pred_class, limit, loader)


def model_file(store: RunStore, run: Run) -> Path | None:
    return store.model_file(run.id)


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


# --- a lab's run: what its kind declares ----------------------------------------------------------
def kind_title(run: Run) -> str:
    kind = KINDS.get(run.plan.kind)
    return kind.title if kind else run.plan.kind


def result_tables(run: Run, summary_only: bool = False) -> list[tuple[str, pd.DataFrame]]:
    """A lab run's result rows as tables, one per schema its kind declares (the summary first), so a
    page can show any kind's results without knowing which lab made them."""
    kind = KINDS.get(run.plan.kind)
    schemas = list(kind.results) if kind else sorted({r.schema for r in run.results})
    schemas = schemas[-1:] if summary_only else schemas[::-1]
    tables = []
    for schema in schemas:
        rows = [r.values for r in run.results if r.schema == schema]
        if rows:
            tables.append((schema, pd.DataFrame(rows)))
    return tables


def compare_rows(runs: list[Run], names: dict[str, tuple[str, str]]) -> dict[str, pd.DataFrame]:
    """For each lab kind among `runs`: its summary rows, one table across the runs (a "run" column first)."""
    out: dict[str, list[pd.DataFrame]] = {}
    for run in runs:
        for _schema, table in result_tables(run, summary_only=True):
            out.setdefault(kind_title(run), []).append(table.assign(run=names[run.id][0])[["run", *table.columns]])
    return {title: pd.concat(parts, ignore_index=True) for title, parts in out.items()}
