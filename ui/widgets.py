"""Widgets and drawing blocks shared by several pages."""
from __future__ import annotations

import time

import numpy as np
import streamlit as st

from tlcore import plots
from tlcore.errors import PlanError
from tlcore.models import MODELS
from tlcore.runs import Run, RunSummary
from tlcore.train.events import Step
from tlcore.train.strategies import cut_schedule

from . import services, state

STRATEGY_LABELS = {
    "feature_extractor": "Feature extractor (frozen backbone, new head)",
    "fine_tune_top": "Fine-tune the top layer groups",
    "fine_tune_all": "Fine-tune everything",
    "gradual_unfreeze": "Gradual unfreezing (ULMFiT)",
    "scratch": "Train from scratch (random weights)",
    "pixel_svm": "SVM on raw pixels (no network)",
}


def show_error(err: PlanError | None, *fields: str) -> None:
    if err is not None and err.field in fields:
        st.error(str(err))


def apply(**changes) -> None:
    """Write widget values into the plan; show the engine's message beside the controls if invalid."""
    err = state.update(**changes)
    if err is not None:
        st.error(f"Not applied — {err}")


def group_states(plan) -> tuple[tuple[str, ...], list[str]]:
    """Layer groups and what the plan does to each: frozen / trained / unfrozen later / not used."""
    spec = MODELS[plan.model]
    names = spec.group_names
    if plan.strategy == "pixel_svm":
        return names, ["not used"] * len(names)
    cuts = cut_schedule(plan, len(names))
    out = []
    for i in range(len(names)):
        if i >= cuts[0]:
            out.append("trained")
        elif i >= min(cuts):
            out.append("unfrozen later")
        else:
            out.append("frozen")
    return names, out


def run_label(s: RunSummary) -> str:
    acc = f" · acc {s.val_acc:.3f}" if s.val_acc is not None else ""
    who = "" if s.owner == services.owner() else " · class"
    return f"{s.label or s.strategy} · {s.model} · {s.dataset}{acc} · {s.status}{who} ({s.id[-6:]})"


def runs_mine_first(limit: int = 200) -> list[RunSummary]:
    me = services.owner()
    runs = services.store().list(limit=limit)
    return sorted(runs, key=lambda r: (r.owner != me, -r.created))


def curves(run: Run) -> tuple:
    return (run.name, run.epochs, run.steps, run.unfrozen)


def draw_lr_actual(run: Run) -> None:
    steps: list[Step] = run.steps
    if not steps or not run.started:
        return
    fig = plots.lr_curves(np.array([s.lrs for s in steps]), [*run.started.groups, "head"],
                          x=[s.step / s.steps_per_epoch for s in steps], title="Learning rate per layer group (as used)")
    st.plotly_chart(fig, key=f"lr-{run.id}")


def progress(run: Run) -> None:
    """Progress bar with images/s and time left, or the queue position while waiting."""
    if run.status == "queued":
        pos = services.runner().position(run.id)
        st.info(f"Waiting for the device: position {pos} in the queue." if pos else "Waiting to start…")
        return
    steps, phases = run.steps, run.phases
    if steps:
        last = steps[-1]
        done = (last.step + 1) / last.total_steps
        elapsed = time.time() - run.created
        left = elapsed * (1 - done) / max(done, 1e-9)
        st.progress(min(done, 1.0), text=f"epoch {last.epoch + 1} · step {last.step + 1}/{last.total_steps} · "
                                          f"{last.images_per_s:,.0f} images/s · about {left:,.0f} s left")
    elif phases:
        p = phases[-1]
        if p.name == "download":
            download_bar(st.empty(), "Downloading", p.done, p.total or None)
            return
        what = {"features": "Computing the frozen layers' features once", "data": "Loading the data",
                "svm": "Fitting the SVM", "classifier": "Fitting the classifier"}.get(p.name, p.name)
        st.progress(min(p.done / max(p.total, 1), 1.0), text=f"{what}{' (from cache)' if p.cache_hit else ''}…")


def download_bar(slot, what: str, done: int, total: int | None) -> None:
    """A progress bar in `slot` for bytes arriving; a moving count when the server gives no size."""
    mb = f"{done / 2**20:,.1f} MB" + (f" of {total / 2**20:,.1f} MB" if total else "")
    slot.progress(min(done / total, 1.0) if total else 0.0, text=f"{what}… {mb}")


def data_or_stop(plan):
    """The plan's dataset, or the engine's one-line reason (offline, bad folder) and an early stop."""
    from tlcore.errors import DatasetError, DownloadRequired

    from . import data as ui_data
    bar = st.empty()
    try:
        return ui_data.load(plan, lambda done, total: download_bar(bar, "Downloading the dataset", done, total))
    except (DownloadRequired, DatasetError) as e:
        st.error(str(e))
        st.stop()
    finally:
        bar.empty()
