"""Widgets and drawing blocks shared by several pages."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from tlcore import plots, progress as run_progress
from tlcore.errors import PlanError, TLCoreError
from tlcore.models import MODELS
from tlcore.runs import ACTIVE, Run, RunNotFound, RunSummary
from tlcore.train.events import Phase, RunEnded, Step
from tlcore.train.plan import Plan
from tlcore.train.strategies import cut_schedule

from . import controls, data as ui_data, results as ui_results, services, state

STRATEGY_LABELS = controls.STRATEGY_LABELS


def show_error(err: PlanError | None, *fields: str) -> None:
    if err is not None and err.field in fields:
        st.error(str(err))


def apply(**changes) -> None:
    """Write widget values into the plan; show the engine's message beside the controls if invalid."""
    err = state.update(**changes)
    if err is not None:
        st.error(f"Not applied — {err}")


def strategy_controls(plan, lock: bool = False) -> dict:
    """The strategy choice (and, for fine_tune_top, how many top groups), shared by Model and Train so
    both pages show the same labels and write the same plan. Returns the chosen values."""
    changes: dict = {}
    if not state.hidden("strategy"):
        changes["strategy"] = state.control("strategy")
    strategy = changes.get("strategy", plan.strategy)
    if strategy in ("feature_extractor", "fine_tune_top") and not state.hidden("truncate_after"):
        spec = controls.truncate_control(MODELS[plan.model].group_names)
        changes["truncate_after"] = state.control("truncate_after", spec=spec)
    elif plan.truncate_after:   # other strategies keep the whole backbone
        changes["truncate_after"] = ""
    n_groups = len(plan.replace(truncate_after=changes.get("truncate_after", plan.truncate_after)).kept_groups) \
        if changes.get("truncate_after", plan.truncate_after) else len(MODELS[plan.model].groups)
    if strategy == "fine_tune_top" and not state.hidden("top_groups"):
        changes["top_groups"] = state.control("top_groups", hi=n_groups)
    return changes


def group_states(plan) -> tuple[tuple[str, ...], list[str]]:
    """Layer groups and what the plan does to each: frozen / trained / unfrozen later / not used, and
    "removed" for the groups above `truncate_after`."""
    names = MODELS[plan.model].group_names
    if plan.strategy == "pixel_svm":
        return names, ["not used"] * len(names)
    kept = len(plan.kept_groups)
    cuts = cut_schedule(plan, kept)
    out = []
    for i in range(len(names)):
        if i >= kept:
            out.append("removed")
        elif i >= cuts[0]:
            out.append("trained")
        elif i >= min(cuts):
            out.append("unfrozen later")
        else:
            out.append("frozen")
    return names, out


def summary_dataset(s: RunSummary) -> str:
    """What a listed run's dataset is called: for an upload, its file name (read from the run's plan)."""
    name = getattr(s, "dataset_name", None)   # once the store lists it
    if name:
        return name
    if s.dataset != "folder":
        return s.dataset
    return _upload_name(s.id)


@st.cache_data(max_entries=2000, show_spinner=False)
def _upload_name(run_id: str) -> str:
    # A run's plan never changes, so its dataset's name can be kept for as long as the run exists.
    try:
        return ui_data.dataset_short(services.store().load(run_id, with_steps=False).plan)
    except RunNotFound:
        return "your images"


def run_title(run: Run) -> str:
    """What people call a run: its label, or strategy · model · dataset (no model for an SVM on pixels)."""
    if run.label:
        return run.label
    model = "raw pixels" if run.plan.strategy == "pixel_svm" else run.plan.model
    return f"{run.plan.strategy} · {model} · {ui_data.dataset_short(run.plan)} ({run.id[-4:]})"


def run_label(s: RunSummary) -> str:
    acc = f" · acc {s.val_acc:.3f}" if s.val_acc is not None else ""
    who = "" if s.owner == services.owner() else " · class"
    model = "raw pixels" if s.strategy == "pixel_svm" else s.model
    return f"{s.label or s.strategy} · {model} · {summary_dataset(s)}{acc} · {s.status}{who} ({s.id[-6:]})"


def runs_mine_first(limit: int = 200) -> list[RunSummary]:
    me = services.owner()
    runs = services.store().list(limit=limit)
    return sorted(runs, key=lambda r: (r.owner != me, -r.created))


def curves(run: Run) -> tuple:
    return (run_title(run), run.epochs, run.steps, run.unfrozen)


def draw_lr_actual(run: Run) -> None:
    fig = live_figures(run).get("lr")
    if fig is not None:
        st.plotly_chart(fig, key=f"lr-{run.id}")


def live_figures(run: Run) -> dict:
    """The figures of a run being watched, built once per second of the run for every tab watching it:
    five tabs on one run cost the server one set of figures a second, not five (tabs poll at their own
    moments; the key changes only when a whole second of the run, an epoch or its status has passed)."""
    last = run.steps[-1].elapsed if run.steps else 0.0
    return _figures(run.id, run.status, len(run.epochs), len(run.unfrozen), int(last), _run=run)


@st.cache_resource(max_entries=64, show_spinner=False)
def _figures(run_id: str, status: str, n_epochs: int, n_unfrozen: int, second: int, *, _run: Run) -> dict:
    run = _run
    out = {"loss": plots.loss_curves([curves(run)]), "accuracy": plots.accuracy_curves([curves(run)])}
    if run.last_epoch is not None and run.started is not None:
        out["confusion"] = plots.confusion_heatmap(run.last_epoch.confusion, run.started.classes)
    steps: list[Step] = run.steps
    if steps and run.started is not None:
        out["lr"] = plots.lr_curves(np.array([s.lrs for s in steps]), [*run.started.groups, "head"],
                                    x=[s.step / s.steps_per_epoch for s in steps],
                                    title="Learning rate per layer group (as used)")
    return out


def follow(run_id: str) -> Run:
    """The run as the store holds it now, reading only the events added since this tab last looked.

    A watching tab polls every second: reloading (and decoding) every event of a long run each time
    would cost the server more with every step. The events read so far are kept in session state."""
    store = services.store()
    seen = st.session_state.get("followed")
    status = store.status(run_id)                 # raises RunNotFound once the run is deleted
    if seen is None or seen["id"] != run_id:
        head = store.load(run_id, with_steps=False)
        seen = st.session_state.followed = {"id": run_id, "seq": -1, "events": [], "head": head}
    new = store.events_since(run_id, seen["seq"])
    if new:
        seen["seq"] = new[-1][0]
        seen["events"].extend(e for _, e in new)
    head, events = seen["head"], tuple(seen["events"])
    ended = next((e for e in reversed(events) if isinstance(e, RunEnded)), None)
    return Run(head.id, head.created, head.owner, head.label, head.plan, status,
               ended.message if ended else "", events)


def progress(run: Run) -> None:
    """Progress bar with speed and time left, the queue position while waiting, or how the run ended."""
    if run.ended is not None:
        if run.status != "failed":   # a failed run's banner says it all: no bar left behind it
            done, unit = run_progress.done_so_far(run.plan, run.events)   # a lab's arms, groups...; else epochs
            frac = 1.0 if run.status == "finished" else 0.0 if unit else min(done / max(run.plan.epochs, 1), 1.0)
            st.progress(frac, text=run_progress.ended_text(run.ended, done, run.plan, unit))
        return
    if run.status == "queued":
        pos = services.runner().position(run.id)
        st.info(f"Waiting for the device: position {pos} in the queue." if pos else "Waiting to start…")
        return
    latest = next((e for e in reversed(run.events) if isinstance(e, (Step, Phase))), None)
    if isinstance(latest, Step):   # training; a feature pass between epochs shows as its phase
        last, steps = latest, run.steps
        done = (last.step + 1) / last.total_steps
        left = run_progress.run_time_left(run.plan, run.started, run.events, steps, run.epochs)
        st.progress(min(done, 1.0), text=f"epoch {last.epoch + 1} · step {last.step + 1}/{last.total_steps} · "
                                          f"{last.images_per_s:,.0f} training images/s · "
                                          f"{run_progress.left_text(left) if done < 1 else 'evaluating…'}")
    elif latest is not None:
        p = latest
        if p.name == "download":
            download_bar(st.empty(), "Downloading", p.done, p.total or None)
            return
        what = {"features": "Computing the frozen layers' features once", "data": "Loading the data",
                "svm": "Fitting the SVM", "classifier": "Fitting the classifier",
                "cut": "Fine-tuning from each cut in turn"}.get(p.name, p.name)
        left = run_progress.cuts_time_left(run.plan, run.started, run.events) if p.name == "cut" else None
        st.progress(min(p.done / max(p.total, 1), 1.0), text=f"{what}{' (from cache)' if p.cache_hit else ''}…"
                                                              + (f" · {run_progress.left_text(left)}" if p.name == "cut" else ""))


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


def current_run_id() -> str | None:
    """The run the Train page follows: this session's, the link's `run=`, or your latest active
    training run (a lab's run or a learning-rate sweep has a page of its own).

    A run that no longer exists (deleted, or a wrong id in the link) is forgotten with a short note."""
    store = services.store()
    if "run_id" not in st.session_state:
        st.session_state.run_id = st.query_params.get("run") or next(
            (r.id for r in store.list(owner=services.owner(), limit=20) if r.status in ACTIVE and r.kind == "train"), None)
    run_id = st.session_state.run_id
    if not run_id:
        return None
    try:
        store.status(run_id)
    except RunNotFound:
        forget_run(run_id)
        st.info(f"Run {run_id} no longer exists (it was deleted, or the link had a wrong id). "
                "Start a new run below.")
        return None
    if st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id   # a reload comes back to this run
    return run_id


def forget_run(run_id: str) -> None:
    if st.session_state.get("run_id") == run_id:
        st.session_state.run_id = None
    if st.query_params.get("run") == run_id:
        del st.query_params["run"]


def delete_runs(run_ids: list[str]) -> list[tuple[bool, str]]:
    """Delete your finished runs; stop the ones still queued or running (deleted once they have stopped).

    Returns (deleted, one plain sentence) per run for the page to show."""
    store, runner = services.store(), services.runner()
    me = services.owner()
    notes = []
    for run_id in run_ids:
        try:
            summary = store.load(run_id, with_steps=False)
        except RunNotFound:
            notes.append((True, f"Run {run_id[-6:]} was already gone."))
            continue
        if summary.owner != me:
            notes.append((False, f"Run {summary.name} is not yours: only its owner can delete it."))
            continue
        was = summary.status
        if was in ACTIVE:
            runner.stop(run_id, owner=me)
            if store.status(run_id) in ACTIVE:   # a running run needs a moment to stop cleanly
                notes.append((False, f"Run {summary.name} was still {was}: it is stopping now. "
                                     "Delete it once it shows as stopped."))
                continue
        store.delete(run_id, owner=me)
        forget_run(run_id)
        notes.append((True, f"Stopped and deleted run {summary.name} (it was still {was})." if was in ACTIVE
                      else f"Deleted run {summary.name}."))
    return notes


# --- a lab page's run: one button that queues a plan, and how often its live view refreshes ---------
def _newest_runs_of(kind: str, limit: int = 30) -> list:
    return [r for r in services.store().list(owner=services.owner(), limit=limit) if r.kind == kind]


def _same_plan(stored: str, key: str) -> bool:
    try:
        return Plan.from_json(stored).to_json() == key   # through Plan: older rows may lack newer defaults
    except (TLCoreError, ValueError, TypeError):
        return False


def seed_controls(kind: str, defaults: dict, from_plan) -> None:
    """A lab page's controls for a new session (a reload, a second tab): the settings of this person's
    newest run of `kind` (`from_plan(plan) -> {widget key: value}`), else `defaults`. So the controls
    on screen are the ones that made the run the page goes on to show. Widgets keyed this way take
    no `value=` of their own."""
    flag = f"seeded:{kind}"
    if not st.session_state.get(flag):
        st.session_state[flag] = True
        newest = _newest_runs_of(kind, limit=50)
        if newest:
            try:
                defaults = {**defaults, **from_plan(Plan.from_json(newest[0].plan_json))}
            except (TLCoreError, ValueError, TypeError):   # a stored plan this version no longer reads seeds nothing
                pass
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)


def queue_button(label: str, plan, runs_key: str, **button_kw) -> str | None:
    """A button that queues `plan` as this browser's run. Returns the run this session started for
    that very plan (None until the first click): session state remembers one run per plan under
    `runs_key`, so changing a control shows that plan's run, or none yet. A new session (a reload)
    finds this person's newest run of exactly this plan in the store."""
    runs = st.session_state.setdefault(runs_key, {})
    key = plan.to_json()
    if key not in runs:   # looked up once per plan and session, from the run list alone
        runs[key] = next((r.id for r in _newest_runs_of(plan.kind) if _same_plan(r.plan_json, key)), None)
    if st.button(label, **button_kw):
        try:
            runs[key] = services.runner().submit(plan, owner=services.owner())
        except TLCoreError as e:
            st.error(str(e))
    return runs.get(key)


def refresh_while_active(run_id: str | None) -> float | None:
    """`run_every` for a fragment that follows a run: once a second while it is queued or running."""
    try:
        return 1.0 if run_id and services.store().status(run_id) in ("queued", "running") else None
    except RunNotFound:   # deleted meanwhile (Compare, another tab): nothing to follow
        return None


def live(run_id: str, draw: Callable[[Run], None] = lambda run: None, *, what: str = "The run",
         stop: str | None = None) -> None:
    """The live part of a lab page, the skeleton every lab page shares: polls the store once a second
    while the run is queued or running and draws its progress line (a Stop button labelled `stop` while
    it is active, if given), the engine's message if it failed, then `draw(run)`: the page's own part,
    from the run as the store holds it (results, no steps). When the run ends the whole page runs once
    more, so what the page draws below from the finished run appears, and the polling stops.

        plan = make_plan(...)                                  # the page's controls; st.stop() on a PlanError
        run_id = widgets.queue_button("Run it", plan, "my_runs", type="primary")
        def draw(run): st.dataframe([r.values for r in run.results], hide_index=True)
        if run_id:
            widgets.live(run_id, draw, what="The comparison", stop="Stop")
    """
    was_active = refresh_while_active(run_id) is not None

    @st.fragment(run_every=1.0 if was_active else None)
    def _live() -> None:
        try:
            run = services.store().load(run_id, with_steps=False)
        except RunNotFound:
            st.info("This run no longer exists: it was deleted.")
            return
        progress(run)
        if run.active and stop and st.button(stop, key=f"stop-{run_id}"):
            services.store().request_stop(run_id, owner=services.owner())
        if run.status == "failed":
            st.error(f"{what} failed: {run.message}")
        draw(run)
        if was_active and not run.active:
            st.rerun()   # once: the page below reads the finished run, and this fragment stops polling

    with st.container():   # a fragment's id is its function and its place: one place per call
        _live()


def lab_results(run: Run) -> None:
    """A lab run on a page made for training runs (Results): its kind's title, headline numbers and the
    result tables its kind declares, with the page where the lab draws it properly."""
    st.subheader(f"{ui_results.kind_title(run)}: {run_title(run)}")
    st.caption("This run comes from a lab, which has no confusion matrix of its own: its results are below, "
               "and its lab page draws them.")
    numbers = {k: v for k, v in run.metrics.items() if isinstance(v, (int, float))}
    if numbers:
        st.dataframe(pd.DataFrame([numbers]).style.format(precision=3, thousands=","), hide_index=True,
                     key=f"lab-metrics-{run.id}")
    for schema, table in ui_results.result_tables(run):
        st.markdown(f"**{schema.replace('_', ' ')}**")
        st.dataframe(table.style.format(precision=3, thousands=","), hide_index=True, key=f"lab-{schema}-{run.id}")
