"""The plan lives in session state and in the page URL (st.query_params), so a teacher can send one
link and every student opens the same experiment. `hide=field,field` hides controls a lesson does
not need; `lesson=1` locks the plan to the link."""
from __future__ import annotations

import dataclasses
import typing

import streamlit as st

from tlcore.errors import PlanError
from tlcore.train.plan import Plan, default_image_size

_FIELDS = {f.name: f for f in dataclasses.fields(Plan)}
_HINTS = typing.get_type_hints(Plan)


def default_plan() -> Plan:
    return Plan(image_size=default_image_size())


def _parse(name: str, text: str):
    hint = _HINTS[name]
    if hint is bool:
        return text.lower() in ("1", "true", "yes", "on")
    args = typing.get_args(hint)
    if hint is int or int in args:
        return None if text in ("", "none", "None") and type(None) in args else int(text)
    if hint is float:
        return float(text)
    return text


def _from_url() -> Plan:
    base = default_plan().to_dict()
    for name in _FIELDS:
        if name in st.query_params:
            try:
                base[name] = _parse(name, st.query_params[name])
            except ValueError:
                st.warning(f"Ignored the link's value for {name}: {st.query_params[name]!r}")
    try:
        return Plan.from_dict(base)
    except PlanError as e:
        st.warning(f"The link's plan was not valid ({e}); starting from the default instead.")
        return default_plan()


def plan() -> Plan:
    if "plan" not in st.session_state:
        st.session_state.plan = _from_url().to_dict()
    return Plan.from_dict(st.session_state.plan)


def set_plan(new: Plan) -> None:
    st.session_state.plan = new.to_dict()
    _sync_url(new)


def _sync_url(p: Plan) -> None:
    default = default_plan().to_dict()
    for name, value in p.to_dict().items():
        if value != default[name]:
            st.query_params[name] = str(value)
        elif name in st.query_params:
            del st.query_params[name]


def update(**changes) -> PlanError | None:
    """Apply widget values to the plan; return the error (and keep the last valid plan) if invalid."""
    current = plan()
    try:
        new = current.replace(**changes)
    except PlanError as e:
        return e
    if new != current:
        set_plan(new)
    else:
        _sync_url(new)
    return None


def hidden(name: str) -> bool:
    """True when the teacher's link hides this control."""
    return name in {h.strip() for h in st.query_params.get("hide", "").split(",") if h.strip()}


def locked() -> bool:
    return st.query_params.get("lesson") == "1"


def share_link_hint() -> None:
    st.caption("The page address holds the whole plan: copy it to share this exact experiment. "
               "Add `&hide=lr,factor` to hide controls, or `&lesson=1` to lock the plan for a lesson.")
