"""Who may see the dashboard: a shared password (DASHBOARD_PASSWORD) and/or OIDC via st.login.

When either is configured, nothing but the sign-in form renders until it is satisfied. When
both are, either one lets the marketer in. An OIDC account must also be on DASHBOARD_ALLOWED_EMAILS
when that list is set: the provider says who someone is, the list says whether they are the team.
"""

import hmac
import os
import threading
import time
from collections.abc import Mapping

import streamlit as st

from core.allowlist import AllowList
from ui.text import literal

ALLOWED = "_nurture_allowed"
_PASSWORD_OK = "_nurture_password_ok"
_SIGNED_OUT = "_nurture_signed_out"
ANONYMOUS_ACTOR = "dashboard"
WRONG_PASSWORD_DELAY_SECONDS = 1.0
# One for the whole process: every new browser tab (or a script's websocket) is a new session, so
# a delay per session alone would allow as many guesses a second as sessions can be opened.
_WRONG_GUESSES = threading.Lock()


def oidc_configured() -> bool:
    """True when secrets.toml has an [auth] section; st.login and st.user are only used then."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all
        return False


def unreadable_secrets() -> bool:
    """True when a secrets file is there but Streamlit could not read it (a typo in its TOML). Streamlit then
    answers as if there were no file at all, and says why only in the server's log at start-up."""
    loaded = st.secrets.load_if_toml_exists()  # False for no file and for one it could not read alike
    return not loaded and any(os.path.exists(path) for path in st.get_option("secrets.files"))


def _oidc_logged_in() -> bool:
    return oidc_configured() and bool(st.user.is_logged_in)


def _oidc_member(allow: AllowList) -> bool:
    """Signed in with OIDC as someone on the list (an empty list admits whoever the provider admits)."""
    return _oidc_logged_in() and (allow.empty or allow.admits(st.user.get("email"), st.user.get("email_verified")))


def actor() -> str:
    """Who the audit trail names for a dashboard action: the OIDC user's email, else 'dashboard'."""
    if _oidc_logged_in():
        return str(st.user.get("email") or st.user.get("name") or ANONYMOUS_ACTOR)
    return ANONYMOUS_ACTOR


def is_allowed(password: str, allow: AllowList) -> bool:
    if not password and not oidc_configured():
        return True
    return _oidc_member(allow) or (bool(password) and bool(st.session_state.get(_PASSWORD_OK)))


def gate(password: str, allow: AllowList) -> bool:
    """Decide access for this run; when refused, render only the sign-in form."""
    allowed = is_allowed(password, allow)
    st.session_state[ALLOWED] = allowed
    if not allowed:
        _sign_in_form(password)
    return allowed


def ensure_allowed() -> None:
    """Stop the run before any data is read unless this session passed the gate."""
    if not st.session_state.get(ALLOWED):
        st.stop()


def refuse_unless_allowed() -> None:
    """For callbacks, which run before the gate does: refuse any change from a session not let in."""
    if not st.session_state.get(ALLOWED):
        raise PermissionError("sign in to the dashboard first")


def sign_out() -> None:
    st.session_state[_PASSWORD_OK] = False
    st.session_state[ALLOWED] = False
    st.session_state[_SIGNED_OUT] = True
    if _oidc_logged_in():
        st.logout()


def _providers() -> list[str | None]:
    """Named providers ([auth.google] …) each get a button; a single unnamed [auth] gets one."""
    named = [name for name, value in st.secrets["auth"].items() if isinstance(value, Mapping)]
    return named or [None]


def _check_password(expected: str) -> None:
    given = st.session_state.get("password_input", "")
    # Constant time, so response timing says nothing about how much of a guess was right.
    ok = hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
    if not ok:
        # Wrong guesses take turns, a second each: one a second in all, however many sessions
        # make them. A right password never waits for the lock, so a flood of guesses cannot lock
        # the marketer out.
        with _WRONG_GUESSES:
            time.sleep(WRONG_PASSWORD_DELAY_SECONDS)
    st.session_state[_PASSWORD_OK] = ok
    if ok:
        st.session_state.pop(_SIGNED_OUT, None)
    st.session_state["password_refused"] = not ok
    st.session_state["password_input"] = ""


def _sign_in_form(password: str) -> None:
    st.title("Nurture")
    st.caption("The marketer's dashboard. Please sign in.")
    if st.session_state.get(_SIGNED_OUT):
        st.info("You have signed out. Sign in again below.", icon=":material/logout:")
    _signed_out_sidebar(password)
    if _oidc_logged_in():  # signed in, but not as anyone on DASHBOARD_ALLOWED_EMAILS
        account = st.user.get("email") or st.user.get("name") or "an account"
        st.error(f"You are signed in as {literal(account)}, which may not use this dashboard. Ask whoever runs "
                 "Nurture to add it to DASHBOARD_ALLOWED_EMAILS, or log out and sign in with another account.",
                 icon=":material/block:")
        st.button("Log out", on_click=st.logout, key="oidc_logout", icon=":material/logout:")
    elif oidc_configured():
        for provider in _providers():
            label = f"Log in with {provider.title()}" if provider else "Log in with your company account"
            st.button(label, type="primary", on_click=st.login, args=(provider,) if provider else (),
                      key=f"oidc_login{'_' + provider if provider else ''}")
    if password:
        with st.form("password_form", border=True):
            st.text_input("Password", type="password", key="password_input")
            st.form_submit_button("Sign in", on_click=_check_password, args=(password,))
        if st.session_state.get("password_refused"):
            st.error("That password is not right.")


def _signed_out_sidebar(password: str) -> None:
    """What the app is and how to get in: after a sign-out the browser keeps the sidebar open, and it stood empty."""
    ways = [way for way, on in (("your company account", oidc_configured()), ("the dashboard password", password)) if on]
    with st.sidebar:
        st.markdown("**Nurture** · Christmas 2025")
        st.caption("Signups, sends and settings of the email nurture campaign. Sign in on this page with "
                   f"{' or '.join(ways)}; whoever runs Nurture can give you access.")
