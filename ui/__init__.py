"""Streamlit-side helpers shared by the pages: services, the plan in session + URL, common widgets."""
