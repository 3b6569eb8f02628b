"""Alerts to the team's Discord channel, drained from the "discord" outbox by a worker job.

A CRITICAL signup writes its alert row in the intake transaction (dedupe key "critical:{contact}",
so one contact never has two). Operational alerts (the send circuit breaker tripping, a burst of
bad webhook signatures) are queued here. A failed post backs off and retries; Discord's 429
`retry_after` pauses the whole job, because the limit belongs to the webhook, not to one row.
"""

import logging
import re
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import sqlalchemy as sa

from core import db, outbox, repo
from core.bootstrap import Services
from core.errors import NurtureError
from core.outages import OutageNote
from core.erasure import is_erased_address
from core.sequencing import backoff
from core.settings import Settings
from core.tables import contact_t, enrollment_t

log = logging.getLogger(__name__)
CHANNEL = "discord"
RED, ORANGE = 0xE02424, 0xF97316


class AlertError(NurtureError):
    """An alert could not be posted."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TransientAlertError(AlertError):
    """Retry later: 429 (with `retry_after` seconds), 5xx, a timeout or a network failure."""


class PermanentAlertError(AlertError):
    """The webhook refused this message (4xx); retrying the same post cannot help."""


class ChannelDownError(AlertError):
    """The webhook itself is refused (deleted, or a wrong URL: 401, 403, 404): no alert can go until
    someone fixes it, so the whole channel waits, visibly, and no alert is given up meanwhile."""


@runtime_checkable
class AlertSink(Protocol):
    """Where alerts go. Raises TransientAlertError or PermanentAlertError."""

    def post(self, message: dict) -> None:
        ...


@dataclass(frozen=True)
class AlertPolicy:
    """Batch size, lease, and how many refusals before an alert is given up (visibly)."""

    claim_size: int = 20
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 12


class AlertService:
    """The outbox-draining job for channel "discord"; `run_pass` posts whatever is due."""

    def __init__(self, services: Services, sink: AlertSink, worker_id: str, policy: AlertPolicy = AlertPolicy()):
        self.services, self.sink, self.worker_id, self.policy = services, sink, worker_id, policy
        self._paused_until: datetime | None = None
        self._outages = 0
        self._outage = OutageNote(services, CHANNEL, worker_id)

    def run_pass(self) -> int:
        """Post due alerts; returns how many were posted."""
        now = self.services.clock()
        if self._paused_until and now < self._paused_until:
            return 0
        with db.write_transaction(self.services.engine) as conn:
            items = outbox.claim(conn, CHANNEL, now, self.policy.lease, self.policy.claim_size)
        posted = 0
        for index, item in enumerate(items):
            if self.services.stopping.is_set():  # a stopping worker posts no more: the rest are due again at once
                with db.write_transaction(self.services.engine) as conn:
                    outbox.release(conn, [i.id for i in items[index:]], self.services.clock())
                return posted
            try:
                posted += self._post(item)
            except ChannelDownError as exc:  # this alert too goes back untried: nothing of it was refused
                self._pause(items[index:], exc, backoff(self._outages + 1, None, base=5, cap=300))
                return posted
            except TransientAlertError as exc:  # a rate-limited alert goes back untried too: Discord refused it unread
                rest = items[index:] if _rate_limited(exc) else items[index + 1:]
                self._pause(rest, exc, backoff(1, exc.retry_after, base=1, cap=60))
                return posted
            except PermanentAlertError:
                continue  # recorded on its row; the next alert may still go
        if items:  # Discord answered: any outage shown is over
            self._outage.clear()
        self._outages = 0
        return posted

    def _pause(self, rest: list[outbox.OutboxItem], exc: AlertError, delay: timedelta) -> None:
        """The webhook as a whole is failing or rate limited: give the rest back and wait. A rate limit
        is business as usual; anything else is shown on Settings and /health as an outage."""
        if not _rate_limited(exc):
            self._outages += 1
        self._paused_until = self.services.clock() + delay
        with db.write_transaction(self.services.engine) as conn:
            outbox.release(conn, [i.id for i in rest], self._paused_until)
        if not _rate_limited(exc):
            self._outage.show(f"{exc} (retrying {self._paused_until:%H:%M:%S} UTC)")

    def _post(self, item: outbox.OutboxItem) -> int:
        with db.read_transaction(self.services.engine) as conn:
            message = build_message(conn, item.payload, self.services.settings.dashboard_url)
        now = self.services.clock()
        try:
            if message is not None:
                self.sink.post(message)
        except ChannelDownError:
            raise  # not this alert's failure: it keeps its attempts
        except AlertError as exc:
            if not _rate_limited(exc):  # a rate limit is a wait, never a failure: no attempt counted toward giving up
                self._record_failure(item, exc, now)
            raise
        if message is None:
            return self._close_silent(item, now)
        with db.write_transaction(self.services.engine) as conn:
            outbox.mark_done(conn, [item.id], now)
        return 1

    def _close_silent(self, item: outbox.OutboxItem, now: datetime) -> int:
        """An alert with nothing to say frees its key, so a lead who turns CRITICAL again is alerted then.

        Looked at again in the write, with the enrollment locked: a signup that made the lead CRITICAL
        since the first look found this key taken and queued no alert of its own, so this row carries
        that alert instead (due again at once).
        """
        with db.write_transaction(self.services.engine) as conn:
            if build_message(conn, item.payload, self.services.settings.dashboard_url, lock=True) is not None:
                outbox.release(conn, [item.id], now)
            else:
                outbox.mark_done(conn, [item.id], now, free_key=True,
                                 note="nothing to alert: enrollment gone, person erased, or no longer CRITICAL")
        return 0

    def _record_failure(self, item: outbox.OutboxItem, exc: AlertError, now: datetime) -> None:
        attempts = item.attempts + 1
        with db.write_transaction(self.services.engine) as conn:
            if isinstance(exc, PermanentAlertError) and attempts >= self.policy.max_attempts:
                outbox.mark_done(conn, [item.id], now, note=f"gave up after {attempts} attempts: {exc}"[:2000])
            else:
                outbox.back_off(conn, [item.id], str(exc), now, backoff(attempts, exc.retry_after, base=5))
        log.warning("discord alert failed: %s", exc, extra={"action": "alert", "outbox": item.id})


def _rate_limited(exc: AlertError) -> bool:
    return exc.status == 429


def build_message(conn: sa.Connection, payload: dict, dashboard_url: str, *, lock: bool = False) -> dict | None:
    """The Discord message for an outbox payload, or None when there is nothing left to say: the
    enrollment is gone, the person was erased, or a resubmission moved the lead out of CRITICAL
    before the alert went. `lock`: on PostgreSQL, wait for (and then hold off) a signup re-segmenting
    the lead, so the answer stands until the caller commits."""
    if payload.get("kind") == "critical_lead":
        lead = _lead(conn, str(payload.get("enrollment_id") or ""), lock)
        if lead is None or lead.segment != "CRITICAL" or is_erased_address(lead.email):
            return None
        return critical_lead_message(lead, dashboard_url)
    return ops_message(str(payload.get("kind") or "alert"), str(payload.get("text") or ""))


def _lead(conn: sa.Connection, enrollment_id: str, lock: bool = False):
    query = (sa.select(contact_t.c.id.label("contact_id"), contact_t.c.email, contact_t.c.first_name,
                       contact_t.c.business_name, contact_t.c.is_test, enrollment_t.c.segment,
                       enrollment_t.c.red_systems, enrollment_t.c.orange_systems)
             .join(contact_t, contact_t.c.id == enrollment_t.c.contact_id).where(enrollment_t.c.id == enrollment_id))
    if lock:  # SQLite's write transaction already holds every writer off
        query = query.with_for_update(read=True, of=enrollment_t)
    return conn.execute(query).first()


# Discord renders markdown in embeds: masked links, emphasis, spoilers, headings, quotes. (Mentions
# are not a concern here: every message sets allowed_mentions to none.)
_MARKDOWN = re.compile(r"([\\*_~`|>\[\]()#:<-])")


def plain(text: str, limit: int | None = None) -> str:
    """A stranger's text as Discord shows it literally: every markdown character escaped, so a name
    like "[Verify your account](https://…)" cannot plant a link in the team's channel. Longer than
    `limit`, it is cut and ends in "…"; never inside an escape, whose lone backslash would show."""
    escaped = _MARKDOWN.sub(r"\\\1", text)
    if limit is None or len(escaped) <= limit:
        return escaped
    cut = escaped[:limit - 1]
    if (len(cut) - len(cut.rstrip("\\"))) % 2:
        cut = cut[:-1]
    return cut + "…"


def critical_lead_message(lead, dashboard_url: str) -> dict:
    """An embed with who it is, their business, the red/orange counts and a link to their dashboard page."""
    link = f"{dashboard_url.rstrip('/')}/signups?contact={lead.contact_id}"
    # A lead from the Test signup page says so: the channel must not chase a marketer's test.
    title = f"{'[TEST] ' if lead.is_test else ''}CRITICAL lead: "
    fields = [("Name", plain(lead.first_name, 1024) if lead.first_name else "—", True),
              ("Business", plain(lead.business_name, 1024) if lead.business_name else "—", True),
              ("Email", plain(lead.email, 1024), False), ("Red systems", str(lead.red_systems or 0), True),
              ("Orange systems", str(lead.orange_systems or 0), True)]
    embed = {"title": title + plain(lead.first_name or lead.email, 256 - len(title)), "color": RED,
             "fields": [{"name": n, "value": v, "inline": i} for n, v, i in fields]}
    if _discord_takes_link(link):
        embed.update(url=link, description=f"[Open in the dashboard]({link})")
    else:  # shown as text: Discord refuses the whole message for a link it will not take
        embed["description"] = f"Dashboard: {link}"
    return {
        "username": "Nurture",
        "allowed_mentions": {"parse": []},  # a signup's name must never ping @everyone
        "embeds": [embed],
    }


def _discord_takes_link(url: str) -> bool:
    """Discord answers 400 {"embeds": ["0"]} to an embed url whose host has no dot (http://localhost:8501,
    the default DASHBOARD_URL, or a LAN name); it documents no rule, this is what users report."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and "." in (parts.hostname or "")


def ops_message(kind: str, text: str) -> dict:
    """An operational alert: the circuit breaker tripping, a burst of bad webhook signatures."""
    titles = {"circuit_breaker": "Sending paused by the circuit breaker",
              "webhook_signatures": "Burst of bad webhook signatures"}
    return {"username": "Nurture", "allowed_mentions": {"parse": []},
            "embeds": [{"title": titles.get(kind, kind)[:256], "description": text[:4000], "color": ORANGE}]}


def queue_ops_alert(conn: sa.Connection, settings: Settings, kind: str, text: str, now: datetime) -> None:
    """Queue an operational alert in the caller's transaction; at most one per kind per hour."""
    if settings.discord_configured:
        repo.insert_outbox(conn, [repo.outbox_row(CHANNEL, None, {"kind": kind, "text": text}, now,
                                                  dedupe_key=f"ops:{kind}:{now:%Y-%m-%dT%H}")])


class SignatureFailureWatch:
    """Counts rejected webhook signatures in a sliding window; says when a burst crosses the threshold."""

    def __init__(self, threshold: int = 20, window: timedelta = timedelta(minutes=5)):
        self.threshold, self.window = threshold, window
        self._seen: deque[datetime] = deque()
        self._lock = threading.Lock()

    def record(self, now: datetime) -> bool:
        """Count one failure; True exactly when this one makes the window reach the threshold."""
        with self._lock:
            self._seen.append(now)
            while self._seen and now - self._seen[0] > self.window:
                self._seen.popleft()
            return len(self._seen) == self.threshold


def note_signature_failure(services: Services, watch: SignatureFailureWatch) -> None:
    """Call on every rejected webhook signature; a burst queues one operational alert."""
    now = services.clock()
    if watch.record(now) and services.settings.discord_configured:
        minutes = int(watch.window.total_seconds() // 60)
        with db.write_transaction(services.engine) as conn:
            queue_ops_alert(conn, services.settings, "webhook_signatures",
                            f"{watch.threshold} Resend webhook deliveries with bad signatures in {minutes} minutes. "
                            "Check RESEND_WEBHOOK_SECRET, or someone is probing the endpoint.", now)
