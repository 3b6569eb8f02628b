"""Overview: how the campaign is doing, refreshed every few seconds."""

from datetime import timedelta

import pandas as pd
import streamlit as st

from ui import charts, frame
from ui.data import overview
from ui.services import now
from ui.widgets import step_title, when

REFRESH_SECONDS = 10

frame.begin()
st.title("Overview")
st.caption("Christmas 2025 · deltas compare with 24 hours ago · times in UTC")


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    headline = st.container()  # filled once the chart's period is known: the KPIs are all-time anyway
    mix, trend = st.columns([1, 2], gap="large")
    with trend:
        st.subheader("Signups per day")
        # Beside the chart it changes, not above the KPIs, which it does not change.
        days = st.segmented_control("Period", [7, 30, 90], default=30, required=True, label_visibility="collapsed",
                                    format_func=lambda d: f"{d} days", key="overview_days")
    data = overview(days)
    with headline:
        charts.kpi_grid(data["kpis"])
    with mix:
        st.subheader("Segment mix")
        if any(k["value"] for k in data["kpis"] if k["key"].startswith("segment_")):
            st.altair_chart(charts.segment_mix(data["kpis"]), width="stretch")
        else:
            st.info("No signups yet.")
    with trend:
        if data["signups_per_day"]:
            today = now().date()
            chart = charts.signups_per_day(data["signups_per_day"], today - timedelta(days=days - 1), today)
            st.altair_chart(chart, width="stretch")
        else:
            st.info(f"No signups in the last {days} days.")
    st.subheader("Funnel by step")
    if any(row["count"] for row in data["funnel"]):
        st.altair_chart(charts.funnel(data["funnel"]), width="stretch")
        st.caption("Counts emails: a step sent to someone again (resend or retry) counts each time it went. "
                   "Failed counts what the Failed figure counts: failures still to act on (the Sends page "
                   "lists them), not those a resend replaced or of people since stopped.")
    else:
        st.info("Nothing scheduled or sent yet.")
    st.subheader("Next sends due")
    _next_due(data["next_due"], anyone=any(k["value"] for k in data["kpis"] if k["key"] == "signups"))


def _next_due(rows: list[dict], *, anyone: bool) -> None:
    if not rows:
        # With nobody signed up there is no sequence to be waiting, finished or stopped.
        st.info("Nothing is due: every sequence is waiting, finished or stopped." if anyone
                else "Nothing is due: nobody has signed up yet.")
        return
    table = pd.DataFrame([{
        "due": when(r["due_at"]), "email": r["email"], "step": f"{r['step']} · {step_title(r['step'])}",
        "segment": r["segment"],
    } for r in rows])
    st.dataframe(table, hide_index=True, width="stretch")
    st.page_link("pages/sends.py", label="The whole queue", icon=":material/arrow_forward:")


live()
