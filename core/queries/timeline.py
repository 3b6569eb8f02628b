"""One contact's story: who they are, where each of their 7 steps stands and why, and the audit trail."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from core import controls
from core.outcomes import failed_after_accepting
from core.queries.steps import failed_steps, latest_by_enrollment, sends_of, step_state
from core.queries.tables import CAMPAIGN, STEP_NUMBERS, rows_as_dicts
from core.sequencing import TERMINAL
from core.tables import contact_t, enrollment_t, event_t, send_t

EVENT_LIMIT = 200


@dataclass(frozen=True)
class StepLine:
    """A step as the marketer reads it: its state, a short headline and the facts behind it."""

    step: int
    state: str
    headline: str
    facts: tuple[str, ...]
    send: dict | None
    generations: int


def when(value: datetime | None) -> str:
    """A timestamp as '1 Dec 09:00 UTC' (the dashboard shows UTC throughout)."""
    return f"{value.day} {value:%b %H:%M} UTC" if value else "—"


# How core writes a moment into a stored reason ("unsubscribed on 2025-12-01 09:00 UTC"): unambiguous in the
# database, but beside the dashboard's "1 Dec 09:00 UTC" it read as raw data.
_STORED_TIME = re.compile(r"\b(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC\b")


def humane(reason: str) -> str:
    """A reason core wrote, with its times in the dashboard's format: 'unsubscribed on 1 Dec 09:00 UTC'."""
    return _STORED_TIME.sub(lambda m: when(datetime.strptime(m[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)), reason)


def relative(value: datetime, now: datetime) -> str:
    """'in 3 h', '5 min ago': how far a moment is from now, to the nearest sensible unit."""
    seconds = (value - now).total_seconds()
    span = abs(seconds)
    if span < 60:
        amount = f"{int(span)} s"
    elif span < 3600:
        amount = f"{int(span // 60)} min"
    elif span < 172800:
        amount = f"{int(span // 3600)} h"
    else:
        amount = f"{int(span // 86400)} days"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def describe_step(number: int, send: dict | None, earlier: dict[int, dict], now: datetime, *,
                  paused: bool) -> tuple[str, tuple[str, ...]]:
    """The headline and facts for one step, given the newest sends of the steps before it."""
    if send is None:
        return "not planned", ()
    status = send["status"]
    facts: list[str] = []
    if send["sent_at"]:
        facts.append(f"sent {when(send['sent_at'])}")
    if send["provider_id"]:
        facts.append(f"provider id {send['provider_id']}")
    for label, column in (("delivered", "delivered_at"), ("opened", "opened_at"), ("clicked", "clicked_at"),
                          ("bounced", "bounced_at"), ("complained", "complained_at")):
        if send.get(column):
            facts.append(f"{label} {when(send[column])}")
    if send["generation"] > 1:
        facts.append(f"resend #{send['generation'] - 1}")
    if status == "sent":
        failed_later = failed_after_accepting(send)
        if failed_later is not None:  # otherwise only the audit trail would say the email never went
            headline = (f"accepted by Resend, which then reported it failed: {failed_later} "
                        "(resend the step to try again)")
            return headline, tuple(facts)
        return step_state(send), tuple(facts)
    if status == "scheduled":
        return _scheduled_headline(number, send, earlier, now, paused), tuple(facts)
    if status == "sending":
        retrying = f"; retrying after: {send['last_error']}" if send["last_error"] else ""
        return f"being sent (attempt {send['attempts'] or 1}){retrying}", tuple(facts)
    reason = send["last_error"] or ""
    if send.get("finished_at") and status in ("failed", "cancelled", "skipped"):
        facts.insert(0, f"{status} {when(send['finished_at'])}")
    if status == "failed":
        return f"failed: {reason or 'no reason recorded'}", tuple(facts)
    if status == "cancelled":
        # Stops store "cancelled: " and their reason, itself "cancelled by a marketer" when a marketer cancelled.
        reason = humane(reason.removeprefix("cancelled: ") if reason.startswith("cancelled: cancelled") else reason)
        headline = reason if reason.startswith("cancelled") else f"cancelled: {reason or 'no reason recorded'}"
        return headline, tuple(facts)
    return f"skipped: {reason}" if reason else "skipped", tuple(facts)


def _scheduled_headline(number, send, earlier, now, paused) -> str:
    if not send["ready"]:
        blocking = next((n for n in range(number - 1, 0, -1)
                         if earlier.get(n) and earlier[n]["status"] not in TERMINAL), number - 1)
        return f"waiting for step {blocking}; planned for {when(send['planned_at'])}"
    if paused:
        return f"held: sending is paused (due {when(send['due_at'])})"
    if send["due_at"] <= now:
        return f"due now (since {relative(send['due_at'], now)}); the worker sends it on its next pass"
    due = f"due {when(send['due_at'])} ({relative(send['due_at'], now)})"
    if send["due_at"] > send["planned_at"]:
        # After downtime, a pause or a late step the order rule moves it later: say so, or the
        # marketer sees a date that is not the plan and no reason for it.
        due += (f"; planned for {when(send['planned_at'])}, moved later to keep at least half its planned "
                f"gap after the email before it")
    return due


def contact_detail(conn: sa.Connection, contact_id: str, now: datetime, *, paused: bool = False) -> dict | None:
    """Everything the timeline shows for one contact, or None when there is no such contact."""
    if "\x00" in contact_id:  # from the page's URL: no id holds NUL, and PostgreSQL refuses it in any text
        return None
    contact = conn.execute(sa.select(contact_t).where(contact_t.c.id == contact_id)).first()
    if contact is None:
        return None
    enrollment = conn.execute(sa.select(enrollment_t).where(
        enrollment_t.c.contact_id == contact_id, enrollment_t.c.campaign == CAMPAIGN.name)).first()
    sends = sends_of(conn, [enrollment.id]) if enrollment else []
    latest = latest_by_enrollment(sends).get(enrollment.id, {}) if enrollment else {}
    steps = []
    for number in STEP_NUMBERS:
        send = latest.get(number)
        headline, facts = describe_step(number, send, latest, now, paused=paused)
        generations = sum(1 for s in sends if s["step"] == number)
        steps.append(StepLine(number, step_state(send), headline, facts, send, generations))
    events = rows_as_dicts(conn.execute(
        sa.select(event_t.c.at, event_t.c.actor, event_t.c.kind, event_t.c.detail)
        .where(event_t.c.contact_id == contact_id).order_by(event_t.c.at.desc(), event_t.c.id.desc())
        .limit(EVENT_LIMIT)))
    return {
        "contact": dict(contact._mapping),
        "enrollment": dict(enrollment._mapping) if enrollment else None,
        "steps": steps,
        "failed_steps": failed_steps(line.state for line in steps),
        "sends": sends,
        "events": events,
    }


def steps_still_going(conn: sa.Connection, enrollment_id: str) -> list[int]:
    """Steps of this sequence a stop could no longer catch (controls.steps_still_going)."""
    return controls.steps_still_going(conn, send_t.c.enrollment_id == enrollment_id)
