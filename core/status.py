"""System status for /health, the CLI and the dashboard sidebar: one query module, no side effects."""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core import switches, tally
from core.tables import send_t, worker_t

SEND_STATUSES = ("scheduled", "sending", "sent", "failed", "cancelled", "skipped")


@dataclass(frozen=True)
class SystemStatus:
    switches: switches.Switches
    worker_last_seen: datetime | None
    queue: dict[str, int]
    due_now: int


def read_status(conn: sa.Connection, now: datetime) -> SystemStatus:
    counts = tally.sends_by_status(conn)
    due = conn.scalar(
        sa.select(sa.func.count()).select_from(send_t)
        .where(send_t.c.status == "scheduled", send_t.c.ready.is_(True), send_t.c.due_at <= now)
    )
    return SystemStatus(
        switches=switches.read(conn),
        worker_last_seen=conn.scalar(sa.select(sa.func.max(worker_t.c.last_seen))),
        queue={s: counts.get(s, 0) for s in SEND_STATUSES},
        due_now=due or 0,
    )
