"""The Overview page: KPIs with their change over the last 24 hours, the segment mix, the funnel and trends.

All-time figures come from the tally the database keeps (migration 0005); figures for the last
24 hours are range counts over an index, bounded by a day's traffic. Nothing grows with the
size of the campaign, and nothing is loaded row by row.
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from core import tally
from core.campaign import Segment
from core.queries.sends import queue_list, standing_failures, standing_failures_by_step
from core.queries.tables import STEP_NUMBERS
from core.status import SEND_STATUSES
from core.tables import contact_t, enrollment_t, send_t

DAY = timedelta(hours=24)
# "failed" counts what the Failed KPI counts (failures still to act on); the tally's cancelled and
# skipped sends share one stage: neither went, and neither needs anything done.
FUNNEL_STAGES = ("scheduled", "sent", "delivered", "opened", "clicked", "failed", "cancelled or skipped")
_NOT_SENT = {"cancelled": "cancelled or skipped", "skipped": "cancelled or skipped"}
_FINAL = ("sent", "failed", "cancelled", "skipped")


def segment_counts(conn: sa.Connection, since: datetime) -> dict[str, tuple[int, int]]:
    """{segment: (all enrollments, enrollments since `since`)} for every segment."""
    totals = tally.signups_by_segment(conn)
    # One short range of the (segment, created_at) index per segment.
    recent = dict(conn.execute(sa.select(enrollment_t.c.segment, sa.func.count())
                               .where(enrollment_t.c.segment.in_([s.value for s in Segment]),
                                      enrollment_t.c.created_at >= since)
                               .group_by(enrollment_t.c.segment)).all())
    return {s.value: (totals.get(s.value, 0), recent.get(s.value, 0)) for s in Segment}


def status_step_counts(conn: sa.Connection) -> dict[tuple[str, int], int]:
    """{(status, step): sends}, from the tally: it serves the totals and the funnel."""
    return tally.sends_by_status_step(conn)


def send_counts(by_status_step: dict[tuple[str, int], int]) -> dict[str, int]:
    """Sends per status, every status present, from status_step_counts."""
    totals = dict.fromkeys(SEND_STATUSES, 0)
    for (status, _), n in by_status_step.items():
        totals[status] = totals.get(status, 0) + n
    return totals


def _finished_since(conn: sa.Connection, since: datetime) -> dict[str, int]:
    # (status, finished_at) is indexed: one short range per final status.
    rows = conn.execute(sa.select(send_t.c.status, sa.func.count())
                        .where(send_t.c.status.in_(_FINAL), send_t.c.finished_at >= since)
                        .group_by(send_t.c.status)).all()
    return {s: dict(rows).get(s, 0) for s in _FINAL}


def _contact_stops(conn: sa.Connection, since: datetime) -> dict[str, tuple[int, int]]:
    """(all, since) of unsubscribed contacts (suppressed ones aside: they count as bounced) and of those who
    bounced or complained (erased people are suppressed too, but no bounce of theirs is counted)."""
    unsubscribed = contact_t.c.unsubscribed_at.is_not(None)
    suppressed = contact_t.c.suppressed_at.is_not(None)
    bounced = sa.and_(suppressed, contact_t.c.suppressed_reason != "erased")

    def counts(column, *where) -> tuple[int, int]:
        # Each count walks the small index of contacts who stopped, never the whole table.
        return tuple(conn.execute(sa.select(sa.func.count(), sa.func.count().filter(column >= since))
                                  .where(*where)).one())

    unsub_all, unsub_recent = counts(contact_t.c.unsubscribed_at, unsubscribed)
    both_all, both_recent = counts(contact_t.c.unsubscribed_at, unsubscribed, suppressed)
    return {"unsubscribed": (unsub_all - both_all, unsub_recent - both_recent),
            "bounced": counts(contact_t.c.suppressed_at, bounced)}


def due_within(conn: sa.Connection, until: datetime) -> int:
    """Scheduled emails due by `until`, overdue ones included (later steps by their planned time)."""
    # `ready` spelled out: two ranges of the (status, ready, due_at) index, never every scheduled send.
    return conn.scalar(sa.select(sa.func.count()).where(
        send_t.c.status == "scheduled", send_t.c.ready.in_([True, False]), send_t.c.due_at <= until))


def kpis(conn: sa.Connection, now: datetime, by_status_step: dict | None = None,
         failures_by_step: dict | None = None) -> list[dict]:
    """Headline figures: `value` now, and `delta`, how much it changed in the last 24 hours (for
    'scheduled': how many are due within the next 24 hours).

    `failures_by_step` is standing_failures_by_step(conn, now - DAY), when the caller has it already.
    """
    since = now - DAY
    if failures_by_step is None:
        failures_by_step = standing_failures_by_step(conn, since)
    segments = segment_counts(conn, since)
    sends = send_counts(by_status_step if by_status_step is not None else status_step_counts(conn))
    finished = _finished_since(conn, since)
    stops = _contact_stops(conn, since)
    signups = sum(total for total, _ in segments.values()), sum(recent for _, recent in segments.values())
    figures = [
        ("signups", "Signups", *signups),
        *[(f"segment_{s}", s.title(), *segments[s]) for s in segments],
        ("sent", "Emails sent", sends["sent"], finished["sent"]),
        # Not a change over the day, unlike the others: a queue's net change is no news (it rises with every
        # signup), and the estimate shown before left out resends and retries. What goes out next is.
        ("scheduled", "Scheduled", sends["scheduled"], due_within(conn, now + DAY)),
        # As the Sends page lists them: a failure a resend or retry replaced is not counted.
        ("failed", "Failed", *standing_failures(failures_by_step)),
        ("unsubscribed", "Unsubscribed", *stops["unsubscribed"]),
        ("bounced", "Bounced", *stops["bounced"]),  # hard bounces and complaints: the label must fit a card
    ]
    return [{"key": key, "label": label, "value": value, "delta": delta} for key, label, value, delta in figures]


def funnel(conn: sa.Connection, by_status_step: dict | None = None,
           failures_by_step: dict | None = None) -> list[dict]:
    """Per step: how many sends are scheduled, sent, delivered, opened, clicked, failed (still to act on,
    as the Failed KPI counts them), and cancelled or skipped ({step, stage, count})."""
    counts = {(step, stage): 0 for step in STEP_NUMBERS for stage in FUNNEL_STAGES}
    for (status, step), n in (by_status_step if by_status_step is not None else status_step_counts(conn)).items():
        stage = _NOT_SENT.get(status, status)
        if stage in ("scheduled", "sent", "cancelled or skipped") and step in STEP_NUMBERS:
            counts[(step, stage)] += n
    if failures_by_step is None:  # only the all-time count is drawn, so any `since` will do
        failures_by_step = standing_failures_by_step(conn, datetime.now(UTC))
    for step, (n, _) in failures_by_step.items():
        if step in STEP_NUMBERS:
            counts[(step, "failed")] = n
    for (stage, step), n in tally.stages_by_step(conn).items():
        if step in STEP_NUMBERS:
            counts[(step, stage)] = n
    return [{"step": step, "stage": stage, "count": counts[(step, stage)]}
            for step in STEP_NUMBERS for stage in FUNNEL_STAGES if (step, stage) in counts]


def signups_per_day(conn: sa.Connection, now: datetime, days: int = 30) -> list[dict]:
    """Signups of the last `days` UTC days by segment ({day, segment, signups}); quiet days are left out."""
    today = now.astimezone(UTC).date()
    counts = tally.signups_by_day(conn, today - timedelta(days=days - 1), today)
    return [{"day": day.isoformat(), "segment": segment, "signups": n}
            for (day, segment), n in sorted(counts.items())]


def overview_data(conn: sa.Connection, now: datetime, *, days: int = 30) -> dict:
    """Everything the Overview page draws, read in one transaction."""
    by_status_step = status_step_counts(conn)
    # One indexed read of the standing failures serves both the Failed KPI and the funnel's failed bars.
    failures_by_step = standing_failures_by_step(conn, now - DAY)
    return {
        "kpis": kpis(conn, now, by_status_step, failures_by_step),
        "funnel": funnel(conn, by_status_step, failures_by_step),
        "signups_per_day": signups_per_day(conn, now, days),
        "next_due": queue_list(conn, "due", now=now, limit=8),
    }
