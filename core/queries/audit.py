"""The audit trail and the manual requests the worker carries out, paged newest first."""

import json
from collections.abc import Iterable

import sqlalchemy as sa

from core.queries.tables import rows_as_dicts
from core.tables import action_t, contact_t, event_t, send_t


def _event_filter(kind: str, actor: str) -> list[sa.ColumnElement]:
    """Events whose kind or actor contains what was typed, in any case. Kinds are typed as the page
    shows them ("send retry") or as stored ("send_retry"); "retry" finds every kind of retry. The
    page walks the events newest first and stops at a page of matches; only the count reads them all."""
    if "\x00" in kind + actor:  # no kind or actor holds NUL; PostgreSQL refuses it, SQLite's LIKE stops reading at it
        return [sa.false()]
    clauses = []
    if kind:
        clauses.append(event_t.c.kind.contains("_".join(kind.lower().split()), autoescape=True))
    if actor:
        clauses.append(sa.func.lower(event_t.c.actor).contains(actor.strip().lower(), autoescape=True))
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
    """The requests with these ids, newest first: what the dashboard asked for, whom it concerned
    (`email`, and `step` from its payload or, for a retry, from the send it names) and what became of it."""
    wanted = list(ids)
    if not wanted:
        return []
    found = rows_as_dicts(conn.execute(sa.select(action_t).where(action_t.c.id.in_(wanted))
                                       .order_by(action_t.c.requested_at.desc())))
    payloads = [_payload(r["payload"]) for r in found]
    contact_ids = {p["contact_id"] for p in payloads if isinstance(p.get("contact_id"), str)}
    emails = dict(conn.execute(sa.select(contact_t.c.id, contact_t.c.email)
                               .where(contact_t.c.id.in_(contact_ids))).all()) if contact_ids else {}
    # A retry names the send, not the step: the step is the send's, so a list of retries says which was which.
    send_ids = {p["send_id"] for p in payloads if isinstance(p.get("send_id"), str) and p.get("step") is None}
    steps = dict(conn.execute(sa.select(send_t.c.id, send_t.c.step)
                              .where(send_t.c.id.in_(send_ids))).all()) if send_ids else {}
    return [{**r, "email": emails.get(p.get("contact_id")) or p.get("to"),
             "step": p.get("step") if p.get("step") is not None else steps.get(p.get("send_id"))}
            for r, p in zip(found, payloads, strict=True)]


def pending_actions_for(conn: sa.Connection, contact_id: str) -> list[dict]:
    """Requests about this contact that no worker has carried out yet, whoever asked, newest first (as
    actions_by_ids gives them). Another marketer's, or one's own from before a reload, would otherwise
    be invisible on the timeline until the worker got to it."""
    if "\x00" in contact_id:  # from the page's URL: PostgreSQL refuses NUL in any text
        return []
    # The substring narrows the pending rows (ids are hex, nothing LIKE reads as a wildcard); the payload decides.
    candidates = conn.execute(sa.select(action_t.c.id, action_t.c.payload).where(
        action_t.c.status == "pending", action_t.c.payload.contains(contact_id, autoescape=True))).all()
    return actions_by_ids(conn, [r.id for r in candidates if _payload(r.payload).get("contact_id") == contact_id])


def _payload(text: str | None) -> dict:
    try:
        payload = json.loads(text or "{}")
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def latest_action(conn: sa.Connection, kind: str) -> dict | None:
    """The most recent request of a kind (e.g. the last connection check), or None."""
    row = conn.execute(sa.select(action_t).where(action_t.c.kind == kind)
                       .order_by(action_t.c.requested_at.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


def pending_actions(conn: sa.Connection) -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(action_t).where(action_t.c.status == "pending")) or 0
