"""Process-wide objects, one per server (the run store and the job runner), and who this browser is."""
from __future__ import annotations

import hashlib
import json
import re
import secrets

import streamlit as st

from tlcore import labs
from tlcore.jobs import JobRunner
from tlcore.runs import RunStore

COOKIE = "tl_id"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")
COOKIE_DAYS = 180


@st.cache_resource
def store() -> RunStore:
    return RunStore()


@st.cache_resource
def runner() -> JobRunner:
    # Lives as long as the server: closing a tab never kills a run.
    return JobRunner(store(), train_fn=labs.run_plan)   # every kind, the labs' included


def owner() -> str:
    """Who this browser is, so a student sees (and alone may stop or delete) their own runs.

    Never in a URL, so no link a student copies can hand their runs or uploads to someone else:
    - a host that configures OpenID Connect (`st.login`) gets the signed-in account;
    - otherwise an unguessable random token kept in a browser cookie, set by a few lines of
      JavaScript on the first visit (the session itself remembers it until then, so a first visit
      works at once) and read back from the request on the next visit (`st.context.cookies`).
    An old link's `me=` is dropped and grants nothing."""
    if "owner" not in st.session_state:
        st.session_state.owner = _account() or _cookie() or _new_token()
    return st.session_state.owner


def keep_identity() -> None:
    """Called by every page (not from fragments): drop an old link's `me=`, and on a first visit
    leave the cookie for the next one."""
    me = owner()
    if "me" in st.query_params:
        del st.query_params["me"]
    if st.session_state.get("owner_cookie_due"):
        _write_cookie(me)


def _account() -> str | None:
    """A stable, non-reversible id for the signed-in account when the host configured OIDC."""
    try:
        if not st.user.is_logged_in:
            return None
        info = st.user.to_dict()
    except Exception:  # noqa: BLE001 - no auth configured (or an older Streamlit): anonymous it is
        return None
    subject = info.get("sub") or info.get("email")
    if not subject:
        return None
    return "oidc-" + hashlib.sha256(f"{info.get('iss', '')}|{subject}".encode()).hexdigest()[:32]


def _cookie() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no browser behind this session (tests, scripts)
        return None
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def _new_token() -> str:
    st.session_state.owner_cookie_due = True
    return secrets.token_urlsafe(24)


def _write_cookie(token: str) -> None:
    """Leave the token in the browser for the next visit (SameSite=Strict: never sent by other sites)."""
    js = (f"document.cookie = {json.dumps(COOKIE)} + '=' + {json.dumps(token)} + "
          f"'; path=/; max-age={COOKIE_DAYS * 86400}; SameSite=Strict' + "
          "(location.protocol === 'https:' ? '; Secure' : '');")
    st.sidebar.html(f"<script>{js}</script>", unsafe_allow_javascript=True)
