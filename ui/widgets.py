"""Small shared pieces of the pages: colours, step titles, times, paging and the request list."""

import json
import math
from collections import Counter
from collections.abc import Hashable
from datetime import datetime, timedelta

import streamlit as st

from core import queries
from core.campaign import CHRISTMAS_2025
from ui.commands import MY_REQUESTS, QUEUES_AN_EMAIL
from ui.services import now, read
from ui.text import literal

SEGMENT_COLORS = {"CRITICAL": "#b91c1c", "URGENT": "#ea580c", "OPTIMIZE": "#15803d"}
SEGMENT_BADGE = {"CRITICAL": "red", "URGENT": "orange", "OPTIMIZE": "green"}
REQUESTS_REFRESH_SECONDS = 3
STATUS_BADGE = {"active": "blue", "completed": "green", "unsubscribed": "gray", "bounced": "red",
                "cancelled": "gray", "pending": "orange", "done": "green", "failed": "red"}


def sequence_status(status: str, failed_steps: int) -> tuple[str, str]:
    """A sequence's status as shown, and its badge colour: 'completed · 1 failed' in orange, so a
    failed step never hides behind a green 'completed'."""
    if not failed_steps:
        return status, STATUS_BADGE.get(status, "gray")
    return f"{status} · {failed_steps} failed", "orange"


# A failure that may have reached the person anyway (core.outcomes.may_have_been_delivered): a retry or a
# resend is a new email, not a replay, so both ask the marketer to check first.
MAY_GO_TWICE = ("**It may already have been delivered** (outcome unknown): check Resend's log first, or the person "
                "may get it twice.")
STEP_PICKER_WIDTH = 190  # px: a step picker showing "6 · New year plan" in full


def step_title(number: int) -> str:
    """'Quick wins' from the template name 'step3_quick_wins'."""
    name = CHRISTMAS_2025.step(number).template.split("_", 1)[1]
    return name.replace("_", " ").capitalize()


def when(value: datetime | None) -> str:
    return queries.when(value)


def ago(value: datetime | None) -> str:
    return queries.relative(value, now()) if value else "—"


def page_picker(total: int, size: int, *, key: str, listing: Hashable = None) -> int:
    """A pager under a table; returns the 0-based offset of the chosen page.

    `listing` says what is paged (the filters): a different one starts again at page 1. Streamlit keeps the
    page while it still exists, so page 2 of every contact became page 2 of a search, its first matches unseen.
    """
    seen = f"{key}_listing"
    if st.session_state.get(seen, listing) != listing:
        st.session_state[key] = 1
    st.session_state[seen] = listing
    pages = max(1, math.ceil(total / size))
    page = st.pagination(pages, key=key) if pages > 1 else 1
    return (page - 1) * size


_WAITING = "_nurture_waiting_requests"
# How long a request keeps the list open once finished: its result (a test email "sent … via Resend") is what the
# marketer is looking for, and a list folded the moment it arrived hid it behind a click. Counted from the asking,
# which this dashboard's clock stamped (the worker's stamps its finishing).
RECENT = timedelta(minutes=5)


@st.fragment(run_every=REQUESTS_REFRESH_SECONDS)
def my_requests(title: str = "Your recent requests") -> None:
    """What this session asked the worker for, and what became of each request (kept up to date).

    When the worker finishes one, the whole page runs again, so what it changed shows at once.
    """
    ids = st.session_state.get(MY_REQUESTS, [])
    if not ids:
        return
    rows = read(queries.actions_by_ids, ids)
    paused = read(queries.system_state, now()).paused
    waiting = {r["id"] for r in rows if r["status"] == "pending"}
    finished = st.session_state.get(_WAITING, set()) - waiting
    st.session_state[_WAITING] = waiting
    if finished:
        st.rerun()
    tally = Counter(r["status"] for r in rows)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(tally.items()))
    refused = [r for r in rows if r["status"] == "failed"]
    recent = any(now() - r["requested_at"] < RECENT for r in rows)
    with st.expander(f"{title} ({summary})", expanded=bool(waiting or refused or recent)):
        for r in refused + [r for r in rows if r["status"] != "failed"]:  # refusals first: they need reading
            badge = STATUS_BADGE.get(r["status"], "gray")
            whom = " · ".join(part for part in (literal(r["email"]) if r.get("email") else "",
                                                f"step {r['step']}" if r.get("step") else "") if part)
            st.markdown(f":{badge}-badge[{r['status']}] **{r['kind'].replace('_', ' ')}** "
                        f"{'· ' + whom + ' ' if whom else ''}· asked {ago(r['requested_at'])} · "
                        f"{_outcome(r, paused)}")


def _outcome(request: dict, paused: bool) -> str:
    """What became of a request. "queued again" alone reads as on its way; while sending is paused it is not."""
    if not request["result"]:
        return "waiting for the worker"
    held = paused and request["status"] == "done" and request["kind"] in QUEUES_AN_EMAIL
    return literal(request["result"]) + ("; sending is paused, so it goes when you resume" if held else "")


def provider_trouble(count: int) -> str:
    """Emails held in backoff, in one plain sentence: the provider's own words are for whoever asks for them."""
    emails = f"{count:,} email{'s wait and are' if count != 1 else ' waits and is'}"
    return f"Resend can't take emails right now; {emails} retried automatically — none is lost."


def provider_message(reason: str | None) -> None:
    """The provider's latest answer, exactly as it came (it may hold anything, markdown included)."""
    if reason:
        st.caption(f"Resend's last answer: {literal(reason)}")


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


NO_SELECTION = {"selection": {"rows": [], "columns": [], "cells": []}}


def selection_follows(table_key: str, row_ids: list[str]) -> None:
    """Call before drawing a selectable table: when its rows are not the ones last drawn (new data,
    another page or filter), clear its selection. A table keeps a selection by row position, so a
    stale one would point at whoever now sits in that row, and an action would reach the wrong person."""
    shown_key = f"_{table_key}_rows"
    if st.session_state.get(shown_key) != row_ids:
        st.session_state[shown_key] = row_ids
        st.session_state[table_key] = NO_SELECTION
