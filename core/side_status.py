"""Read-only status of the side channels (Notion mirror, Discord alerts) for /health and the dashboard."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from core.settings import Settings
from core.tables import enrollment_t, outbox_t, page_t, setting_t


# The setting row where a channel's worker job records that the service as a whole is failing
# (bad token, not shared, down): no outbox row may have been tried, yet nothing goes through.
OUTAGE_KEY = "outage:{channel}"
GIVEN_UP_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Backlog:
    """A side channel's waiting work."""

    pending: int               # changes not yet carried out
    failing: int               # of those, rows that failed at least once
    oldest_at: datetime | None
    lag_seconds: float         # age of the oldest pending change; 0 when nothing waits
    last_error: str | None
    outage: str | None = None  # why the whole channel is paused, while it is
    given_up: int = 0          # rows abandoned after repeated refusals, in the last GIVEN_UP_WINDOW

    @property
    def healthy(self) -> bool:
        return not (self.failing or self.outage or self.given_up)

    def as_dict(self) -> dict:
        return {"backlog": self.pending, "failing": self.failing, "lag_seconds": round(self.lag_seconds, 1),
                "oldest_pending_at": self.oldest_at.isoformat() if self.oldest_at else None,
                "last_error": self.outage or self.last_error, "outage": self.outage,
                "given_up_7d": self.given_up, "healthy": self.healthy}


@dataclass(frozen=True)
class ContactSync:
    """One contact's mirror state, for the Signups page."""

    state: str                 # "synced", "pending", "failing" or "not mirrored"
    page_url: str | None
    synced_at: datetime | None
    pending: int
    last_error: str | None


def backlog(conn: sa.Connection, channel: str, now: datetime) -> Backlog:
    """How much a side channel ("notion" or "discord") still has to do, and how late it is."""
    pending = sa.and_(outbox_t.c.channel == channel, outbox_t.c.done_at.is_(None))
    count, failing, oldest = conn.execute(sa.select(
        sa.func.count(), sa.func.count().filter(outbox_t.c.attempts > 0), sa.func.min(outbox_t.c.created_at),
    ).where(pending)).one()
    last_error = conn.scalar(sa.select(outbox_t.c.last_error).where(pending, outbox_t.c.last_error.is_not(None))
                             .order_by(outbox_t.c.next_attempt_at.desc()).limit(1))
    given_up = conn.scalar(sa.select(sa.func.count()).where(
        outbox_t.c.channel == channel, outbox_t.c.done_at >= now - GIVEN_UP_WINDOW,
        outbox_t.c.last_error.startswith("gave up", autoescape=True)))
    outage = conn.scalar(sa.select(setting_t.c.value).where(setting_t.c.key == OUTAGE_KEY.format(channel=channel)))
    if given_up and not last_error:
        last_error = conn.scalar(sa.select(outbox_t.c.last_error).where(
            outbox_t.c.channel == channel, outbox_t.c.last_error.startswith("gave up", autoescape=True))
            .order_by(outbox_t.c.done_at.desc()).limit(1))
    oldest = _aware(oldest)
    lag = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
    return Backlog(count, failing or 0, oldest, lag, last_error, outage or None, given_up or 0)


def last_notion_sync(conn: sa.Connection) -> datetime | None:
    """When the mirror last wrote a page successfully."""
    return _aware(conn.scalar(sa.select(sa.func.max(page_t.c.synced_at))))


def last_discord_alert(conn: sa.Connection) -> datetime | None:
    """When Discord last accepted an alert: rows finished without a note are the ones that went
    (skipped and given-up rows carry their reason). Finished rows are kept 30 days (core/outbox.py)."""
    return _aware(conn.scalar(sa.select(sa.func.max(outbox_t.c.done_at)).where(
        outbox_t.c.channel == "discord", outbox_t.c.done_at.is_not(None), outbox_t.c.last_error.is_(None))))


def discord_overview(conn: sa.Connection, now: datetime) -> dict:
    """The alerts as a whole: backlog, lag, what was given up, and the last alert that went."""
    last = last_discord_alert(conn)
    return {**backlog(conn, "discord", now).as_dict(), "last_posted_at": last.isoformat() if last else None}


def notion_overview(conn: sa.Connection, now: datetime) -> dict:
    """The mirror as a whole: backlog, lag, last success, pages linked and enrollments not yet mirrored."""
    linked = conn.scalar(sa.select(sa.func.count()).select_from(page_t).where(page_t.c.page_id.is_not(None)))
    enrollments = conn.scalar(sa.select(sa.func.count()).select_from(enrollment_t))
    last = last_notion_sync(conn)
    return {**backlog(conn, "notion", now).as_dict(), "last_synced_at": last.isoformat() if last else None,
            "pages_linked": linked, "enrollments_without_page": max(enrollments - linked, 0)}


def contact_notion_states(conn: sa.Connection, contact_ids: list[str]) -> dict[str, ContactSync]:
    """Each contact's mirror state: its page, when it was last written, and what still waits."""
    if not contact_ids:
        return {}
    pages = {r.contact_id: r for r in conn.execute(
        sa.select(page_t.c.contact_id, page_t.c.page_url, page_t.c.synced_at, page_t.c.last_error)
        .where(page_t.c.contact_id.in_(contact_ids)))}
    waiting = {r.contact_id: r for r in conn.execute(
        sa.select(outbox_t.c.contact_id, sa.func.count().label("pending"),
                  sa.func.max(outbox_t.c.attempts).label("attempts"), sa.func.max(outbox_t.c.last_error).label("error"))
        .where(outbox_t.c.channel == "notion", outbox_t.c.done_at.is_(None), outbox_t.c.contact_id.in_(contact_ids))
        .group_by(outbox_t.c.contact_id))}
    states = {}
    for cid in contact_ids:
        page, wait = pages.get(cid), waiting.get(cid)
        pending = wait.pending if wait else 0
        error = (wait.error if wait else None) or (page.last_error if page else None)
        if wait and wait.attempts:
            state = "failing"
        elif pending:
            state = "pending"
        else:
            state = "synced" if page and page.synced_at else "not mirrored"
        states[cid] = ContactSync(state, page.page_url if page else None, _aware(page.synced_at) if page else None,
                                  pending, error)
    return states


def health_fields(conn: sa.Connection, settings: Settings, now: datetime) -> dict:
    """What /health adds about the side channels: configured or not, backlog, lag and last sync."""
    last = last_notion_sync(conn) if settings.notion_configured else None
    last_alert = last_discord_alert(conn) if settings.discord_configured else None
    notion = backlog(conn, "notion", now)
    discord = backlog(conn, "discord", now)
    return {
        "notion_configured": settings.notion_configured,
        "discord_configured": settings.discord_configured,
        "notion_sync": {"backlog": notion.pending, "failing": notion.failing, "outage": notion.outage,
                        "lag_seconds": round(notion.lag_seconds, 1),
                        "last_synced_at": last.isoformat() if last else None},
        "discord_alerts": {"backlog": discord.pending, "failing": discord.failing, "outage": discord.outage,
                           "given_up_7d": discord.given_up,
                           "last_posted_at": last_alert.isoformat() if last_alert else None},
    }


def _aware(value: datetime | None) -> datetime | None:
    # MIN/MAX keep the column's type, so values come back aware; this guards drivers that don't.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
