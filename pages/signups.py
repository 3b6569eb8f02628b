"""Signups: find any contact, see their 7 steps at a glance, open their timeline and act on it."""

import pandas as pd
import streamlit as st

from core import queries
from core.campaign import Segment
from core.statuses import EnrollmentStatus
from ui import frame, glyphs, timeline
from ui.downloads import contacts_csv
from ui.services import read
from ui.widgets import NO_SELECTION, page_picker, selection_follows, sequence_status, when

PAGE_SIZE = 50
SIGNED_UP_WIDTH = 132  # px: "29 Nov 10:31 UTC" in full
DATES_WIDTH = 250  # px: "yyyy-mm-dd – yyyy-mm-dd" in full
TABLE = "signups_table"
TOOLBAR_ROOM = 20  # px, on top of the two 16 px gaps around it

frame.begin()
st.title("Signups")


# Streamlit forgets a widget's value once a run does not draw it: the filters are kept for the session,
# so a visit to another page (Sends, to retry a failure) comes back to the list the marketer had narrowed.
KEEP = "session"


def _filters() -> queries.ContactFilter:
    with st.container(border=True):
        # Two rows, so that at a laptop's width a chosen segment or status reads in full. The second
        # wraps, each filter at its own width: in columns, a narrower window cut "Test" and the dates.
        search, segment, status = st.columns([3, 2.5, 2.5], vertical_alignment="bottom")
        audience = dates = failed = st.container(horizontal=True, vertical_alignment="bottom")
        term = search.text_input("Search", placeholder="email, name or business", key="f_search", persist_state=KEEP)
        segments = segment.multiselect("Segment", [s.value for s in Segment], key="f_segments", persist_state=KEEP)
        statuses = status.multiselect("Status", [s.value for s in EnrollmentStatus], key="f_statuses",
                                     persist_state=KEEP)
        who = audience.segmented_control("Contacts", queries.AUDIENCES, default="all", required=True,
                                         format_func=str.capitalize, key="f_audience", persist_state=KEEP)
        chosen = dates.date_input("Signed up between", value=[], key="f_dates", format="YYYY-MM-DD",
                                  width=DATES_WIDTH, persist_state=KEEP)
        has_failed = failed.checkbox("Has a failed step", key="f_failed", persist_state=KEEP,
                                     help="People with a step whose newest try failed (a resend replaces it).")
    start, end = (tuple(chosen) + (None, None))[:2] if chosen else (None, None)
    return queries.ContactFilter(tuple(segments), tuple(statuses), start, end or start, who, term, has_failed)


def _narrowed(where: queries.ContactFilter) -> bool:
    """Whether any filter is set (a search of spaces finds everyone, as an empty one does)."""
    return bool(where.search.strip()) or where != queries.ContactFilter(search=where.search)


def _close_timeline() -> None:
    st.query_params.pop("contact", None)
    st.session_state[TABLE] = NO_SELECTION


# The steps come right after who and where they stand, so a laptop's width shows all seven; then
# the signup date, sized to fit; names, the longest and least needed to steer, come last, so at
# 1366 px it is they that scroll out of view, not half a date.
COLUMNS = ["Email", "Segment", "Status", *map(str, range(1, 8)), "Test", "Signed up", "Name", "Business"]


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "Email": r["email"], "Name": r["first_name"] or "", "Business": r["business_name"] or "",
        "Segment": r["segment"] or "", "Status": _status(r), "Signed up": when(r["signed_up_at"]),
        **{str(n): glyphs.data_uri(state) for n, state in enumerate(r["steps"], start=1)},
        "Test": bool(r["is_test"]),
    } for r in rows], columns=COLUMNS)


def _status(row: dict) -> str:
    return sequence_status(row["status"], row["failed_steps"])[0] if row["status"] else ""


_WARNING = "color: #c2410c; font-weight: 600"  # the orange of the timeline's badge


def _styled(table: pd.DataFrame):
    """The table with a status that hides a failed step ('completed · 1 failed') drawn in orange."""
    return table.style.map(lambda status: _WARNING if " failed" in status else "", subset=["Status"])


where = _filters()
total = read(queries.count_contacts, where)
# The button at its own width beside the caption: a fifth of the page cut it to "Export …" at 1024 px.
head = export = st.container(horizontal=True, wrap=False, vertical_alignment="bottom")
matches = "1 contact matches" if total == 1 else f"**{total:,}** contacts match"
# The legend's HTML keeps each glyph with its label; nothing a stranger typed is in this caption.
head.caption(f"{matches} · newest first · {glyphs.legend()}", unsafe_allow_html=True)
export.download_button("Export CSV", data=contacts_csv(where), file_name="nurture-signups.csv", mime="text/csv",
                       on_click="ignore", icon=":material/download:", disabled=total == 0)

# Room for the toolbar a table shows above its top edge on hover (44 px): it covered "Export CSV".
st.space(TOOLBAR_ROOM)
table_area = st.container()  # the pager is drawn under the table but read before it
offset = page_picker(total, PAGE_SIZE, key="signups_page", listing=where)
rows = read(queries.contact_page, where, offset=offset, limit=PAGE_SIZE)
with table_area:
    if not rows and _narrowed(where):
        st.info("No contacts match. Try fewer filters, or make one on the Test signup page.")
    elif not rows:  # on the first day "try fewer filters" sent the marketer looking for a filter they never set
        st.info("Nobody has signed up yet. Signups from the website appear here as they come in; to try it, make "
                "one on the Test signup page.")
    else:
        narrow = {str(n): st.column_config.ImageColumn(str(n), width=34, help=f"step {n}") for n in range(1, 8)}
        narrow["Test"] = st.column_config.CheckboxColumn("Test", width=48, help="a test contact")
        narrow["Segment"] = st.column_config.TextColumn("Segment", width=92)
        narrow["Status"] = st.column_config.TextColumn("Status", width=150)
        narrow["Signed up"] = st.column_config.TextColumn("Signed up", width=SIGNED_UP_WIDTH)
        selection_follows(TABLE, [r["contact_id"] for r in rows])
        picked = st.dataframe(_styled(_table(rows)), key=TABLE, on_select="rerun", selection_mode="single-row",
                              hide_index=True, width="stretch", column_config=narrow)
        if picked.selection.rows and picked.selection.rows[0] < len(rows):
            st.query_params["contact"] = rows[picked.selection.rows[0]]["contact_id"]
        st.caption("Select a row to open that contact's timeline.")

if contact := st.query_params.get("contact"):
    timeline.render(contact, on_close=_close_timeline)
