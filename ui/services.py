"""Process-wide objects, one per server: the run store and the job runner (st.cache_resource)."""
from __future__ import annotations

import secrets

import streamlit as st

from tlcore.jobs import JobRunner
from tlcore.runs import RunStore


@st.cache_resource
def store() -> RunStore:
    return RunStore()


@st.cache_resource
def runner() -> JobRunner:
    # Lives as long as the server: closing a tab never kills a run.
    return JobRunner(store())


def owner() -> str:
    """A per-browser id so a student sees their own runs first; kept in the URL (`me=`) so a reload keeps it.

    Because the address bar carries it, pages offer a separate link to share (state.share_link), built
    from the plan and the teacher's settings only, never `me` or `run`."""
    if "owner" not in st.session_state:
        st.session_state.owner = st.query_params.get("me") or secrets.token_hex(4)
    if st.query_params.get("me") != st.session_state.owner:
        st.query_params["me"] = st.session_state.owner
    return st.session_state.owner
