"""send_batch.refused_attempts: how many of a batch's attempts the provider refused outright

Resend forgets an idempotency key after 24 hours, so a batch first handed over longer ago is
not replayed under it: if an attempt got through, a replay could send it twice. But when every
attempt so far was refused at the door (a rate limit, a bad key, an unverified domain), nothing
was sent, and the batch can go under a fresh key instead of being written off.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_batch") as batch:
        batch.add_column(sa.Column("refused_attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("send_batch") as batch:
        batch.drop_column("refused_attempts")
