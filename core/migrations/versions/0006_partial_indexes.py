"""partial indexes for values most rows never have

A new signup writes a contact and seven sends whose unsubscribe, suppression, lease and finish
times are all empty. Indexing only the rows that have the value keeps those four indexes out
of every intake commit; every query that reads them asks for a time, which implies the value
is there, so both SQLite and PostgreSQL still use them.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# (index, table, columns, the column whose rows are indexed only when set)
INDEXES = (
    ("ix_contact_unsubscribed_at", "contact", ["unsubscribed_at"], "unsubscribed_at"),
    ("ix_contact_suppressed_at", "contact", ["suppressed_at"], "suppressed_at"),
    ("ix_send_lease", "send", ["status", "lease_expires_at"], "lease_expires_at"),
    ("ix_send_status_finished", "send", ["status", "finished_at"], "finished_at"),
)


def upgrade() -> None:
    for name, table, columns, column in INDEXES:
        condition = sa.text(f"{column} IS NOT NULL")  # a fixed column name from INDEXES, never input
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, sqlite_where=condition, postgresql_where=condition)


def downgrade() -> None:
    for name, table, columns, _ in INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
