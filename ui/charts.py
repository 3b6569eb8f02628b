"""The Overview's figures: KPI metrics and Altair charts. Each takes rows from core.queries."""

from datetime import UTC, date, datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from core.queries import FUNNEL_STAGES
from ui.widgets import SEGMENT_COLORS

_SEGMENTS = list(SEGMENT_COLORS)
_SEGMENT_SCALE = alt.Scale(domain=_SEGMENTS, range=list(SEGMENT_COLORS.values()))
# One colour per FUNNEL_STAGES entry: failed in the red of its step glyph, cancelled or skipped in grey.
_STAGE_COLORS = ["#cbd5e1", "#60a5fa", "#2563eb", "#7c3aed", "#15803d", "#dc2626", "#64748b"]
# Room the legends take (every entry in one row, and the widest entry), measured in Chromium.
_SEGMENT_LEGEND = (250, 90)
_STAGE_LEGEND = (640, 140)
# A rise in these is bad news: their deltas are drawn red when they go up.
_BAD_WHEN_UP = {"failed", "unsubscribed", "bounced"}


def _bottom_legend(room: tuple[int, int]) -> alt.Legend:
    """A legend under the chart: one row where it fits, otherwise as many columns as fit, instead of
    running on past the chart's edge, where a narrow window cuts it off. `room`: the pixels one row of
    every entry takes, and the widest entry."""
    row, widest = room
    return alt.Legend(orient="bottom", title=None,
                      columns=alt.expr(f"width >= {row} ? 0 : max(1, floor(width / {widest}))"))


_KPI_HELP = {
    "bounced": "People whose email hard-bounced or who marked it as spam (erasures are not counted).",
    "failed": "Emails that failed and still need attention: not replaced by a resend, and not of someone "
              "who was stopped since. The Sends page lists them.",
    "unsubscribed": "People who unsubscribed (those who also bounced count under Bounced).",
    "scheduled": "Emails planned and not yet sent, the later steps of every running sequence included; below it, "
                 "how many of them are due within the next 24 hours (any overdue included).",
}


# Five cards to a row on a 1366-pixel screen; on a narrower one they wrap to fewer, and never shrink
# until the figure itself is cut to "3,…" (five fixed columns did, from about 1,100 pixels down).
KPI_WIDTH = 168
CHANGE_OVER = "in 24 h"


def kpi_grid(kpis: list[dict]) -> None:
    """The headline metrics, each with its change over the last 24 hours (Scheduled: what is due within them).

    People on one row, their emails on the next: nine cards in one wrapping row left "Bounced" alone on a
    second line at 1920 pixels, and split the emails across the rows at 1366."""
    people = [k for k in kpis if k["key"] == "signups" or k["key"].startswith("segment_")]
    emails = [k for k in kpis if k not in people]
    with st.container(key="kpis"):
        for row, cards in (("people", people), ("emails", emails)):
            with st.container(horizontal=True, gap="small", key=f"kpis_{row}"):
                for kpi in cards:
                    _kpi_card(kpi)


def _kpi_card(kpi: dict) -> None:
    if kpi["key"] == "scheduled":
        st.metric(kpi["label"], f"{kpi['value']:,}", delta=f"{kpi['delta']:,} due within 24 h",
                  delta_color="off", delta_arrow="off", width=KPI_WIDTH, border=True, help=_KPI_HELP["scheduled"])
        return
    color = "inverse" if kpi["key"] in _BAD_WHEN_UP else "normal"
    # Grouped like the figure above it ("1,144", not "1144" under "28,345"); Streamlit still reads "0" as no
    # change and a leading "-" as a fall. "in 24 h", what the change is: beside a four-figure change,
    # "vs yesterday" was cut to "vs yester…" in the card's width.
    st.metric(kpi["label"], f"{kpi['value']:,}", delta=f"{kpi['delta']:,}", delta_color=color, width=KPI_WIDTH,
              delta_description=CHANGE_OVER, border=True, help=_KPI_HELP.get(kpi["key"]))


def segment_mix(kpis: list[dict]) -> alt.LayerChart:
    """A donut of signups per segment, with the total in the middle."""
    data = pd.DataFrame([{"segment": k["label"].upper(), "signups": k["value"]}
                         for k in kpis if k["key"].startswith("segment_")])
    base = alt.Chart(data).encode(
        theta=alt.Theta("signups:Q", stack=True),
        color=alt.Color("segment:N", scale=_SEGMENT_SCALE, legend=_bottom_legend(_SEGMENT_LEGEND)),
        tooltip=["segment:N", alt.Tooltip("signups:Q", format=",")],
    )
    # Sized by the column's width (at most 210 pixels across), so a narrow window shows the whole ring.
    donut = base.mark_arc(innerRadius=alt.expr("min(width, 210) * 0.3"), outerRadius=alt.expr("min(width, 210) / 2"),
                          stroke="#fff")
    total = alt.Chart(pd.DataFrame([{"total": f"{int(data['signups'].sum()):,}"}])).mark_text(
        fontSize=alt.expr("min(26, width / 6)"), fontWeight="bold", color="#1f2933").encode(text="total:N")
    return (donut + total).properties(height=260)


def signups_per_day(rows: list[dict], first_day: date, last_day: date) -> alt.Chart:
    """Stacked daily bars by segment over the whole window, quiet days included as gaps."""
    data = pd.DataFrame(rows, columns=["day", "segment", "signups"])
    end = last_day + timedelta(days=1)  # the window's right edge: midnight after its last day
    end_ms = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp() * 1000)
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("utcyearmonthdate(day):T", title=None, scale=alt.Scale(domain=[first_day.isoformat(), end.isoformat()]),
                # A tick on that edge names a day the window does not hold, and its label hung off the chart.
                axis=alt.Axis(format="%d %b", labelAngle=0, labelFlush=True,
                              labelExpr=f"datum.value < {end_ms} ? datum.label : ''")),
        y=alt.Y("sum(signups):Q", title="signups", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("segment:N", scale=_SEGMENT_SCALE, legend=_bottom_legend(_SEGMENT_LEGEND)),
        tooltip=[alt.Tooltip("utcyearmonthdate(day):T", title="day", format="%d %b %Y"), "segment:N",
                 alt.Tooltip("signups:Q", format=",")],
    # Room on the right: the plot fitted to its column ends a pixel or two past the drawing, which clipped
    # whatever stood on its edge (the flush-right last label).
    ).properties(height=260, padding={"left": 5, "top": 5, "right": 12, "bottom": 5})


def funnel(rows: list[dict]) -> alt.Chart:
    """Grouped bars per step, one per stage; the legend names every stage, even one with no emails yet."""
    data = pd.DataFrame(rows, columns=["step", "stage", "count"])
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("step:O", title="step", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("stage:N", sort=list(FUNNEL_STAGES)),
        y=alt.Y("count:Q", title="emails", axis=alt.Axis(tickMinStep=1, format="~s")),
        color=alt.Color("stage:N", sort=list(FUNNEL_STAGES),
                        scale=alt.Scale(domain=list(FUNNEL_STAGES), range=_STAGE_COLORS),
                        legend=_bottom_legend(_STAGE_LEGEND)),
        tooltip=["step:O", "stage:N", alt.Tooltip("count:Q", format=",")],
    ).properties(height=300)
