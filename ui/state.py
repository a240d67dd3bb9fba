"""The plan lives in session state and in the page URL (st.query_params), so a teacher can send one
link and every student opens the same experiment. `hide=field,field` hides controls a lesson does
not need; `lesson=1` locks the plan to the link.

Streamlit clears the query parameters whenever the learner moves to another page, so every page
calls `start_page()` first: it remembers the teacher's settings in session state the first time
they are read and writes them, and the plan, back into the address bar."""
from __future__ import annotations

import dataclasses
import typing
import urllib.parse
from pathlib import Path

import streamlit as st

from tlcore.errors import PlanError
from tlcore.train.plan import Plan, default_image_size

from . import data as ui_data, services

_FIELDS = {f.name: f for f in dataclasses.fields(Plan)}
_HINTS = typing.get_type_hints(Plan)
TEACHER_KEYS = ("hide", "lesson")


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


def upload_path_allowed(path: str, uploads: Path | None = None) -> bool:
    """True when `path` lies inside the uploads folder (the only folders a link may point at)."""
    root = (uploads or ui_data.uploads_root()).resolve()
    try:
        return Path(path).expanduser().resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def _from_url() -> Plan:
    base = default_plan().to_dict()
    for name in _FIELDS:
        if name in st.query_params:
            try:
                base[name] = _parse(name, st.query_params[name])
            except ValueError:
                st.warning(f"Ignored the link's value for {name}: {st.query_params[name]!r}")
    if base["dataset_path"] and not upload_path_allowed(base["dataset_path"]):
        # A link may only point at images uploaded to this lab, never at any other folder on the server.
        st.warning("Ignored the link's dataset folder: it is not one of the lab's uploaded datasets. "
                   "Upload the images on the Data page instead.")
        base["dataset_path"] = ""
        if base["dataset"] == "folder":
            base["dataset"] = default_plan().dataset
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


def plan_params(p: Plan) -> dict[str, str]:
    """The plan as URL parameters: only the fields that differ from the default plan."""
    default = default_plan().to_dict()
    return {name: str(value) for name, value in p.to_dict().items() if value != default[name]}


def _set_param(name: str, value: str | None) -> None:
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def _sync_url(p: Plan) -> None:
    params = plan_params(p)
    for name in _FIELDS:
        _set_param(name, params.get(name))
    for name, value in teacher().items():
        _set_param(name, value)


def teacher() -> dict[str, str]:
    """The teacher's `hide` and `lesson` settings, read from the link once and then kept for the session."""
    if "teacher" not in st.session_state:
        st.session_state.teacher = {k: st.query_params[k] for k in TEACHER_KEYS if st.query_params.get(k)}
    return st.session_state.teacher


def start_page() -> Plan:
    """Call first on every page: keeps who you are, the teacher's settings and the plan in the address bar."""
    services.owner()
    teacher()
    p = plan()
    _sync_url(p)
    return p


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
    return name in {h.strip() for h in teacher().get("hide", "").split(",") if h.strip()}


def locked() -> bool:
    return teacher().get("lesson") == "1"


def share_link(p: Plan, teacher_settings: dict[str, str], base: str = "") -> str:
    """A link to this experiment: the plan and the teacher's settings, never who you are (`me`) or a run."""
    params = {**plan_params(p), **{k: v for k, v in teacher_settings.items() if k in TEACHER_KEYS and v}}
    query = urllib.parse.urlencode(params, safe=",")
    return f"{base}?{query}" if query else (base or "?")


def share_link_hint() -> None:
    """A box with the link to share (with a copy button), and how to make it a lesson link."""
    try:
        base = st.context.url or ""
    except Exception:  # no browser behind this session (tests, scripts)
        base = ""
    with st.expander("Share this experiment", icon=":material/share:"):
        st.code(share_link(plan(), teacher(), base), language=None, wrap_lines=True)
        st.caption("Send this link, not the address bar: the address bar also holds your personal id, and "
                   "whoever opened it would see your runs as theirs. Teachers: add `&hide=lr,factor` to hide "
                   "controls, or `&lesson=1` to lock the plan for a lesson.")
