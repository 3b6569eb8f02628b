"""The worker heartbeat: one row per worker process, refreshed by a job."""

import os
import socket
import uuid
from datetime import datetime

import sqlalchemy as sa

from core import repo
from core.tables import worker_t

HEARTBEAT_SECONDS = 5  # here, not in core.worker, so the dashboard need not import the worker's stack


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def beat(conn: sa.Connection, worker_id: str, now: datetime) -> None:
    """Record that this worker is alive now."""
    updated = conn.execute(worker_t.update().where(worker_t.c.id == worker_id).values(last_seen=now)).rowcount
    if not updated:
        repo.insert_ignoring_conflicts(conn, worker_t, [
            {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid(), "started_at": now, "last_seen": now}
        ])
