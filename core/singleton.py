"""Jobs that must run on one worker at a time (Notion sync, alerts): a lease row in the database.

A lease row works on SQLite and PostgreSQL alike, and unlike a session advisory lock it
survives connection pooling: the holder renews it, and a dead holder's lease simply expires.
"""

from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from core import db, repo
from core.tables import lease_t


def try_acquire(conn: sa.Connection, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease `name` for `owner`; False while another owner holds it."""
    renewed = conn.execute(lease_t.update().where(
        lease_t.c.name == name, sa.or_(lease_t.c.owner == owner, lease_t.c.expires_at <= now)
    ).values(owner=owner, expires_at=now + ttl)).rowcount
    if renewed:
        return True
    return repo.insert_ignoring_conflicts(conn, lease_t, [{"name": name, "owner": owner, "expires_at": now + ttl}]) == 1


def release_all(conn: sa.Connection, owner: str) -> int:
    """Give up every lease `owner` holds, so the next worker or `--once` run takes them at once; returns how many."""
    return conn.execute(lease_t.delete().where(lease_t.c.owner == owner)).rowcount


def run_as_singleton(services, name: str, owner: str, job: Callable[[], object],
                     ttl: timedelta = timedelta(seconds=60)) -> bool:
    """Run `job` only if this worker holds the lease; returns whether it ran."""
    with db.write_transaction(services.engine) as conn:
        if not try_acquire(conn, name, owner, services.clock(), ttl):
            return False
    job()
    return True
