"""lean send indexes: cheaper intake commits

- ix_send_enrollment_step duplicated the unique (enrollment_id, step, generation) index's prefix;
- ix_send_batch_id and ix_send_provider_id now hold only rows that have a value, so the seven
  sends a signup creates (both NULL) no longer touch them.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _not_null(column: str) -> dict:
    condition = sa.text(f"{column} IS NOT NULL")  # a fixed column name, never input
    return {"sqlite_where": condition, "postgresql_where": condition}


def upgrade() -> None:
    op.drop_index("ix_send_enrollment_step", table_name="send")
    for column in ("batch_id", "provider_id"):
        op.drop_index(f"ix_send_{column}", table_name="send")
        op.create_index(f"ix_send_{column}", "send", [column], **_not_null(column))


def downgrade() -> None:
    for column in ("batch_id", "provider_id"):
        op.drop_index(f"ix_send_{column}", table_name="send")
        op.create_index(f"ix_send_{column}", "send", [column])
    op.create_index("ix_send_enrollment_step", "send", ["enrollment_id", "step"])
