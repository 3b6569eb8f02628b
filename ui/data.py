"""Reads worth sharing between sessions for a few seconds: the Overview's aggregates.

Each walks indexes of every send, so several marketers watching the Overview (and its
auto-refresh) share one computation per TTL instead of each running their own.
"""

import streamlit as st

from core import db, queries
from ui import access
from ui.services import database_trouble_stops_the_run, now, services

OVERVIEW_TTL_SECONDS = 5


def overview(days: int) -> dict:
    access.ensure_allowed()  # outside the cache: the gate is per session, the figures are not
    with database_trouble_stops_the_run():  # _overview reads without read(), so its trouble is caught here
        return _overview(services().settings.database_url, days)


@st.cache_data(ttl=OVERVIEW_TTL_SECONDS, show_spinner=False, max_entries=8)
def _overview(database_url: str, days: int) -> dict:
    # database_url is part of the key, so tests (and a changed configuration) never share an entry.
    with db.read_transaction(services().engine) as conn:
        return queries.overview_data(conn, now(), days=days)
