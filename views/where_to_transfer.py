import streamlit as st

from tlcore.labs import probe
from tlcore.labs.probe_figures import Curve, depth_chart, verdict
from tlcore.models import MODELS
from ui import data as ui_data, services, state, widgets

state.start_page()
st.title("Where to transfer")
st.markdown("""
**The rule from the lecture notes.** The first layers of a CNN learn generic things (edges, colour
blobs, simple textures) that suit almost any images; the last layers learn what was specific to
ImageNet's thousand classes. So the less your data looks like ImageNet, the lower you should cut the
network: with a small dataset unlike ImageNet, drop the higher layer groups too and put the new
classifier on an earlier one.

**Test it on your data.** The probe feeds every image through the pretrained network once and keeps
the averaged output of *each* layer group. The same linear classifier (standardised features, logistic
regression whose strength is picked by cross-validation on the training images only) is then fitted on
each group's features and scored on the validation images. Where the curve peaks is where to cut.
""")

plan = state.plan()
spec = MODELS[plan.model]
widgets.data_or_stop(plan)
st.caption(f"Data: **{ui_data.dataset_title(plan)}** · model: **{spec.title}** · {plan.resolved_image_size()} px "
           "(change them on the Data and Model pages).")
probe_plan = plan.replace(kind="probe", strategy="feature_extractor", head="linear", truncate_after="",
                          augment=False, options={})
run_id = widgets.queue_button("Run the probe", probe_plan, "probe_runs", type="primary")


if run_id:
    widgets.live(run_id, what="The probe", stop="Stop the probe")

# Every finished probe in the store can be overlaid: digits, Fashion-MNIST, an upload...
done = [s for s in widgets.runs_mine_first() if s.kind == "probe" and s.status == "finished"]
if not done:
    st.info("No probe has finished yet: run one above. Then change the dataset on the Data page and run it "
            "again to compare similar and very different data on one chart.")
    st.stop()
labels = {s.id: f"{s.dataset_name or s.dataset} · {MODELS[s.model].title if s.model in MODELS else s.model} "
                f"({s.id[-4:]})" for s in done}
default = [run_id] if run_id in labels else [done[0].id]
chosen = st.multiselect("Probes on the chart", list(labels), default=default, format_func=labels.get,
                        help="Overlay probes of different datasets to see how the curve's shape changes.")
finetunes = [s for s in widgets.runs_mine_first() if s.kind == "cut_finetune" and s.status in ("finished", "stopped")]
curves = []
for rid in chosen:
    run = services.store().load(rid, with_steps=False)
    rows, base = probe.table(run)
    ft = next((services.store().load(f.id, with_steps=False) for f in finetunes
               if f.dataset == run.plan.dataset and f.model == run.plan.model
               and services.store().load(f.id, with_steps=False).plan.dataset_path == run.plan.dataset_path), None)
    ft_rows = sorted((r.values for r in ft.results if r.schema == "cut_finetune"), key=lambda r: r["index"]) if ft else []
    curves.append((run, Curve(labels[rid], rows, base, list(ft_rows))))
st.plotly_chart(depth_chart([c for _, c in curves]), key="depth")
if not curves:
    st.stop()

run, curve = curves[0]
st.subheader(f"What {curve.label} says")
st.markdown(verdict(curve.rows, curve.pixel_svm))
st.dataframe([{"group": r["group"], "features": r["dim"], "val acc": round(r["val_acc"], 3), "C": r["c"]}
              for r in curve.rows], hide_index=True)
best = probe.best_group(curve.rows)
names = MODELS[run.plan.model].group_names
cut = best["group"] if best and best["group"] != names[-1] else ""
what = f"keep the groups up to **{cut}**" if cut else "keep every group"
st.markdown(f"**Train with this cut**: a feature-extractor plan on {run.dataset_title} that will {what} and put the "
            "new head on their pooled output.")
if st.button("Train with this cut", disabled=state.locked()):
    state.set_plan(run.plan.replace(kind="train", options={}, strategy="feature_extractor", head="linear",
                                    truncate_after=cut))
    st.toast("Plan set: open the Train page to run it.")

st.subheader("Fine-tune from here")
st.markdown("""
The frozen probe asks how good each group's features are *as they are*. Fine-tuning asks more: freeze
the groups below a cut, train the groups above it together with a new head, and score it. Comparing the
two curves is the experiment of Yosinski et al. (2014), *How transferable are features in deep neural
networks?* It trains once per cut, so it runs in the queue; results appear per cut as they finish and
the run can be stopped at any time, keeping the cuts already done.
""")
epochs = st.number_input("Epochs per cut", 1, 10, 1, disabled=state.locked())
ft_plan = run.plan.replace(kind="cut_finetune", strategy="fine_tune_top", top_groups=1,
                           options={"epochs": int(epochs)})
ft_id = widgets.queue_button("Fine-tune from every cut", ft_plan, "cut_finetune_runs")


def cuts_so_far(r) -> None:
    got = sorted((x.values for x in r.results if x.schema == "cut_finetune"), key=lambda x: x["index"])
    if got:
        st.dataframe([{"cut": g["group"], "val acc": round(g["val_acc"], 3)} for g in got], hide_index=True)


if ft_id:
    widgets.live(ft_id, cuts_so_far, what="Fine-tuning", stop="Stop fine-tuning")
