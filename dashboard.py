"""The marketer's dashboard: `streamlit run dashboard.py`.

The entrypoint routes to pages/ through st.navigation. Every page opens with ui.frame.begin(),
which applies the access gate and draws the shared sidebar (worker heartbeat, dry-run,
test-mode and pause banners), so a page is gated however Streamlit reaches it.
"""

import streamlit as st

from ui import access, frame

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page("pages/signups.py", title="Signups", icon=":material/group:"),
    st.Page("pages/sends.py", title="Sends", icon=":material/outgoing_mail:"),
    st.Page("pages/test_signup.py", title="Test signup", icon=":material/person_add:"),
    st.Page("pages/templates.py", title="Templates", icon=":material/drafts:"),
    st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
]

st.set_page_config(**frame.PAGE_CONFIG)
# Every page is registered even when signed out, so a page URL never falls through to
# pages/ on its own; signed out, the menu is hidden and each page draws only the form.
shown = "sidebar" if access.is_allowed(frame.dashboard_password()) else "hidden"
st.navigation(PAGES, position=shown).run()
