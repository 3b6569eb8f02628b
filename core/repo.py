"""Named SQL for intake and shared bookkeeping. Every parameter is bound; nothing is formatted."""

import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from core.bulk import bulk_insert, select_values
from core.ids import new_id
from core.outcomes import may_have_been_delivered, may_have_been_delivered_sql
from core.statuses import STOPPED_ENROLLMENT
from core.tables import contact_t, enrollment_t, event_t, outbox_t, send_t, signup_t


# A sequence counts as begun once an email is in flight or sent, or failed in a way that may still have
# delivered it (a batch given up as "outcome unknown" after timeouts, 5xx or an expired key): re-segmenting
# then would send steps 2-7 from another segment than the step 1 the lead read. A certain refusal (an
# invalid address, a render failure) sent nothing, so the sequence may still be updated (DESIGN §1).
STARTED = ("sending", "sent")


def _started(status, last_error):
    return sa.or_(status.in_([sa.literal(s) for s in STARTED]),
                  sa.and_(status == sa.literal("failed"), may_have_been_delivered_sql(last_error)))


def insert_ignoring_conflicts(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> int:
    """INSERT … ON CONFLICT DO NOTHING on either backend; returns how many rows went in.

    Several rows go as one executemany (count not guaranteed: drivers differ); one row goes
    alone with RETURNING, so a caller learns exactly whether it won.
    """
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing()
    if len(rows) == 1:
        key = next(iter(table.primary_key.columns))
        return len(conn.execute(statement.values(**rows[0]).returning(key)).all())
    return conn.execute(statement, rows).rowcount


def _contacts_by_email(emails: list[sa.BindParameter]) -> sa.Select:
    return sa.select(contact_t.c.email, contact_t.c.id).where(contact_t.c.email.in_(emails))


def contact_ids_by_email(conn: sa.Connection, emails: list[str]) -> dict[str, str]:
    return dict(select_values(conn, _contacts_by_email, emails))


def insert_contacts(conn: sa.Connection, rows: list[dict]) -> int:
    """Insert, skipping conflicts; returns how many rows went in."""
    return bulk_insert(conn, contact_t, rows, ignore_conflicts=True)


def update_contact_names(conn: sa.Connection, rows: list[dict]) -> None:
    if rows:
        conn.execute(
            contact_t.update().where(contact_t.c.id == sa.bindparam("b_id")).values(
                first_name=sa.func.coalesce(sa.bindparam("first_name"), contact_t.c.first_name),
                business_name=sa.func.coalesce(sa.bindparam("business_name"), contact_t.c.business_name),
                updated_at=sa.bindparam("updated_at"),
            ),
            rows,
        )


@dataclass(frozen=True)
class KnownEnrollment:
    id: str
    segment: str
    any_sent: bool
    stopped: bool  # cancelled, unsubscribed or bounced

    @property
    def settled(self) -> bool:
        """A resubmission changes nothing: an email has gone out, or the sequence was stopped."""
        return self.any_sent or self.stopped


@lru_cache(maxsize=8)
def _enrollments_with_progress(campaign: str):
    """The query shape for one campaign (cached, so its compiled SQL is too)."""
    def shape(contact_ids: list[sa.BindParameter]) -> sa.Select:
        started = (
            sa.select(sa.literal(1)).where(send_t.c.enrollment_id == enrollment_t.c.id,
                                           _started(send_t.c.status, send_t.c.last_error))
            .exists()
        )
        stopped = enrollment_t.c.status.in_([sa.literal(s.value) for s in STOPPED_ENROLLMENT])
        return (sa.select(enrollment_t.c.contact_id, enrollment_t.c.id, enrollment_t.c.segment, started, stopped)
                .where(enrollment_t.c.contact_id.in_(contact_ids), enrollment_t.c.campaign == campaign))
    return shape


def enrollments_by_contact(conn: sa.Connection, contact_ids: list[str], campaign: str) -> dict[str, KnownEnrollment]:
    """Existing enrollments of these contacts, their segment, whether any of their emails has gone out,
    and whether they were stopped."""
    rows = select_values(conn, _enrollments_with_progress(campaign), contact_ids)
    return {cid: KnownEnrollment(eid, segment, bool(sent), bool(stopped)) for cid, eid, segment, sent, stopped in rows}


def _sends_of_enrollments(ids: list[sa.BindParameter]) -> sa.Select:
    # In id order, so two transactions locking sends of the same enrollments take the locks alike.
    return (sa.select(send_t.c.enrollment_id, send_t.c.status, send_t.c.last_error)
            .where(send_t.c.enrollment_id.in_(ids)).order_by(send_t.c.id).with_for_update())


def lock_sends_and_find_started(conn: sa.Connection, enrollment_ids: list[str]) -> set[str]:
    """Lock these enrollments' sends until the transaction ends; return the enrollments with one started.

    On PostgreSQL a worker's claim may have started step 1 since an earlier read, and it takes
    its sends with SKIP LOCKED: once they are locked here it passes them over until this commits,
    and a claim already under way is waited for and then seen. (SQLite's writers queue anyway.)
    """
    rows = select_values(conn, _sends_of_enrollments, enrollment_ids)
    return {eid for eid, status, last_error in rows
            if status in STARTED or (status == "failed" and may_have_been_delivered(last_error))}


def insert_enrollments(conn: sa.Connection, rows: list[dict]) -> int:
    """Insert, skipping conflicts; returns how many rows went in."""
    return bulk_insert(conn, enrollment_t, rows, ignore_conflicts=True)


def _enrollments_by_id(ids: list[sa.BindParameter]) -> sa.Select:
    return sa.select(enrollment_t.c.id).where(enrollment_t.c.id.in_(ids))


def enrollment_ids(conn: sa.Connection, ids: list[str]) -> set[str]:
    return {eid for (eid,) in select_values(conn, _enrollments_by_id, ids)}


def update_enrollments(conn: sa.Connection, rows: list[dict]) -> None:
    if rows:
        values = {k: sa.bindparam(k) for k in rows[0] if k != "b_id"}
        conn.execute(enrollment_t.update().where(enrollment_t.c.id == sa.bindparam("b_id")).values(**values), rows)


def insert_sends(conn: sa.Connection, rows: list[dict]) -> None:
    bulk_insert(conn, send_t, rows)


def insert_signups(conn: sa.Connection, rows: list[dict]) -> None:
    bulk_insert(conn, signup_t, rows)


def insert_events(conn: sa.Connection, rows: list[dict]) -> None:
    bulk_insert(conn, event_t, rows)


def insert_outbox(conn: sa.Connection, rows: list[dict]) -> None:
    bulk_insert(conn, outbox_t, rows, ignore_conflicts=True)


def event_row(now: datetime, actor: str, kind: str, *, contact_id=None, enrollment_id=None, send_id=None,
              detail: dict | str | None = None) -> dict:
    if isinstance(detail, dict):
        detail = json.dumps(detail, ensure_ascii=False, default=str)
    return {"at": now, "actor": actor, "kind": kind, "contact_id": contact_id, "enrollment_id": enrollment_id,
            "send_id": send_id, "detail": detail}


def outbox_row(channel: str, contact_id: str | None, payload: dict, now: datetime, *,
               dedupe_key: str | None = None) -> dict:
    return {"id": new_id(), "channel": channel, "dedupe_key": dedupe_key, "contact_id": contact_id,
            "payload": json.dumps(payload), "created_at": now, "attempts": 0, "next_attempt_at": now,
            "last_error": None, "done_at": None}
