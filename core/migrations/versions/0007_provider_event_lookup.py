"""provider_event.provider_id index: events that arrive before their send is recorded

Resend can report a bounce or complaint for an email before Nurture has recorded that email as
sent (its answer was lost and the batch is waiting for its replay). Such events are kept, and
applied when the send is recorded, which looks them up by provider id.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_provider_event_provider_id", "provider_event", ["provider_id"])


def downgrade() -> None:
    op.drop_index("ix_provider_event_provider_id", table_name="provider_event")
