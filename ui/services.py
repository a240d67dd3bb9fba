"""Process-wide objects, one per server (the run store and the job runner), and who this browser is."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets

import streamlit as st

from tlcore import labs, teacher
from tlcore.errors import TLCoreError
from tlcore.jobs import JobRunner
from tlcore.runs import RunStore
from tlcore.store.db import DOWN, StoreDown, StoreUnavailable

COOKIE = "tl_id"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")
COOKIE_DAYS = 180


log = logging.getLogger(__name__)
RETRY_S = 3.0        # how often a page whose store went away looks again


@st.cache_resource
def _store() -> RunStore:
    return RunStore()


@st.cache_resource
def _runner() -> JobRunner:
    # Lives as long as the server: closing a tab never kills a run. It gets the store itself, never the
    # page guard below: its threads are not a page and cannot draw.
    return JobRunner(_opened(_store), train_fn=labs.run_plan)   # every kind, the labs' included


def store() -> RunStore:
    """The run store, for pages: a store that stops answering shows one plain line and retries by itself."""
    return _Guarded(_opened(_store))   # type: ignore[return-value]


def runner() -> JobRunner:
    return _Guarded(_opened(_runner))   # type: ignore[return-value]


def _opened(make):
    """The process-wide object, or the page stops with one line. A damaged SQLite file or a bad setting
    is the host's to fix, and that line names the file or the setting and what to do. A store server
    that does not answer is shown as unavailable (its host stays in the server's log) and retried."""
    try:
        return make()
    except StoreDown as e:
        _down(e)
    except StoreUnavailable as e:
        if str(e).startswith("TLCORE_STORE_URL"):
            _down(e)
        log.error("%s", e)
        st.error(str(e))
        st.stop()
    except TLCoreError as e:   # a bad TLCORE_* setting, an unreachable Ray head: the host's to fix
        log.error("%s", e)
        st.error(str(e))
        st.stop()


def _down(e: BaseException) -> None:
    """The plain line, no traceback and no host; the page looks again every few seconds and redraws
    itself once the store answers (a fragment that was running keeps its own timer)."""
    log.warning("the run store is unavailable: %s", getattr(e, "cause", e))
    st.warning(f"{DOWN[0].upper()}{DOWN[1:]}…", icon=":material/cloud_off:")
    if not _in_fragment():
        _retry()
    st.stop()


def _in_fragment() -> bool:
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    return bool(ctx is not None and getattr(ctx, "current_fragment_id", None))


@st.fragment(run_every=RETRY_S)
def _retry() -> None:
    try:
        _store().ping()
    except TLCoreError:
        return
    st.rerun()


class _Guarded:
    """A page's handle on the store or the runner: each call that meets a store gone away ends the
    page (or its fragment) with the plain line instead of a traceback."""

    def __init__(self, target) -> None:
        self._target = target

    def __getattr__(self, name: str):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except StoreDown as e:
                _down(e)
        return call


@st.cache_resource
def teacher_gate() -> teacher.KeyGate:
    """One per server: wrong teacher keys slow down per session and per client address."""
    return teacher.KeyGate()


def session_id() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else owner()


def client_address() -> str | None:
    """The browser's address as the server sees it (behind a proxy: the proxy's, for every student)."""
    try:
        return st.context.ip_address
    except Exception:  # noqa: BLE001 - no browser behind this session (tests, scripts)
        return None


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
