"""send_batch.uncertain_since for databases that revision 0008's first form migrated

Revision 0008 first added only `refused_attempts`; `uncertain_since` was later added to that same
revision. A database migrated in between records 0008 but lacks the column, and every dispatch
pass on it fails. This adds the column where it is missing and changes nothing elsewhere.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import core.timeutil

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("send_batch")}
    if "uncertain_since" not in columns:
        with op.batch_alter_table("send_batch") as batch:
            batch.add_column(sa.Column("uncertain_since", core.timeutil.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    pass  # the column belongs to 0008, whose downgrade drops it
