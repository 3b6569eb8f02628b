"""erasure_hold: an erased person's email in flight is replayed as it was first handed to Resend

`forget` scrubs the contact at once. A batch of theirs already handed to Resend may still be
replayed under its idempotency key (after a timeout, a 5xx, a crashed worker), and a replay
rendered from the scrubbed contact would differ from the first call: Resend refuses a changed
request under a used key (409), and every member of the batch was recorded failed although it
was delivered. The address and names such a send was rendered from are held here, one row per
send in flight, and deleted once it settles.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.timeutil

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasure_hold",
        sa.Column("send_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("first_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("business_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("held_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["send_id"], ["send.id"]),
        sa.PrimaryKeyConstraint("send_id"),
    )


def downgrade() -> None:
    op.drop_table("erasure_hold")
