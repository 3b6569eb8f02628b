"""The frame around every page: routing, page settings, the access gate, the shared sidebar and dialogs.

dashboard.py calls route(); each page opens with begin(). While a pages/ folder sits next to
the entrypoint, Streamlit runs a requested page on its own (its legacy multipage mode) until
some session has called st.navigation, and AppTest starts every run that way. So the frame is
drawn by the page, not by the entrypoint: a page is gated however it was reached, and a run
that skipped the entrypoint registers the dashboard's own menu, which ends the legacy mode.
"""

import streamlit as st

from core.allowlist import AllowList
from ui import access, confirm, sidebar
from ui.commands import show_flash
from ui.services import refuse_if_exposed, refuse_if_secrets_unreadable, services

PAGE_CONFIG = {"page_title": "Nurture", "page_icon": "🎄", "layout": "wide"}
_ENTERED = "_nurture_entered_via_dashboard"


def pages() -> list:
    return [
        st.Page("pages/overview.py", title="Overview", icon=":material/monitoring:", default=True),
        st.Page("pages/signups.py", title="Signups", icon=":material/group:"),
        st.Page("pages/sends.py", title="Sends", icon=":material/outgoing_mail:"),
        st.Page("pages/test_signup.py", title="Test signup", icon=":material/person_add:"),
        st.Page("pages/templates.py", title="Templates", icon=":material/drafts:"),
        st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
    ]


def _sign_in_rules() -> tuple[str, AllowList]:
    """The password and the OIDC allow-list (services() stops the run first if the configuration or database
    is at fault, and so does a secrets file whose [auth] Streamlit could not read)."""
    settings = services(before_stopping=_menu_hidden).settings
    refuse_if_secrets_unreadable(before_stopping=_menu_hidden)
    return settings.dashboard_password, settings.dashboard_allow_list


def _menu_hidden() -> None:
    # A run stopped before st.navigation (database unreachable, bad settings) fell back to Streamlit's own
    # list of the files in pages/ ("dashboard", "overview", "test signup"...), pages that only repeat the error.
    st.navigation(pages(), position="hidden")


def _navigation():
    # Every page is registered even when signed out (with the menu hidden), so no page URL
    # ever falls through to Streamlit's own page list.
    shown = "sidebar" if access.is_allowed(*_sign_in_rules()) else "hidden"
    return st.navigation(pages(), position=shown)


def route() -> None:
    """The entrypoint's work: page settings and the menu, then the chosen page."""
    st.set_page_config(**PAGE_CONFIG)
    st.session_state[_ENTERED] = True
    _navigation().run()


def begin() -> None:
    """Draw the shared frame, or only the sign-in form (and stop) when this session is not let in."""
    if not st.session_state.pop(_ENTERED, False):
        st.set_page_config(**PAGE_CONFIG)
        _navigation()  # this page is already running: only the menu is replaced
    refuse_if_exposed()  # once a run, before the gate: an exposed, unlocked dashboard shows nothing at all
    if not access.gate(*_sign_in_rules()):
        st.stop()
    sidebar.render()
    show_flash()
    confirm.render()
