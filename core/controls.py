"""Stops and manual controls on sequences. Each writes its audit event in the caller's transaction."""

from datetime import datetime

import sqlalchemy as sa

from core import repo
from core.notion import store as notion_store
from core.errors import NotFound, NurtureError, StoppedContact
from core.ids import new_id
from core.outcomes import Finished, may_have_been_delivered, release_next_steps
from core.statuses import STOPPABLE, EnrollmentStatus, SendStatus
from core.tables import batch_t, contact_t, enrollment_t, send_t


def _cancel_pending(conn: sa.Connection, where, reason: str, now: datetime) -> int:
    """Cancel every send not yet claimed; claimed ones are replayed as they were (DESIGN §4.3)."""
    return conn.execute(send_t.update().where(where, send_t.c.status.in_(STOPPABLE)).values(
        status=SendStatus.CANCELLED, last_error=reason, finished_at=now, updated_at=now)).rowcount


def _contact_exists(conn: sa.Connection, contact_id: str) -> None:
    if conn.scalar(sa.select(contact_t.c.id).where(contact_t.c.id == contact_id)) is None:
        raise NotFound(f"no contact {contact_id}")


def _stop_contact(conn, contact_id, status: EnrollmentStatus, reason: str, now) -> int:
    conn.execute(enrollment_t.update().where(
        enrollment_t.c.contact_id == contact_id,
        enrollment_t.c.status.in_([EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED]),
    ).values(status=status, status_reason=reason, updated_at=now))
    return _cancel_pending(conn, send_t.c.contact_id == contact_id, f"cancelled: {reason}", now)


def steps_still_going(conn: sa.Connection, where) -> list[int]:
    """Steps (of the sends `where` picks) already handed to the provider when a stop came: replayed as they
    were (DESIGN §4.3), so they may still arrive. A batch the provider refused at every attempt sent
    nothing, and its next claim drops the stopped members, so it is left out."""
    refused_throughout = sa.and_(send_t.c.lease_owner.is_(None), sa.func.coalesce(batch_t.c.refused_attempts, 0)
                                 >= sa.func.coalesce(batch_t.c.attempts, 1))
    with_batch = send_t.outerjoin(batch_t, batch_t.c.id == send_t.c.batch_id)
    found = conn.execute(sa.select(send_t.c.step).select_from(with_batch).where(
        where, send_t.c.status == SendStatus.SENDING, sa.not_(refused_throughout))).scalars()
    return sorted(set(found))


def still_going_clause(steps: list[int]) -> str:
    """The words for steps_still_going, as a clause ('' for none): the same in the dialog and in the result."""
    if not steps:
        return ""
    which = f"step {steps[0]} was" if len(steps) == 1 else f"steps {', '.join(map(str, steps))} were"
    return f"{which} already handed to Resend and may still arrive (a sent email cannot be recalled)"


def unsubscribe_contact(conn: sa.Connection, contact_id: str, *, actor: str, now: datetime,
                        detail: dict | None = None) -> bool:
    """Unsubscribe at once; returns False when the contact had already unsubscribed."""
    _contact_exists(conn, contact_id)
    changed = conn.execute(contact_t.update().where(
        contact_t.c.id == contact_id, contact_t.c.unsubscribed_at.is_(None)
    ).values(unsubscribed_at=now, updated_at=now)).rowcount
    if not changed:
        return False
    cancelled = _stop_contact(conn, contact_id, EnrollmentStatus.UNSUBSCRIBED,
                              f"unsubscribed on {now:%Y-%m-%d %H:%M} UTC", now)
    repo.insert_events(conn, [repo.event_row(now, actor, "unsubscribed", contact_id=contact_id,
                                             detail={**(detail or {}), "cancelled_sends": cancelled})])
    notion_store.queue_resync(conn, now, contact_id=contact_id)
    return True


def suppress_contact(conn: sa.Connection, contact_id: str, reason: str, *, actor: str, now: datetime,
                     detail: dict | None = None, status: EnrollmentStatus = EnrollmentStatus.BOUNCED) -> bool:
    """Block a contact after a hard bounce or complaint (or an erasure, whose sequences end `cancelled`,
    not `bounced`); returns False when already suppressed."""
    changed = conn.execute(contact_t.update().where(
        contact_t.c.id == contact_id, contact_t.c.suppressed_at.is_(None)
    ).values(suppressed_at=now, suppressed_reason=reason, updated_at=now)).rowcount
    if not changed:
        return False
    cancelled = _stop_contact(conn, contact_id, status, f"{reason} on {now:%Y-%m-%d %H:%M} UTC", now)
    repo.insert_events(conn, [repo.event_row(now, actor, f"suppressed_{reason}", contact_id=contact_id,
                                             detail={**(detail or {}), "cancelled_sends": cancelled})])
    notion_store.queue_resync(conn, now, contact_id=contact_id)
    return True


def cancel_sequence(conn: sa.Connection, enrollment_id: str, *, actor: str, now: datetime,
                    reason: str = "cancelled by a marketer") -> int | None:
    """Cancel every send still to come; None when the sequence had already stopped (cancelled,
    unsubscribed, bounced), whose status and reason then stay as they are."""
    enrollment = _enrollment(conn, enrollment_id)
    changed = conn.execute(enrollment_t.update().where(
        enrollment_t.c.id == enrollment_id,
        enrollment_t.c.status.in_([EnrollmentStatus.ACTIVE, EnrollmentStatus.COMPLETED]),
    ).values(status=EnrollmentStatus.CANCELLED, status_reason=reason, updated_at=now)).rowcount
    if not changed:
        return None
    cancelled = _cancel_pending(conn, send_t.c.enrollment_id == enrollment_id, f"cancelled: {reason}", now)
    repo.insert_events(conn, [repo.event_row(now, actor, "sequence_cancelled", contact_id=enrollment.contact_id,
                                             enrollment_id=enrollment_id, detail={"cancelled_sends": cancelled})])
    notion_store.queue_resync(conn, now, enrollment_id=enrollment_id)
    return cancelled


def skip_step(conn: sa.Connection, enrollment_id: str, step: int, *, actor: str, now: datetime) -> bool:
    """Skip a step not yet claimed; the sequence moves on to the next one."""
    _lock_sequence(conn, enrollment_id)
    enrollment = _enrollment(conn, enrollment_id)
    skipped = conn.execute(send_t.update().where(
        send_t.c.enrollment_id == enrollment_id, send_t.c.step == step, send_t.c.status == SendStatus.SCHEDULED,
    ).values(status=SendStatus.SKIPPED, last_error=f"skipped by {actor}", finished_at=now, updated_at=now)).rowcount
    if skipped:
        release_next_steps(conn, [Finished(enrollment_id, enrollment.campaign, enrollment.timing)], now)
        repo.insert_events(conn, [repo.event_row(now, actor, "step_skipped", contact_id=enrollment.contact_id,
                                                 enrollment_id=enrollment_id, detail={"step": step})])
        notion_store.queue_resync(conn, now, enrollment_id=enrollment_id)
    return bool(skipped)


_NOT_SKIPPED = {SendStatus.SENDING: "it was already being sent", SendStatus.SENT: "it had already been sent",
                SendStatus.FAILED: "it had already failed (retry or resend it instead)",
                SendStatus.CANCELLED: "it had been cancelled with the rest of the sequence"}


def why_not_skipped(conn: sa.Connection, enrollment_id: str, step: int) -> str | None:
    """Why skip_step changed nothing, in words for the marketer; None when the step stands skipped
    already (a colleague's skip, a second click), which is what was asked."""
    status = conn.scalar(sa.select(send_t.c.status).where(send_t.c.enrollment_id == enrollment_id,
                                                          send_t.c.step == step)
                         .order_by(send_t.c.generation.desc()).limit(1))
    if status == SendStatus.SKIPPED:
        return None
    return _NOT_SKIPPED.get(status, "the sequence has no such step")


def resend_step(conn: sa.Connection, enrollment_id: str, step: int, *, actor: str, now: datetime,
                seen_generation: int | None = None) -> str:
    """Queue a step again as a new generation (its own idempotency key). It goes in its turn:
    at once when no earlier step is still to go, otherwise after them, under the order rule.

    `seen_generation`: the step's newest generation when the marketer asked. A resend queued since
    (a second click, a second tab, a colleague) has already done what was asked: a third copy is refused.
    """
    _lock_sequence(conn, enrollment_id)  # first: what is read below is then what a worker recording a step sees
    enrollment = _enrollment(conn, enrollment_id)
    _refuse_if_stopped(conn, enrollment.contact_id)
    _refuse_if_cancelled(enrollment)
    latest = conn.execute(sa.select(send_t.c.generation, send_t.c.status).where(
        send_t.c.enrollment_id == enrollment_id, send_t.c.step == step
    ).order_by(send_t.c.generation.desc()).limit(1)).first()
    if latest is not None and latest.status in (SendStatus.SCHEDULED, SendStatus.SENDING):
        raise NurtureError(f"step {step} has not gone out yet ({latest.status}); resending it would send it twice")
    if seen_generation is not None and latest is not None and latest.generation != seen_generation:
        raise NurtureError(f"step {step} was already sent again since this request was made (generation "
                           f"{latest.generation}); resending it once more would send a copy nobody asked for")
    generation = (latest.generation if latest else 0) + 1
    send_id = _queue_generation(conn, enrollment, step, generation, now)
    repo.insert_events(conn, [repo.event_row(now, actor, "step_resend_requested", contact_id=enrollment.contact_id,
                                             enrollment_id=enrollment_id, send_id=send_id,
                                             detail={"step": step, "generation": generation})])
    notion_store.queue_resync(conn, now, enrollment_id=enrollment_id)
    return send_id


def retry_send(conn: sa.Connection, send_id: str, *, actor: str, now: datetime) -> bool:
    """Put a failed send back in the queue with fresh attempts and a fresh batch. Like a resend, it
    goes in its turn. A failure that a newer generation of its step replaced is not retried."""
    row = conn.execute(sa.select(send_t.c.contact_id, send_t.c.enrollment_id, send_t.c.step, send_t.c.generation,
                                 send_t.c.status, send_t.c.last_error).where(send_t.c.id == send_id)).first()
    if row is None:
        raise NotFound(f"no send {send_id}")
    _lock_sequence(conn, row.enrollment_id)  # before reading the enrollment, as in resend_step
    _refuse_if_stopped(conn, row.contact_id)
    enrollment = _enrollment(conn, row.enrollment_id)
    _refuse_if_cancelled(enrollment)
    newer = conn.scalar(sa.select(sa.func.max(send_t.c.generation)).where(
        send_t.c.enrollment_id == row.enrollment_id, send_t.c.step == row.step, send_t.c.generation > row.generation))
    if newer is not None:
        raise NurtureError(f"step {row.step} was queued again after this failure (generation {newer}); "
                           "retrying this one would send it twice")
    if row.status == SendStatus.FAILED and may_have_been_delivered(row.last_error):
        # The failure may have reached the person: it stays on record as such, and the retry is a new copy of the
        # step (as a resend is). Revived in place, the row lost the only sign that the sequence may have begun,
        # and a resubmission could then re-segment a sequence whose first email the person may already hold.
        _queue_generation(conn, enrollment, row.step, row.generation + 1, now)
    elif conn.execute(send_t.update().where(send_t.c.id == send_id, send_t.c.status == SendStatus.FAILED).values(
            status=SendStatus.SCHEDULED, ready=False, due_at=now, attempts=0, batch_id=None, idempotency_key=None,
            lease_owner=None, lease_expires_at=None, finished_at=None, last_error=None, updated_at=now)).rowcount:
        _reopen(conn, enrollment, now)
        _take_turn(conn, enrollment, row.step, now)
    else:
        return False  # not failed any more
    repo.insert_events(conn, [repo.event_row(now, actor, "send_retry_requested", contact_id=row.contact_id,
                                             enrollment_id=row.enrollment_id, send_id=send_id,
                                             detail={"step": row.step})])
    notion_store.queue_resync(conn, now, enrollment_id=row.enrollment_id)
    return True


def _queue_generation(conn: sa.Connection, enrollment, step: int, generation: int, now: datetime) -> str:
    """A new copy of a step, with its own idempotency key, going in its turn; its send id."""
    send_id = new_id()
    _reopen(conn, enrollment, now)
    conn.execute(send_t.insert().values(
        id=send_id, enrollment_id=enrollment.id, contact_id=enrollment.contact_id, step=step, generation=generation,
        status=SendStatus.SCHEDULED, ready=False, planned_at=now, due_at=now, attempts=0, created_at=now,
        updated_at=now))
    _take_turn(conn, enrollment, step, now)
    return send_id


def _lock_sequence(conn: sa.Connection, enrollment_id: str) -> None:
    """Hold the sequence's sends until this commits (PostgreSQL). A worker recording one of its steps
    meanwhile then releases the next step after seeing this change, never from a stale read."""
    repo.lock_sends_and_find_started(conn, [enrollment_id])


def _take_turn(conn: sa.Connection, enrollment, step: int, now: datetime) -> None:
    """A step queued again waits for every earlier step still to go, and every later step waits for it.

    One step of a sequence at a time (DESIGN §4.4): later scheduled steps are held, and the order
    rule then releases whichever step comes first, this one only if nothing before it is pending.
    """
    _hold_later_steps(conn, enrollment.id, step, now)
    release_next_steps(conn, [Finished(enrollment.id, enrollment.campaign, enrollment.timing)], now)


def _hold_later_steps(conn: sa.Connection, enrollment_id: str, step: int, now: datetime) -> None:
    """A step sent again goes first: later steps wait until it finishes, then keep the order rule's gap."""
    conn.execute(send_t.update().where(
        send_t.c.enrollment_id == enrollment_id, send_t.c.step > step, send_t.c.status == SendStatus.SCHEDULED,
    ).values(ready=False, updated_at=now))


def _refuse_if_stopped(conn: sa.Connection, contact_id: str) -> None:
    """Nobody may be emailed again after unsubscribing, bouncing, complaining or being erased."""
    row = conn.execute(sa.select(contact_t.c.unsubscribed_at, contact_t.c.suppressed_reason)
                       .where(contact_t.c.id == contact_id)).one()
    if row.unsubscribed_at is not None:
        raise StoppedContact("this contact unsubscribed; nothing more can be sent to them")
    if row.suppressed_reason is not None:
        raise StoppedContact(f"this contact is suppressed ({row.suppressed_reason}); nothing more can be sent")


def _refuse_if_cancelled(enrollment) -> None:
    # Unsubscribed and bounced sequences are refused by the contact check above; this is a cancel.
    if enrollment.status == EnrollmentStatus.CANCELLED:
        raise StoppedContact("this sequence was cancelled; nothing more is sent in it")


def _reopen(conn: sa.Connection, enrollment, now: datetime) -> None:
    """A completed sequence with a step queued again is active until that step finishes; otherwise the
    claim would take it for a stopped sequence and cancel the send."""
    conn.execute(enrollment_t.update().where(enrollment_t.c.id == enrollment.id,
                                             enrollment_t.c.status == EnrollmentStatus.COMPLETED)
                 .values(status=EnrollmentStatus.ACTIVE, status_reason=None, updated_at=now))


def _enrollment(conn: sa.Connection, enrollment_id: str):
    row = conn.execute(sa.select(enrollment_t).where(enrollment_t.c.id == enrollment_id)).first()
    if row is None:
        raise NotFound(f"no enrollment {enrollment_id}")
    return row
