"""repair databases that a revision's first form migrated: each gets the schema the revision has now

Three revisions were changed in place after main had migrated databases with them. Such a
database records the revision but not its final schema:
- 0001 at first had no `erasure` and `job_lease` tables: `forget` failed, and the Notion sync
  and the alerts never ran (their singleton lease found no table);
- 0005 at first kept `ix_enrollment_segment`, an index every signup then still wrote;
- 0008 at first added only `refused_attempts`: every dispatch pass failed on the missing
  `send_batch.uncertain_since`.
Each repair runs only where its part is missing or left over, and changes nothing elsewhere.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.timeutil

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "erasure" not in tables:
        op.create_table(
            "erasure",
            sa.Column("email_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
            sa.Column("erased_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
            sa.Column("erased_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
            sa.PrimaryKeyConstraint("email_hash"),
        )
    if "job_lease" not in tables:
        op.create_table(
            "job_lease",
            sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
            sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
            sa.Column("expires_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if "ix_enrollment_segment" in {index["name"] for index in inspector.get_indexes("enrollment")}:
        op.drop_index("ix_enrollment_segment", table_name="enrollment")
    if "uncertain_since" not in {column["name"] for column in inspector.get_columns("send_batch")}:
        with op.batch_alter_table("send_batch") as batch:
            batch.add_column(sa.Column("uncertain_since", core.timeutil.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    pass  # every part belongs to the revision that declares it now, whose downgrade undoes it
