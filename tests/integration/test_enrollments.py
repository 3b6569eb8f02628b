"""The enrollment service on real SQLite and real PostgreSQL: one sequence per contact, whatever the timing."""

import multiprocessing
import sys
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import claims, controls, db, repo, switches
from core.enrollments import enroll_batch
from core.ids import new_id
from core.intake import enroll_now
from core.models import Enrollment, Send
from core.statuses import SignupOutcome
from tests.support import count_rows, enroll_in_subprocess, intake_counts, rows, signup_request, unique_email

PRODUCTION_HOURS = [0, 24, 72, 120, 168, 216, 264]
send_t, enrollment_t = Send.__table__, Enrollment.__table__


def enroll(services, **fields):
    [result] = enroll_now(services, [signup_request(**fields)])
    return result


def sends_of(services, enrollment_id: str) -> list[dict]:
    query = (sa.select(send_t.c.id, send_t.c.step, send_t.c.status, send_t.c.ready, send_t.c.planned_at,
                       send_t.c.due_at).where(send_t.c.enrollment_id == enrollment_id).order_by(send_t.c.step))
    with services.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def enrollment_of(services, enrollment_id: str) -> dict:
    with services.engine.connect() as conn:
        return dict(conn.execute(sa.select(enrollment_t).where(enrollment_t.c.id == enrollment_id)).one()._mapping)


def signup_outcomes(services) -> list[str]:
    return [r["outcome"] for r in rows(services.engine, "SELECT outcome FROM signup ORDER BY received_at, id")]


def mark_step_sent(services, enrollment_id: str, step: int = 1) -> None:
    """What the dispatcher records once the provider accepted a send, written directly."""
    now = services.clock()
    with db.write_transaction(services.engine) as conn:
        conn.execute(send_t.update().where(send_t.c.enrollment_id == enrollment_id, send_t.c.step == step)
                     .values(status="sent", sent_at=now, finished_at=now, provider_id="test-provider-id"))


def test_a_new_signup_makes_one_contact_one_enrollment_and_seven_scheduled_sends(services, clock):
    result = enroll(services, email="new@example.com", red_systems=2)

    assert result.outcome is SignupOutcome.ENROLLED and result.duplicate is False
    assert result.segment == "CRITICAL"
    assert intake_counts(services.engine) == {"contact": 1, "signup": 1, "enrollment": 1, "send": 7}
    sends = sends_of(services, result.enrollment_id)
    assert [s["step"] for s in sends] == [1, 2, 3, 4, 5, 6, 7]
    assert {s["status"] for s in sends} == {"scheduled"}
    assert [bool(s["ready"]) for s in sends] == [True] + [False] * 6
    assert [s["due_at"] - clock.now for s in sends] == [timedelta(hours=h) for h in PRODUCTION_HOURS]
    assert enrollment_of(services, result.enrollment_id)["timing"] == "production"


def test_the_contact_enrollment_and_sends_become_visible_in_the_same_commit(services, clock):
    with db.write_transaction(services.engine) as conn:
        enroll_batch(conn, [signup_request(email="atomic@example.com")], clock(), test_mode=False)
        # A second connection sees nothing until the writer commits.
        assert intake_counts(services.engine) == {"contact": 0, "signup": 0, "enrollment": 0, "send": 0}
    assert intake_counts(services.engine) == {"contact": 1, "signup": 1, "enrollment": 1, "send": 7}


def test_a_signup_whose_transaction_fails_leaves_nothing_behind(services, clock):
    with pytest.raises(RuntimeError, match="crash after enrolling"):
        with db.write_transaction(services.engine) as conn:
            enroll_batch(conn, [signup_request(email="rollback@example.com")], clock(), test_mode=False)
            raise RuntimeError("crash after enrolling")
    assert intake_counts(services.engine) == {"contact": 0, "signup": 0, "enrollment": 0, "send": 0}


def test_an_email_is_stored_trimmed_and_lower_cased(services):
    result = enroll(services, email="  Alice.Smith@Example.COM  ")
    assert result.email == "alice.smith@example.com"
    assert rows(services.engine, "SELECT email FROM contact") == [{"email": "alice.smith@example.com"}]


def test_a_differently_cased_address_is_the_same_contact(services):
    enroll(services, email="Bob@Example.com")
    again = enroll(services, email=" bob@EXAMPLE.com")
    assert again.duplicate is True
    assert count_rows(services.engine, "contact") == 1
    assert count_rows(services.engine, "enrollment") == 1


def test_a_duplicate_signup_never_starts_a_second_sequence(services):
    first = enroll(services, email="dup@example.com")
    second = enroll(services, email="dup@example.com")
    third = enroll(services, email="dup@example.com")

    assert first.outcome is SignupOutcome.ENROLLED
    assert {second.outcome, third.outcome} <= {SignupOutcome.UPDATED, SignupOutcome.SKIPPED}
    assert second.duplicate and third.duplicate
    assert second.enrollment_id == third.enrollment_id == first.enrollment_id
    assert intake_counts(services.engine) == {"contact": 1, "signup": 3, "enrollment": 1, "send": 7}


def test_a_resubmission_before_any_send_re_segments_the_sequence(services, clock):
    first = enroll(services, email="change@example.com", red_systems=0, orange_systems=1, assessment_score=80)
    sends_before = sends_of(services, first.enrollment_id)
    assert first.segment == "OPTIMIZE"
    clock.advance(minutes=5)

    again = enroll(services, email="change@example.com", red_systems=3, orange_systems=2, yellow_systems=1,
                   green_systems=0, assessment_score=20)

    assert again.outcome is SignupOutcome.UPDATED and again.segment == "CRITICAL"
    e = enrollment_of(services, first.enrollment_id)
    assert e["segment"] == "CRITICAL"
    assert (e["red_systems"], e["orange_systems"], e["yellow_systems"], e["green_systems"]) == (3, 2, 1, 0)
    assert e["assessment_score"] == 20
    assert sends_of(services, first.enrollment_id) == sends_before  # same sends, same times
    assert signup_outcomes(services) == ["enrolled", "updated"]


def test_a_resubmission_after_an_email_went_out_is_recorded_but_changes_nothing(services, clock):
    first = enroll(services, email="started@example.com", red_systems=0, orange_systems=0)
    mark_step_sent(services, first.enrollment_id)
    enrollment_before = enrollment_of(services, first.enrollment_id)
    sends_before = sends_of(services, first.enrollment_id)
    clock.advance(hours=2)

    again = enroll(services, email="started@example.com", red_systems=3, orange_systems=3)

    assert again.outcome is SignupOutcome.SKIPPED and again.duplicate
    assert again.segment == "OPTIMIZE"  # the segment still in effect, not the one this signup would have had
    assert enrollment_of(services, first.enrollment_id) == enrollment_before
    assert sends_of(services, first.enrollment_id) == sends_before
    assert signup_outcomes(services) == ["enrolled", "skipped"]
    assert intake_counts(services.engine) == {"contact": 1, "signup": 2, "enrollment": 1, "send": 7}


def test_a_resubmission_while_the_welcome_email_is_being_sent_changes_nothing(services, clock):
    # Claimed for sending, the welcome may already be with the provider: the sequence has begun.
    first = enroll(services, email="in-flight@example.com", red_systems=0, orange_systems=0)
    with db.write_transaction(services.engine) as conn:
        claims.claim_due(conn, "worker-a", clock(), timedelta(minutes=2), 100)
    enrollment_before = enrollment_of(services, first.enrollment_id)

    again = enroll(services, email="in-flight@example.com", red_systems=3, orange_systems=3)

    assert again.outcome is SignupOutcome.SKIPPED and again.segment == "OPTIMIZE"
    assert enrollment_of(services, first.enrollment_id) == enrollment_before


@pytest.mark.parametrize("stop", ["cancel", "unsubscribe"])
def test_a_resubmission_after_the_sequence_was_stopped_before_any_send_changes_nothing(services, clock, stop):
    first = enroll(services, email="stopped@example.com", red_systems=0, orange_systems=0)
    with db.write_transaction(services.engine) as conn:
        if stop == "cancel":
            controls.cancel_sequence(conn, first.enrollment_id, actor="test", now=clock())
        else:
            controls.unsubscribe_contact(conn, first.contact_id, actor="test", now=clock())
    enrollment_before = enrollment_of(services, first.enrollment_id)
    clock.advance(hours=2)

    again = enroll(services, email="stopped@example.com", red_systems=3, orange_systems=3)

    # Recorded, never re-segmented: the record of a stopped sequence must not say it changed.
    assert again.outcome is SignupOutcome.SKIPPED and again.segment == "OPTIMIZE"
    assert enrollment_of(services, first.enrollment_id) == enrollment_before
    assert signup_outcomes(services) == ["enrolled", "skipped"]


@pytest.mark.parametrize("claim", ["committed", "in progress"])
@pytest.mark.parametrize("backend", ["postgres"])  # SQLite's BEGIN IMMEDIATE already serialises the two
def test_a_resubmission_never_re_segments_a_sequence_a_worker_has_just_started(services, clock, monkeypatch, claim):
    """PostgreSQL: a worker claims step 1 right after the intake read "nothing sent yet". The intake
    must see the claim and skip, not send emails 2-7 from another segment than email 1."""
    first = enroll(services, email="racing@example.com", red_systems=2)
    step_1 = sends_of(services, first.enrollment_id)[0]["id"]
    read_progress = repo.enrollments_by_contact
    worker = services.engine.connect()

    def claim_step_1():  # what claims.claim_due does: UPDATE … SET status = 'sending' on the locked row
        worker.execute(send_t.update().where(send_t.c.id == step_1).values(status="sending"))
        if claim == "committed":
            worker.commit()

    def read_then_a_worker_claims(conn, contact_ids, campaign):
        known = read_progress(conn, contact_ids, campaign)
        claim_step_1()
        return known

    monkeypatch.setattr(repo, "enrollments_by_contact", read_then_a_worker_claims)
    results: list = []
    intake = threading.Thread(target=lambda: results.extend(
        enroll_now(services, [signup_request(email="racing@example.com", red_systems=0)])))
    intake.start()
    if claim == "in progress":
        _wait_until_blocked(services)  # the intake waits for the claim's row lock…
        worker.commit()  # …and sees step 1 started once the claim commits
    intake.join(timeout=30)
    worker.close()

    [again] = results
    assert again.outcome is SignupOutcome.SKIPPED and again.segment == "CRITICAL"
    assert enrollment_of(services, first.enrollment_id)["segment"] == "CRITICAL"


@pytest.mark.parametrize("reason", [
    "outcome unknown: first handed to the provider over 23 hours ago",  # what the dispatcher records when a key expired
    "409 outcome unknown: Resend already took this batch under its key",
    "gave up after 9 attempts over 6.0 h: Resend 503 application_error: down",
])
def test_a_resubmission_after_step_1_was_given_up_as_outcome_unknown_changes_nothing(services, clock, reason):
    first = enroll(services, email="unknown@example.com", red_systems=2)
    with db.write_transaction(services.engine) as conn:
        conn.execute(send_t.update().where(send_t.c.enrollment_id == first.enrollment_id, send_t.c.step == 1)
                     .values(status="failed", attempts=5, finished_at=clock(), last_error=reason))
    clock.advance(hours=30)

    again = enroll(services, email="unknown@example.com", red_systems=0)

    assert again.outcome is SignupOutcome.SKIPPED and again.segment == "CRITICAL"
    assert enrollment_of(services, first.enrollment_id)["segment"] == "CRITICAL"


@pytest.mark.parametrize("reason", ["invalid `to` address", "422 validation_error: Invalid `to` field",
                                    "render failed: 'segment' is undefined"])
def test_a_resubmission_after_step_1_was_refused_outright_may_still_update_the_sequence(services, clock, reason):
    """A certain refusal sent nothing: the sequence has not begun, so the signup updates it (DESIGN §1)."""
    first = enroll(services, email="refused@example.com", red_systems=2)
    with db.write_transaction(services.engine) as conn:
        conn.execute(send_t.update().where(send_t.c.enrollment_id == first.enrollment_id, send_t.c.step == 1)
                     .values(status="failed", attempts=1, finished_at=clock(), last_error=reason))

    again = enroll(services, email="refused@example.com", red_systems=0)

    assert again.outcome is SignupOutcome.UPDATED and again.segment == "OPTIMIZE"
    assert enrollment_of(services, first.enrollment_id)["segment"] == "OPTIMIZE"


def test_a_skipped_resubmission_leaves_the_contact_untouched(services, clock):
    first = enroll(services, email="names@example.com", first_name="Sam", business_name="Sam's Bakery")
    mark_step_sent(services, first.enrollment_id)
    before = rows(services.engine, "SELECT first_name, business_name, updated_at FROM contact")
    clock.advance(hours=1)

    enroll(services, email="names@example.com", first_name="Mallory", business_name="Evil Corp")

    assert rows(services.engine, "SELECT first_name, business_name, updated_at FROM contact") == before


def test_test_mode_makes_new_enrollments_use_minute_timing(services, clock):
    with db.write_transaction(services.engine) as conn:
        switches.set_test_mode(conn, True, actor="test", now=clock())
    result = enroll(services, email="quick@example.com")
    assert enrollment_of(services, result.enrollment_id)["timing"] == "test"
    assert [s["due_at"] - clock.now for s in sends_of(services, result.enrollment_id)] == [
        timedelta(minutes=m) for m in range(7)]


def test_testing_mode_seeds_test_timing_for_a_fresh_database(make_settings, clock):
    from core.bootstrap import build_services

    services = build_services(make_settings(testing_mode=True), migrate=True, clock=clock)
    try:
        result = enroll(services, email="seeded@example.com")
        assert enrollment_of(services, result.enrollment_id)["timing"] == "test"
    finally:
        services.close()


def test_forced_test_timing_applies_to_that_signup_only(services, clock):
    forced = enroll(services, email="forced@example.com", force_test_timing=True)
    normal = enroll(services, email="normal@example.com")
    assert enrollment_of(services, forced.enrollment_id)["timing"] == "test"
    assert enrollment_of(services, normal.enrollment_id)["timing"] == "production"
    assert sends_of(services, forced.enrollment_id)[6]["due_at"] - clock.now == timedelta(minutes=6)


def test_a_batch_with_the_same_email_twice_enrolls_it_once(services):
    results = enroll_now(services, [
        signup_request(email="twice@example.com", red_systems=0),
        signup_request(email="other@example.com"),
        signup_request(email="TWICE@example.com", red_systems=2),
    ])
    assert [r.duplicate for r in results] == [False, False, True]
    assert results[0].enrollment_id == results[2].enrollment_id
    assert intake_counts(services.engine) == {"contact": 2, "signup": 3, "enrollment": 2, "send": 14}
    # The later signup of the batch re-segments the sequence it joined.
    assert enrollment_of(services, results[0].enrollment_id)["segment"] == "CRITICAL"


def test_two_threads_enrolling_the_same_address_at_once_make_one_sequence(services):
    for _ in range(5):
        email = unique_email("race")
        barrier = threading.Barrier(2)
        results: list = []

        def run():
            request = signup_request(email=email, source="thread")
            barrier.wait(timeout=10)
            results.extend(enroll_now(services, [request]))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(r.duplicate for r in results) == [False, True]
        assert len({r.enrollment_id for r in results if r.enrollment_id}) == 1
    assert count_rows(services.engine, "enrollment") == 5
    assert count_rows(services.engine, "send") == 35


def test_concurrent_batches_sharing_addresses_in_opposite_orders_never_deadlock(services):
    # Several API processes each commit a batch; the same people can sit in two batches in any order.
    for _ in range(5):
        emails = [unique_email("overlap") for _ in range(200)]
        barrier = threading.Barrier(2)
        results: list = []
        errors: list = []

        def run(order):
            try:
                requests = [signup_request(email=email, source="thread") for email in order]
                barrier.wait(timeout=10)
                results.extend(enroll_now(services, requests))
            except Exception as exc:  # a deadlock would surface here as a database error
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(order,)) for order in (emails, emails[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert sorted(r.email for r in results if not r.duplicate) == sorted(emails)
    assert count_rows(services.engine, "enrollment") == 1000
    assert count_rows(services.engine, "send") == 7000


def test_two_processes_enrolling_the_same_address_at_once_make_one_sequence(services, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    # A spawned child first runs the parent's __main__ script: it must not be the dashboard (conftest.py).
    assert not str(getattr(sys.modules["__main__"], "__file__", "")).endswith("dashboard.py")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    url = services.settings.database_url
    procs = [ctx.Process(target=enroll_in_subprocess, args=(url, str(tmp_path), "proc@example.com", barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    assert not [o for o in outcomes if o[0] == "error"], outcomes
    assert sorted(o[2] for o in outcomes) == [False, True]
    assert intake_counts(services.engine) == {"contact": 1, "signup": 2, "enrollment": 1, "send": 7}


def _wait_until_blocked(services, seconds: float = 0.5) -> None:
    """Give the other writer time to reach the lock it will wait on (PostgreSQL: until it does)."""
    if services.engine.dialect.name != "postgresql":
        time.sleep(seconds)
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with services.engine.connect() as conn:
            waiting = conn.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                          "AND wait_event_type = 'Lock'"))
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the second writer never waited for the first")


def test_a_signup_that_loses_the_enrollment_race_is_recorded_as_a_duplicate(services, clock):
    # On PostgreSQL the second writer really loses the insert race; SQLite serialises writers at BEGIN IMMEDIATE.
    # The contact exists already (e.g. made by an import), so both writers go straight to the enrollment insert.
    # An earlier signup has set up whatever first-use rows intake keeps, so nothing else serialises the two.
    enroll(services, email="earlier@example.com")
    with db.write_transaction(services.engine) as conn:
        repo.insert_contacts(conn, [{"id": new_id(), "email": "loser@example.com", "first_name": None,
                                     "business_name": None, "is_test": False, "created_at": clock(),
                                     "updated_at": clock()}])
    second: list = []

    # No names: a name refresh would lock the contact row and serialise the writers before the race.
    def loser_signup():
        return signup_request(email="loser@example.com", first_name=..., business_name=...)

    def other_writer():
        with db.write_transaction(services.engine) as conn:
            second.extend(enroll_batch(conn, [loser_signup()], clock(), test_mode=False))

    with db.write_transaction(services.engine) as conn:
        [first] = enroll_batch(conn, [loser_signup()], clock(), test_mode=False)
        thread = threading.Thread(target=other_writer)
        thread.start()
        _wait_until_blocked(services)
    thread.join(timeout=30)

    assert first.duplicate is False and second[0].duplicate is True
    assert count_rows(services.engine, "enrollment") == 2
    dangling = rows(services.engine, "SELECT kind FROM event WHERE enrollment_id IS NOT NULL "
                                     "AND enrollment_id NOT IN (SELECT id FROM enrollment)")
    assert dangling == []
    outcomes = [r["outcome"] for r in rows(
        services.engine,
        "SELECT s.outcome FROM signup s JOIN contact c ON c.id = s.contact_id WHERE c.email = :email",
        email="loser@example.com",
    )]
    assert sorted(outcomes) in (["enrolled", "skipped"], ["enrolled", "updated"])


def test_a_retried_failure_that_may_have_been_delivered_still_counts_as_begun(services, clock):
    # Revived in place, the retried row lost the only sign that step 1 may have reached the person, and a
    # resubmission then re-segmented the sequence (DESIGN §1: once an email went, a duplicate is skipped).
    first = enroll(services, email="retried@example.com", red_systems=0)
    with db.write_transaction(services.engine) as conn:
        conn.execute(send_t.update().where(send_t.c.enrollment_id == first.enrollment_id, send_t.c.step == 1)
                     .values(status="failed", attempts=5, finished_at=clock(),
                             last_error="outcome unknown: first handed to the provider over 23 hours ago"))
        failed_id = conn.scalar(sa.select(send_t.c.id).where(send_t.c.enrollment_id == first.enrollment_id,
                                                             send_t.c.step == 1))
        assert controls.retry_send(conn, failed_id, actor="marketer", now=clock())

    again = enroll(services, email="retried@example.com", red_systems=2)

    assert again.outcome is SignupOutcome.SKIPPED and again.segment == "OPTIMIZE"
    assert enrollment_of(services, first.enrollment_id)["segment"] == "OPTIMIZE"
