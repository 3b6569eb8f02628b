"""send_batch retry state: attempts the provider refused outright, and when an uncertain failure began

Resend forgets an idempotency key after 24 hours, so a batch first handed over longer ago is
not replayed under it: if an attempt got through, a replay could send it twice. But when every
attempt so far was refused at the door (a rate limit, a bad key, an unverified domain), nothing
was sent, and the batch can go under a fresh key instead of being written off
(`refused_attempts`). And only failures that may have reached the provider (a timeout, a 5xx)
count against the retry window, from the first of them (`uncertain_since`), so hours spent held
by a pause or by the circuit breaker are not held against the emails.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

import core.timeutil

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_batch") as batch:
        batch.add_column(sa.Column("refused_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("uncertain_since", core.timeutil.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_batch") as batch:
        batch.drop_column("uncertain_since")
        batch.drop_column("refused_attempts")
