"""The enrollment service: turn validated signups into contacts, enrollments and scheduled sends.

Signups arrive in batches (the intake's group commit, an import) and each batch is one
transaction. The unique constraints on contact.email and enrollment(contact, campaign) are
the idempotency: rows are inserted with ON CONFLICT DO NOTHING and read back, so a
concurrent duplicate is reported as a duplicate, never as an error.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import sqlalchemy as sa

from core import repo
from core.bulk import pipelined
from core.erasure import email_hash, erased_hashes, erasure_salt, hold_off_erasures
from core.campaign import CHRISTMAS_2025, Campaign, Timing
from core.ids import new_id
from core.sequencing import plan_schedule, segment_for
from core.signups import SignupIn
from core.statuses import EnrollmentStatus, SignupOutcome


@dataclass(frozen=True)
class SignupRequest:
    signup: SignupIn
    source: str = "webhook"
    is_test: bool = False
    force_test_timing: bool = False
    received_at: datetime | None = None
    # An import enrols only people it does not know: a list never overrides what a lead sent since.
    only_new: bool = False


@dataclass(frozen=True)
class EnrollResult:
    email: str
    segment: str
    outcome: SignupOutcome
    contact_id: str
    enrollment_id: str | None

    @property
    def duplicate(self) -> bool:
        return self.outcome is not SignupOutcome.ENROLLED


@dataclass
class _Rows:
    contacts: list[dict] = field(default_factory=list)
    enrollments: list[dict] = field(default_factory=list)
    resegments: list[dict] = field(default_factory=list)
    signups: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    outbox: list[dict] = field(default_factory=list)


def enroll_batch(
    conn: sa.Connection,
    requests: Sequence[SignupRequest],
    now: datetime,
    *,
    test_mode: bool,
    notion_enabled: bool = False,
    discord_enabled: bool = False,
    campaign: Campaign = CHRISTMAS_2025,
    salt: str | None = None,
) -> list[EnrollResult]:
    """Enroll every request inside the caller's write transaction; results follow the input order.

    `salt`: the erasure salt if the caller has read it in this transaction already.
    """
    requests, refused = _without_erased(conn, requests, now, salt)
    if not requests:
        return refused_results(refused)
    emails = sorted({r.signup.email for r in requests})
    contact_ids, created = _ensure_contacts(conn, requests, now)
    # A contact created by this very batch cannot have an enrollment yet.
    existing = _resubmitted(conn, [contact_ids[e] for e in emails if contact_ids[e] not in created], campaign)

    rows, results, fresh = _Rows(), [], {}
    for req in requests:
        s = req.signup
        contact_id = contact_ids[s.email]
        segment = segment_for(s.red_systems, s.orange_systems).value
        known = existing.get(contact_id)
        if known is None and contact_id not in fresh:
            enrollment_id = new_id()
            timing = Timing.TEST if (test_mode or req.force_test_timing) else Timing.PRODUCTION
            fresh[contact_id] = enrollment_id
            rows.enrollments.append(_enrollment_row(enrollment_id, contact_id, campaign, segment, timing, s, now))
            outcome = SignupOutcome.ENROLLED
        elif known is not None and (known.settled or req.only_new):
            # The sequence has begun or was stopped (or an import meets someone enrolled since it planned):
            # this signup changes nothing, and the answer gives the segment in effect.
            enrollment_id, segment, outcome = known.id, known.segment, SignupOutcome.SKIPPED
        else:
            enrollment_id = known.id if known else fresh[contact_id]
            outcome = SignupOutcome.UPDATED
            rows.resegments.append(_resegment_row(enrollment_id, segment, s, now))
        results.append(EnrollResult(s.email, segment, outcome, contact_id, enrollment_id))

    lost = _insert_enrollments(conn, sorted(rows.enrollments, key=lambda e: e["contact_id"]))  # (lock order)
    if lost:
        results = _as_duplicates(conn, results, lost, campaign)
    for req, r in zip(requests, results, strict=True):  # recorded only now that every outcome is final
        rows.signups.append(_signup_row(req, r.contact_id, r.outcome, now))
        rows.events.append(_event_row(req, r.contact_id, r.enrollment_id, r.outcome, r.segment, now))
    won = [e for e in rows.enrollments if e["id"] not in lost]
    repo.update_enrollments(conn, [r for r in rows.resegments if r["b_id"] not in lost])
    repo.update_contact_names(conn, _fresh_names(requests, results, now))
    with pipelined(conn):  # nothing below is read back: one round trip on PostgreSQL
        repo.insert_sends(conn, _send_rows(won, campaign, now))
        repo.insert_signups(conn, rows.signups)
        repo.insert_events(conn, rows.events)
        repo.insert_outbox(conn, _outbox_rows(results, notion_enabled, discord_enabled, now))
    return _merge(results, refused)


def _resubmitted(conn: sa.Connection, contact_ids: list[str], campaign: Campaign) -> dict[str, repo.KnownEnrollment]:
    """The enrollments these contacts already have, with whether their sequence has begun.

    A sequence that looks untouched is looked at again with its sends locked, so that a worker
    cannot start step 1 between this decision and the re-segmenting it allows.
    """
    existing = repo.enrollments_by_contact(conn, contact_ids, campaign.name)
    untouched = [known.id for known in existing.values() if not known.settled]
    started = repo.lock_sends_and_find_started(conn, untouched) if untouched else set()
    if not started:
        return existing
    return {cid: replace(known, any_sent=True) if known.id in started else known for cid, known in existing.items()}


def _without_erased(conn, requests, now, salt) -> tuple[list[SignupRequest], dict[int, SignupRequest]]:
    """Split off signups from people who asked to be forgotten; record each refusal without their address."""
    hold_off_erasures(conn)  # first: the checks and writes below then never interleave with a `forget`
    salt = erasure_salt(conn, now, known=salt)
    hashes = {r.signup.email: email_hash(salt, r.signup.email) for r in requests}
    erased = erased_hashes(conn, list(set(hashes.values())))
    if not erased:
        return list(requests), {}
    refused = {i: r for i, r in enumerate(requests) if hashes[r.signup.email] in erased}
    repo.insert_events(conn, [repo.event_row(now, r.source, "signup_refused_erased",
                                             detail={"email_hash": hashes[r.signup.email]})
                              for r in refused.values()])
    return [r for i, r in enumerate(requests) if i not in refused], refused


def refused_results(refused: dict[int, SignupRequest]) -> list[EnrollResult]:
    return [EnrollResult(r.signup.email, segment_for(r.signup.red_systems, r.signup.orange_systems).value,
                         SignupOutcome.REFUSED, "", None) for r in refused.values()]


def _merge(results: list[EnrollResult], refused: dict[int, SignupRequest]) -> list[EnrollResult]:
    """Put refusals back at their input positions."""
    if not refused:
        return results
    merged, rest, refusals = [], iter(results), dict(zip(refused, refused_results(refused)))
    for i in range(len(results) + len(refused)):
        merged.append(refusals[i] if i in refusals else next(rest))
    return merged


def _ensure_contacts(conn: sa.Connection, requests: Sequence[SignupRequest],
                     now: datetime) -> tuple[dict[str, str], set[str]]:
    """Insert unknown contacts; map every email to its contact id, and name the ids created here."""
    latest = {r.signup.email: r for r in requests}  # the last signup of a batch carries the freshest names
    known = repo.contact_ids_by_email(conn, list(latest))
    new = [
        {"id": new_id(), "email": email, "first_name": r.signup.first_name, "business_name": r.signup.business_name,
         "is_test": r.is_test, "created_at": now, "updated_at": now}
        # In address order: concurrent batches then take the unique index's locks in one order
        # and never deadlock on two addresses they both carry.
        for email, r in sorted(latest.items()) if email not in known
    ]
    inserted = repo.insert_contacts(conn, new)
    if new and inserted != len(new):
        # Another process may have inserted the same address in between: the stored id wins.
        known.update(repo.contact_ids_by_email(conn, [c["email"] for c in new]))
    else:
        known.update({c["email"]: c["id"] for c in new})
    return known, {c["id"] for c in new} & set(known.values())


def _fresh_names(requests, results, now) -> list[dict]:
    """Names from resubmissions that may still change the sequence; a skipped one changes nothing."""
    latest = {}
    for req, r in zip(requests, results, strict=True):
        if r.outcome is SignupOutcome.UPDATED and (req.signup.first_name or req.signup.business_name):
            latest[r.contact_id] = req.signup
    return [{"b_id": cid, "first_name": s.first_name, "business_name": s.business_name, "updated_at": now}
            for cid, s in latest.items()]


def _insert_enrollments(conn: sa.Connection, rows: list[dict]) -> set[str]:
    """Insert enrollments; return the ids that lost a race to a concurrent writer."""
    if not rows:
        return set()
    if repo.insert_enrollments(conn, rows) == len(rows):
        return set()  # the driver counted every row in: no race was lost
    stored = repo.enrollment_ids(conn, [r["id"] for r in rows])
    return {r["id"] for r in rows} - stored


def _as_duplicates(conn: sa.Connection, results: list[EnrollResult], lost: set[str],
                   campaign: Campaign) -> list[EnrollResult]:
    """Signups whose new enrollment lost the race to a concurrent writer: skipped, with the winner's segment."""
    winners = repo.enrollments_by_contact(conn, sorted({r.contact_id for r in results if r.enrollment_id in lost}),
                                          campaign.name)
    return [EnrollResult(r.email, winners[r.contact_id].segment if r.contact_id in winners else r.segment,
                         SignupOutcome.SKIPPED, r.contact_id, None) if r.enrollment_id in lost else r
            for r in results]


def _enrollment_row(eid, contact_id, campaign, segment, timing, s: SignupIn, now) -> dict:
    return {
        "id": eid, "contact_id": contact_id, "campaign": campaign.name, "segment": segment,
        "timing": timing.value, "status": EnrollmentStatus.ACTIVE.value, "status_reason": None,
        **_counts(s), "created_at": now, "updated_at": now,
    }


def _resegment_row(eid, segment, s: SignupIn, now) -> dict:
    return {"b_id": eid, "segment": segment, **_counts(s), "updated_at": now}


def _counts(s: SignupIn) -> dict:
    return {
        "red_systems": s.red_systems, "orange_systems": s.orange_systems, "yellow_systems": s.yellow_systems,
        "green_systems": s.green_systems, "assessment_score": s.assessment_score,
    }


def _send_rows(enrollments: list[dict], campaign: Campaign, now: datetime) -> list[dict]:
    rows = []
    for e in enrollments:
        for planned in plan_schedule(campaign, e["created_at"], Timing(e["timing"])):
            rows.append({
                "id": new_id(), "enrollment_id": e["id"], "contact_id": e["contact_id"], "step": planned.step,
                "generation": 1, "status": "scheduled", "ready": planned.ready, "planned_at": planned.planned_at,
                "due_at": planned.planned_at, "attempts": 0, "created_at": now, "updated_at": now,
            })
    return rows


def _signup_row(req: SignupRequest, contact_id: str, outcome: SignupOutcome, now: datetime) -> dict:
    return {
        "id": new_id(), "contact_id": contact_id, "received_at": req.received_at or now, "source": req.source,
        "outcome": outcome.value, "payload": json.dumps(req.signup.model_dump(mode="json"), ensure_ascii=False),
    }


def _event_row(req, contact_id, enrollment_id, outcome: SignupOutcome, segment: str, now) -> dict:
    """The audit event of one signup (a lost race has no enrollment id: it points at none)."""
    detail = {"source": req.source, "segment": segment}
    return {"at": now, "actor": req.source, "kind": f"signup_{outcome.value}", "contact_id": contact_id,
            "enrollment_id": enrollment_id, "send_id": None, "detail": json.dumps(detail)}


def _outbox_rows(results, notion_enabled, discord_enabled, now) -> list[dict]:
    rows = []
    if discord_enabled:
        # Each enrollment's segment as this batch leaves it: the last signup that enrolled or re-segmented it.
        final = {r.enrollment_id: r for r in results
                 if r.outcome in (SignupOutcome.ENROLLED, SignupOutcome.UPDATED)}
        for r in final.values():
            if r.segment == "CRITICAL":  # one alert per contact ever, whichever signup made them CRITICAL
                rows.append(repo.outbox_row("discord", r.contact_id,
                                            {"kind": "critical_lead", "enrollment_id": r.enrollment_id},
                                            now, dedupe_key=f"critical:{r.contact_id}"))
    if notion_enabled:
        for r in results:
            if r.enrollment_id:
                rows.append(repo.outbox_row("notion", r.contact_id, {"enrollment_id": r.enrollment_id}, now))
    return rows
