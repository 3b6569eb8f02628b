"""The Overview page: KPIs with their change over the last 24 hours, the segment mix, the funnel and trends.

Every figure is an aggregate computed in SQL over an index (see migration 0002); nothing is
loaded row by row.
"""

from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa

from core.campaign import Segment
from core.queries.sends import queue_list
from core.queries.tables import STEP_NUMBERS, contact_t, enrollment_t, send_t
from core.status import SEND_STATUSES

DAY = timedelta(hours=24)
FUNNEL_STAGES = ("scheduled", "sent", "delivered", "opened", "clicked")
_FINAL = ("sent", "failed", "cancelled", "skipped")


def segment_counts(conn: sa.Connection, since: datetime) -> dict[str, tuple[int, int]]:
    """{segment: (all enrollments, enrollments since `since`)} for every segment."""
    rows = conn.execute(sa.select(
        enrollment_t.c.segment, sa.func.count(), sa.func.count().filter(enrollment_t.c.created_at >= since),
    ).group_by(enrollment_t.c.segment)).all()
    found = {segment: (total, recent) for segment, total, recent in rows}
    return {s.value: found.get(s.value, (0, 0)) for s in Segment}


def status_step_counts(conn: sa.Connection) -> dict[tuple[str, int], int]:
    """{(status, step): sends}: one walk of the (status, step) index serves the totals and the funnel."""
    rows = conn.execute(sa.select(send_t.c.status, send_t.c.step, sa.func.count())
                        .group_by(send_t.c.status, send_t.c.step)).all()
    return {(status, step): n for status, step, n in rows}


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
    """(all, since) of unsubscribed contacts (suppressed ones aside: they count as bounced) and suppressed ones."""
    unsubscribed = contact_t.c.unsubscribed_at.is_not(None)
    suppressed = contact_t.c.suppressed_at.is_not(None)

    def counts(column, *where) -> tuple[int, int]:
        # Each count walks the small index of contacts who stopped, never the whole table.
        return tuple(conn.execute(sa.select(sa.func.count(), sa.func.count().filter(column >= since))
                                  .where(*where)).one())

    unsub_all, unsub_recent = counts(contact_t.c.unsubscribed_at, unsubscribed)
    both_all, both_recent = counts(contact_t.c.unsubscribed_at, unsubscribed, suppressed)
    return {"unsubscribed": (unsub_all - both_all, unsub_recent - both_recent),
            "bounced": counts(contact_t.c.suppressed_at, suppressed)}


def kpis(conn: sa.Connection, now: datetime, by_status_step: dict | None = None) -> list[dict]:
    """Headline figures: `value` now, and `delta`, how much it changed in the last 24 hours."""
    since = now - DAY
    segments = segment_counts(conn, since)
    sends = send_counts(by_status_step if by_status_step is not None else status_step_counts(conn))
    finished = _finished_since(conn, since)
    stops = _contact_stops(conn, since)
    signups = sum(total for total, _ in segments.values()), sum(recent for _, recent in segments.values())
    # The queue's net change: the sends new enrollments added (each plans every step; resends and
    # retries are left out), less the sends that left it by finishing.
    scheduled_delta = signups[1] * len(STEP_NUMBERS) - sum(finished.values())
    figures = [
        ("signups", "Signups", *signups),
        *[(f"segment_{s}", s.title(), *segments[s]) for s in segments],
        ("sent", "Emails sent", sends["sent"], finished["sent"]),
        ("scheduled", "Scheduled", sends["scheduled"], scheduled_delta),
        ("failed", "Failed", sends["failed"], finished["failed"]),
        ("unsubscribed", "Unsubscribed", *stops["unsubscribed"]),
        ("bounced", "Bounced or complained", *stops["bounced"]),
    ]
    return [{"key": key, "label": label, "value": value, "delta": delta} for key, label, value, delta in figures]


def funnel(conn: sa.Connection, by_status_step: dict | None = None) -> list[dict]:
    """Per step: how many sends are scheduled, sent, delivered, opened and clicked ({step, stage, count})."""
    counts = {(step, stage): 0 for step in STEP_NUMBERS for stage in FUNNEL_STAGES}
    for (status, step), n in (by_status_step if by_status_step is not None else status_step_counts(conn)).items():
        if status in ("scheduled", "sent") and step in STEP_NUMBERS:
            counts[(step, status)] = n
    for stage in ("delivered", "opened", "clicked"):
        column = send_t.c[f"{stage}_at"]
        # Each stage has a partial index on (step, <stage>_at) WHERE <stage>_at IS NOT NULL.
        for step, n in conn.execute(sa.select(send_t.c.step, sa.func.count()).where(column.is_not(None))
                                    .group_by(send_t.c.step)).all():
            counts[(step, stage)] = n
    return [{"step": step, "stage": stage, "count": counts[(step, stage)]}
            for step in STEP_NUMBERS for stage in FUNNEL_STAGES if (step, stage) in counts]


def signups_per_day(conn: sa.Connection, now: datetime, days: int = 30) -> list[dict]:
    """Signups of the last `days` UTC days by segment ({day, segment, signups}); quiet days are left out.

    One range count per day over the (segment, created_at) index, glued with UNION ALL: no
    function runs per row and nothing is sorted, which grouping by a computed day would need.
    """
    today = now.astimezone(UTC).date()
    segments = [s.value for s in Segment]
    per_day = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        start = datetime.combine(day, time.min, tzinfo=UTC)
        per_day.append(
            sa.select(sa.literal(day.isoformat()).label("day"), enrollment_t.c.segment,
                      sa.func.count().label("signups"))
            .where(enrollment_t.c.segment.in_(segments), enrollment_t.c.created_at >= start,
                   enrollment_t.c.created_at < start + DAY)
            .group_by(enrollment_t.c.segment))
    rows = conn.execute(sa.union_all(*per_day)).all()
    return [dict(r._mapping) for r in rows]


def overview_data(conn: sa.Connection, now: datetime, *, days: int = 30) -> dict:
    """Everything the Overview page draws, read in one transaction."""
    by_status_step = status_step_counts(conn)
    return {
        "kpis": kpis(conn, now, by_status_step),
        "funnel": funnel(conn, by_status_step),
        "signups_per_day": signups_per_day(conn, now, days),
        "next_due": queue_list(conn, "due", now=now, limit=8),
    }
