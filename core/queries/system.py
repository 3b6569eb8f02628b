"""What the sidebar and the Settings page show about the machinery: switches, heartbeat, side channels."""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core import switches
from core.queries.tables import outbox_t, worker_t


@dataclass(frozen=True)
class SystemState:
    paused: bool
    pause_reason: str | None
    test_mode: bool
    worker_last_seen: datetime | None


def system_state(conn: sa.Connection) -> SystemState:
    """The runtime switches and the newest worker heartbeat: two small reads, cheap enough for every rerun."""
    state = switches.read(conn)
    return SystemState(
        paused=state.paused,
        pause_reason=state.pause_reason,
        test_mode=state.test_mode,
        worker_last_seen=conn.scalar(sa.select(sa.func.max(worker_t.c.last_seen))),
    )


def heartbeat(last_seen: datetime | None, now: datetime, interval_seconds: float) -> tuple[bool, float | None]:
    """(alive, seconds since the last beat): alive means a beat within two intervals."""
    if last_seen is None:
        return False, None
    age = max(0.0, (now - last_seen).total_seconds())
    return age <= 2 * interval_seconds, age


def channel_health(conn: sa.Connection, channel: str) -> dict:
    """A side channel's outbox (Notion, Discord): pending work, failing work, last success and last error."""
    pending, failing, last_done = conn.execute(sa.select(
        sa.func.count().filter(outbox_t.c.done_at.is_(None)),
        sa.func.count().filter(outbox_t.c.done_at.is_(None), outbox_t.c.last_error.is_not(None)),
        sa.func.max(outbox_t.c.done_at),
    ).where(outbox_t.c.channel == channel)).one()
    last_error = conn.scalar(
        sa.select(outbox_t.c.last_error)
        .where(outbox_t.c.channel == channel, outbox_t.c.done_at.is_(None), outbox_t.c.last_error.is_not(None))
        .order_by(outbox_t.c.next_attempt_at.desc()).limit(1))
    return {"pending": pending, "failing": failing, "last_done_at": last_done, "last_error": last_error}
