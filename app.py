"""Transfer Learning Lab: `streamlit run app.py`. The pages are listed here; each lives in pages/."""
import streamlit as st

st.set_page_config(page_title="Transfer Learning Lab", page_icon=":material/psychology:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/image:"),
    st.Page("pages/model.py", title="Model", icon=":material/layers:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/results.py", title="Results", icon=":material/analytics:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/metrics_lab.py", title="Metrics lab", icon=":material/calculate:"),
    st.Page("pages/strategy_guide.py", title="Strategy guide", icon=":material/explore:"),
]
st.navigation(PAGES).run()
