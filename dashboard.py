"""The marketer's dashboard: `streamlit run dashboard.py`.

Routes to the pages in pages/ with st.navigation. Each page opens with ui.frame.begin(): the
access gate (DASHBOARD_PASSWORD and/or OIDC) and the shared sidebar (worker heartbeat, dry-run,
test-mode and sending-paused banners).
"""

from ui import frame

frame.route()
