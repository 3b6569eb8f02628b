"""Named SQL for the dispatcher: claiming sends under a lease, and recording what happened.

PostgreSQL claims with FOR UPDATE SKIP LOCKED, so concurrent workers take disjoint rows.
SQLite runs the same UPDATE … RETURNING inside a BEGIN IMMEDIATE transaction, which makes
the whole claim one atomic step against every other writer.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from core import repo
from core.ids import new_id
from core.statuses import EnrollmentStatus, SendStatus
from core.tables import batch_t, contact_t, enrollment_t, erasure_hold_t, send_t


@dataclass(frozen=True)
class ClaimedSend:
    id: str
    enrollment_id: str
    contact_id: str
    step: int
    generation: int
    due_at: datetime
    email: str
    first_name: str | None
    business_name: str | None
    segment: str
    campaign: str
    timing: str
    red_systems: int | None
    orange_systems: int | None


@dataclass(frozen=True)
class ClaimedBatch:
    id: str
    idempotency_key: str
    attempts: int
    members: list[ClaimedSend]
    created_at: datetime  # when its key was first used: the key's age at the provider
    refused_attempts: int = 0  # attempts the provider refused outright, so nothing of them was sent
    uncertain_since: datetime | None = None  # the first failure that may have reached the provider

    @property
    def may_have_been_sent(self) -> bool:
        """An earlier attempt may have reached the provider (it timed out, failed with a 5xx, or its worker died)."""
        return self.refused_attempts < self.attempts - 1


def work_waiting(conn: sa.Connection, now: datetime) -> bool:
    """A cheap read: is any send due, or any lease expired? Idle passes then take no write lock."""
    due = sa.select(send_t.c.id).where(
        send_t.c.status == SendStatus.SCHEDULED, send_t.c.ready.is_(True), send_t.c.due_at <= now).limit(1)
    expired = sa.select(send_t.c.id).where(
        send_t.c.status == SendStatus.SENDING, send_t.c.lease_expires_at <= now).limit(1)
    return conn.scalar(due) is not None or conn.scalar(expired) is not None


def _lease(worker_id: str, now: datetime, lease: timedelta) -> dict:
    return {"lease_owner": worker_id, "lease_expires_at": now + lease, "updated_at": now}


def reclaim_expired(conn: sa.Connection, worker_id: str, now: datetime, lease: timedelta) -> ClaimedBatch | None:
    """Take over one batch whose lease ran out (killed worker, or a backoff that is over)."""
    candidates = (
        sa.select(send_t.c.batch_id)
        .where(send_t.c.status == SendStatus.SENDING, send_t.c.lease_expires_at <= now)
        .limit(10)
    )
    # Lock the batch row, not its members: two workers probing members of one batch could
    # each lock a different member and then deadlock updating the rest.
    batch_id = conn.scalar(
        sa.select(batch_t.c.id).where(batch_t.c.id.in_(candidates.scalar_subquery()))
        .limit(1).with_for_update(skip_locked=True)
    )
    if batch_id is None:
        return None
    taken = conn.execute(
        send_t.update()
        .where(send_t.c.batch_id == batch_id, send_t.c.status == SendStatus.SENDING,
               send_t.c.lease_expires_at <= now)
        .values(attempts=send_t.c.attempts + 1, **_lease(worker_id, now, lease))
        .returning(send_t.c.id)
    ).scalars().all()
    if not taken:
        return None  # another worker renewed it between our probe and our update
    conn.execute(batch_t.update().where(batch_t.c.id == batch_id).values(attempts=batch_t.c.attempts + 1))
    batch = _load_batch(conn, batch_id)
    if batch.may_have_been_sent or not _cancel_stopped(conn, batch_id, now):
        return batch
    # The provider refused every earlier attempt (a rate limit, a bad key held by the breaker), so
    # nothing of it went: a stop since then applies to it as to a fresh claim (DESIGN §4.5).
    return _rekeyed(conn, batch_id, worker_id, now)


def _rekeyed(conn: sa.Connection, batch_id: str, worker_id: str, now: datetime) -> ClaimedBatch | None:
    """What is left of a never-sent batch after some members were stopped, under a fresh key (its
    content changed, and nothing went under the old one); None when nobody is left."""
    size = conn.scalar(sa.select(sa.func.count()).where(send_t.c.batch_id == batch_id))
    if not size:
        conn.execute(batch_t.delete().where(batch_t.c.id == batch_id))
        return None
    renew_key(conn, batch_id, worker_id, now)
    conn.execute(batch_t.update().where(batch_t.c.id == batch_id).values(size=size))
    return _load_batch(conn, batch_id)


def claim_due(conn: sa.Connection, worker_id: str, now: datetime, lease: timedelta, limit: int) -> ClaimedBatch | None:
    """Claim up to `limit` due sends into a new persisted batch, oldest due first.

    The claim touches only the send table, so it walks one index (status, ready, due_at)
    however large the campaign grows. Stops cancel pending sends when they happen; the
    check after the claim is the safety net for anything that slipped past that.
    """
    due = (
        sa.select(send_t.c.id)
        .where(send_t.c.status == SendStatus.SCHEDULED, send_t.c.ready.is_(True), send_t.c.due_at <= now)
        .order_by(send_t.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    batch_id = new_id()
    key = f"nurture-batch-{batch_id}"
    conn.execute(batch_t.insert().values(id=batch_id, idempotency_key=key, size=0, attempts=1, created_at=now))
    claimed = conn.execute(
        send_t.update()
        .where(send_t.c.id.in_(due.scalar_subquery()))
        .values(status=SendStatus.SENDING, batch_id=batch_id, idempotency_key=key,
                attempts=send_t.c.attempts + 1, **_lease(worker_id, now, lease))
        .returning(send_t.c.id)
    ).scalars().all()
    claimed = len(claimed) - _cancel_stopped(conn, batch_id, now) - _one_per_enrollment(conn, batch_id)
    if not claimed:
        conn.execute(batch_t.delete().where(batch_t.c.id == batch_id))
        return None
    conn.execute(batch_t.update().where(batch_t.c.id == batch_id).values(size=claimed))
    return _load_batch(conn, batch_id)


def renew_key(conn: sa.Connection, batch_id: str, worker_id: str, now: datetime) -> str | None:
    """Put a batch that never reached the provider under a fresh idempotency key, dated now; None
    when this worker no longer holds it. Only for a batch every attempt of which was refused."""
    key = f"nurture-batch-{new_id()}"
    renewed = conn.execute(send_t.update().where(
        send_t.c.batch_id == batch_id, send_t.c.lease_owner == worker_id, send_t.c.status == SendStatus.SENDING,
    ).values(idempotency_key=key, updated_at=now)).rowcount
    if not renewed:
        return None
    conn.execute(batch_t.update().where(batch_t.c.id == batch_id).values(idempotency_key=key, created_at=now))
    return key


def release_unsent(conn: sa.Connection, batch_id: str, worker_id: str) -> int:
    """Give back a batch that never reached the provider: its sends return to the queue as they were."""
    released = conn.execute(send_t.update().where(
        send_t.c.batch_id == batch_id, send_t.c.lease_owner == worker_id, send_t.c.status == SendStatus.SENDING,
    ).values(status=SendStatus.SCHEDULED, batch_id=None, idempotency_key=None, lease_owner=None,
             lease_expires_at=None, attempts=send_t.c.attempts - 1)).rowcount
    conn.execute(batch_t.delete().where(batch_t.c.id == batch_id,
                                        ~sa.exists().where(send_t.c.batch_id == batch_id)))
    return released


def _one_per_enrollment(conn: sa.Connection, batch_id: str) -> int:
    """Keep one email per person in flight: the lowest step of this batch, and none for a person
    whose email is already in flight in another batch. The rest go back to wait, not ready, until
    the order rule releases them when the email ahead of them finishes.

    Resends and retries already queue a step in its turn (core/controls.py); this is the safety
    net that makes the order rule hold at the claim itself, whatever else a lane has in flight.
    """
    members = conn.execute(sa.select(send_t.c.id, send_t.c.enrollment_id, send_t.c.step)
                           .where(send_t.c.batch_id == batch_id).order_by(send_t.c.step)).all()
    # Locked (waiting, not skipping): a worker recording one of these meanwhile either commits first, and
    # it is no longer in flight here, or waits for this claim and then releases what it put back.
    in_flight = set(conn.execute(sa.select(send_t.c.enrollment_id).where(
        send_t.c.enrollment_id.in_({m.enrollment_id for m in members}), send_t.c.status == SendStatus.SENDING,
        send_t.c.batch_id != batch_id).with_for_update()).scalars())
    extra = []
    for member in members:
        if member.enrollment_id in in_flight:
            extra.append(member.id)
        in_flight.add(member.enrollment_id)
    if not extra:
        return 0
    return conn.execute(send_t.update().where(send_t.c.id.in_(extra)).values(
        status=SendStatus.SCHEDULED, ready=False, batch_id=None, idempotency_key=None, lease_owner=None,
        lease_expires_at=None, attempts=send_t.c.attempts - 1)).rowcount


def _cancel_stopped(conn: sa.Connection, batch_id: str, now: datetime) -> int:
    """Take members whose contact or sequence was stopped out of a fresh batch, before it is ever sent."""
    stopped = (
        sa.select(send_t.c.id)
        .join(enrollment_t, enrollment_t.c.id == send_t.c.enrollment_id)
        .join(contact_t, contact_t.c.id == send_t.c.contact_id)
        .where(send_t.c.batch_id == batch_id, sa.or_(
            enrollment_t.c.status != EnrollmentStatus.ACTIVE,
            contact_t.c.unsubscribed_at.is_not(None), contact_t.c.suppressed_at.is_not(None)))
    )
    cancelled = conn.execute(send_t.update().where(send_t.c.id.in_(stopped.scalar_subquery())).values(
        status=SendStatus.CANCELLED, batch_id=None, idempotency_key=None, lease_owner=None, lease_expires_at=None,
        last_error=_STOPPED, finished_at=now, updated_at=now)
        .returning(send_t.c.id, send_t.c.contact_id, send_t.c.enrollment_id, send_t.c.step)).all()
    # The stop itself cancelled what it could see; these slipped past it, and the trail says so.
    repo.insert_events(conn, [repo.event_row(now, "dispatcher", "send_cancelled", contact_id=c.contact_id,
                                             enrollment_id=c.enrollment_id, send_id=c.id,
                                             detail={"step": c.step, "reason": _STOPPED}) for c in cancelled])
    return len(cancelled)


_STOPPED = "cancelled: the contact or sequence was stopped"


def _load_batch(conn: sa.Connection, batch_id: str) -> ClaimedBatch:
    batch = conn.execute(sa.select(batch_t).where(batch_t.c.id == batch_id)).one()
    held = erasure_hold_t.c.send_id.is_not(None)  # a member erased since: rendered as first handed over

    def person(column: str) -> sa.ColumnElement:
        return sa.case((held, erasure_hold_t.c[column]), else_=contact_t.c[column]).label(column)

    rows = conn.execute(
        sa.select(
            send_t.c.id, send_t.c.enrollment_id, send_t.c.contact_id, send_t.c.step, send_t.c.generation,
            send_t.c.due_at, person("email"), person("first_name"), person("business_name"), enrollment_t.c.segment,
            enrollment_t.c.campaign, enrollment_t.c.timing, enrollment_t.c.red_systems,
            enrollment_t.c.orange_systems,
        )
        .join(contact_t, contact_t.c.id == send_t.c.contact_id)
        .join(enrollment_t, enrollment_t.c.id == send_t.c.enrollment_id)
        .outerjoin(erasure_hold_t, erasure_hold_t.c.send_id == send_t.c.id)
        .where(send_t.c.batch_id == batch_id)
        .order_by(send_t.c.id)  # a replay lists the members in the same order
    )
    members = [ClaimedSend(**r._mapping) for r in rows]
    return ClaimedBatch(batch.id, batch.idempotency_key, batch.attempts, members, batch.created_at,
                        batch.refused_attempts, batch.uncertain_since)
