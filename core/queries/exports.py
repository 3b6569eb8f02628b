"""`stats --json` and the CSV export: aggregates in SQL, contacts streamed in keyset pages."""

from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa

from core import tally
from core.campaign import Segment
from core.queries.contacts import ContactFilter, filter_clauses
from core.queries.steps import latest_by_enrollment, sends_of
from core.queries.tables import STEP_NUMBERS, enrollment_join
from core.status import SEND_STATUSES
from core.tables import contact_t, enrollment_t


def stats(conn: sa.Connection) -> dict:
    """The `stats --json` document (DESIGN §8): exact keys, every count present even when zero."""
    segments = tally.signups_by_segment(conn)
    sends = tally.sends_by_status(conn)
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


EXPORT_COLUMNS = [
    # The counts the segment follows from: `import` of this file gives every lead the same segment.
    "email", "first_name", "business_name", "is_test", "segment", "red_systems", "orange_systems",
    "enrollment_status", "enrolled_at",
    "unsubscribed_at", "suppressed_at", *[f"step_{n}" for n in STEP_NUMBERS],
]


def export_rows(conn: sa.Connection, *, chunk: int = 1000, where: ContactFilter | None = None) -> Iterator[dict]:
    """Contacts with segment and each step's status, streamed in pages of `chunk` (keyset on email).

    `where` narrows the export to what the dashboard's filters show.
    """
    clauses = filter_clauses(where or ContactFilter(), conn.dialect.name)
    after = ""
    while True:
        page = conn.execute(
            sa.select(
                contact_t.c.email, contact_t.c.first_name, contact_t.c.business_name, contact_t.c.is_test,
                enrollment_t.c.segment, enrollment_t.c.red_systems, enrollment_t.c.orange_systems,
                enrollment_t.c.status.label("enrollment_status"),
                enrollment_t.c.created_at.label("enrolled_at"), contact_t.c.unsubscribed_at,
                contact_t.c.suppressed_at, enrollment_t.c.id.label("enrollment_id"),
            )
            .select_from(enrollment_join())
            .where(contact_t.c.email > after, *clauses)
            .order_by(contact_t.c.email)
            .limit(chunk)
        ).all()
        steps = latest_by_enrollment(sends_of(conn, [r.enrollment_id for r in page if r.enrollment_id]))
        for row in page:
            record = dict(row._mapping)
            latest = steps.get(record.pop("enrollment_id"), {})
            record.update({f"step_{n}": latest[n]["status"] if n in latest else None for n in STEP_NUMBERS})
            yield record
        if len(page) < chunk:
            return
        after = page[-1].email


def as_iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""
