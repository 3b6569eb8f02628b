"""The Sends page: the queue by state, each list read off an index in order and paged with LIMIT."""

from datetime import datetime, timedelta

import sqlalchemy as sa

from core.queries.tables import rows_as_dicts
from core.tables import contact_t, enrollment_t, send_t

SOON = timedelta(hours=1)
RECENT = timedelta(hours=24)
LISTS = ("due", "sending", "failed", "sent")

_COLUMNS = (
    send_t.c.id.label("send_id"), send_t.c.step, send_t.c.generation, send_t.c.contact_id, contact_t.c.email,
    enrollment_t.c.segment, send_t.c.due_at, send_t.c.attempts, send_t.c.last_error, send_t.c.provider_id,
    send_t.c.lease_owner, send_t.c.lease_expires_at, send_t.c.sent_at, send_t.c.finished_at,
)


def _ready_scheduled():
    return sa.and_(send_t.c.status == "scheduled", send_t.c.ready == sa.true())


def _where(name: str, now: datetime):
    # A sending row always holds a lease and a failed one a finish time: saying so lets the
    # partial indexes on those columns (migration 0006) serve the lists in order.
    return {
        "due": _ready_scheduled(),
        "sending": sa.and_(send_t.c.status == "sending", send_t.c.lease_expires_at.is_not(None)),
        "failed": sa.and_(send_t.c.status == "failed", send_t.c.finished_at.is_not(None), ~superseded(),
                          ~_stopped()),
        # Only the last day: counting every email ever sent would walk a million index entries.
        "sent": sa.and_(send_t.c.status == "sent", send_t.c.finished_at >= now - RECENT),
    }[name]


def superseded():
    """A newer generation of the same step exists: that one, not this failure, is the step's fate."""
    newer = send_t.alias("newer")
    return sa.exists().where(newer.c.enrollment_id == send_t.c.enrollment_id, newer.c.step == send_t.c.step,
                             newer.c.generation > send_t.c.generation)


def _stopped():
    """The person unsubscribed, bounced or was erased, or the sequence was cancelled: nothing of theirs
    can be retried, so their failures leave the list of what needs attention."""
    contact, enrollment = contact_t.alias("stopped_contact"), enrollment_t.alias("stopped_enrollment")
    return sa.or_(
        sa.exists().where(contact.c.id == send_t.c.contact_id,
                          sa.or_(contact.c.unsubscribed_at.is_not(None), contact.c.suppressed_at.is_not(None))),
        sa.exists().where(enrollment.c.id == send_t.c.enrollment_id, enrollment.c.status == "cancelled"))


def _order(name: str):
    return {
        "due": (send_t.c.due_at, send_t.c.id),
        "sending": (send_t.c.lease_expires_at,),
        "failed": (send_t.c.finished_at.desc(),),
        "sent": (send_t.c.finished_at.desc(),),
    }[name]


def queue_length(conn: sa.Connection, name: str, now: datetime) -> int:
    """How long one list is: the Sends page redraws each list on its own (see queue_counts)."""
    return conn.scalar(sa.select(sa.func.count()).select_from(send_t).where(_where(name, now)))


def queue_list(conn: sa.Connection, name: str, *, now: datetime, offset: int = 0, limit: int = 50) -> list[dict]:
    """One page of a queue list: 'due' (soonest first), 'sending', 'failed' or 'sent' in the last 24 h."""
    query = (
        sa.select(*_COLUMNS)
        .select_from(send_t.join(contact_t, contact_t.c.id == send_t.c.contact_id)
                     .join(enrollment_t, enrollment_t.c.id == send_t.c.enrollment_id))
        .where(_where(name, now)).order_by(*_order(name)).offset(max(0, offset)).limit(limit)
    )
    return rows_as_dicts(conn.execute(query))


def standing_failures_by_step(conn: sa.Connection, since: datetime) -> dict[int, tuple[int, int]]:
    """Failures that still need attention (the Failed list) per step: all, and those since `since`."""
    rows = conn.execute(sa.select(send_t.c.step, sa.func.count(), sa.func.count().filter(send_t.c.finished_at >= since))
                        .where(_where("failed", since)).group_by(send_t.c.step)).all()
    return {step: (n, recent) for step, n, recent in rows}


def standing_failures(by_step: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """All standing failures, and those since the `since` they were counted from, from standing_failures_by_step."""
    return sum(n for n, _ in by_step.values()), sum(recent for _, recent in by_step.values())


def queue_counts(conn: sa.Connection, now: datetime) -> dict[str, int]:
    """How long each list is ('sent': in the last 24 h) and how the queue splits up.

    'due' is the Queued list: each person's next email only (a sequence sends one step at a time).
    'scheduled' counts every email planned, later steps too, as Overview does. 'due_now' and
    'due_next_hour' never overlap: the second starts after now."""
    ready = send_t.c.ready == sa.true()
    due_now, due_next_hour, due_all, scheduled = conn.execute(sa.select(
        sa.func.count().filter(ready, send_t.c.due_at <= now),
        sa.func.count().filter(ready, send_t.c.due_at > now, send_t.c.due_at <= now + SOON),
        sa.func.count().filter(ready),
        sa.func.count(),
    ).where(send_t.c.status == "scheduled")).one()
    lengths = {name: conn.scalar(sa.select(sa.func.count()).select_from(send_t).where(_where(name, now)))
               for name in ("sending", "failed", "sent")}
    return {"due": due_all, "scheduled": scheduled, "due_now": due_now, "due_next_hour": due_next_hour, **lengths}
