"""Named SQL for the Notion mirror: page links and their per-enrollment lease, and the state to show."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from core import repo
from core.erasure import ERASED_DOMAIN
from core.notion.properties import EnrollmentState
from core.statuses import EnrollmentStatus, SendStatus
from core.tables import contact_t, enrollment_t, outbox_t, page_t, send_t


@dataclass(frozen=True)
class PageLink:
    """What the mirror remembers about an enrollment's page."""

    page_id: str | None
    synced_hash: str | None
    business_page_id: str | None
    business_checked_at: datetime | None


def take_lease(conn: sa.Connection, enrollment_id: str, contact_id: str, worker_id: str, now: datetime,
               lease: timedelta) -> bool:
    """Make this worker the only one writing the enrollment's page, so two never both create it."""
    repo.insert_ignoring_conflicts(conn, page_t, [{"enrollment_id": enrollment_id, "contact_id": contact_id,
                                                   "updated_at": now}])
    return conn.execute(page_t.update().where(
        page_t.c.enrollment_id == enrollment_id,
        sa.or_(page_t.c.lease_owner.is_(None), page_t.c.lease_owner == worker_id, page_t.c.lease_expires_at <= now),
    ).values(lease_owner=worker_id, lease_expires_at=now + lease)).rowcount == 1


def has_linked_page(conn: sa.Connection, email: str) -> bool:
    """Whether the mirror knows a page of the contact with this (stored, normalised) address."""
    return conn.scalar(sa.select(sa.literal(1)).select_from(page_t.join(contact_t, contact_t.c.id == page_t.c.contact_id))
                       .where(contact_t.c.email == email, page_t.c.page_id.is_not(None)).limit(1)) is not None


def link_of(conn: sa.Connection, enrollment_id: str) -> PageLink:
    """The page an enrollment is known to have (if any), what was last written there, and its business link."""
    row = conn.execute(sa.select(page_t.c.page_id, page_t.c.synced_hash, page_t.c.business_page_id,
                                 page_t.c.business_checked_at).where(page_t.c.enrollment_id == enrollment_id)).first()
    return PageLink(*row) if row else PageLink(None, None, None, None)


def save_synced(conn: sa.Connection, enrollment_id: str, worker_id: str, now: datetime, *, page_id: str,
                page_url: str, synced_hash: str, business_page_id: str | None,
                business_checked_at: datetime | None) -> None:
    """Record the page written and release the lease (only if still ours)."""
    conn.execute(page_t.update().where(page_t.c.enrollment_id == enrollment_id).values(
        page_id=page_id, page_url=page_url or None, synced_hash=synced_hash, synced_at=now,
        business_page_id=business_page_id, business_checked_at=business_checked_at, last_error=None,
        updated_at=now, **_released(worker_id)))


def save_failure(conn: sa.Connection, enrollment_id: str, worker_id: str, error: str, now: datetime, *,
                 forget_page: bool = False) -> None:
    """Keep why the write failed and release the lease; `forget_page` when Notion says the page is gone."""
    values = {"last_error": error[:500], "updated_at": now, **_released(worker_id)}
    if forget_page:  # the page was deleted in Notion: find or make a fresh one next time
        values.update(page_id=None, page_url=None, synced_hash=None)
    conn.execute(page_t.update().where(page_t.c.enrollment_id == enrollment_id).values(**values))


def drop_lease(conn: sa.Connection, enrollment_id: str, worker_id: str) -> None:
    """Give the enrollment's page back unwritten (nothing changed, or the pass ran out of time)."""
    conn.execute(page_t.update().where(page_t.c.enrollment_id == enrollment_id).values(**_released(worker_id)))


def _released(worker_id: str) -> dict:
    keep = page_t.c.lease_owner != worker_id
    return {"lease_owner": sa.case((keep, page_t.c.lease_owner), else_=None),
            "lease_expires_at": sa.case((keep, page_t.c.lease_expires_at), else_=None)}


def enrollment_state(conn: sa.Connection, enrollment_id: str) -> EnrollmentState | None:
    """What Notion should show now: the contact, the enrollment and every step's latest outcome."""
    row = conn.execute(
        sa.select(enrollment_t.c.id, enrollment_t.c.contact_id, contact_t.c.email, contact_t.c.first_name,
                  contact_t.c.business_name, enrollment_t.c.segment, enrollment_t.c.campaign, enrollment_t.c.status)
        .join(contact_t, contact_t.c.id == enrollment_t.c.contact_id).where(enrollment_t.c.id == enrollment_id)
    ).first()
    if row is None:
        return None
    sends = conn.execute(sa.select(send_t.c.step, send_t.c.status, send_t.c.ready, send_t.c.due_at,
                                   send_t.c.planned_at, send_t.c.sent_at)
                         .where(send_t.c.enrollment_id == enrollment_id)).all()
    sent = [s for s in sends if s.status == SendStatus.SENT]
    pending = [s for s in sends if s.status in (SendStatus.SCHEDULED, SendStatus.SENDING)]
    ready = [s.due_at for s in pending if s.ready]
    next_due = (min(ready) if ready else min((s.planned_at for s in pending), default=None))
    return EnrollmentState(
        enrollment_id=row.id, contact_id=row.contact_id, email=row.email, first_name=row.first_name,
        business_name=row.business_name, segment=row.segment, campaign=row.campaign, status=row.status,
        sent_steps=frozenset(s.step for s in sent),
        last_sent_at=max((s.sent_at for s in sent if s.sent_at), default=None),
        next_due_at=next_due if row.status == EnrollmentStatus.ACTIVE else None,
    )


def enrollment_for_page(conn: sa.Connection, page_id: str, email: str | None) -> tuple[str, str] | None:
    """(enrollment id, status) of the enrollment a page shows: by its stored page id, else by Email."""
    row = conn.execute(sa.select(enrollment_t.c.id, enrollment_t.c.status)
                       .join(page_t, page_t.c.enrollment_id == enrollment_t.c.id)
                       .where(page_t.c.page_id == page_id)).first()
    if row is None and email:
        row = conn.execute(sa.select(enrollment_t.c.id, enrollment_t.c.status)
                           .join(contact_t, contact_t.c.id == enrollment_t.c.contact_id)
                           .where(contact_t.c.email == email).order_by(enrollment_t.c.created_at.desc())).first()
    return (row.id, row.status) if row else None


def enrollment_contact(conn: sa.Connection, enrollment_id: str) -> str | None:
    """The contact an enrollment belongs to."""
    return conn.scalar(sa.select(enrollment_t.c.contact_id).where(enrollment_t.c.id == enrollment_id))


def queue_resync(conn: sa.Connection, now: datetime, *, contact_id: str | None = None,
                 enrollment_id: str | None = None) -> int:
    """Queue a rewrite of the pages that show a contact (or one enrollment) after a change off the send path.

    Only mirrored enrollments have a page link, so with Notion off this queues nothing.
    """
    where = page_t.c.contact_id == contact_id if contact_id else page_t.c.enrollment_id == enrollment_id
    return _queue_pages(conn, now, where)


def queue_resync_all(conn: sa.Connection, now: datetime) -> int:
    """Queue a rewrite of every page the mirror has written (columns were added to the database)."""
    return _queue_pages(conn, now, page_t.c.page_id.is_not(None))


def _queue_pages(conn: sa.Connection, now: datetime, where) -> int:
    linked = conn.execute(sa.select(page_t.c.enrollment_id, page_t.c.contact_id).where(where)).all()
    repo.insert_outbox(conn, [repo.outbox_row("notion", r.contact_id, {"enrollment_id": r.enrollment_id}, now)
                              for r in linked])
    return len(linked)


def queue_unmirrored(conn: sa.Connection, now: datetime) -> int:
    """Queue a first write for every enrollment the mirror has never tried and nothing waits for: those
    made while Notion was not configured (or before the outbox existed). Returns how many."""
    tried = sa.select(page_t.c.enrollment_id).where(page_t.c.enrollment_id == enrollment_t.c.id).exists()
    waiting = sa.select(outbox_t.c.id).where(outbox_t.c.channel == "notion", outbox_t.c.done_at.is_(None),
                                             outbox_t.c.contact_id == enrollment_t.c.contact_id).exists()
    erased = contact_t.c.email.endswith(f"@{ERASED_DOMAIN}", autoescape=True)  # nobody to show any more
    missing = conn.execute(sa.select(enrollment_t.c.id, enrollment_t.c.contact_id)
                           .join(contact_t, contact_t.c.id == enrollment_t.c.contact_id)
                           .where(~tried, ~waiting, ~erased).order_by(enrollment_t.c.created_at)).all()
    repo.insert_outbox(conn, [repo.outbox_row("notion", r.contact_id, {"enrollment_id": r.id}, now) for r in missing])
    return len(missing)


def link_imported(conn: sa.Connection, rows: list[dict]) -> None:
    """Remember the page an imported enrollment came from, so the mirror updates it in place."""
    repo.insert_ignoring_conflicts(conn, page_t, rows)
