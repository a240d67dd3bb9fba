"""A list of runs in words people read: what each run was (a strategy, or a lab's title), the network
it trained, the dataset by name (an upload by its file name), never who owns it.

Shared by `python -m tlcore runs` and the Teacher page, so a lab run reads the same in both: a lab's
plan carries placeholder `model` and `strategy` fields (its arms differ), which read as a training
run's ("efficientnet_lite0 · feature_extractor" for a multi-task run) unless the kind says otherwise.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .errors import TLCoreError
from .kinds import KINDS
from .runs import RunSummary
from .train.plan import Plan

EMPTY = "—"   # an empty cell: not "None"


def plan_of(s: RunSummary) -> Plan | None:
    """The summary's stored plan, or None for a row whose plan no longer reads (an older format)."""
    try:
        return Plan.from_json(s.plan_json) if s.plan_json else None
    except (TLCoreError, ValueError, TypeError):
        return None


def what(s: RunSummary) -> str:
    """A training run's strategy, or the lab's title (a lab has no strategy of its own)."""
    if s.kind == "train":
        return s.strategy
    kind = KINDS.get(s.kind)
    return kind.title if kind else s.kind


def network(s: RunSummary, plan: Plan | None = None) -> str:
    plan = plan or plan_of(s)
    if s.kind == "train":
        return "raw pixels (no network)" if s.strategy == "pixel_svm" else s.model
    kind = KINDS.get(s.kind)
    if kind is not None and kind.network is not None:
        return kind.network(plan) if plan is not None else EMPTY
    return s.model


def dataset(s: RunSummary, plan: Plan | None = None) -> str:
    """The registry name, or an upload's file name (a CLI run's zip or folder by its own name)."""
    if s.dataset != "folder":
        return s.dataset
    if s.dataset_name:
        return s.dataset_name
    plan = plan or plan_of(s)
    return Path(plan.dataset_path).name if plan is not None and plan.dataset_path else "your images"


def _local(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _figure(value: float | None, fmt: str) -> str:
    return EMPTY if value is None else format(value, fmt)


def row(s: RunSummary) -> dict[str, Any]:
    """One run as readable cells (strings), in the order a table shows them."""
    plan = plan_of(s)
    return {"created": _local(s.created), "run": s.id,
            "what": what(s), "network": network(s, plan), "dataset": dataset(s, plan), "status": s.status,
            "val_acc": _figure(s.val_acc, ".3f"), "seconds": _figure(s.seconds, ".1f"),
            "lesson": s.lesson or EMPTY}


def record(s: RunSummary) -> dict[str, Any]:
    """One run in full for `runs --json`: every stored field but its owner, plus the readable cells."""
    plan = plan_of(s)
    out = {k: v for k, v in vars(s).items() if k not in ("owner", "plan_json")}
    out.update(created=_local(s.created), what=what(s),
               network=network(s, plan), dataset_shown=dataset(s, plan), plan=plan.to_dict() if plan else None)
    return out


def same_dataset(s: RunSummary, plan: Plan) -> bool:
    """Whether the run was trained on the plan's dataset (an upload: the same file), so that its
    network's classes are the ones the plan's images belong to."""
    if s.dataset != plan.dataset:
        return False
    if plan.dataset != "folder":
        return True
    stored = plan_of(s)
    return stored is not None and stored.dataset_path == plan.dataset_path


def plan_columns(plan: Plan) -> dict[str, Any]:
    """The settings Compare puts beside each run's results (TensorBoard's hyperparameter columns)."""
    return {"strategy": plan.strategy, "lr": plan.lr, "epochs": plan.epochs, "schedule": plan.schedule,
            "image_size": plan.resolved_image_size(), "seed": plan.seed}


def curves_rows(runs) -> list[dict[str, Any]]:
    """Every run's curves as long-format rows (run, x in epochs, series, value): what Compare's CSV holds.
    Step losses and each epoch's train loss, validation loss and accuracy; a learning rate per group."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        name = run.name
        for s in run.steps:
            rows.append({"run": name, "epoch": s.step / max(s.steps_per_epoch, 1), "series": "step loss",
                         "value": s.loss})
            rows += [{"run": name, "epoch": s.step / max(s.steps_per_epoch, 1), "series": f"lr group {g}",
                      "value": lr} for g, lr in enumerate(s.lrs)]
        for e in run.epochs:
            rows += [{"run": name, "epoch": e.epoch + 1, "series": series, "value": value}
                     for series, value in (("train loss", e.train_loss), ("validation loss", e.val_loss),
                                           ("validation accuracy", e.val_acc), ("macro F1", e.macro_f1))]
    return rows
