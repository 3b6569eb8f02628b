"""SQLModel tables: the source of truth. Status enums and their transitions live in statuses.py."""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from core.timeutil import UTCDateTime


def _at(**kw):
    return Field(sa_type=UTCDateTime, **kw)


def _text(**kw):
    return Field(sa_type=sa.Text, **kw)


def _not_null_index(name: str, *columns: str) -> sa.Index:
    """An index holding only the rows whose last column is set (most rows never set it)."""
    condition = sa.text(f"{columns[-1]} IS NOT NULL")
    return sa.Index(name, *columns, sqlite_where=condition, postgresql_where=condition)


class Contact(SQLModel, table=True):
    # Read-model indexes (migration 0002): the Signups list pages by (created_at, id); KPIs
    # count unsubscribes and suppressions by time.
    __table_args__ = (
        sa.Index("ix_contact_created_id", "created_at", "id"),
        _not_null_index("ix_contact_unsubscribed_at", "unsubscribed_at"),
        _not_null_index("ix_contact_suppressed_at", "suppressed_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    email: str = Field(max_length=254, sa_column_kwargs={"unique": True})
    first_name: str | None = Field(default=None, max_length=200)
    business_name: str | None = Field(default=None, max_length=200)
    is_test: bool = False
    created_at: datetime = _at()
    updated_at: datetime = _at()
    unsubscribed_at: datetime | None = _at(default=None)
    suppressed_at: datetime | None = _at(default=None)
    suppressed_reason: str | None = Field(default=None, max_length=40)


class Signup(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    contact_id: str = Field(foreign_key="contact.id", index=True, max_length=32)
    received_at: datetime = _at(index=True)
    source: str = Field(max_length=40)
    outcome: str = Field(max_length=20)
    payload: str = _text()


class Enrollment(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("contact_id", "campaign", name="uq_enrollment_contact_campaign"),
        sa.Index("ix_enrollment_segment_created", "segment", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    contact_id: str = Field(foreign_key="contact.id", max_length=32)
    campaign: str = Field(max_length=80)
    segment: str = Field(max_length=10)
    timing: str = Field(max_length=12)
    status: str = Field(max_length=14, index=True)
    status_reason: str | None = Field(default=None, max_length=200)
    red_systems: int | None = None
    orange_systems: int | None = None
    yellow_systems: int | None = None
    green_systems: int | None = None
    assessment_score: float | None = None
    created_at: datetime = _at(index=True)
    updated_at: datetime = _at()


class SendBatch(SQLModel, table=True):
    """A persisted provider call: its members and key never change, so a replay is identical."""

    __tablename__ = "send_batch"

    id: str = Field(primary_key=True, max_length=32)
    idempotency_key: str = Field(max_length=80)
    size: int
    attempts: int = 0
    # Attempts the provider refused outright (core/errors.py MailerError.refused): while every
    # attempt was, nothing was sent, and an expired key can be replaced instead of written off.
    refused_attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The first failure that may have reached the provider (a timeout, a 5xx): the retry window runs
    # from there, so time spent held by a pause or the breaker after refusals does not count.
    uncertain_since: datetime | None = _at(default=None)
    created_at: datetime = _at()  # when its current key was first used


class Send(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("enrollment_id", "step", "generation", name="uq_send_step_generation"),
        sa.Index("ix_send_status_due", "status", "ready", "due_at"),
        # Partial: only claimed, sent or finished rows carry these values, so the 7 sends a new
        # signup writes skip all four (migrations 0004 and 0006).
        _not_null_index("ix_send_lease", "status", "lease_expires_at"),
        _not_null_index("ix_send_batch_id", "batch_id"),
        _not_null_index("ix_send_provider_id", "provider_id"),
        _not_null_index("ix_send_status_finished", "status", "finished_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    enrollment_id: str = Field(foreign_key="enrollment.id", max_length=32)
    contact_id: str = Field(foreign_key="contact.id", index=True, max_length=32)
    step: int
    generation: int = 1
    status: str = Field(max_length=10)
    ready: bool = False
    planned_at: datetime = _at()
    due_at: datetime = _at()
    attempts: int = 0
    last_error: str | None = _text(default=None)
    lease_owner: str | None = Field(default=None, max_length=80)
    lease_expires_at: datetime | None = _at(default=None)
    batch_id: str | None = Field(default=None, foreign_key="send_batch.id", max_length=32)
    idempotency_key: str | None = Field(default=None, max_length=80)
    provider_id: str | None = Field(default=None, max_length=80)
    sent_at: datetime | None = _at(default=None)
    finished_at: datetime | None = _at(default=None)
    delivered_at: datetime | None = _at(default=None)
    opened_at: datetime | None = _at(default=None)
    clicked_at: datetime | None = _at(default=None)
    bounced_at: datetime | None = _at(default=None)
    complained_at: datetime | None = _at(default=None)
    created_at: datetime = _at()
    updated_at: datetime = _at()


class Event(SQLModel, table=True):
    """The audit trail: every state change and manual action, with who and when."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _at(index=True)
    actor: str = Field(max_length=120)
    kind: str = Field(max_length=40, index=True)
    contact_id: str | None = Field(default=None, index=True, max_length=32)
    enrollment_id: str | None = Field(default=None, max_length=32)
    send_id: str | None = Field(default=None, max_length=32)
    detail: str | None = _text(default=None)


class Setting(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=60)
    value: str = _text()
    updated_at: datetime = _at()
    updated_by: str = Field(max_length=120)


class Action(SQLModel, table=True):
    """A request from the dashboard or CLI that the worker carries out."""

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=30)
    payload: str = _text()
    requested_by: str = Field(max_length=120)
    requested_at: datetime = _at()
    status: str = Field(max_length=10, index=True)
    result: str | None = _text(default=None)
    done_at: datetime | None = _at(default=None)


class ProviderEvent(SQLModel, table=True):
    """Resend webhook deliveries, deduplicated on svix-id."""

    __tablename__ = "provider_event"

    svix_id: str = Field(primary_key=True, max_length=100)
    type: str = Field(max_length=40)
    provider_id: str | None = Field(default=None, max_length=80, index=True)
    received_at: datetime = _at()
    payload: str = _text()


class Outbox(SQLModel, table=True):
    """Side-channel work (Notion mirror, Discord alerts) written in the same transaction as its cause."""

    __table_args__ = (sa.Index("ix_outbox_pending", "channel", "done_at", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=32)
    channel: str = Field(max_length=12)
    dedupe_key: str | None = Field(default=None, max_length=120, sa_column_kwargs={"unique": True})
    contact_id: str | None = Field(default=None, index=True, max_length=32)
    payload: str = _text()
    created_at: datetime = _at()
    attempts: int = 0
    next_attempt_at: datetime = _at()
    last_error: str | None = _text(default=None)
    done_at: datetime | None = _at(default=None)


class Worker(SQLModel, table=True):
    """One row per worker process: the heartbeat /health and the dashboard read."""

    id: str = Field(primary_key=True, max_length=80)
    host: str = Field(max_length=120)
    pid: int
    started_at: datetime = _at()
    last_seen: datetime = _at(index=True)


class Erasure(SQLModel, table=True):
    """A forgotten person: only a salted hash of their address, so they are never re-enrolled by accident."""

    email_hash: str = Field(primary_key=True, max_length=64)
    erased_at: datetime = _at()
    erased_by: str = Field(max_length=120)


class ErasureHold(SQLModel, table=True):
    """What an erased person's email in flight was rendered from, kept only until that send settles.

    A batch already handed to Resend is replayed exactly as it was (DESIGN §4.3). Rendered from the
    scrubbed contact, the replay would differ, Resend would refuse its key (409), and every member of
    the batch would be recorded failed although delivered. Deleted once the send is no longer in flight.
    """

    __tablename__ = "erasure_hold"

    send_id: str = Field(primary_key=True, foreign_key="send.id", max_length=32)
    email: str = Field(max_length=254)
    first_name: str | None = Field(default=None, max_length=200)
    business_name: str | None = Field(default=None, max_length=200)
    held_at: datetime = _at()


class JobLease(SQLModel, table=True):
    """Who runs a singleton job (Notion sync, alerts) right now, and until when."""

    __tablename__ = "job_lease"

    name: str = Field(primary_key=True, max_length=60)
    owner: str = Field(max_length=80)
    expires_at: datetime = _at()


class Tally(SQLModel, table=True):
    """Running counts kept by database triggers (migration 0005); read them with core.tally, never write them.

    kind is `status:<status>` or `delivered` / `opened` / `clicked` (bucket = step), or
    `signups:<segment>` (bucket = UTC day number); shards spread concurrent writers.
    """

    __table_args__ = {"sqlite_with_rowid": False}

    kind: str = Field(primary_key=True, max_length=40)
    bucket: int = Field(primary_key=True)
    shard: int = Field(primary_key=True)
    n: int = Field(sa_type=sa.BigInteger)


from core.notion.models import NotionPageLink  # noqa: E402,F401  (registers notion_page on SQLModel.metadata)
