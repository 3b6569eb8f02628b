"""The mirror's own table: which Notion page shows each enrollment, and when it was last written.

Kept out of core/models.py because only the Notion mirror uses it; migration 0003 creates it.
"""

from datetime import datetime

from sqlmodel import Field, SQLModel

from core.timeutil import UTCDateTime


class NotionPageLink(SQLModel, table=True):
    """One row per mirrored enrollment. The lease makes one worker at a time write its page."""

    __tablename__ = "notion_page"

    enrollment_id: str = Field(primary_key=True, foreign_key="enrollment.id", max_length=32)
    contact_id: str = Field(index=True, max_length=32)
    page_id: str | None = Field(default=None, index=True, max_length=64)
    page_url: str | None = Field(default=None, max_length=300)
    synced_hash: str | None = Field(default=None, max_length=64)
    synced_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    business_page_id: str | None = Field(default=None, max_length=64)
    business_checked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_owner: str | None = Field(default=None, max_length=80)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)
    updated_at: datetime = Field(sa_type=UTCDateTime)
