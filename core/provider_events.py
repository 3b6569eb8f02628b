"""Resend's delivery events: recorded against the send, deduplicated on svix-id; bounces suppress."""

import json
import logging
import re
from datetime import UTC, datetime
from email.utils import getaddresses

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from core import controls, repo
from core.outcomes import FAILED_AFTER_ACCEPTING
from core.redact import kept_payload, without_addresses
from core.signups import normalised_email
from core.tables import contact_t, provider_event_t, send_t

log = logging.getLogger(__name__)
# Text no column can hold: NUL (PostgreSQL refuses it) and half a surrogate pair (not UTF-8).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")

# Event type → the send column holding its first occurrence.
TIMESTAMP_COLUMNS = {
    "email.delivered": "delivered_at",
    "email.opened": "opened_at",
    "email.clicked": "clicked_at",
    "email.bounced": "bounced_at",
    "email.suppressed": "bounced_at",  # not sent at all: the address is on Resend's suppression list
    "email.complained": "complained_at",
}


def record_provider_event(conn: sa.Connection, svix_id: str, event: dict, now: datetime) -> str:
    """Apply one webhook delivery; returns what happened, for the response and the log."""
    event_type = _text(event.get("type", ""), 40)
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    provider_id = _text(data.get("email_id", ""), 80) or None
    inserted = repo.insert_ignoring_conflicts(conn, provider_event_t, [
        {"svix_id": svix_id, "type": event_type, "provider_id": provider_id, "received_at": now,
         "payload": json.dumps(kept_payload(event))}])  # ASCII-escaped JSON: whatever the event holds, it stores
    if not inserted:
        return "duplicate"
    if provider_id:
        lock_against_recording(conn, [provider_id])
    send = conn.execute(sa.select(send_t.c.id, send_t.c.contact_id, send_t.c.enrollment_id, send_t.c.sent_at)
                        .where(send_t.c.provider_id == provider_id)).first() if provider_id else None
    if send is None:
        # Kept: if its send is recorded later (the provider's answer was lost and the batch is
        # waiting for its replay), apply_early_events applies it then; a bounce must still stop.
        log.info("provider event for an email not (yet) recorded", extra={"action": "provider_event",
                                                                          "type": event_type})
        _suppress_recipients(conn, event_type, data, now)
        return "unknown email"
    _apply(conn, send, event_type, data, happened_at(event, now), now)
    return "recorded"


def happened_at(event: dict, received_at: datetime) -> datetime:
    """When the event happened, by Resend's own `created_at`: deliveries retried after an outage
    arrive late and out of order. Never later than its arrival; its arrival when the time is unreadable."""
    try:
        stamp = datetime.fromisoformat(str(event.get("created_at")).replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            return received_at
        stamp = stamp.astimezone(UTC)  # here, not when stored: a time at the calendar's edge overflows
    except (ValueError, OverflowError):
        return received_at
    return min(stamp, received_at)


def apply_early_events(conn: sa.Connection, provider_ids: list[str], now: datetime) -> int:
    """Apply the events that arrived before these just-recorded sends were; returns how many.

    At the moment a send is recorded, any event already stored under its provider id came early.
    """
    if not provider_ids:
        return 0
    lock_against_recording(conn, provider_ids)
    early = conn.execute(sa.select(provider_event_t.c.payload, provider_event_t.c.received_at)
                         .where(provider_event_t.c.provider_id.in_(provider_ids))
                         .order_by(provider_event_t.c.received_at)).all()
    for row in early:
        event = json.loads(row.payload)
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        send = conn.execute(sa.select(send_t.c.id, send_t.c.contact_id, send_t.c.enrollment_id, send_t.c.sent_at)
                            .where(send_t.c.provider_id == _text(data.get("email_id", ""), 80))).first()
        if send is not None:
            _apply(conn, send, _text(event.get("type", ""), 40), data, happened_at(event, row.received_at), now)
    return len(early)


def lock_against_recording(conn: sa.Connection, provider_ids: list[str]) -> None:
    """Take turns, per provider id, between a webhook looking for its send and a worker recording it.

    Otherwise, on PostgreSQL, an event arriving while the send is being recorded is seen by neither
    side: the webhook does not see the uncommitted provider id, nor the recording the uncommitted
    event, and a bounce is lost. With the lock, whichever comes second sees what the first committed.
    SQLite needs none: it has one writer at a time. Locked in hash order, so two callers never wait
    on each other in a circle. Each side takes it before it writes any send row (the worker: before
    recording its outcomes), or a webhook holding it could wait on a row the worker holds.
    """
    if not provider_ids or conn.dialect.name != "postgresql":
        return
    keys = sa.select(sa.func.hashtext(sa.func.unnest(sa.cast(sorted(set(provider_ids)), ARRAY(sa.Text))))
                     .label("key")).distinct().order_by("key").subquery()
    conn.execute(sa.select(sa.func.count(sa.func.pg_advisory_xact_lock(keys.c.key))))


def _apply(conn: sa.Connection, send, event_type: str, data: dict, at: datetime, now: datetime) -> None:
    """Record one event against its send: when it happened (`at`), its audit event, and a stop for a
    bounce or complaint. A soft bounce is only audited: the email may still be delivered."""
    if send.sent_at is not None:  # nothing befalls an email before it went: a stray created_at showed it
        at = max(at, send.sent_at)  # delivered, opened or clicked years before it was sent
    suppresses = _suppresses(event_type, data)
    column = TIMESTAMP_COLUMNS.get(event_type) if suppresses or event_type != "email.bounced" else None
    if column:
        first = send_t.c[column].is_(None)
        if column == "delivered_at":  # a hard bounce is the email's fate, whatever arrives after it
            first = sa.and_(first, send_t.c.bounced_at.is_(None))
        conn.execute(send_t.update().where(send_t.c.id == send.id, first).values({column: at, "updated_at": now}))
    if column == "bounced_at":  # … and whatever arrived before it: Resend does not keep its events in order
        conn.execute(send_t.update().where(send_t.c.id == send.id, send_t.c.delivered_at.is_not(None))
                     .values(delivered_at=None, updated_at=now))
    if event_type == "email.failed":
        failed = data.get("failed") if isinstance(data.get("failed"), dict) else {}
        reason = without_addresses(_text(failed.get("reason", "provider could not deliver"), 500))
        conn.execute(send_t.update().where(send_t.c.id == send.id).values(last_error=FAILED_AFTER_ACCEPTING + reason))
    repo.insert_events(conn, [repo.event_row(now, "resend", event_type.replace(".", "_"), contact_id=send.contact_id,
                                             enrollment_id=send.enrollment_id, send_id=send.id,
                                             detail=_detail(event_type, data))])
    if suppresses:
        controls.suppress_contact(conn, send.contact_id, _stop_reason(event_type), actor="resend", now=now,
                                  detail=_detail(event_type, data))


def _suppress_recipients(conn: sa.Connection, event_type: str, data: dict, now: datetime) -> None:
    """A bounce or complaint about an email with no recorded send still stops the person it went to: the
    email may have come from the system Nurture replaced (Resend reports every email of the account), or
    from a batch whose outcome was given up as unknown, so its id will never be recorded."""
    email = _only_recipient(data) if _suppresses(event_type, data) else None
    contact_id = conn.scalar(sa.select(contact_t.c.id).where(contact_t.c.email == email)) if email else None
    if contact_id is not None:
        controls.suppress_contact(conn, contact_id, _stop_reason(event_type), actor="resend", now=now,
                                  detail=_detail(event_type, data))


def _only_recipient(data: dict) -> str | None:
    """The one address an email went to, as intake stores addresses; None when it went to several (the
    event does not say whose mailbox bounced or complained) or to none that can be read.

    Resend quotes recipients as written ("Name <Address>", several in one string, the domain in its
    ASCII form); intake keeps the normalised address (core/signups.py).
    """
    written: list[str] = []
    for field in ("to", "cc", "bcc"):
        value = data.get(field)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        written += [_text(v, 1000) for v in values if isinstance(v, str)]
    named = {normalised_email(address) for _, address in getaddresses(written) if address}
    return named.pop() if len(named) == 1 else None


def _stop_reason(event_type: str) -> str:
    # Resend's suppression list holds addresses that hard-bounced or complained (or were added by hand).
    return "complained" if event_type == "email.complained" else "bounced"


def _suppresses(event_type: str, data: dict) -> bool:
    if event_type in ("email.complained", "email.suppressed"):
        return True
    if event_type != "email.bounced":
        return False
    bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
    # Resend marks hard bounces "Permanent"; a soft bounce may still deliver later. Its bounce guide calls
    # the soft type "Transient", its webhook reference and SDK "Temporary": both are soft.
    return str(bounce.get("type", "Permanent")).lower() not in {"transient", "temporary", "undetermined"}


def _detail(event_type: str, data: dict) -> dict:
    detail = {"type": event_type}
    for reason in ("bounce", "suppressed"):
        if isinstance(data.get(reason), dict):
            detail[reason] = {_text(k, 60): without_addresses(_text(v, 300)) for k, v in data[reason].items()}
    if isinstance(data.get("click"), dict):
        detail["link"] = _text(data["click"].get("link", ""), 300)
    return detail


def _text(value, limit: int) -> str:
    """A value from the event as text a column can hold, at most `limit` characters."""
    return _UNSTORABLE.sub("", str(value))[:limit]
