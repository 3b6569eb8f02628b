"""What the sidebar and the Settings page show about the machinery: the switches and the heartbeat.

The side channels' backlog (Notion, Discord) is read by core.side_status.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from core import switches
from core.heartbeat import HEARTBEAT_SECONDS
from core.tables import send_t, worker_t


@dataclass(frozen=True)
class SystemState:
    paused: bool
    pause_reason: str | None
    test_mode: bool
    worker_last_seen: datetime | None
    retrying: int = 0  # emails held in backoff after the provider failed to answer (outage, rate limit)
    retry_reason: str | None = None  # the provider's latest such answer
    paused_since: datetime | None = None  # which pause it is: a Resume lifts only the one it was shown


def system_state(conn: sa.Connection, now: datetime) -> SystemState:
    """The runtime switches, the newest worker heartbeat and the provider's trouble, if any: small reads
    (the emails in flight are a short range of one index), cheap enough for every rerun.

    A beat dated ahead of `now` (an old time-travel run, a host whose clock runs fast) is left out, so
    it can neither pass for a live worker nor hide one."""
    state = switches.read(conn)
    # In backoff: given back by its worker (no lease owner) after the provider failed, waiting to be replayed.
    backing_off = sa.and_(send_t.c.status == "sending", send_t.c.lease_expires_at.is_not(None),
                          send_t.c.lease_owner.is_(None), send_t.c.last_error.is_not(None))
    retrying = conn.scalar(sa.select(sa.func.count()).where(backing_off)) or 0
    reason = conn.scalar(sa.select(send_t.c.last_error).where(backing_off)
                         .order_by(send_t.c.updated_at.desc()).limit(1)) if retrying else None
    return SystemState(
        paused=state.paused,
        pause_reason=state.pause_reason,
        paused_since=switches.paused_since(conn) if state.paused else None,
        test_mode=state.test_mode,
        worker_last_seen=conn.scalar(sa.select(sa.func.max(worker_t.c.last_seen)).where(
            worker_t.c.last_seen <= now + timedelta(seconds=2 * HEARTBEAT_SECONDS))),
        retrying=retrying,
        retry_reason=reason,
    )


def heartbeat(last_seen: datetime | None, now: datetime, interval_seconds: float) -> tuple[bool, float | None]:
    """(alive, seconds since the last beat): alive means a beat within two intervals. A beat further
    ahead than that comes from a clock ahead of ours, and proves nothing about the worker now."""
    if last_seen is None:
        return False, None
    age = (now - last_seen).total_seconds()
    return abs(age) <= 2 * interval_seconds, max(0.0, age)
