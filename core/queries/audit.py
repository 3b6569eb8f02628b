"""The audit trail and the manual requests the worker carries out, paged newest first."""

from collections.abc import Iterable

import sqlalchemy as sa

from core.queries.tables import rows_as_dicts
from core.tables import action_t, contact_t, event_t


def _event_filter(kind: str, actor: str) -> list[sa.ColumnElement]:
    clauses = []
    if kind:
        # As the page shows it ("send sent") or as stored ("send_sent"): one exact kind, so its index serves.
        clauses.append(event_t.c.kind == "_".join(kind.lower().split()))
    if actor:
        clauses.append(event_t.c.actor == actor)
    return clauses


def audit_count(conn: sa.Connection, *, kind: str = "", actor: str = "") -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(event_t).where(*_event_filter(kind, actor))) or 0


def audit_page(conn: sa.Connection, *, offset: int, limit: int, kind: str = "", actor: str = "") -> list[dict]:
    """Events newest first (the id is the insertion order), optionally of one kind or by one actor,
    each with the address of the contact it concerns."""
    page = (sa.select(event_t).where(*_event_filter(kind, actor)).order_by(event_t.c.id.desc())
            .offset(max(0, offset)).limit(limit).subquery())
    return rows_as_dicts(conn.execute(
        sa.select(page.c.id, page.c.at, page.c.actor, page.c.kind, page.c.contact_id, contact_t.c.email,
                  page.c.send_id, page.c.detail)
        .select_from(page.outerjoin(contact_t, contact_t.c.id == page.c.contact_id))
        .order_by(page.c.id.desc())))


def actions_by_ids(conn: sa.Connection, ids: Iterable[str]) -> list[dict]:
    """The requests with these ids, newest first: what the dashboard asked for and what became of it."""
    wanted = list(ids)
    if not wanted:
        return []
    return rows_as_dicts(conn.execute(sa.select(action_t).where(action_t.c.id.in_(wanted))
                                      .order_by(action_t.c.requested_at.desc())))


def latest_action(conn: sa.Connection, kind: str) -> dict | None:
    """The most recent request of a kind (e.g. the last connection check), or None."""
    row = conn.execute(sa.select(action_t).where(action_t.c.kind == kind)
                       .order_by(action_t.c.requested_at.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


def pending_actions(conn: sa.Connection) -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(action_t).where(action_t.c.status == "pending")) or 0
