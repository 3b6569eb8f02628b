"""Named SQL for draining the outbox: claim due rows under a lease, then mark them done or back off.

A claim moves the rows' next_attempt_at past the lease, so no other worker sees them as due
until the lease runs out (a killed worker's rows come back by themselves). PostgreSQL takes
the rows with FOR UPDATE SKIP LOCKED; SQLite's BEGIN IMMEDIATE makes the claim atomic.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from core.tables import outbox_t


@dataclass(frozen=True)
class OutboxItem:
    """A claimed outbox row, its JSON payload decoded."""

    id: str
    channel: str
    contact_id: str | None
    payload: dict
    created_at: datetime
    attempts: int


def claim(conn: sa.Connection, channel: str, now: datetime, lease: timedelta, limit: int) -> list[OutboxItem]:
    """Take up to `limit` due rows of a channel, oldest first, leased until now + lease."""
    due = (sa.select(outbox_t.c.id)
           .where(outbox_t.c.channel == channel, outbox_t.c.done_at.is_(None), outbox_t.c.next_attempt_at <= now)
           .order_by(outbox_t.c.next_attempt_at, outbox_t.c.created_at)
           .limit(limit)
           .with_for_update(skip_locked=True))
    ids = list(conn.scalars(due))
    if not ids:
        return []
    conn.execute(outbox_t.update().where(outbox_t.c.id.in_(ids)).values(next_attempt_at=now + lease))
    rows = conn.execute(sa.select(outbox_t).where(outbox_t.c.id.in_(ids)).order_by(outbox_t.c.created_at))
    return [OutboxItem(r.id, r.channel, r.contact_id, _payload(r.payload), r.created_at, r.attempts) for r in rows]


def mark_done(conn: sa.Connection, ids: list[str], now: datetime, note: str | None = None, *,
              free_key: bool = False) -> None:
    """Finish rows; `note` says why when they finished without doing anything (or gave up).

    `free_key`: the row did nothing, so its dedupe key may be queued again by a later cause."""
    if ids:
        values = {"done_at": now, "last_error": note, **({"dedupe_key": None} if free_key else {})}
        conn.execute(outbox_t.update().where(outbox_t.c.id.in_(ids), outbox_t.c.done_at.is_(None)).values(values))


def back_off(conn: sa.Connection, ids: list[str], error: str, now: datetime, delay: timedelta) -> None:
    """Count a failed attempt, keep its reason, and make the rows due again after `delay`."""
    if ids:
        conn.execute(outbox_t.update().where(outbox_t.c.id.in_(ids), outbox_t.c.done_at.is_(None)).values(
            attempts=outbox_t.c.attempts + 1, last_error=error[:2000], next_attempt_at=now + delay))


def release(conn: sa.Connection, ids: list[str], at: datetime) -> None:
    """Give rows back unattempted (the pass ran out of time, or Notion is paused): due again at `at`."""
    if ids:
        conn.execute(outbox_t.update().where(outbox_t.c.id.in_(ids), outbox_t.c.done_at.is_(None))
                     .values(next_attempt_at=at))


def _payload(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# Finished rows are kept this long (the dashboard shows what was given up in the last week), then deleted.
KEEP_DONE = timedelta(days=30)
PURGE_CHUNK = 5000  # rows per delete: short transactions, so intake never waits long for the lock


def purge_done(conn: sa.Connection, now: datetime, *, keep: timedelta = KEEP_DONE) -> int:
    """Delete up to PURGE_CHUNK rows finished before now - keep; returns how many went."""
    old = sa.select(outbox_t.c.id).where(outbox_t.c.done_at < now - keep).limit(PURGE_CHUNK)
    return conn.execute(outbox_t.delete().where(outbox_t.c.id.in_(old.scalar_subquery()))).rowcount
