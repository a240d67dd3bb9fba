import streamlit as st
import torch

from tlcore import plan_code, plots, progress as run_progress
from tlcore.errors import NotOwner, TLCoreError
from tlcore.labs.lr_find_figures import momentum_figure
from tlcore.models import MODELS
from tlcore.runs import RunNotFound
from tlcore.train.pipeline import what_the_network_sees
from tlcore.train.schedules import momentum_curve, plan_params
from tlcore.train.strategies import planned_lrs, steps_per_epoch
from ui import lr_find as lr_finder, services, state, widgets

state.start_page()
st.title("Train")
st.markdown("""
Choose **what to transfer**. A *feature extractor* keeps the whole pretrained backbone frozen and
trains only the new head — fast, and safe with little data. *Fine-tuning* also updates pretrained
layers, at smaller learning rates lower down (**discriminative rates**: each group gets the rate of
the group above divided by a factor, 2.6 in ULMFiT), because early layers hold generic features
worth keeping. *Gradual unfreezing* trains the head first, then opens one more group per epoch from
the top, so the new head does not wreck good features with large early gradients. The **slanted
triangular** schedule warms up quickly, then decays slowly. **One-cycle** (fastai's default) warms
up along a cosine from a 25th of the peak rate over the first quarter, then anneals to almost zero,
while the momentum moves the other way: low momentum while the rate is high keeps the steps stable.
""")
plan = state.plan()


def control(name: str) -> bool:
    return not state.hidden(name)


left, right = st.columns(2)
changes: dict = {}
with left:
    changes.update(widgets.strategy_controls(plan))
    for name in ("head", "bn", "augment"):
        if control(name):
            changes[name] = state.control(name)
with right:
    c1, c2 = st.columns(2)
    for name, where in (("epochs", c1), ("batch_size", c2), ("lr", c1), ("optimizer", c2), ("factor", c1),
                        ("schedule", c2)):
        if control(name):
            changes[name] = state.control(name, where)
    sched = changes.get("schedule", plan.schedule)
    if sched == "stlr" and control("schedule"):
        changes["cut_frac"] = state.control("cut_frac", c1)
        changes["ratio"] = state.control("ratio", c2)
    if sched == "cosine" and control("schedule"):
        changes["warmup_frac"] = state.control("warmup_frac", c1)
    if sched == "one_cycle" and control("schedule"):
        for name, where in (("pct_start", c1), ("div", c2), ("div_final", c1), ("mom_max", c2), ("mom_min", c1)):
            changes[name] = state.control(name, where)
    if control("seed"):
        changes["seed"] = state.control("seed", c2)

err = state.update(**changes)
if err is not None:
    st.error(f"This plan cannot run — {err}")
plan = state.plan()
state.share_link_hint()
with st.expander("The code for this plan", icon=":material/code:"):
    st.caption("The same run from Python (a notebook) or the shell, with only the choices that differ from the "
               "defaults written out.")
    st.code(plan_code.python_code(plan), language="python")
    st.code(plan_code.cli_command(plan), language="bash", wrap_lines=True)

# --- the schedule, drawn before anything runs -----------------------------------------------------
data = widgets.data_or_stop(plan)
if plan.uses_network:
    with st.expander("What the network sees", icon=":material/visibility:"):
        # One training image per class (up to 8), through the very crops, flips and resizing training applies.
        picks = [int((data.train_y == c).nonzero()[0]) for c in range(data.num_classes) if (data.train_y == c).any()][:8]
        draw = st.session_state.get("aug_draw", 0)
        seen = what_the_network_sees(data.train_x[picks], plan.resolved_image_size(), plan.augment,
                                     torch.Generator().manual_seed(plan.seed * 1000 + draw))
        st.plotly_chart(plots.image_grid(seen.numpy(), [int(data.train_y[i]) for i in picks], data.classes),
                        key=f"aug-{draw}")
        if plan.augment:
            st.caption(f"Each epoch draws a new random crop (35-100% of the image) and a coin-flip mirror per "
                       f"image, resized to {plan.resolved_image_size()} px: this is a fresh draw.")
            if st.button("Draw again", key="aug_again"):
                st.session_state.aug_draw = draw + 1
                st.rerun()
        else:
            st.caption(f"Augmentation is off: every epoch sees these same images, resized to "
                       f"{plan.resolved_image_size()} px. Switch on Augment to see the random crops and flips.")
if plan.uses_network and plan.head in ("linear", "mlp"):
    groups = [*MODELS[plan.model].group_names, "head"]
    spe = steps_per_epoch(len(data.train_y), plan.batch_size)
    lr_plan = planned_lrs(plan, len(groups) - 1, spe)
    st.plotly_chart(plots.lr_curves(lr_plan, groups, x=[i / spe for i in range(len(lr_plan))],
                                    title="Planned learning rate per layer group (blank = frozen)"), key="lr-plan")
    if plan.schedule == "one_cycle":
        mom = momentum_curve("one_cycle", len(lr_plan), **plan_params(plan))
        st.plotly_chart(momentum_figure(mom, [i / spe for i in range(len(mom))], plan.optimizer), key="mom-plan")
if control("lr"):   # a lesson that hides the learning rate hides its finder too
    lr_finder.box(plan)

# --- start / stop -------------------------------------------------------------------------------------
runner, store = services.runner(), services.store()
run_id = widgets.current_run_id()   # forgets (and says so) a run that no longer exists
b1, b2, _ = st.columns([1, 1, 4])
if b1.button("Start training", type="primary", disabled=err is not None):
    try:
        st.session_state.run_id = runner.submit(plan, owner=services.owner(), lesson=state.lesson_name())
        st.query_params["run"] = st.session_state.run_id   # a reload comes back to it; never in the shared link
    except TLCoreError as e:   # a plan over the host's limits, or this browser's queue already full
        st.error(str(e))
st.caption(f"Runs queue for the device; each browser may have up to {runner.max_queued_per_owner} waiting at once.")
run_id = st.session_state.get("run_id")
try:
    status = store.status(run_id) if run_id else None
except RunNotFound:
    status = None
active = status in ("queued", "running")
yours = True   # nothing to stop is nobody else's; a bare expression here would be written out as "None"
if active:
    try:
        store.check_owner(run_id, services.owner(), "stop")
    except (NotOwner, RunNotFound):
        yours = False
if b2.button("Stop", disabled=not (active and yours),
             help=None if yours else "Only the browser that started this run can stop it."):
    try:
        runner.stop(run_id, owner=services.owner())
    except NotOwner as e:
        st.error(str(e))


def watched(run_id: str):
    """The run, reading only the events added since the last poll; None, with a note, once it is deleted
    (e.g. on the Compare page) while we watch it."""
    try:
        return widgets.follow(run_id)
    except RunNotFound:
        if active:
            st.rerun()   # stop polling; the page then says the run is gone
        widgets.forget_run(run_id)
        st.info("This run no longer exists: it was deleted.")
        return None


def headline(run) -> None:
    """The last epoch's figures in a row: accuracy, F1, and for a network where it is and how fast."""
    last = run.last_epoch
    if last is None:
        return
    figures = [("Validation accuracy", f"{last.val_acc:.3f}"), ("Macro F1", f"{last.macro_f1:.3f}")]
    if run.plan.strategy == "pixel_svm":
        figures.append(("Classifier", "linear SVM on raw pixels"))
    else:
        figures.append(("Epoch", f"{last.epoch + 1} / {run.plan.epochs}"))
        figures += run_progress.speed_figures(last)
    for col, (label, value) in zip(st.columns(len(figures)), figures):
        col.metric(label, value)


def charts(run) -> None:
    figs = widgets.live_figures(run)
    svm = run.plan.strategy == "pixel_svm"
    c1, c2 = st.columns(2)
    with c1:
        if svm:
            st.caption("An SVM on raw pixels is fitted in one go: it has no epochs, no loss curve and no learning "
                       "rate. Its accuracy and confusion matrix are the whole result; compare it with a network "
                       "on the Compare page.")
        else:
            st.plotly_chart(figs["loss"], key=f"loss-{run.id}")
            widgets.draw_lr_actual(run)
    with c2:
        if "confusion" in figs:
            st.plotly_chart(figs["confusion"], key=f"cm-{run.id}")
        if not svm:
            st.plotly_chart(figs["accuracy"], key=f"acc-{run.id}")


# A queued run has nothing to draw but its place in the queue: its page looks every 2 s and draws no
# charts, and goes on at that pace once the run starts (a whole-page rerun then would cost the server
# more than the run). In a class most pages wait in the queue, and their charts redrawn every second
# were most of the server's work while the runs waited for the CPU (issue 29).
@st.fragment(run_every={"queued": 2.0, "running": 1.0}.get(status))
def live(run_id: str) -> None:
    if status == "queued":
        try:
            waiting = store.load(run_id, with_steps=False)
        except RunNotFound:
            waiting = None
        if waiting is not None and waiting.status == "queued":
            st.subheader(f"Run {widgets.run_title(waiting)}")
            widgets.progress(waiting)
            return
    run = watched(run_id)
    if run is None:
        return
    st.subheader(f"Run {widgets.run_title(run)}")
    if run.ended is not None:
        msg = f"Run {run.status}" + (f": {run.message}" if run.message else f" in {run.ended.seconds:.1f} s.")
        {"finished": st.success, "stopped": st.warning, "failed": st.error}[run.status](msg)
        if active:
            st.rerun()  # once: the page stops polling
    widgets.progress(run)
    headline(run)
    charts(run)


if run_id:
    live(run_id)
    st.page_link("views/results.py", label="Open the results →", icon=":material/analytics:")
