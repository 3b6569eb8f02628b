"""Each enrollment's 7 steps: the newest generation of every step, and a one-word state for it.

Read for a page of enrollments at a time (an IN list on the (enrollment_id, step) index),
never for the whole table.
"""

from collections.abc import Iterable

import sqlalchemy as sa

from core.tables import send_t

# Ordered from "nothing happened yet" to "the reader acted": the dashboard shows one icon per state.
STATES = ("none", "waiting", "due", "sending", "sent", "delivered", "opened", "clicked", "bounced", "failed",
          "cancelled", "skipped")
_IN_CHUNK = 500

SEND_COLUMNS = (
    send_t.c.id, send_t.c.enrollment_id, send_t.c.step, send_t.c.generation, send_t.c.status, send_t.c.ready,
    send_t.c.planned_at, send_t.c.due_at, send_t.c.attempts, send_t.c.last_error, send_t.c.provider_id,
    send_t.c.sent_at, send_t.c.finished_at, send_t.c.delivered_at, send_t.c.opened_at, send_t.c.clicked_at,
    send_t.c.bounced_at, send_t.c.complained_at, send_t.c.lease_expires_at,
)


def sends_of(conn: sa.Connection, enrollment_ids: Iterable[str]) -> list[dict]:
    """Every send (all generations) of these enrollments, ordered by enrollment, step and generation."""
    ids = list(dict.fromkeys(enrollment_ids))
    found: list[dict] = []
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start:start + _IN_CHUNK]
        result = conn.execute(
            sa.select(*SEND_COLUMNS).where(send_t.c.enrollment_id.in_(chunk))
            .order_by(send_t.c.enrollment_id, send_t.c.step, send_t.c.generation)
        )
        found.extend(dict(r._mapping) for r in result)
    return found


def latest_by_enrollment(sends: Iterable[dict]) -> dict[str, dict[int, dict]]:
    """{enrollment_id: {step: newest generation's send}} from rows ordered by generation."""
    latest: dict[str, dict[int, dict]] = {}
    for row in sends:
        latest.setdefault(row["enrollment_id"], {})[row["step"]] = row
    return latest


def step_state(send: dict | None) -> str:
    """One word for where a step stands; engagement outranks plain delivery."""
    if send is None:
        return "none"
    status = send["status"]
    if status == "sent":
        for state, column in (("bounced", "bounced_at"), ("clicked", "clicked_at"), ("opened", "opened_at"),
                              ("delivered", "delivered_at")):
            if send.get(column):
                return state
        return "sent"
    if status == "scheduled":
        return "due" if send["ready"] else "waiting"
    return status


def failed_steps(states: Iterable[str]) -> int:
    """How many of a sequence's steps stand failed (their newest try failed; a resend replaces it)."""
    return sum(1 for state in states if state == "failed")
