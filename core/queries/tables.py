"""Helpers the read model shares: the campaign it reads, its contact-enrollment join, rows as dicts."""

import sqlalchemy as sa

from core.campaign import CHRISTMAS_2025
from core.tables import contact_t, enrollment_t

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
