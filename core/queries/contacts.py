"""The Signups list: contacts filtered and paged on the server, each with its 7 step states."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from core import db
from core.queries.sends import superseded
from core.queries.steps import failed_steps, latest_by_enrollment, sends_of, step_state
from core.queries.tables import CAMPAIGN, STEP_NUMBERS, enrollment_join
from core.tables import contact_t, enrollment_t, send_t

AUDIENCES = ("all", "real", "test")


@dataclass(frozen=True)
class ContactFilter:
    """What the marketer narrowed the list to. Empty fields filter nothing."""

    segments: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    signed_up_from: date | None = None
    signed_up_to: date | None = None  # inclusive
    audience: str = "all"
    search: str = ""
    failed_step: bool = False  # only people with a step whose newest try failed

    @property
    def needs_enrollment(self) -> bool:
        return bool(self.segments or self.statuses)

    @property
    def needs_contact(self) -> bool:
        return bool(self.signed_up_from or self.signed_up_to or self.audience != "all" or self.search.strip()
                    or self.failed_step)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_clauses(f: ContactFilter, dialect: str = "sqlite") -> list[sa.ColumnElement]:
    """WHERE clauses for a filter over the contact table; every value is bound.

    Segment and status go in an EXISTS on the contact's enrollment, so the planner walks
    contacts (in signup order, or testing the search) and looks enrollments up one by one,
    rather than fetching every contact of a segment at random to test a search term.
    """
    clauses: list[sa.ColumnElement] = []
    if f.needs_enrollment:
        wanted = [enrollment_t.c.contact_id == contact_t.c.id, enrollment_t.c.campaign == CAMPAIGN.name]
        if f.segments:
            wanted.append(enrollment_t.c.segment.in_(f.segments))
        if f.statuses:
            wanted.append(enrollment_t.c.status.in_(f.statuses))
        # Correlated on contact only: the export also joins enrollment in its outer query.
        clauses.append(sa.select(sa.literal(1)).select_from(enrollment_t).where(*wanted)
                       .correlate(contact_t).exists())
    if f.signed_up_from:
        clauses.append(contact_t.c.created_at >= _day_start(f.signed_up_from))
    if f.signed_up_to:
        clauses.append(contact_t.c.created_at < _day_start(f.signed_up_to + timedelta(days=1)))
    if f.audience == "real":
        clauses.append(contact_t.c.is_test.is_(False))
    elif f.audience == "test":
        clauses.append(contact_t.c.is_test.is_(True))
    term = f.search.strip()
    if term:
        clauses.append(_search(term, dialect))
    if f.failed_step:
        clauses.append(_has_failed_step())
    return clauses


def _has_failed_step() -> sa.ColumnElement:
    """The contact has a step whose newest try failed (the state the table shows as failed).

    An IN over the partial (status, finished_at) index: failures are few, so the database reads
    them once rather than looking up every contact's sends.
    """
    enrollment = enrollment_t.alias("failed_enrollment")  # the export joins enrollment_t itself
    failed = sa.select(send_t.c.contact_id).where(
        send_t.c.status == "failed", send_t.c.finished_at.is_not(None), ~superseded(),
        sa.exists().where(enrollment.c.id == send_t.c.enrollment_id, enrollment.c.campaign == CAMPAIGN.name))
    return contact_t.c.id.in_(failed)


def _search(term: str, dialect: str) -> sa.ColumnElement:
    """Email or names containing `term`, ignoring case, in any alphabet ("łódź" finds "Łódź").

    SQLite's LIKE already ignores ASCII case, and is five times faster than ILIKE's lower()
    on each side, but leaves every other letter as it is: a term beyond ASCII is compared with
    each side case-folded by the connection's own function instead. PostgreSQL needs ILIKE.
    """
    columns = (contact_t.c.email, contact_t.c.first_name, contact_t.c.business_name)
    if "\x00" in term:  # no stored text holds NUL; PostgreSQL refuses it, SQLite's LIKE stops reading at it
        return sa.false()
    if dialect != "sqlite":
        return sa.or_(*(column.ilike(f"%{_escape_like(term)}%", escape="\\") for column in columns))
    if term.isascii():
        return sa.or_(*(column.like(f"%{_escape_like(term)}%", escape="\\") for column in columns))
    folded = f"%{_escape_like(term.casefold())}%"
    return sa.or_(*(getattr(sa.func, db.SQLITE_CASEFOLD)(column).like(folded, escape="\\") for column in columns))


def count_contacts(conn: sa.Connection, f: ContactFilter) -> int:
    """How many contacts match; each table is read only when a filter needs it."""
    if f.needs_enrollment and not f.needs_contact:
        # One enrollment per contact and campaign, so counting enrollments gives the same answer.
        only = [enrollment_t.c.campaign == CAMPAIGN.name]
        if f.segments:
            only.append(enrollment_t.c.segment.in_(f.segments))
        if f.statuses:
            only.append(enrollment_t.c.status.in_(f.statuses))
        return conn.scalar(sa.select(sa.func.count()).select_from(enrollment_t).where(*only)) or 0
    return conn.scalar(sa.select(sa.func.count()).select_from(contact_t)
                       .where(*filter_clauses(f, conn.dialect.name))) or 0


def _page_ids(conn: sa.Connection, f: ContactFilter, offset: int, limit: int) -> list[str]:
    # Only ids here, so the rows OFFSET skips are read off the (created_at, id) index alone;
    # the full columns are fetched for the page's own rows afterwards.
    return list(conn.scalars(
        sa.select(contact_t.c.id).where(*filter_clauses(f, conn.dialect.name))
        .order_by(contact_t.c.created_at.desc(), contact_t.c.id.desc()).offset(max(0, offset)).limit(limit)))


def contact_page(conn: sa.Connection, f: ContactFilter, *, offset: int, limit: int) -> list[dict]:
    """One page of matching contacts, newest signup first, each with `steps`: 7 one-word states."""
    ids = _page_ids(conn, f, offset, limit)
    if not ids:
        return []
    rows = conn.execute(
        sa.select(
            contact_t.c.id.label("contact_id"), contact_t.c.email, contact_t.c.first_name,
            contact_t.c.business_name, contact_t.c.is_test, contact_t.c.created_at.label("signed_up_at"),
            contact_t.c.unsubscribed_at, contact_t.c.suppressed_at, enrollment_t.c.id.label("enrollment_id"),
            enrollment_t.c.segment, enrollment_t.c.status,
        )
        .select_from(enrollment_join())
        .where(contact_t.c.id.in_(ids))
        .order_by(contact_t.c.created_at.desc(), contact_t.c.id.desc())
    ).all()
    latest = latest_by_enrollment(sends_of(conn, [r.enrollment_id for r in rows if r.enrollment_id]))
    page = []
    for row in rows:
        record = dict(row._mapping)
        steps = latest.get(row.enrollment_id, {})
        record["steps"] = [step_state(steps.get(n)) for n in STEP_NUMBERS]
        record["failed_steps"] = failed_steps(record["steps"])
        page.append(record)
    return page
