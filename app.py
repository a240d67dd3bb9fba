"""Transfer Learning Lab: `streamlit run app.py`. The pages are listed here; each lives in views/.

(Not `pages/`: Streamlit treats a folder of that name as the old automatic page list, which
hijacks the sidebar when someone opens a deep link such as /train.)
"""
from pathlib import Path

import streamlit as st

# A local file, not an emoji or a :material/ icon: those favicons are fetched from the internet,
# and a classroom offline would get a broken one.
ICON = str(Path(__file__).resolve().parent / "assets" / "icon.png")

st.set_page_config(page_title="Transfer Learning Lab", page_icon=ICON, layout="wide")

# Sections, so that every page is in sight: a flat list of 14 hid four behind "View 4 more".
# A new lab goes into "Labs" (and onto Home's path, views/home.py: tests/test_nav.py checks it).
SECTIONS = {
    "": [st.Page("views/home.py", title="Home", icon=":material/home:", default=True)],
    "Your experiment": [
        st.Page("views/data.py", title="Data", icon=":material/image:"),
        st.Page("views/model.py", title="Model", icon=":material/layers:"),
        st.Page("views/train.py", title="Train", icon=":material/model_training:"),
        st.Page("views/results.py", title="Results", icon=":material/analytics:"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("views/webcam.py", title="Webcam classifier", icon=":material/photo_camera:"),
    ],
    "Labs": [
        st.Page("views/where_to_transfer.py", title="Where to transfer", icon=":material/stacked_line_chart:"),
        st.Page("views/inside.py", title="Inside the CNN", icon=":material/visibility:"),
        st.Page("views/domain_adaptation.py", title="Domain adaptation", icon=":material/swap_horiz:"),
        st.Page("views/negative_transfer.py", title="Negative transfer", icon=":material/trending_down:"),
        st.Page("views/multitask.py", title="Multi-task lab", icon=":material/call_split:"),
        st.Page("views/forgetting.py", title="Forgetting", icon=":material/history:"),
        st.Page("views/few_shot.py", title="Few-shot", icon=":material/filter_1:"),
        st.Page("views/zero_shot.py", title="Zero-shot", icon=":material/visibility_off:"),
        st.Page("views/depth.py", title="Why depth was hard", icon=":material/stacked_bar_chart:"),
    ],
    "Guides": [
        st.Page("views/metrics_lab.py", title="Metrics lab", icon=":material/calculate:"),
        st.Page("views/strategy_guide.py", title="Strategy guide", icon=":material/explore:"),
    ],
}
from tlcore.teacher import teacher_key_set  # noqa: E402

if teacher_key_set():   # hosts that set TLCORE_TEACHER_KEY get the teacher's view (it asks for the key)
    SECTIONS["Teacher"] = [st.Page("views/teacher.py", title="Teacher", icon=":material/school:")]
st.navigation(SECTIONS, expanded=True).run()
