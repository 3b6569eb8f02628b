"""The read model: aggregates for the CLI, /health and the dashboard. SQL aggregates; nothing is loaded whole."""

from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa

from core.campaign import CHRISTMAS_2025, Segment
from core.models import Contact, Enrollment, Send
from core.status import SEND_STATUSES

contact_t = Contact.__table__
enrollment_t = Enrollment.__table__
send_t = Send.__table__


def stats(conn: sa.Connection) -> dict:
    """The `stats --json` document (DESIGN §8): exact keys, every count present even when zero."""
    segments = dict(conn.execute(
        sa.select(enrollment_t.c.segment, sa.func.count()).group_by(enrollment_t.c.segment)).all())
    sends = dict(conn.execute(sa.select(send_t.c.status, sa.func.count()).group_by(send_t.c.status)).all())
    suppressed = contact_t.c.suppressed_at.is_not(None)
    contacts, unsubscribed, suppressed_n = conn.execute(sa.select(
        sa.func.count(),
        sa.func.count().filter(contact_t.c.unsubscribed_at.is_not(None), ~suppressed),
        sa.func.count().filter(suppressed),
    )).one()
    return {
        "contacts": contacts,
        "enrollments": sum(segments.values()),
        "segments": {s.value: segments.get(s.value, 0) for s in Segment},
        "sends": {s: sends.get(s, 0) for s in SEND_STATUSES},
        "unsubscribed": unsubscribed,
        "suppressed": suppressed_n,
    }


def _latest_step_status():
    """Each (enrollment, step)'s newest generation, as a subquery."""
    ranked = sa.select(
        send_t.c.enrollment_id, send_t.c.step, send_t.c.status,
        sa.func.row_number().over(
            partition_by=(send_t.c.enrollment_id, send_t.c.step), order_by=send_t.c.generation.desc()
        ).label("rank"),
    ).subquery()
    return sa.select(ranked.c.enrollment_id, ranked.c.step, ranked.c.status).where(ranked.c.rank == 1).subquery()


EXPORT_COLUMNS = [
    "email", "first_name", "business_name", "is_test", "segment", "enrollment_status", "enrolled_at",
    "unsubscribed_at", "suppressed_at", *[f"step_{n}" for n in CHRISTMAS_2025.step_numbers],
]


def export_rows(conn: sa.Connection, *, chunk: int = 1000) -> Iterator[dict]:
    """Contacts with segment and per-step status, streamed in pages of `chunk` (keyset on email)."""
    latest = _latest_step_status()
    steps = [
        sa.func.max(sa.case((latest.c.step == n, latest.c.status))).label(f"step_{n}")
        for n in CHRISTMAS_2025.step_numbers
    ]
    after = ""
    while True:
        page = (
            sa.select(
                contact_t.c.email, contact_t.c.first_name, contact_t.c.business_name, contact_t.c.is_test,
                enrollment_t.c.segment, enrollment_t.c.status.label("enrollment_status"),
                enrollment_t.c.created_at.label("enrolled_at"), contact_t.c.unsubscribed_at,
                contact_t.c.suppressed_at, *steps,
            )
            .select_from(contact_t)
            .outerjoin(enrollment_t, enrollment_t.c.contact_id == contact_t.c.id)
            .outerjoin(latest, latest.c.enrollment_id == enrollment_t.c.id)
            .where(contact_t.c.email > after)
            .group_by(contact_t.c.id, enrollment_t.c.id)
            .order_by(contact_t.c.email)
            .limit(chunk)
        )
        rows = [dict(r._mapping) for r in conn.execute(page)]
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1]["email"]


def as_iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""
