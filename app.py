"""Transfer Learning Lab: `streamlit run app.py`. The pages are listed here; each lives in pages/."""
import streamlit as st

st.set_page_config(page_title="Transfer Learning Lab", page_icon="🧠", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/data.py", title="Data", icon="🖼️"),
    st.Page("pages/model.py", title="Model", icon="🧱"),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/results.py", title="Results", icon="📊"),
    st.Page("pages/compare.py", title="Compare", icon="⚖️"),
    st.Page("pages/metrics_lab.py", title="Metrics lab", icon="🧮"),
    st.Page("pages/strategy_guide.py", title="Strategy guide", icon="🧭"),
]
st.navigation(PAGES).run()
