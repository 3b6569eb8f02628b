"""Small shared pieces of the pages: step icons, time formats, tables of requests, paging."""

import json
import math
from datetime import datetime

import streamlit as st

from core import queries
from core.campaign import CHRISTMAS_2025
from ui.commands import MY_REQUESTS
from ui.services import now, read

STEP_ICONS = {
    "none": "·", "waiting": "⏳", "due": "🕒", "sending": "📤", "sent": "✉️", "delivered": "📬",
    "opened": "👀", "clicked": "🔗", "bounced": "⛔", "failed": "❌", "cancelled": "🚫", "skipped": "⏭️",
}
STATE_LABELS = {
    "none": "not planned", "waiting": "waiting for the previous step", "due": "due", "sending": "sending",
    "sent": "sent", "delivered": "delivered", "opened": "opened", "clicked": "clicked", "bounced": "bounced",
    "failed": "failed", "cancelled": "cancelled", "skipped": "skipped",
}
SEGMENT_COLORS = {"CRITICAL": "#b91c1c", "URGENT": "#ea580c", "OPTIMIZE": "#15803d"}
SEGMENT_BADGE = {"CRITICAL": "red", "URGENT": "orange", "OPTIMIZE": "green"}
STATUS_BADGE = {"active": "blue", "completed": "green", "unsubscribed": "gray", "bounced": "red",
                "cancelled": "gray", "pending": "orange", "done": "green", "failed": "red"}


def step_title(number: int) -> str:
    """'Quick wins' from the template name 'step3_quick_wins'."""
    name = CHRISTMAS_2025.step(number).template.split("_", 1)[1]
    return name.replace("_", " ").capitalize()


def legend() -> str:
    shown = ("waiting", "due", "sending", "sent", "delivered", "opened", "clicked", "failed", "bounced",
             "cancelled", "skipped")
    return " · ".join(f"{STEP_ICONS[s]} {s}" for s in shown)


def when(value: datetime | None) -> str:
    return queries.when(value)


def ago(value: datetime | None) -> str:
    return queries.relative(value, now()) if value else "—"


def page_picker(total: int, size: int, *, key: str) -> int:
    """A pager under a table; returns the 0-based offset of the chosen page."""
    pages = max(1, math.ceil(total / size))
    page = st.pagination(pages, key=key) if pages > 1 else 1
    return (page - 1) * size


def my_requests(title: str = "Your recent requests") -> None:
    """What this session asked the worker for, and what became of each request."""
    ids = st.session_state.get(MY_REQUESTS, [])
    if not ids:
        return
    rows = read(queries.actions_by_ids, ids)
    with st.expander(f"{title} ({len(rows)})", expanded=any(r["status"] == "pending" for r in rows)):
        for r in rows:
            badge = STATUS_BADGE.get(r["status"], "gray")
            st.markdown(f":{badge}-badge[{r['status']}] **{r['kind'].replace('_', ' ')}** "
                        f"· asked {ago(r['requested_at'])} · {r['result'] or 'waiting for the worker'}")


def event_detail(raw: str | None) -> str:
    """An audit event's JSON detail as 'key: value' pairs (ids left out: the row already says whose)."""
    if not raw:
        return ""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(data, dict):
        return ", ".join(f"{k}: {v}" for k, v in data.items() if k not in ("contact_id", "enrollment_id"))
    return str(data)
