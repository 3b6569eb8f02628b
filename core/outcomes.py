"""Named SQL that records what a provider call did, and releases each sequence's next step."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from core.campaign import CAMPAIGNS, Timing
from core.sequencing import StepState, next_due
from core.statuses import EnrollmentStatus, SendStatus
from core.tables import batch_t, enrollment_t, send_t


# How the reasons of failures that may still have been delivered begin, after the HTTP status a reason may
# lead with: a batch given up after timeouts or 5xx (core/dispatch.py), or one whose key expired or was
# refused on replay (core/resend_mailer.py). A retry is a new email, not a replay.
_UNCERTAIN_STARTS = ("outcome unknown", "gave up after")
_UNCERTAIN_FAILURE = re.compile(r"(?:\d{3} )?(?:%s)" % "|".join(map(re.escape, _UNCERTAIN_STARTS)))


def may_have_been_delivered(reason: str | None) -> bool:
    """Whether a failed send's email may have reached the person anyway, so a retry could be a second copy."""
    return bool(reason and _UNCERTAIN_FAILURE.match(reason))


# How a sent email's reason begins when Resend accepted it and later reported it failed (its email.failed
# event, core/provider_events.py): a sent email carries no other reason.
FAILED_AFTER_ACCEPTING = "provider failed: "


def failed_after_accepting(send: dict) -> str | None:
    """Why Resend reported this sent email failed after accepting it; None if it did not."""
    reason = send.get("last_error") or ""
    if send["status"] != SendStatus.SENT or not reason.startswith(FAILED_AFTER_ACCEPTING):
        return None
    return reason.removeprefix(FAILED_AFTER_ACCEPTING)


def may_have_been_delivered_sql(reason: sa.ColumnElement) -> sa.ColumnElement:
    """The same test in SQL, for both backends (LIKE's `___` stands for the HTTP status)."""
    return sa.or_(*(reason.like(f"{status}{start}%") for start in _UNCERTAIN_STARTS for status in ("", "___ ")))


@dataclass(frozen=True)
class Finished:
    """A send that reached a final state; its sequence may now release the next step."""

    enrollment_id: str
    campaign: str
    timing: str


def _owned(send_ids, worker_id: str):
    # A worker only records outcomes for sends it still holds: a lease lost to another
    # worker means that worker now owns the replay and its outcome.
    return sa.and_(send_t.c.id.in_(send_ids), send_t.c.status == SendStatus.SENDING,
                   send_t.c.lease_owner == worker_id)


def _per_send(values: dict[str, str]):
    """A CASE giving each send its own value, so a whole batch is recorded in one statement."""
    return sa.case(values, value=send_t.c.id)


def mark_sent(conn: sa.Connection, provider_ids: dict[str, str], worker_id: str, now: datetime) -> set[str]:
    """Record accepted sends (send id → provider id); returns the ids this worker still held."""
    if not provider_ids:
        return set()
    return set(conn.execute(send_t.update().where(_owned(list(provider_ids), worker_id)).values(
        status=SendStatus.SENT, provider_id=_per_send(provider_ids), sent_at=now, finished_at=now, last_error=None,
        lease_owner=None, lease_expires_at=None, updated_at=now,
    ).returning(send_t.c.id)).scalars())


def mark_failed(conn: sa.Connection, errors: dict[str, str], worker_id: str, now: datetime) -> set[str]:
    """Record final failures (send id → reason); returns the ids this worker still held."""
    if not errors:
        return set()
    reasons = {send_id: reason[:2000] for send_id, reason in errors.items()}
    return set(conn.execute(send_t.update().where(_owned(list(errors), worker_id)).values(
        status=SendStatus.FAILED, last_error=_per_send(reasons), finished_at=now, lease_owner=None,
        lease_expires_at=None, updated_at=now,
    ).returning(send_t.c.id)).scalars())


def mark_backoff(conn: sa.Connection, batch_id: str, error: str, worker_id: str, now: datetime,
                 delay: timedelta, *, refused: bool, uncertain_since: datetime | None = None) -> int:
    """Keep the batch (same members, same key) and let its lease expire when the backoff is over.

    `refused`: this attempt certainly sent nothing (the provider refused it, or it was never made);
    otherwise `uncertain_since` is when the batch's first such uncertain failure happened.
    """
    held = conn.execute(
        send_t.update()
        .where(send_t.c.batch_id == batch_id, send_t.c.status == SendStatus.SENDING,
               send_t.c.lease_owner == worker_id)
        .values(last_error=error[:2000], lease_owner=None, lease_expires_at=now + delay, updated_at=now)
    ).rowcount
    if held:
        change = ({"refused_attempts": batch_t.c.refused_attempts + 1} if refused
                  else {"uncertain_since": uncertain_since})
        conn.execute(batch_t.update().where(batch_t.c.id == batch_id).values(**change))
    return held


def release_next_steps(conn: sa.Connection, finished: Iterable[Finished], now: datetime) -> None:
    """Make each sequence's next step ready at the time the order rule allows (DESIGN §4.4)."""
    by_enrollment = {f.enrollment_id: f for f in finished}
    if not by_enrollment:
        return
    rows = conn.execute(
        sa.select(send_t.c.id, send_t.c.enrollment_id, send_t.c.step, send_t.c.generation, send_t.c.status,
                  send_t.c.ready, send_t.c.planned_at, send_t.c.finished_at)
        .where(send_t.c.enrollment_id.in_(by_enrollment))
        .order_by(send_t.c.enrollment_id, send_t.c.step, send_t.c.generation)
    ).all()
    latest: dict[str, dict[int, sa.Row]] = {}
    for row in rows:  # ordered by generation, so the newest generation of each step wins
        latest.setdefault(row.enrollment_id, {})[row.step] = row
    releases, completed = [], []
    for enrollment_id, steps in latest.items():
        f = by_enrollment[enrollment_id]
        campaign, timing = CAMPAIGNS[f.campaign], Timing(f.timing)
        states = [StepState(r.step, r.status, r.planned_at, r.finished_at) for r in steps.values()]
        decision = next_due(campaign, timing, states, now)
        if decision is None:
            completed.append({"b_id": enrollment_id, "updated_at": now})
            continue
        step, due_at = decision
        row = steps[step]
        if row.status == SendStatus.SCHEDULED and not row.ready:
            releases.append({"b_id": row.id, "due_at": due_at, "updated_at": now})
    if releases:
        conn.execute(send_t.update().where(send_t.c.id == sa.bindparam("b_id")).values(
            ready=True, due_at=sa.bindparam("due_at"), updated_at=sa.bindparam("updated_at")), releases)
    if completed:
        conn.execute(enrollment_t.update().where(
            enrollment_t.c.id == sa.bindparam("b_id"), enrollment_t.c.status == EnrollmentStatus.ACTIVE
        ).values(status=EnrollmentStatus.COMPLETED, updated_at=sa.bindparam("updated_at")), completed)
