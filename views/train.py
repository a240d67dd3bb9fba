import streamlit as st

from tlcore import plots
from tlcore.errors import PlanError
from tlcore.models import MODELS
from tlcore.runs import RunNotFound
from tlcore.train.strategies import planned_lrs, steps_per_epoch
from ui import services, state, widgets

state.start_page()
st.title("Train")
st.markdown("""
Choose **what to transfer**. A *feature extractor* keeps the whole pretrained backbone frozen and
trains only the new head — fast, and safe with little data. *Fine-tuning* also updates pretrained
layers, at smaller learning rates lower down (**discriminative rates**: each group gets the rate of
the group above divided by a factor, 2.6 in ULMFiT), because early layers hold generic features
worth keeping. *Gradual unfreezing* trains the head first, then opens one more group per epoch from
the top, so the new head does not wreck good features with large early gradients. The **slanted
triangular** schedule warms up quickly, then decays slowly.
""")
plan = state.plan()
lock = state.locked()


def control(name: str) -> bool:
    return not state.hidden(name)


left, right = st.columns(2)
changes: dict = {}
with left:
    changes.update(widgets.strategy_controls(plan, lock))
    if control("head"):
        heads = ["linear", "mlp", "logreg", "linear_svm"]
        changes["head"] = st.selectbox("Head", heads, index=heads.index(plan.head), disabled=lock,
                                       help="logreg / linear_svm: a scikit-learn classifier on the frozen "
                                            "features (feature extractor only)")
    if control("bn"):
        changes["bn"] = st.radio("BatchNorm in frozen groups", ["frozen", "train"], index=["frozen", "train"].index(plan.bn),
                                 horizontal=True, disabled=lock,
                                 help="frozen: keeps ImageNet's statistics (Keras); train: its scale and shift keep "
                                      "learning (fastai)")
    if control("augment"):
        changes["augment"] = st.toggle("Augment (random crops and flips on the device)", value=plan.augment, disabled=lock)
with right:
    c1, c2 = st.columns(2)
    if control("epochs"):
        most = services.runner().limits.max_epochs or 100   # a host may allow fewer per run
        changes["epochs"] = c1.number_input("Epochs", 1, most, min(plan.epochs, most), disabled=lock)
    if control("batch_size"):
        changes["batch_size"] = c2.selectbox("Batch size", [16, 32, 64, 128, 256],
                                             index=[16, 32, 64, 128, 256].index(plan.batch_size)
                                             if plan.batch_size in (16, 32, 64, 128, 256) else 2, disabled=lock)
    if control("lr"):
        lrs = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
        changes["lr"] = c1.select_slider("Learning rate (head)", lrs, value=min(lrs, key=lambda v: abs(v - plan.lr)),
                                         format_func=lambda v: f"{v:g}", disabled=lock)
    if control("optimizer"):
        changes["optimizer"] = c2.selectbox("Optimiser", ["adamw", "sgd"], index=["adamw", "sgd"].index(plan.optimizer),
                                            disabled=lock)
    if control("factor"):
        changes["factor"] = c1.number_input("Discriminative factor (1 = off)", 1.0, 10.0, float(plan.factor), 0.1,
                                            disabled=lock)
    if control("schedule"):
        scheds = ["stlr", "constant", "cosine", "one_cycle"]
        changes["schedule"] = c2.selectbox("Schedule", scheds, index=scheds.index(plan.schedule), disabled=lock,
                                           format_func={"stlr": "slanted triangular (STLR)", "constant": "constant",
                                                        "cosine": "cosine", "one_cycle": "one-cycle"}.get)
    sched = changes.get("schedule", plan.schedule)
    if sched == "stlr" and control("schedule"):
        changes["cut_frac"] = c1.slider("STLR cut_frac (warm-up share)", 0.01, 0.5, float(plan.cut_frac), 0.01, disabled=lock)
        changes["ratio"] = c2.number_input("STLR ratio (peak ÷ lowest)", 1.0, 1000.0, float(plan.ratio), 1.0, disabled=lock)
    if sched == "cosine" and control("schedule"):
        changes["warmup_frac"] = c1.slider("Warm-up share", 0.0, 0.5, float(plan.warmup_frac), 0.01, disabled=lock)
    if control("seed"):
        changes["seed"] = c2.number_input("Seed", 0, 10**6, plan.seed, disabled=lock)

err = state.update(**changes)
if err is not None:
    st.error(f"This plan cannot run — {err}")
plan = state.plan()
state.share_link_hint()

# --- the schedule, drawn before anything runs -----------------------------------------------------
data = widgets.data_or_stop(plan)
if plan.uses_network and plan.head in ("linear", "mlp"):
    groups = [*MODELS[plan.model].group_names, "head"]
    spe = steps_per_epoch(len(data.train_y), plan.batch_size)
    lr_plan = planned_lrs(plan, len(groups) - 1, spe)
    st.plotly_chart(plots.lr_curves(lr_plan, groups, x=[i / spe for i in range(len(lr_plan))],
                                    title="Planned learning rate per layer group (blank = frozen)"), key="lr-plan")

# --- start / stop -------------------------------------------------------------------------------------
runner, store = services.runner(), services.store()
run_id = widgets.current_run_id()   # forgets (and says so) a run that no longer exists
b1, b2, _ = st.columns([1, 1, 4])
if b1.button("Start training", type="primary", disabled=err is not None):
    try:
        st.session_state.run_id = runner.submit(plan, owner=services.owner())
        st.query_params["run"] = st.session_state.run_id   # a reload comes back to it; never in the shared link
    except PlanError as e:
        st.error(str(e))
run_id = st.session_state.get("run_id")
try:
    active = bool(run_id) and store.status(run_id) in ("queued", "running")
except RunNotFound:
    active = False
if b2.button("Stop", disabled=not active):
    runner.stop(run_id, owner=services.owner())


@st.fragment(run_every=1.0 if active else None)
def live(run_id: str) -> None:
    try:
        run = store.load(run_id)
    except RunNotFound:   # deleted (e.g. on the Compare page) while we were watching it
        if active:
            st.rerun()   # stop polling; the page then says the run is gone
        widgets.forget_run(run_id)
        st.info("This run no longer exists: it was deleted.")
        return
    st.subheader(f"Run {run.name}")
    widgets.progress(run)
    if run.ended is not None:
        msg = f"Run {run.status}" + (f": {run.message}" if run.message else f" in {run.ended.seconds:.1f} s.")
        {"finished": st.success, "stopped": st.warning, "failed": st.error}[run.status](msg)
        if active:
            st.rerun()  # once: the page stops polling
    last = run.last_epoch
    if last is not None:
        m = st.columns(4)
        m[0].metric("Validation accuracy", f"{last.val_acc:.3f}")
        m[1].metric("Macro F1", f"{last.macro_f1:.3f}")
        m[2].metric("Epoch", f"{last.epoch + 1} / {run.plan.epochs}")
        m[3].metric("Images/s", f"{last.images_per_s:,.0f}")
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(plots.loss_curves([widgets.curves(run)]), key=f"loss-{run_id}")
        widgets.draw_lr_actual(run)
    with c2:
        if last is not None:
            st.plotly_chart(plots.confusion_heatmap(last.confusion, run.started.classes),
                            key=f"cm-{run_id}")
        st.plotly_chart(plots.accuracy_curves([widgets.curves(run)]), key=f"acc-{run_id}")


if run_id:
    live(run_id)
    st.page_link("views/results.py", label="Open the results →", icon=":material/analytics:")
