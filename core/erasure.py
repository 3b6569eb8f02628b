"""Erasure (`python -m core forget EMAIL`): remove a person's data, keep a salted hash to refuse re-enrollment."""

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core import repo, switches
from core.bulk import select_rows, select_values
from core.errors import AlreadyErased, NotFound
from core.redact import kept_payload, without_addresses
from core.statuses import EnrollmentStatus, SendStatus
from core.tables import contact_t, erasure_hold_t, erasure_t, event_t, provider_event_t, send_t, setting_t, signup_t

SALT_KEY = switches.ERASURE_SALT
ERASED_DOMAIN = "erased.invalid"  # .invalid can never be a real address (RFC 2606)
# PostgreSQL advisory lock key that takes turns between enrolling and erasing. Past the int4 range,
# so it never meets provider_events' hashtext() keys, which share this one-key space.
ERASURE_LOCK_KEY = 0x4E5552545552  # "NURTUR"


def is_erased_address(email: str) -> bool:
    """Whether a stored address is the placeholder an erasure left in place of the real one."""
    return email.endswith(f"@{ERASED_DOMAIN}")


def _stored_salt() -> sa.Select:
    return sa.select(setting_t.c.value).where(setting_t.c.key == SALT_KEY)


def erasure_salt(conn: sa.Connection, now: datetime, *, known: str | None = None) -> str:
    """The installation's salt, created on first use and never changed (so old hashes keep matching).

    `known`: the value already read in this transaction (with the switches), which saves a query.
    """
    if known:
        return known
    stored = select_rows(conn, _stored_salt)
    if not stored:
        repo.insert_ignoring_conflicts(conn, setting_t, [
            {"key": SALT_KEY, "value": secrets.token_hex(16), "updated_at": now, "updated_by": "install"}])
        stored = select_rows(conn, _stored_salt)
    return stored[0][0]


def email_hash(salt: str, email: str) -> str:
    return hashlib.sha256(f"{salt}:{email.strip().lower()}".encode()).hexdigest()


def _erased_among(hashes: list[sa.BindParameter]) -> sa.Select:
    return sa.select(erasure_t.c.email_hash).where(erasure_t.c.email_hash.in_(hashes))


def erased_hashes(conn: sa.Connection, hashes: list[str]) -> set[str]:
    return {h for (h,) in select_values(conn, _erased_among, hashes)}


def erased_addresses(conn: sa.Connection, emails: list[str], *, chunk: int = 500) -> set[str]:
    """Which of these addresses belong to people who asked to be forgotten: intake refuses them, so
    every import must too. Looked up in chunks (PostgreSQL takes at most 65,535 parameters)."""
    salt = switches.read(conn).erasure_salt
    if not salt:  # no salt yet: nobody has been erased
        return set()
    by_hash = {email_hash(salt, email): email for email in emails}
    hashes = list(by_hash)
    return {by_hash[h] for start in range(0, len(hashes), chunk)
            for h in erased_hashes(conn, hashes[start:start + chunk])}


def _erasure_lock_shared() -> sa.Select:
    return sa.select(sa.func.pg_advisory_xact_lock_shared(sa.literal(ERASURE_LOCK_KEY, sa.BigInteger)))


def _erasure_lock_alone() -> sa.Select:
    return sa.select(sa.func.pg_advisory_xact_lock(sa.literal(ERASURE_LOCK_KEY, sa.BigInteger)))


def hold_off_erasures(conn: sa.Connection) -> None:
    """Keep any erasure from committing before this transaction ends, and see every one committed before.

    For whatever may enrol (an intake batch, an import). On PostgreSQL a batch that checked the
    hashes just before `forget` committed would otherwise miss the renamed contact and enrol the
    address afresh, or write names and a payload back onto the erased contact after the scrub.
    Enrolling holds the lock shared, so batches never wait on each other; `forget` holds it alone.
    SQLite needs none: it has one writer at a time.
    """
    if conn.dialect.name == "postgresql":
        select_rows(conn, _erasure_lock_shared)


def _wait_for_enrolments(conn: sa.Connection) -> None:
    """Wait for the batches under way, and keep new ones out until this erasure commits (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        select_rows(conn, _erasure_lock_alone)


@dataclass(frozen=True)
class Erased:
    digest: str  # the salted hash kept to refuse re-enrollment
    held: int    # emails of theirs in flight, whose address and names wait for them to settle (erasure_hold)


def forget(conn: sa.Connection, email: str, *, actor: str, now: datetime) -> Erased:
    """Erase a contact's personal data and stop their sends."""
    from core.controls import suppress_contact  # controls imports repo; keep the erasure module light
    from core.notion import store as notion_store

    _wait_for_enrolments(conn)  # before the contact is looked up, so it sees what they committed
    email = email.strip().lower()
    contact_id = conn.scalar(sa.select(contact_t.c.id).where(contact_t.c.email == email))
    if contact_id is None:
        erased_at = _erased_at(conn, email)
        if erased_at is not None:  # the address is gone but its hash is kept: asking again is no mistake
            raise AlreadyErased(email, erased_at)
        raise NotFound(f"no contact with the address {email}")
    digest = email_hash(erasure_salt(conn, now), email)
    if not suppress_contact(conn, contact_id, "erased", actor=actor, now=now, status=EnrollmentStatus.CANCELLED):
        # Already suppressed (a bounce or complaint), so nothing queued their pages: they must still lose the
        # real address and names they show.
        notion_store.queue_resync(conn, now, contact_id=contact_id)
    held = _hold_sends_in_flight(conn, contact_id, now)  # before the scrub: what those were rendered from
    conn.execute(contact_t.update().where(contact_t.c.id == contact_id).values(
        email=f"erased-{digest[:16]}@{ERASED_DOMAIN}", first_name=None, business_name=None, updated_at=now))
    conn.execute(signup_t.update().where(signup_t.c.contact_id == contact_id).values(payload="{}"))
    _scrub_trail(conn, contact_id)
    repo.insert_ignoring_conflicts(conn, erasure_t, [{"email_hash": digest, "erased_at": now, "erased_by": actor}])
    repo.insert_events(conn, [repo.event_row(now, actor, "contact_erased", contact_id=contact_id,
                                             detail={"status": EnrollmentStatus.CANCELLED.value, "held_in_flight": held})])
    return Erased(digest, held)


def _hold_sends_in_flight(conn: sa.Connection, contact_id: str, now: datetime) -> int:
    """Keep what this person's emails already claimed for sending were rendered from: their batch may be
    replayed, and a replay must match the first call exactly (DESIGN §4.3), or Resend refuses its key."""
    rows = conn.execute(sa.select(send_t.c.id, contact_t.c.email, contact_t.c.first_name, contact_t.c.business_name)
                        .join(contact_t, contact_t.c.id == send_t.c.contact_id)
                        .where(send_t.c.contact_id == contact_id, send_t.c.status == SendStatus.SENDING)).all()
    if rows:  # none held yet: a second `forget` of this person stops at AlreadyErased
        conn.execute(erasure_hold_t.insert(), [
            {"send_id": r.id, "email": r.email, "first_name": r.first_name, "business_name": r.business_name,
             "held_at": now} for r in rows])
    return len(rows)


def release_settled_holds(conn: sa.Connection) -> int:
    """Delete what was held for emails no longer in flight (sent, failed, or taken out of their batch)."""
    in_flight = sa.select(send_t.c.id).where(send_t.c.id == erasure_hold_t.c.send_id,
                                             send_t.c.status == SendStatus.SENDING)
    return conn.execute(erasure_hold_t.delete().where(~in_flight.exists())).rowcount


def _erased_at(conn: sa.Connection, email: str) -> datetime | None:
    """When this address was erased, if it was (read without creating the salt: none means nobody was)."""
    salt = switches.read(conn).erasure_salt
    if not salt:
        return None
    return conn.scalar(sa.select(erasure_t.c.erased_at).where(erasure_t.c.email_hash == email_hash(salt, email)))


def _scrub_trail(conn: sa.Connection, contact_id: str) -> None:
    """The audit trail and Resend's events keep what happened, not who: addresses quoted in them are
    replaced, the browser that clicked an unsubscribe link is dropped, and stored events keep only
    what applies to the send (those recorded before minimal storage held the whole payload)."""
    events = conn.execute(sa.select(event_t.c.id, event_t.c.detail).where(
        event_t.c.contact_id == contact_id, event_t.c.detail.is_not(None))).all()
    details = [{"b_id": e.id, "detail": _scrubbed_detail(e.detail)} for e in events]
    if details:
        conn.execute(event_t.update().where(event_t.c.id == sa.bindparam("b_id"))
                     .values(detail=sa.bindparam("detail")), details)
    provider_ids = sa.select(send_t.c.provider_id).where(send_t.c.contact_id == contact_id,
                                                         send_t.c.provider_id.is_not(None))
    stored = conn.execute(sa.select(provider_event_t.c.svix_id, provider_event_t.c.payload)
                          .where(provider_event_t.c.provider_id.in_(provider_ids.scalar_subquery()))).all()
    payloads = [{"b_id": e.svix_id, "payload": json.dumps(kept_payload(json.loads(e.payload)))} for e in stored]
    if payloads:
        conn.execute(provider_event_t.update().where(provider_event_t.c.svix_id == sa.bindparam("b_id"))
                     .values(payload=sa.bindparam("payload")), payloads)


def _scrubbed_detail(text: str) -> str:
    try:
        detail = json.loads(text)
    except ValueError:
        return without_addresses(text)
    if isinstance(detail, dict):
        detail.pop("user_agent", None)
    return json.dumps(without_addresses(detail), ensure_ascii=False)
