"""The tables the read model reads, and small expression helpers that behave alike on SQLite and PostgreSQL."""

import sqlalchemy as sa

from core.campaign import CHRISTMAS_2025
from core.models import Action, Contact, Enrollment, Event, Outbox, Send, Worker

contact_t = Contact.__table__
enrollment_t = Enrollment.__table__
send_t = Send.__table__
event_t = Event.__table__
action_t = Action.__table__
outbox_t = Outbox.__table__
worker_t = Worker.__table__

CAMPAIGN = CHRISTMAS_2025
STEP_NUMBERS = tuple(CAMPAIGN.step_numbers)


def enrollment_join():
    """contact LEFT JOIN its enrollment in the campaign (at most one: a unique constraint says so)."""
    return contact_t.outerjoin(
        enrollment_t,
        sa.and_(enrollment_t.c.contact_id == contact_t.c.id, enrollment_t.c.campaign == CAMPAIGN.name),
    )


def rows_as_dicts(result) -> list[dict]:
    return [dict(r._mapping) for r in result]
