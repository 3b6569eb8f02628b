"""The Notion sync service on real SQLite and PostgreSQL, with FakeNotion: outbox in, one page per enrollment out."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import db, erasure, repo, side_status
from core.bootstrap import build_services
from core.controls import suppress_contact, unsubscribe_contact
from core.dispatch import Dispatcher
from core.intake import enroll_now
from core.models import Outbox
from core.notion import store
from core.notion.errors import NotionAccessError, NotionPageConflict, NotionRequestError, NotionUnavailable
from core.notion.sync import NotionSync, SyncPolicy
from core.testing import FakeMailer
from core.testing_side import FakeNotion
from tests.support import rows, signup_request

outbox_t = Outbox.__table__
NOTION = {"notion_token": "secret-test", "notion_email_sequence_db_id": "db-test"}


@pytest.fixture
def services(make_settings, clock):
    built = build_services(make_settings(**NOTION), migrate=True, clock=clock, mailer=FakeMailer())
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def notion() -> FakeNotion:
    return FakeNotion()


def make_sync(services, notion, worker="worker-a", **policy) -> NotionSync:
    return NotionSync(services, notion, worker, SyncPolicy(stop_poll=timedelta(0), **policy))


def enroll(services, email="alex@example.com", **fields):
    [result] = enroll_now(services, [signup_request(email=email, **fields)])
    return result


def pending(services) -> list[dict]:
    query = sa.select(outbox_t.c.id, outbox_t.c.attempts, outbox_t.c.last_error, outbox_t.c.next_attempt_at).where(
        outbox_t.c.channel == "notion", outbox_t.c.done_at.is_(None))
    with services.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def events(services, kind: str) -> list[dict]:
    return rows(services.engine, "SELECT actor, enrollment_id, detail FROM event WHERE kind = :kind", kind=kind)


def test_a_new_enrollment_gets_one_page_showing_the_contact_and_segment(services, notion):
    enroll(services, red_systems=2)

    report = make_sync(services, notion).run_pass()

    [page_id] = notion.pages_for("alex@example.com")
    values = notion.values(page_id)
    assert (report.created, values["Segment"], values["Status"]) == (1, "CRITICAL", "active")
    assert values["Name"] == "Alex — Acme Ltd" and values["Campaign"] == "Christmas 2025"
    assert values["Next Email Due"] == services.clock()
    assert pending(services) == []


def test_many_changes_to_one_contact_become_one_write_of_the_latest_state(services, notion):
    enroll(services)
    enroll(services, first_name="Alexandra")  # nothing sent yet: the duplicate updates the enrollment

    make_sync(services, notion).run_pass()

    [page_id] = notion.pages_for("alex@example.com")
    assert notion.values(page_id)["First Name"] == "Alexandra"
    assert notion.calls.count("create_page") == 1 and notion.calls.count("update_page") == 0


def test_checkboxes_are_ticked_as_each_step_goes_out(services, notion, clock):
    enroll(services)
    dispatcher, sync = Dispatcher(services, "dispatcher"), make_sync(services, notion)

    dispatcher.run_pass()
    sync.run_pass()
    [page_id] = notion.pages_for("alex@example.com")
    after_one = notion.values(page_id)
    clock.advance(hours=24)
    dispatcher.run_pass()
    sync.run_pass()
    after_two = notion.values(page_id)

    assert [after_one[f"Email {n} Sent"] for n in (1, 2)] == [True, False]
    assert [after_two[f"Email {n} Sent"] for n in (1, 2, 3)] == [True, True, False]
    assert after_two["Last Email Sent"] == clock()
    assert after_two["Next Email Due"] == clock() + timedelta(hours=48)
    assert notion.calls.count("create_page") == 1


def test_an_existing_page_with_the_same_email_is_updated_instead_of_making_a_second(services, notion):
    old = notion.add_page({"Email": "alex@example.com", "Email 1 Sent": True})
    enroll(services)

    make_sync(services, notion).run_pass()

    assert notion.pages_for("alex@example.com") == [old]
    assert notion.values(old)["Status"] == "active"


def test_an_unchanged_state_is_not_written_twice(services, notion):
    result = enroll(services)
    sync = make_sync(services, notion)
    sync.run_pass()
    with db.write_transaction(services.engine) as conn:
        repo.insert_outbox(conn, [repo.outbox_row("notion", result.contact_id,
                                                  {"enrollment_id": result.enrollment_id}, services.clock())])

    report = sync.run_pass()

    assert report.unchanged == 1 and notion.calls.count("update_page") == 0 and pending(services) == []


def test_notion_failing_backs_off_the_change_records_why_and_catches_up_later(services, notion, clock):
    enroll(services)
    notion.fail_next(NotionUnavailable("Notion 503 service_unavailable", status=503), on="create_page")
    sync = make_sync(services, notion)

    first = sync.run_pass()
    [row] = pending(services)
    while_paused = sync.run_pass()
    writes_while_paused = notion.calls.count("create_page")
    clock.advance(minutes=5)
    recovered = sync.run_pass()

    assert first.paused and first.failed == 1
    assert row["attempts"] == 1 and "503" in row["last_error"]
    assert while_paused.paused and writes_while_paused == 1
    assert recovered.created == 1 and pending(services) == []


def test_a_refused_write_backs_off_for_longer_but_is_never_dropped(services, notion, clock):
    enroll(services)
    notion.fail_next(NotionRequestError("Notion 400 validation_error: bad", status=400, code="validation_error"),
                     on="create_page")
    sync = make_sync(services, notion)

    refused = sync.run_pass()
    [row] = pending(services)

    assert refused.failed == 1 and not refused.paused  # one page refused; the mirror goes on with the rest
    assert row["next_attempt_at"] >= clock() + timedelta(seconds=60)
    clock.advance(minutes=2)
    assert sync.run_pass().created == 1


def test_two_workers_never_both_make_the_page_of_one_enrollment(services, notion, clock):
    result = enroll(services)
    with db.write_transaction(services.engine) as conn:  # worker A is mid-write on this enrollment
        assert store.take_lease(conn, result.enrollment_id, result.contact_id, "worker-a", clock(),
                                timedelta(minutes=2))

    blocked = make_sync(services, notion, worker="worker-b").run_pass()
    created_while_blocked = notion.calls.count("create_page")
    clock.advance(minutes=3)  # worker A died; its lease ran out
    taken_over = make_sync(services, notion, worker="worker-b").run_pass()

    assert blocked.created == 0 and created_while_blocked == 0
    assert taken_over.created == 1 and len(notion.pages_for("alex@example.com")) == 1


def test_a_page_deleted_in_notion_is_found_or_made_again(services, notion, clock):
    enroll(services)
    sync = make_sync(services, notion)
    sync.run_pass()
    [first] = notion.pages_for("alex@example.com")
    del notion.pages[first]
    Dispatcher(services, "dispatcher").run_pass()

    sync.run_pass()
    sync.run_pass()

    [second] = notion.pages_for("alex@example.com")
    assert second != first and notion.values(second)["Email 1 Sent"] is True


def test_ticking_stop_in_notion_cancels_the_remaining_sends_and_the_audit_trail_says_notion(services, notion):
    result = enroll(services)
    sync = make_sync(services, notion)
    sync.run_pass()
    notion.tick(notion.pages_for("alex@example.com")[0])

    report = sync.run_pass()
    sync.run_pass()

    statuses = rows(services.engine, "SELECT status FROM send WHERE enrollment_id = :e", e=result.enrollment_id)
    [event] = events(services, "sequence_cancelled")
    assert report.stopped == 1
    assert {r["status"] for r in statuses} == {"cancelled"}
    assert event["actor"] == "notion" and event["enrollment_id"] == result.enrollment_id
    assert notion.values(notion.pages_for("alex@example.com")[0])["Status"] == "cancelled"
    assert Dispatcher(services, "dispatcher").run_pass() == 0


def test_a_stop_ticked_on_a_finished_sequence_changes_nothing(services, notion):
    result = enroll(services)
    sync = make_sync(services, notion)
    sync.run_pass()
    page_id = notion.pages_for("alex@example.com")[0]
    with db.write_transaction(services.engine) as conn:
        unsubscribe_contact(conn, result.contact_id, actor="test", now=services.clock())
    notion.tick(page_id)  # Notion still shows "active" until the next write

    assert sync.run_pass().stopped == 0
    assert events(services, "sequence_cancelled") == []


def test_the_business_record_with_the_same_email_is_linked(services, clock):
    notion = FakeNotion(businesses={"alex@example.com": "biz-7"})
    enroll(services)
    enroll(services, email="solo@example.com")

    make_sync(services, notion).run_pass()

    assert notion.values(notion.pages_for("alex@example.com")[0])["Business"] == ["biz-7"]
    assert notion.values(notion.pages_for("solo@example.com")[0]).get("Business") is None


def test_a_businessx_database_that_refuses_the_lookup_never_keeps_the_page_from_being_written(
        services, notion, monkeypatch):
    def not_shared(_email):
        raise NotionAccessError("Could not find database BusinessX: make sure it is shared with the integration",
                                status=404, code="object_not_found")

    monkeypatch.setattr(notion, "find_business", not_shared)
    enroll(services)

    report = make_sync(services, notion).run_pass()

    assert (report.created, report.failed) == (1, 0)
    assert notion.values(notion.pages_for("alex@example.com")[0]).get("Business") is None


def test_enrollments_made_before_notion_was_configured_get_their_pages(make_settings, clock, notion):
    before = build_services(make_settings(), migrate=True, clock=clock)  # Notion not configured yet
    try:
        enroll_now(before, [signup_request(email="early@example.com"), signup_request(email="earlier@example.com")])
    finally:
        before.close()
    services = build_services(make_settings(**NOTION), migrate=True, clock=clock)
    try:
        enroll_now(services, [signup_request(email="later@example.com")])
        sync = make_sync(services, notion)

        first = sync.run_pass()
        second = sync.run_pass()
    finally:
        services.close()

    assert (first.backfilled, first.created, second.backfilled, second.created) == (2, 3, 0, 0)
    assert {e for e in ("early@example.com", "earlier@example.com", "later@example.com") if notion.pages_for(e)} \
        == {"early@example.com", "earlier@example.com", "later@example.com"}


def test_a_stop_made_elsewhere_reaches_notion_once_its_change_is_queued(services, notion, clock):
    result = enroll(services)
    sync = make_sync(services, notion)
    sync.run_pass()
    clock.advance(minutes=1)
    with db.write_transaction(services.engine) as conn:
        unsubscribe_contact(conn, result.contact_id, actor="test", now=clock())
        queued = store.queue_resync(conn, clock(), contact_id=result.contact_id)

    sync.run_pass()

    page = notion.values(notion.pages_for("alex@example.com")[0])
    assert queued == 1 and page["Status"] == "unsubscribed" and page["Next Email Due"] is None


def test_nothing_is_queued_for_a_contact_the_mirror_never_showed(services):
    result = enroll(services)
    with db.write_transaction(services.engine) as conn:
        assert store.queue_resync(conn, services.clock(), contact_id=result.contact_id) == 0


def test_someone_erased_before_their_page_was_written_never_gets_one(services, notion):
    enroll(services, email="gone@example.com")
    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "gone@example.com", actor="cli", now=services.clock())

    report = make_sync(services, notion).run_pass()

    assert notion.calls.count("create_page") == 0 and notion.calls.count("find_pages") == 0
    assert report.created == 0 and pending(services) == []


def test_someone_erased_after_their_page_was_written_has_it_overwritten_with_the_placeholder(services, notion):
    enroll(services, email="gone@example.com", first_name="Greta")
    make_sync(services, notion).run_pass()
    [page_id] = notion.pages_for("gone@example.com")
    with db.write_transaction(services.engine) as conn:
        assert store.has_linked_page(conn, "gone@example.com")
        erasure.forget(conn, "gone@example.com", actor="cli", now=services.clock())

    make_sync(services, notion).run_pass()

    values = notion.values(page_id)
    assert "gone" not in values["Email"] and values["First Name"] in ("", None)
    assert notion.calls.count("create_page") == 1


def test_a_conflict_on_one_page_retries_that_page_soon_without_pausing_the_mirror(services, notion, clock):
    enroll(services, email="one@example.com")
    enroll(services, email="two@example.com")
    notion.fail_next(NotionPageConflict("Notion 409 conflict_error: collision", status=409, code="conflict_error"),
                     on="create_page")
    sync = make_sync(services, notion)

    report = sync.run_pass()

    assert (report.created, report.failed, report.paused) == (1, 1, False)
    with services.engine.connect() as conn:
        assert side_status.backlog(conn, "notion", clock()).outage is None
    clock.advance(seconds=30)
    sync.run_pass()
    assert notion.pages_for("one@example.com") and notion.pages_for("two@example.com")
    assert pending(services) == []


def test_someone_who_bounced_and_is_then_erased_has_their_page_overwritten_too(services, notion):
    result = enroll(services, email="gone@example.com", first_name="Greta")
    sync = make_sync(services, notion)
    sync.run_pass()
    [page_id] = notion.pages_for("gone@example.com")
    with db.write_transaction(services.engine) as conn:
        suppress_contact(conn, result.contact_id, "bounce", actor="resend", now=services.clock())
    sync.run_pass()
    assert notion.values(page_id)["Status"] == "bounced"
    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "gone@example.com", actor="cli", now=services.clock())

    sync.run_pass()

    values = notion.values(page_id)
    assert "gone" not in values["Email"] and values["First Name"] in ("", None)
    assert "Greta" not in values["Name"] and pending(services) == []


@pytest.mark.parametrize("fails_on", ["create_page", "find_pages", "stopped_pages"])
def test_a_long_rate_limit_waits_quietly_it_is_neither_an_outage_nor_a_failing_contact(services, notion, clock,
                                                                                          fails_on):
    # Notion's per-minute window answers 429 with a Retry-After of up to 60 s: routine, not Notion being down.
    result = enroll(services)
    notion.fail_next(NotionUnavailable("Notion asked for a pause; 60s left", retry_after=60, status=429),
                     on=fails_on)
    sync = make_sync(services, notion)

    report = sync.run_pass()

    assert (report.paused, report.failed) == (True, 0)
    with services.engine.connect() as conn:
        health = side_status.health_fields(conn, services.settings, clock())["notion_sync"]
        contact = side_status.contact_notion_states(conn, [result.contact_id])[result.contact_id]
    assert (health["outage"], health["failing"], contact.state) == (None, 0, "pending")
    assert [(r["attempts"], r["last_error"]) for r in pending(services)] == [(0, None)]
    clock.advance(seconds=59)
    assert sync.run_pass().paused  # Retry-After is waited out in full
    clock.advance(seconds=1)
    assert sync.run_pass().created == 1 and pending(services) == []


def test_a_worker_asked_to_stop_writes_no_further_page_and_gives_the_rest_back(services, notion):
    # A pass went on to its 20 s budget after SIGTERM: through a backfill, a stop waited that long and more for the
    # mirror, past `make run`'s 20 s before it kills the worker and near systemd's TimeoutStopSec=30.
    for n in range(3):
        enroll(services, email=f"lead{n}@example.com")
    create_page = notion.create_page

    def create_then_stop(properties: dict):
        page = create_page(properties)
        services.stopping.set()  # SIGTERM arrives during this write
        return page

    notion.create_page = create_then_stop

    report = make_sync(services, notion).run_pass()

    assert report.created == 1
    assert len(pending(services)) == 2  # given back, for the next start (or another worker) to write
