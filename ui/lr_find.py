"""The Train page's learning-rate finder: run the sweep through the queue, draw it, and let one
click put a suggested rate into the plan (and so into the address bar and the lr control)."""
from __future__ import annotations

import math

import streamlit as st

from tlcore import plots
from tlcore.errors import TLCoreError
from tlcore.labs import lr_find
from tlcore.labs.lr_find_figures import lr_find_figure
from tlcore.runs import RunNotFound
from tlcore.train.plan import Plan

from . import controls, services, state, widgets

RUN_KEY = "lr_find_run"
EXPLAIN = """
The **learning-rate finder** (Leslie Smith's range test, as fastai runs it) trains for up to 100
steps while the rate grows exponentially from 1e-7 to 10, and records the loss. While the rate is too
small the loss barely moves; then it falls fast; past a point it blows up (the sweep stops once the
smoothed loss is four times its lowest). A good rate sits where the loss is still falling steeply,
*before* the bottom. The weights are put back afterwards, so the sweep changes nothing in your run.
It sweeps what your strategy trains first: for a feature extractor, the head on stored features.
"""


def rounded(lr: float) -> float:
    """A suggestion as the plan takes it: two significant figures, inside the lr control's range."""
    lo, hi = controls.CONTROLS["lr"].lo, controls.CONTROLS["lr"].hi
    value = min(max(lr, lo), hi)
    digits = 1 - int(math.floor(math.log10(value)))
    return float(round(value, digits))


def sweep_plan(plan: Plan) -> Plan:
    return plan.replace(kind="lr_find", options={})


def _latest_sweep(plan: Plan) -> str | None:
    """This person's newest sweep for the same model, strategy and dataset: what a reload or a second
    tab shows again, since the session that started it is gone."""
    for r in services.store().list(owner=services.owner(), limit=100):
        if r.kind == "lr_find" and (r.model, r.strategy, r.dataset) == (plan.model, plan.strategy, plan.dataset):
            return r.id
    return None


def box(plan: Plan) -> None:
    if RUN_KEY not in st.session_state and (sweep := _latest_sweep(plan)):
        st.session_state[RUN_KEY] = sweep
    with st.expander("Find a learning rate", icon=":material/search:", expanded=RUN_KEY in st.session_state):
        st.markdown(EXPLAIN)
        if not plan.uses_network or plan.head not in ("linear", "mlp"):
            st.caption("This plan trains no network with a learning rate (an SVM on pixels, or a scikit-learn "
                       "head): there is nothing to sweep.")
            return
        if st.button("Run the learning-rate finder", key="lr-find-start", disabled=state.locked(),
                     help="Queued like any run; a feature extractor's sweep takes seconds once its "
                          "features are stored."):
            try:
                st.session_state[RUN_KEY] = services.runner().submit(sweep_plan(plan), owner=services.owner(),
                                                                     lesson=state.lesson_name())
            except TLCoreError as e:
                st.error(str(e))
        run_id = st.session_state.get(RUN_KEY)
        if run_id:
            _follow(run_id)


def _active(run_id: str) -> bool:
    try:
        return services.store().status(run_id) in ("queued", "running")
    except RunNotFound:
        return False


def _follow(run_id: str) -> None:
    @st.fragment(run_every=1.0 if _active(run_id) else None)
    def show() -> None:
        try:
            run = services.store().load(run_id, with_steps=False)
        except RunNotFound:
            st.session_state.pop(RUN_KEY, None)
            st.info("That learning-rate sweep no longer exists: it was deleted.")
            return
        if run.active:
            done = [p for p in run.phases if p.name == "lr_find"]
            frac = done[-1].done / max(done[-1].total, 1) if done else 0.0
            st.progress(frac, text="Sweeping the learning rate…" if done else "Preparing the data and features…")
            return
        if run.status != "finished":
            st.error(f"The sweep {run.status}: {run.message}" if run.message else f"The sweep {run.status}.")
            return
        if lr_find.found(run) is None:
            st.warning("The sweep finished without a curve to show.")
            return
        st.rerun()   # once it has ended: the whole page redraws with the result (and stops polling)
    found = _found(run_id)
    if found is None:
        show()
        return
    _result(run_id, found)


def _found(run_id: str):
    try:
        run = services.store().load(run_id, with_steps=False)
    except RunNotFound:
        return None
    return lr_find.found(run) if run.status == "finished" else None


def _result(run_id: str, found) -> None:
    current = state.plan()
    run = services.store().load(run_id, with_steps=False)
    swept = run.plan
    offered = {name: rounded(found.suggestions[name][0]) for name in lr_find.SUGGESTIONS}
    st.plotly_chart(lr_find_figure(found.lrs, found.losses, found.smoothed, found.suggestions, current.lr,
                                   offered=offered), key=f"lr-find-{run_id}")
    st.caption("The thick line is a moving average of the batch losses (the faint line): it smooths the noise, "
               "and being an average of the steps before, it trails the raw curve by a few dozen steps, so a "
               "blow-up shows in it a little to the right of where the batch loss jumps.")
    same = (swept.model, swept.strategy, swept.dataset, swept.head) == (current.model, current.strategy,
                                                                        current.dataset, current.head)
    if not same:
        st.caption(f"Swept for {swept.strategy.replace('_', ' ')} with {swept.model} on {swept.dataset}: your plan "
                   "has changed since; run the finder again for a rate that fits it.")
    st.markdown("Use a suggestion as the plan's learning rate (the head's; lower groups keep their factor):")
    names = (lr_find.DEFAULT, *(n for n in lr_find.SUGGESTIONS if n != lr_find.DEFAULT))
    for col, name in zip(st.columns(len(names)), names):
        lr = offered[name]
        label = f"{lr_find.SUGGESTION_TITLES[name]}: {lr:g}" + (" (default)" if name == lr_find.DEFAULT else "")
        if col.button(label, key=f"lr-use-{name}", disabled=state.locked() or math.isclose(lr, current.lr),
                      type="primary" if name == lr_find.DEFAULT else "secondary"):
            use(lr)
    clamped = [f"{lr_find.SUGGESTION_TITLES[n]} {found.suggestions[n][0]:.2g} becomes {offered[n]:g}"
               for n in names if not math.isclose(offered[n], float(f"{found.suggestions[n][0]:.2g}"))]
    if clamped:
        lo, hi = controls.CONTROLS["lr"].lo, controls.CONTROLS["lr"].hi
        st.caption(f"The learning-rate control runs from {lo:g} to {hi:g}, so a suggestion outside it is clamped: "
                   + "; ".join(clamped) + ".")
    st.caption("Why steepest first: on digits at this page's 3 epochs, training at the steepest point came within "
               "2 points of the best rate of a sweep over decades in every run tried; fastai's valley sits a decade "
               "or more lower and suits longer training.")
    side_by_side(current, offered[lr_find.DEFAULT])


COMPARE_KEY = "lr_compare"


def side_by_side(current: Plan, suggested: float) -> None:
    """fastai's habit after lr_find, in one click: train at the suggestion and at the rate in use, both
    queued like any run, their curves on one chart."""
    if math.isclose(suggested, current.lr):
        st.caption(f"Your plan already trains at the suggestion, {suggested:g}.")
    elif st.button(f"Train both: at the suggestion {suggested:g} and at your rate {current.lr:g}",
                   key="lr-compare-start", disabled=state.locked(), icon=":material/compare_arrows:"):
        try:
            st.session_state[COMPARE_KEY] = [
                services.runner().submit(current.replace(lr=lr), owner=services.owner(),
                                         label=f"{who} lr {lr:g}", lesson=state.lesson_name())
                for who, lr in (("suggested", suggested), ("your", current.lr))]
        except TLCoreError as e:
            st.error(str(e))
    ids = st.session_state.get(COMPARE_KEY)
    if ids:
        _pair(tuple(ids))


def _pair(ids: tuple[str, ...]) -> None:
    def active() -> bool:
        return any(_active(i) for i in ids)

    @st.fragment(run_every=1.0 if active() else None)
    def show() -> None:
        try:
            runs = [services.store().load(i) for i in ids]
        except RunNotFound:
            st.session_state.pop(COMPARE_KEY, None)
            st.info("One of the two runs was deleted.")
            return
        st.plotly_chart(plots.accuracy_curves([widgets.curves(r) for r in runs]), key="lr-compare-acc")
        st.plotly_chart(plots.loss_curves([widgets.curves(r) for r in runs]), key="lr-compare-loss")
        if any(r.active for r in runs):
            st.caption("Training both: " + ", ".join(f"{r.label} {r.status}" for r in runs) + ".")
            return
        st.markdown(" · ".join(
            f"**{r.label}**: " + (f"validation accuracy {r.epochs[-1].val_acc:.3f}" if r.epochs else r.status)
            for r in runs))
    show()


def use(lr: float) -> None:
    """Set the plan's lr (and so the address bar); the lr control follows it on the rerun."""
    state.set_plan(state.plan().replace(lr=lr))
    st.rerun()
