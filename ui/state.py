"""The plan lives in session state and in the page URL (st.query_params), so a teacher can send one
link and every student opens the same experiment. `hide=field,field` hides controls a lesson does
not need; `lesson=1` locks the plan to the link.

Streamlit clears the query parameters whenever the learner moves to another page, so every page
calls `start_page()` first: it remembers the teacher's settings in session state the first time
they are read and writes them, and the plan, back into the address bar.

Controls are keyed widgets whose value lives in session state (`control`): the plan sets a widget's
value only when the plan changed from somewhere else (a link, another page, "Set up this plan").
A widget given `value=` from the plan on every rerun would be a *new* widget each time the plan
changed, and Streamlit would throw away the learner's next change to it.
"""
from __future__ import annotations

import dataclasses
import typing
import urllib.parse
from typing import Any

import streamlit as st

from tlcore import uploads
from tlcore.errors import PlanError, TLCoreError
from tlcore.train.plan import Plan, default_image_size

from . import controls, services

_FIELDS = {f.name: f for f in dataclasses.fields(Plan)}
_HINTS = typing.get_type_hints(Plan)
TEACHER_KEYS = ("hide", "lesson")
UPLOAD_PARAM = "upload"      # a link's dataset: your own upload's reference, or a share token
_SYNCED = "_controls_synced"  # field -> the plan value each widget was last set from or wrote
_MISSING = object()


def default_plan() -> Plan:
    return Plan(image_size=default_image_size())


def _parse(name: str, text: str):
    hint = _HINTS[name]
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(text)
    args = typing.get_args(hint)
    if hint is int or int in args:
        return None if text in ("", "none", "None") and type(None) in args else int(text)
    if hint is float:
        return float(text)
    return text


def host_limits() -> dict[str, float]:
    """Upper bounds the host sets on some controls (TLCORE_MAX_EPOCHS)."""
    most = services.runner().limits.max_epochs
    return {"epochs": most} if most else {}


def link_value(name: str, text: str) -> tuple[Any, str | None]:
    """(value, None) for a link's value that its control could set, else (None, why not).

    The one place a link's text becomes a plan value: same bounds as the widgets (controls.CONTROLS)."""
    if name in controls.NEVER_FROM_LINK:
        return None, "links carry an upload reference, never a path or a name"
    try:
        value = _parse(name, text)
    except ValueError:
        return None, "not a valid value"
    if name == "device" and value != "auto" and value not in services.runner().devices():
        return None, "this server has no such device"   # it would queue, then fail
    c = controls.CONTROLS.get(name)
    if c is not None:
        if c.zero_is_none and value == 0:
            value = None
        why = c.check(value, host_limits().get(name))
        if why:
            return None, why
    return value, None


def _ignored(name: str, text: str, why: str) -> None:
    shown = text if len(text) <= 40 else text[:40] + "…"
    st.warning(f"Ignored the link's value for {name}: {shown!r} ({why}).")


def _link_dataset(base: dict) -> None:
    """A link's `upload=` reference, resolved for this session only (its own uploads, or a share)."""
    ref = st.query_params.get(UPLOAD_PARAM)
    if not ref and base["dataset"] != "folder":
        return
    try:
        u = uploads.resolve(ref or "", services.owner())
    except uploads.UploadNotFound as e:
        if ref:
            st.warning(f"Ignored the link's dataset: {e}.")
        elif "dataset_path" not in st.query_params:   # that one has had its note already
            st.warning("Ignored the link's dataset: it names no upload. Upload your images on the Data page.")
        base.update(dataset=default_plan().dataset, dataset_path="", dataset_name="")
        return
    base.update(dataset="folder", dataset_path=str(u.path), dataset_name=u.name)


def _from_url() -> Plan:
    base = default_plan().to_dict()
    for name in _FIELDS:
        if name in st.query_params:
            value, why = link_value(name, st.query_params[name])
            if why and name in ("kind", "options"):
                _ignored(name, st.query_params[name], "a lab's page builds its own plans")
            elif why and name in controls.NEVER_FROM_LINK:
                st.warning("Ignored the link's dataset folder: links name an upload by its reference, never a "
                           "folder on the server. Upload the images on the Data page instead.")
            elif why:
                _ignored(name, st.query_params[name], why)
            else:
                base[name] = value
    _link_dataset(base)
    # The plan's own rules (choices from the registries, combinations): drop each field it refuses.
    for _ in range(len(_FIELDS)):
        try:
            return Plan.from_dict(base)
        except PlanError as e:
            if e.field not in base or base[e.field] == default_plan().to_dict()[e.field]:
                break
            _ignored(e.field, str(base[e.field]), e.message)
            base[e.field] = default_plan().to_dict()[e.field]
    st.warning("The link's plan was not valid; starting from the default instead.")
    return default_plan()


def _from_run_link() -> Plan | None:
    """A link to a run (`/train?run=<id>`) that carries no plan of its own: that run's plan, so the
    controls show the settings that made the run on screen, and Start trains the same plan again.

    A link with plan fields keeps them (a reload after changing a control after Start). An upload
    the run trained on is kept only when this browser may use it (its own, or a share)."""
    run_id = st.query_params.get("run")
    if not run_id or any(name in st.query_params for name in (*_FIELDS, UPLOAD_PARAM)):
        return None
    from tlcore.runs import RunNotFound
    try:
        run = services.store().load(run_id, with_steps=False)
    except (RunNotFound, TLCoreError, ValueError):
        return None   # the Train page says the run is gone
    if run.plan.kind != "train":
        return None
    seeded = run.plan
    if seeded.dataset == "folder" and uploads.reference_of(seeded.dataset_path, services.owner()) is None:
        st.warning("This run trained on someone else's private images: the controls show its settings on "
                   "the default dataset instead.")
        seeded = seeded.replace(dataset=default_plan().dataset, dataset_path="", dataset_name="")
    return seeded


def plan() -> Plan:
    if "plan" not in st.session_state:
        st.session_state.plan = (_from_run_link() or _from_url()).to_dict()
    return Plan.from_dict(st.session_state.plan)


def set_plan(new: Plan) -> None:
    st.session_state.plan = new.to_dict()
    _sync_url(new)


def plan_params(p: Plan) -> dict[str, str]:
    """The plan as URL parameters: only the fields that differ from the default plan, never a path."""
    default = default_plan().to_dict()
    return {name: str(value) for name, value in p.to_dict().items()
            if value != default[name] and name not in controls.NEVER_FROM_LINK}


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
    ref = uploads.reference_of(p.dataset_path, services.owner()) if p.dataset == "folder" else None
    _set_param(UPLOAD_PARAM, ref)
    for name, value in teacher().items():
        _set_param(name, value)


def teacher() -> dict[str, str]:
    """The teacher's `hide` and `lesson` settings, read from the link once and then kept for the session."""
    if "teacher" not in st.session_state:
        st.session_state.teacher = {k: st.query_params[k][:500] for k in TEACHER_KEYS if st.query_params.get(k)}
    return st.session_state.teacher


def start_page() -> Plan:
    """Call first on every page: who you are, the teacher's settings and the plan in the address bar."""
    services.keep_identity()
    teacher()
    p = plan()
    _sync_url(p)
    return p


def control(name: str, where: Any = None, *, hi: float | None = None, spec: controls.Control | None = None) -> Any:
    """Draw the plan's control for `name` (see controls.CONTROLS); returns the value the learner chose.

    The widget keeps its own value in session state. It is set from the plan only when the plan's
    value changed since the widget last saw it, so a second change in a row is never undone.
    `spec` stands in for the table's entry where the choices come from a registry (dataset, model)."""
    c = spec or controls.CONTROLS[name]
    current = getattr(plan(), name)
    key = f"ctl.{name}"
    synced = st.session_state.setdefault(_SYNCED, {})
    top = hi if hi is not None else host_limits().get(name)
    if key not in st.session_state or synced.get(name, _MISSING) != current:
        value = c.to_widget(current, top)
        synced[name] = current
    else:
        value = st.session_state[key]   # the learner's latest choice (even one the plan refused)
    # Written every run: a widget on another page is a new widget to Streamlit, which would otherwise
    # start it at its first option instead of the value the same key held on the page before.
    st.session_state[key] = value
    value = controls.draw(c, where if where is not None else st, key=key, current=current, disabled=locked(),
                          hi=top)
    return c.from_widget(value)


def update(**changes) -> PlanError | None:
    """Apply widget values to the plan. A value the plan refuses is left out (the others still apply)
    and its error returned, so one bad choice never throws away the learner's other changes."""
    current = plan()
    pending, first_error = dict(changes), None
    while True:
        try:
            new = current.replace(**pending)
            break
        except PlanError as e:
            first_error = first_error or e
            if e.field not in pending:   # a rule about a field nobody changed: apply nothing
                new = current
                break
            pending.pop(e.field)
    if new != current:
        set_plan(new)
    else:
        _sync_url(new)
    _mark_synced(changes)
    return first_error


def _mark_synced(changes: dict) -> None:
    """The widgets for `changes` now agree with the plan (or, if it refused them, keep their value)."""
    synced = st.session_state.setdefault(_SYNCED, {})
    p = plan()
    for name in changes:
        synced[name] = getattr(p, name)


def hidden(name: str) -> bool:
    """True when the teacher's link hides this control."""
    return name in {h.strip() for h in teacher().get("hide", "").split(",") if h.strip()}


def locked() -> bool:
    """A lesson link (`lesson=1`, or `lesson=<name>`) locks the plan to the link."""
    return teacher().get("lesson", "0") not in ("", "0")


def lesson_name() -> str:
    """The lesson a run is started from, for the teacher's leaderboard: `lesson=<name>`'s name
    (`lesson=1` is the unnamed "lesson"); "" outside a lesson."""
    value = teacher().get("lesson", "")
    return "" if value in ("", "0") else ("lesson" if value == "1" else value[:100])


def share_link(p: Plan, teacher_settings: dict[str, str], base: str = "", dataset_token: str | None = None) -> str:
    """A link to this experiment: the plan and the teacher's settings, never who you are or a run.

    An uploaded dataset travels only as a share token its owner chose to make (`dataset_token`);
    without one the link leaves the dataset out and opens on the default."""
    params = plan_params(p)
    if p.dataset == "folder":
        params.pop("dataset", None)
        if dataset_token:
            params = {"dataset": "folder", UPLOAD_PARAM: dataset_token, **params}
    params.update({k: v for k, v in teacher_settings.items() if k in TEACHER_KEYS and v})
    query = urllib.parse.urlencode(params, safe=",")
    return f"{base}?{query}" if query else (base or "?")


def share_link_hint() -> None:
    """A box with the link to share (with a copy button), and how to make it a lesson link."""
    try:
        base = st.context.url or ""
    except Exception:  # noqa: BLE001 - no browser behind this session (tests, scripts)
        base = ""
    p = plan()
    with st.expander("Share this experiment", icon=":material/share:"):
        token = None
        if p.dataset == "folder":
            me = services.owner()
            ref = uploads.reference_of(p.dataset_path, me)
            already = ref is not None and ref.startswith("share-")
            if already or st.toggle(f"Include my images ({p.dataset_name or 'my upload'}) in the link",
                                    key="share_my_images", disabled=ref is None,
                                    help="Makes a read-only copy that anyone with this link can train on. "
                                         "It names no one; your other uploads stay private."):
                token = ref if already else uploads.share(ref, me)
            elif ref is not None:
                st.caption("Your images are private: without them the link opens on the default dataset.")
        st.code(share_link(p, teacher(), base, token), language=None, wrap_lines=True)
        st.caption("Send this link, not the address bar: the address bar may point at your own run and your "
                   "private uploads. Teachers: add `&hide=lr,factor` to hide controls, or `&lesson=1` to lock "
                   "the plan for a lesson.")
