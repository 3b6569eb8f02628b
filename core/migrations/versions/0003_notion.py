"""notion mirror: one row per mirrored enrollment (its page, last write and lease)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

import core.timeutil

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notion_page",
        sa.Column("enrollment_id", sa.String(length=32), sa.ForeignKey("enrollment.id"), primary_key=True),
        sa.Column("contact_id", sa.String(length=32), nullable=False),
        sa.Column("page_id", sa.String(length=64), nullable=True),
        sa.Column("page_url", sa.String(length=300), nullable=True),
        sa.Column("synced_hash", sa.String(length=64), nullable=True),
        sa.Column("synced_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("business_page_id", sa.String(length=64), nullable=True),
        sa.Column("business_checked_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("lease_expires_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("updated_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_notion_page_contact_id", "notion_page", ["contact_id"])
    op.create_index("ix_notion_page_page_id", "notion_page", ["page_id"])
    op.create_index("ix_notion_page_synced_at", "notion_page", ["synced_at"])


def downgrade() -> None:
    op.drop_table("notion_page")
