"""Reading the tally: exact counts the database keeps up to date (see migration 0005).

Every figure here costs a read of a few hundred small rows, whatever the size of the campaign.
"""

from datetime import date, timedelta

import sqlalchemy as sa

from core.tables import tally_t

STAGES = ("delivered", "opened", "clicked")
EPOCH = date(1970, 1, 1)


def _sums(conn: sa.Connection, kinds) -> dict[tuple[str, int], int]:
    rows = conn.execute(sa.select(tally_t.c.kind, tally_t.c.bucket, sa.func.sum(tally_t.c.n))
                        .where(kinds).group_by(tally_t.c.kind, tally_t.c.bucket)).all()
    return {(kind, bucket): int(n) for kind, bucket, n in rows if n}


def sends_by_status_step(conn: sa.Connection) -> dict[tuple[str, int], int]:
    """{(status, step): sends}."""
    return {(kind.removeprefix("status:"), step): n
            for (kind, step), n in _sums(conn, tally_t.c.kind.startswith("status:", autoescape=True)).items()}


def sends_by_status(conn: sa.Connection) -> dict[str, int]:
    """{status: sends}; statuses with none are absent."""
    totals: dict[str, int] = {}
    for (status, _), n in sends_by_status_step(conn).items():
        totals[status] = totals.get(status, 0) + n
    return totals


def stages_by_step(conn: sa.Connection) -> dict[tuple[str, int], int]:
    """{(stage, step): sends that reached it} for delivered, opened and clicked."""
    return _sums(conn, tally_t.c.kind.in_(STAGES))


def signups_by_day(conn: sa.Connection, first: date, last: date) -> dict[tuple[date, str], int]:
    """{(UTC day, segment): enrollments created that day} for days in [first, last]."""
    rows = _sums(conn, sa.and_(tally_t.c.kind.startswith("signups:", autoescape=True),
                               tally_t.c.bucket.between((first - EPOCH).days, (last - EPOCH).days)))
    return {(EPOCH + timedelta(days=day), kind.removeprefix("signups:")): n for (kind, day), n in rows.items()}


def signups_by_segment(conn: sa.Connection) -> dict[str, int]:
    """{segment: enrollments}, all time."""
    totals: dict[str, int] = {}
    for (kind, _), n in _sums(conn, tally_t.c.kind.startswith("signups:", autoescape=True)).items():
        segment = kind.removeprefix("signups:")
        totals[segment] = totals.get(segment, 0) + n
    return totals
