"""What the sidebar and the Settings page show about the machinery: the switches and the heartbeat.

The side channels' backlog (Notion, Discord) is read by core.side_status.
"""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core import switches
from core.tables import worker_t


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
    """(alive, seconds since the last beat): alive means a beat within two intervals. A beat further
    ahead than that comes from a clock ahead of ours, and proves nothing about the worker now."""
    if last_seen is None:
        return False, None
    age = (now - last_seen).total_seconds()
    return abs(age) <= 2 * interval_seconds, max(0.0, age)
