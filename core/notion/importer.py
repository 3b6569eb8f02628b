"""`python -m core notion import`: enroll the contacts the original system tracked in Notion.

Every row of the old Email Sequence database becomes a contact and an enrollment in its segment.
Steps whose "Email N Sent" box is ticked are recorded as sent ("imported-from-notion") and never
go again. The rest are planned from the original signup date under the catch-up rule: only the
first unsent step is ready, and if an earlier step went, it waits per `release_time` as if that
step had gone just now, so nobody gets a burst. A contact already enrolled is skipped, so a
rerun changes nothing. A dry run (the default) only says what would happen.
"""

import json
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa

from core import controls, db, repo, switches
from core.bootstrap import Services
from core.campaign import CHRISTMAS_2025, Campaign, Timing
from core.erasure import erased_addresses, hold_off_erasures
from core.errors import InvalidSignup
from core.ids import new_id
from core.notion import store
from core.notion.port import NotionMirror
from core.notion.properties import SequenceRow, parse_row
from core.notion.sync import STOP_REASON
from core.sequencing import plan_schedule, planned_gap, release_time
from core.signups import parse_signup
from core.statuses import EnrollmentStatus, SendStatus

SOURCE = "notion-import"
IMPORTED_PROVIDER_ID = "imported-from-notion"


@dataclass(frozen=True)
class StepPlan:
    """One send row the import will write."""

    step: int
    status: str
    ready: bool
    planned_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class RowPlan:
    """One Notion row: its steps to write, or why it is skipped."""

    row: SequenceRow
    page_url: str
    skip: str | None = None              # why the row is not imported
    steps: tuple[StepPlan, ...] = ()

    def describe(self) -> str:
        """One line for the terminal."""
        who = self.row.email or f"page {self.row.page_id}"
        if self.skip:
            return f"skip   {who}: {self.skip}"
        sent = [s.step for s in self.steps if s.status == SendStatus.SENT]
        ready = next((s for s in self.steps if s.ready), None)
        parts = [f"steps {_span(sent)} already sent" if sent else "nothing sent yet"]
        if ready:
            parts.append(f"step {ready.step} due {ready.due_at:%Y-%m-%d %H:%M} UTC")
            later = sum(1 for s in self.steps if s.status == SendStatus.SCHEDULED and not s.ready)
            parts.append(f"{later} later")
        if self.row.stop:
            parts.append("stopped in Notion: cancelled")
        return f"enroll {who} as {self.row.segment or 'OPTIMIZE'}: " + ", ".join(parts)


def plan_steps(campaign: Campaign, signup_at: datetime, timing: Timing, sent: frozenset[int],
               now: datetime) -> tuple[StepPlan, ...]:
    """Pure: each step's row. Ticked steps are sent; only the first unsent one is ready."""
    plans, released = [], False
    for planned in plan_schedule(campaign, signup_at, timing):
        if planned.step in sent:
            plans.append(StepPlan(planned.step, SendStatus.SENT, False, planned.planned_at, planned.planned_at))
            continue
        due, ready = planned.planned_at, not released
        if ready and any(s < planned.step for s in sent):
            # The last ticked step's real time is unknown: take it as now, the cautious choice.
            due = release_time(planned.planned_at, now, planned_gap(campaign, planned.step, timing))
        released = True
        plans.append(StepPlan(planned.step, SendStatus.SCHEDULED, ready, planned.planned_at, due))
    return tuple(plans)


def plan_import(pages, enrolled: set[str], now: datetime, timing: Timing,
                campaign: Campaign = CHRISTMAS_2025, *, erased: frozenset[str] = frozenset()) -> list[RowPlan]:
    """What to do with each page, oldest first: enroll, or skip with the reason.

    `erased`: addresses of people who asked to be forgotten; a Notion row never brings them back."""
    plans, seen = [], set(enrolled)
    for page in pages:
        row = parse_row(page)
        email = normalised(row.email)
        if email is None:
            plans.append(RowPlan(row, page.url, skip="no valid email"))
            continue
        row = replace(row, email=email)
        if email in erased:
            plans.append(RowPlan(row, page.url, skip="erased: this person asked to be forgotten"))
            continue
        if email in seen:
            reason = "already enrolled" if email in enrolled else "a second row for the same email"
            plans.append(RowPlan(row, page.url, skip=reason))
            continue
        seen.add(email)
        plans.append(RowPlan(row, page.url, steps=plan_steps(campaign, row.signup_at or now, timing,
                                                             row.sent_steps, now)))
    return plans


def normalised(email: str | None) -> str | None:
    """The address as intake stores it, or None when it is not a valid address."""
    try:
        return parse_signup({"email": email or ""}).email
    except InvalidSignup:
        return None


def run_import(services: Services, mirror: NotionMirror, *, apply: bool,
               campaign: Campaign = CHRISTMAS_2025) -> list[RowPlan]:
    """Plan the import; with `apply`, write every enrollment in one transaction. Returns the plans."""
    pages = list(mirror.iter_pages())
    emails = [e for e in (normalised(parse_row(p).email) for p in pages) if e]
    with (db.write_transaction if apply else db.read_transaction)(services.engine) as conn:
        if apply:
            hold_off_erasures(conn)  # an erasure committing mid-import must not be missed (PostgreSQL)
        now = services.clock()
        timing = Timing.TEST if switches.read(conn).test_mode else Timing.PRODUCTION
        plans = plan_import(pages, _enrolled(conn, emails, campaign), now, timing, campaign,
                            erased=frozenset(erased_addresses(conn, emails)))
        if apply:
            _write(conn, [p for p in plans if not p.skip], campaign, timing, now,
                   notion=services.settings.notion_configured)
    return plans


def _enrolled(conn: sa.Connection, emails: list[str], campaign: Campaign) -> set[str]:
    ids = repo.contact_ids_by_email(conn, emails)
    known = repo.enrollments_by_contact(conn, list(ids.values()), campaign.name)
    return {email for email, cid in ids.items() if cid in known}


def _write(conn: sa.Connection, plans: list[RowPlan], campaign: Campaign, timing: Timing, now: datetime, *,
           notion: bool) -> None:
    """Contacts, enrollments, sends, signups, audit events, page links and outbox rows, all at once."""
    if not plans:
        return
    # In the intake's lock order (contacts by address, enrollments by contact id), so an import and a
    # webhook batch touching the same people on PostgreSQL wait for each other instead of deadlocking.
    rows = {p.row.email: p for p in sorted(plans, key=lambda p: p.row.email)}
    repo.insert_contacts(conn, [{"id": new_id(), "email": e, "first_name": p.row.first_name,
                                 "business_name": p.row.business_name, "is_test": False, "created_at": now,
                                 "updated_at": now} for e, p in rows.items()])
    contact_ids = repo.contact_ids_by_email(conn, list(rows))
    enrollments = {e: new_id() for e in rows}
    repo.insert_enrollments(conn, [_enrollment(enrollments[e], contact_ids[e], p, campaign, timing, now)
                                   for e, p in sorted(rows.items(), key=lambda item: contact_ids[item[0]])])
    won = repo.enrollment_ids(conn, list(enrollments.values()))  # a concurrent signup may have won the race
    imported = [(enrollments[e], contact_ids[e], p) for e, p in rows.items() if enrollments[e] in won]
    repo.insert_sends(conn, [_send(eid, cid, s, now) for eid, cid, p in imported for s in p.steps])
    repo.insert_signups(conn, [{"id": new_id(), "contact_id": cid, "received_at": p.row.signup_at or now,
                                "source": SOURCE, "outcome": "enrolled",
                                "payload": json.dumps({"email": p.row.email, "notion_page_id": p.row.page_id})}
                               for eid, cid, p in imported])
    repo.insert_events(conn, [repo.event_row(now, SOURCE, "signup_imported", contact_id=cid, enrollment_id=eid,
                                             detail={"page_id": p.row.page_id, "sent_steps": sorted(p.row.sent_steps)})
                              for eid, cid, p in imported])
    store.link_imported(conn, [{"enrollment_id": eid, "contact_id": cid, "page_id": p.row.page_id,
                                "page_url": p.page_url or None, "updated_at": now} for eid, cid, p in imported])
    for eid, _cid, p in imported:
        if p.row.stop:
            controls.cancel_sequence(conn, eid, actor="notion", now=now, reason=STOP_REASON)
    if notion:  # the pages gain the new columns (Status, Campaign, Next Email Due) on the next sync
        repo.insert_outbox(conn, [repo.outbox_row("notion", cid, {"enrollment_id": eid}, now)
                                  for eid, cid, _p in imported])


def _enrollment(eid: str, cid: str, plan: RowPlan, campaign: Campaign, timing: Timing, now: datetime) -> dict:
    done = all(s.status == SendStatus.SENT for s in plan.steps)
    return {"id": eid, "contact_id": cid, "campaign": campaign.name, "segment": plan.row.segment or "OPTIMIZE",
            "timing": timing.value,
            "status": (EnrollmentStatus.COMPLETED if done else EnrollmentStatus.ACTIVE).value,
            "status_reason": None, "created_at": plan.row.signup_at or now, "updated_at": now}


def _send(eid: str, cid: str, step: StepPlan, now: datetime) -> dict:
    sent = step.status == SendStatus.SENT
    when = min(step.planned_at, now) if sent else None  # the original sent on plan, as far as we know
    return {"id": new_id(), "enrollment_id": eid, "contact_id": cid, "step": step.step, "generation": 1,
            "status": step.status, "ready": step.ready,
            "planned_at": step.planned_at, "due_at": step.due_at, "attempts": 0,
            "provider_id": IMPORTED_PROVIDER_ID if sent else None, "sent_at": when, "finished_at": when,
            "created_at": now, "updated_at": now}


def _span(steps: list[int]) -> str:
    return f"{steps[0]}-{steps[-1]}" if len(steps) > 1 and steps == list(range(steps[0], steps[-1] + 1)) \
        else ", ".join(map(str, steps))
