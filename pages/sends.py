"""Sends: the queue. What is due, what is being sent, what failed and why (with retry), what just went."""

import pandas as pd
import streamlit as st

from core import queries
from core.outcomes import may_have_been_delivered
from ui import confirm, frame
from ui.commands import Command
from ui.services import now, read
from ui.text import literal
from ui.widgets import MAY_GO_TWICE, ago, my_requests, page_picker, selection_follows, step_title, when

PAGE_SIZE = 50
# px: the provider's message as wide as leaves room for every other Failed column in a 1366-pixel window
# ("large", 400 px, pushed attempts past the edge); the selected rows' messages are shown in full below.
MESSAGE_WIDTH = 300
# The worker changes the queue by itself: the summary and the lists it fills are redrawn this often.
# Not Failed, whose selection and Retry buttons work through full reruns (the confirmation dialog).
REFRESH_SECONDS = 10

frame.begin()
st.title("Sends")


def _queue_summary(c: dict) -> str:
    """Why 'queued' is smaller than Overview's 'scheduled': the queue holds each person's next email only."""
    people = f"{c['due']:,} {'person has' if c['due'] == 1 else 'people have'} a next email queued"
    soon = f"{c['due_next_hour']:,}" if c["due_next_hour"] else "none"
    return (f"{people} ({c['scheduled']:,} email{'s' if c['scheduled'] != 1 else ''} scheduled in all): "
            f"{c['due_now']:,} due now, {soon} more within the hour")


def _counted_once() -> dict:
    """The queue counts of a whole run, for the summary and for each list's pager. Each takes its figure out,
    so a fragment's own rerun, which is handed this same dict again, finds it gone and counts afresh: every
    list was counted twice a load, once for the summary and once for its pager."""
    counts = read(queries.queue_counts, now())
    return {"summary": counts, **{name: counts[name] for name in queries.LISTS}}


@st.fragment(run_every=REFRESH_SECONDS)
def _summary(counted: dict) -> None:
    counts = counted.pop("summary", None) or read(queries.queue_counts, now())
    st.caption(f"{_queue_summary(counts)} · {counts['sending']:,} being sent · {counts['failed']:,} failed · "
               f"{counts['sent']:,} sent in the last 24 h · times in UTC")


counted = _counted_once()
_summary(counted)


def _page(name: str, counted: dict):
    """A container for the list, with its pager drawn below it, and the list's rows for the chosen page."""
    area = st.container()
    total = counted.pop(name, None)
    if total is None:
        total = read(queries.queue_length, name, now())
    offset = page_picker(total, PAGE_SIZE, key=f"sends_{name}_page")
    return area, read(queries.queue_list, name, now=now(), offset=offset, limit=PAGE_SIZE)


def _who(r: dict) -> dict:
    return {"email": r["email"], "step": f"{r['step']} · {step_title(r['step'])}", "segment": r["segment"]}


@st.fragment(run_every=REFRESH_SECONDS)
def _due(counted: dict) -> None:
    area, rows = _page("due", counted)
    with area:
        if not rows:
            st.info("Nothing is waiting to be sent.")
            return
        # "when", not "in": an overdue email's "2 min ago" read "in 2 min ago".
        st.dataframe(pd.DataFrame([{"due": when(r["due_at"]), "when": ago(r["due_at"]), **_who(r),
                                    "attempts": r["attempts"], "last error": r["last_error"] or ""} for r in rows]),
                     hide_index=True, width="stretch")


@st.fragment(run_every=REFRESH_SECONDS)
def _sending(counted: dict) -> None:
    area, rows = _page("sending", counted)
    with area:
        if not rows:
            st.info("No email is being sent right now.")
            return
        st.dataframe(pd.DataFrame([{**_who(r), "worker": r["lease_owner"] or "(backing off)",
                                    "lease until": when(r["lease_expires_at"]), "attempts": r["attempts"],
                                    "last error": r["last_error"] or ""} for r in rows]),
                     hide_index=True, width="stretch")


def _failed(counted: dict) -> None:
    area, rows = _page("failed", counted)
    with area:
        if not rows:
            st.success("No failed sends.")
            return
        selection_follows("failed_table", [r["send_id"] for r in rows])
        picked = st.dataframe(
            # The message right after whom and which step: placed last, it was out of view at 1024 px. Its
            # end may still be cut; the selected rows' messages are shown in full below.
            pd.DataFrame([{"failed": when(r["finished_at"]), **_who(r), "attempts": r["attempts"],
                           "provider's message": r["last_error"] or ""} for r in rows])
            .reindex(columns=["failed", "email", "step", "provider's message", "segment", "attempts"]),
            key="failed_table", on_select="rerun", selection_mode="multi-row", hide_index=True, width="stretch",
            column_config={"provider's message": st.column_config.TextColumn(width=MESSAGE_WIDTH),
                           "attempts": st.column_config.NumberColumn(width="small")})
        chosen = [rows[i] for i in picked.selection.rows if i < len(rows)]
        _full_messages(chosen)
        # Side by side at their own widths: in two columns, the second button floated mid-page.
        with st.container(horizontal=True):
            confirm.button(f"Retry selected ({len(chosen)})", _retry(chosen), key="retry_selected",
                           disabled=not chosen, primary=True, icon=":material/replay:")
            confirm.button(f"Retry all {len(rows)} on this page", _retry(rows), key="retry_page",
                           icon=":material/replay:")


def _full_messages(chosen: list[dict]) -> None:
    """A provider's message is often longer than any column: the selected rows' ones in full, as sent."""
    if not chosen:
        st.caption("Select a row to read the provider's full message here.")
    for r in chosen:
        st.caption(f"**{literal(r['email'])}**, step {r['step']}: {literal(r['last_error'] or 'no message')}")


def _may_go_twice(rows: list[dict]) -> str:
    """A warning when some failures may have been delivered anyway: a retry is a new email, not a replay."""
    uncertain = sum(may_have_been_delivered(r["last_error"]) for r in rows)
    if not uncertain:
        return ""
    if len(rows) == 1:
        return f" {MAY_GO_TWICE}"
    return (f" **{uncertain} of them may already have been delivered** (outcome unknown): check Resend's log first, "
            "or those people may get them twice.")


def _retry(rows: list[dict]) -> Command:
    payloads = tuple({"send_id": r["send_id"], "contact_id": r["contact_id"]} for r in rows)
    subject = (f"step {rows[0]['step']} to **{literal(rows[0]['email'])}**" if len(rows) == 1
               else f"**{len(rows)}** sends")
    each = "It goes" if len(rows) == 1 else "Each goes"
    return Command("retry_send", payloads, f"Retry {subject}? {each} next, after any earlier step of its sequence still to "
                   f"come, once sending is not paused.{_may_go_twice(rows)}", "Yes, retry",
                   f"Retry of {len(rows)} send{'s' if len(rows) != 1 else ''} requested.")


@st.fragment(run_every=REFRESH_SECONDS)
def _sent(counted: dict) -> None:
    area, rows = _page("sent", counted)
    with area:
        if not rows:
            st.info("Nothing was sent in the last 24 hours.")
            return
        st.dataframe(pd.DataFrame([{"sent": when(r["sent_at"]), "ago": ago(r["sent_at"]), **_who(r),
                                    "provider id": r["provider_id"] or ""} for r in rows]),
                     hide_index=True, width="stretch")


# Labels without counts: a label that changes makes a new tab set, and the page jumped back to the first.
due, sending, failed, sent = st.tabs(["Queued", "Sending", "Failed", "Sent, last 24 h"], key="sends_tab")
with due:
    _due(counted)
with sending:
    _sending(counted)
with failed:
    _failed(counted)
with sent:
    _sent(counted)
my_requests()
