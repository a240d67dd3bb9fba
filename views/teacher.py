import pandas as pd
import streamlit as st

from tlcore import runlist, teacher
from tlcore.errors import TLCoreError
from ui import services, state

state.start_page()
st.title("Teacher's view")
if not teacher.teacher_key_set():
    st.info("This host has no teacher's view: set TLCORE_TEACHER_KEY in the server's environment to open one.")
    st.stop()
key = st.session_state.get("teacher_key")
if not teacher.is_teacher(key):
    typed = st.text_input("Teacher's key", type="password",
                          help="The value of TLCORE_TEACHER_KEY on this server. Students never see this page's contents.")
    if typed and typed != st.session_state.get("teacher_key_tried"):   # a rerun does not guess again
        st.session_state.teacher_key_tried = typed
        st.session_state.teacher_key_verdict = services.teacher_gate().check(
            typed, session=services.session_id(), address=services.client_address())
    verdict, wait = st.session_state.get("teacher_key_verdict", ("", 0.0)) if typed else ("", 0.0)
    if verdict == "teacher":
        st.session_state.teacher_key = typed
        st.rerun()
    elif verdict == "wrong":
        st.error(f"That is not this server's teacher key. The next key is checked in {wait:.0f} s or later.")
    elif verdict == "wait":
        st.error(f"Too many wrong keys from here: the next key is checked in {wait:.0f} s or later.")
    st.stop()

st.markdown("""
Every run on this server, live: who ran what (students appear under a short pseudonym, never
their identity), how far it got and how well it did. Stop any run from here — the one thing only a
run's owner can otherwise do. Runs started from a lesson link (`lesson=<name>` in the shared link)
are ranked on that lesson's leaderboard, one line per student, their best run.
""")
store, runner = services.store(), services.runner()


@st.fragment(run_every=2.0)
def class_runs() -> None:
    runs = store.list(limit=500)
    active = [r for r in runs if r.status in ("queued", "running")]
    c = st.columns(3)
    c[0].metric("Runs", len(runs))
    c[1].metric("Training or waiting", len(active))
    c[2].metric("Students", len({r.owner for r in runs if r.owner and r.owner != "cli"}))
    # runlist.row: a lab run by its lab and the network it really trains (as `python -m tlcore runs`).
    table = pd.DataFrame([{"who": teacher.pseudonym(r.owner), **runlist.row(r)} for r in runs])
    if not table.empty:
        st.dataframe(table, hide_index=True)
    else:
        st.caption("No runs yet.")
    lessons = teacher.lessons(runs)
    if lessons:
        st.subheader("Leaderboard")
        pick = st.selectbox("Lesson", lessons, key="teacher_lesson")
        board = teacher.leaderboard(runs, pick)
        st.dataframe(pd.DataFrame([vars(s) for s in board]).drop(columns=["run_id"]) if board else pd.DataFrame(),
                     hide_index=True)
    if active:
        st.subheader("Stop a run")
        doomed = st.selectbox("Run", [r.id for r in active], key="teacher_stop",
                              format_func=lambda i: next(f"{teacher.pseudonym(r.owner)} · {runlist.what(r)} · {runlist.network(r)} · "
                                                         f"{r.status} ({i[-6:]})" for r in active if r.id == i))
        if st.button("Stop this run"):
            try:
                runner.stop(doomed, owner="", teacher_key=st.session_state.teacher_key)
                st.toast("Stop requested: it ends within a step.")
            except TLCoreError as e:
                st.error(str(e))


class_runs()
