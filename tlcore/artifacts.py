"""What a run left behind, read back for people: the images behind a confusion-matrix cell."""
from __future__ import annotations

from typing import Callable

import torch

from .errors import TLCoreError


class ImagesUnavailable(TLCoreError):
    """The images behind a cell cannot be shown; the message says why, in plain words."""


def no_predictions_reason(run) -> str:
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


def cell_images(run, preds: dict | None, true_class: int, pred_class: int, limit: int = 24,
                loader: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation images whose true class and prediction match the cell, most confident first.

    The images are loaded again from the run's dataset, so first check that it still is the dataset
    the run saw: the reloaded validation labels must equal the stored ones, image for image."""
    from .data import load_plan_data
    if preds is None:
        raise ImagesUnavailable(no_predictions_reason(run))
    try:
        data = (loader or load_plan_data)(run.plan)
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


class NoNetwork(TLCoreError):
    """The run has no trained network to load (an SVM on pixels, a scikit-learn head, no model file)."""


def load_network(store, run_id: str):
    """A finished run's trained network, rebuilt from its model file: (Network in eval mode, Plan,
    class names). Whole-network files load as they are; head-only files (the backbone never trained)
    put the saved head on the published pretrained backbone."""
    from .models import build_network
    from .train.plan import Plan
    run = store.load(run_id, with_steps=False)
    plan = run.plan
    if plan.strategy == "pixel_svm":
        raise NoNetwork(f"run {run_id} is an SVM on raw pixels: it has no network")
    if plan.head in ("logreg", "linear_svm"):
        raise NoNetwork(f"run {run_id} ended in a scikit-learn {plan.head}: its classifier is not a network layer")
    path = store.model_file(run_id)
    if path is None:
        raise NoNetwork(f"run {run_id} saved no model file (it ended before an epoch finished)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    plan = Plan.from_dict(saved.get("plan", plan.to_dict()))
    classes = tuple(saved.get("classes") or (run.started.classes if run.started else ()))
    whole = saved["kind"] == "network"
    net = build_network(plan.model, len(classes), pretrained=not whole and plan.pretrained,
                        head=plan.head if plan.head in ("linear", "mlp") else "linear",
                        truncate_after=plan.truncate_after)
    state = saved["state_dict"]
    if whole:
        net.load_state_dict(state)
    else:
        net.head.load_state_dict({k.removeprefix("head."): v for k, v in state.items()})
    return net.eval(), plan, classes


def saves_head_only(store, run_id: str) -> bool:
    """True when the run's model file holds the head alone (its backbone never trained, so the file
    keeps only what changed: 53 KB for Lite0's head, not the 13 MB network)."""
    path = store.model_file(run_id)
    if path is None:
        return False
    return torch.load(path, map_location="cpu", weights_only=True).get("kind") == "head"


def whole_network_bytes(store, run_id: str) -> bytes:
    """The run's whole trained network (pretrained backbone + its head) as a model file of the same
    format, which `torch.load` and `load_network` read like any whole-network run's."""
    import io
    net, plan, classes = load_network(store, run_id)
    buf = io.BytesIO()
    torch.save({"kind": "network", "state_dict": net.state_dict(), "plan": plan.to_dict(), "classes": list(classes)},
               buf)
    return buf.getvalue()
