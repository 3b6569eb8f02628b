"""The top of every page: page settings, the access gate, the shared sidebar, messages and confirmations.

Each page calls begin() itself rather than relying on dashboard.py to have drawn the frame:
while a pages/ folder exists, Streamlit runs a page script on its own (without the
entrypoint) until some session has called st.navigation, and AppTest does so on every
rerun. A page that frames itself is gated whichever way it was reached.
"""

import streamlit as st

from core.errors import ConfigError
from ui import access, confirm, sidebar
from ui.commands import show_flash
from ui.services import services

PAGE_CONFIG = {"page_title": "Nurture", "page_icon": "🎄", "layout": "wide"}


def dashboard_password() -> str:
    """The configured password, or stop the run with the configuration error in one sentence."""
    try:
        return services().settings.dashboard_password
    except ConfigError as exc:
        st.error(str(exc))
        st.stop()


def begin() -> None:
    """Draw the shared frame, or only the sign-in form (and stop) when this session is not let in."""
    st.set_page_config(**PAGE_CONFIG)
    if not access.gate(dashboard_password()):
        st.stop()
    sidebar.render()
    show_flash()
    confirm.render()
