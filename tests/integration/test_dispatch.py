"""The dispatcher on real SQLite and real PostgreSQL, with a FakeMailer and a frozen clock.

Every invariant of DESIGN §4 that concerns sending is driven here through the real services:
the order rule over simulated days, stops, retries, the circuit breaker, lease recovery,
manual actions carried out by the worker, unsubscribe links and Resend's signed events.
"""

import base64
import html
import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa

from core import claims, db, erasure, outcomes, provider_events, switches, tally
from core.actions import ActionRunner, request_action
from core.bootstrap import build_services
from core.campaign import CHRISTMAS_2025, Timing
from core.alerts import build_message
from core.controls import cancel_sequence, suppress_contact, unsubscribe_contact
from core.dispatch import Dispatcher, DispatchPolicy
from core.errors import AccountMailerError, MailerError, PermanentMailerError, TransientMailerError
from core.intake import enroll_now
from core.models import Contact, Send
from core import queries
from core.queries import actions_by_ids, kpis
from core.queries.sends import queue_counts, queue_list
from core.sequencing import planned_gap
from core.testing import FakeMailer
from core.unsubscribe import make_token, unsubscribe_url
from tests.support import WEBHOOK_SECRET, SendStatusLog, rows, signed, signup_request, unique_email

PRODUCTION_HOURS = [0, 24, 72, 120, 168, 216, 264]
send_t, contact_t = Send.__table__, Contact.__table__
with_webhook_secret = pytest.mark.parametrize(
    "settings_overrides", [{"resend_webhook_secret": WEBHOOK_SECRET}], ids=["svix"])


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture
def settings_overrides() -> dict:
    return {}


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def services(make_settings, clock, mailer, settings_overrides):
    """Services on a migrated test database, sending through `mailer` and reading time from `clock`."""
    built = build_services(make_settings(**settings_overrides), mailer=mailer, clock=clock, migrate=True)
    status_log = SendStatusLog(built.engine)
    try:
        yield built
        status_log.assert_allowed()  # every test here also checks the send state machine
    finally:
        built.close()


@pytest.fixture
def dispatcher(services) -> Dispatcher:
    return Dispatcher(services, "worker-a")


def enroll(services, email: str | None = None, **fields):
    [result] = enroll_now(services, [signup_request(email=email or unique_email(), **fields)])
    return result


def select(services, query) -> list[dict]:
    """Rows of a typed query (aware datetimes on both backends), as dicts."""
    with services.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def sends_of(services, enrollment_id: str) -> list[dict]:
    return select(services, sa.select(send_t).where(send_t.c.enrollment_id == enrollment_id)
                  .order_by(send_t.c.step, send_t.c.generation))


def step_send(services, enrollment_id: str, step: int) -> dict:
    return next(s for s in sends_of(services, enrollment_id) if s["step"] == step)


def events_of(services, kind: str) -> list[dict]:
    found = rows(services.engine, "SELECT * FROM event WHERE kind = :k ORDER BY id", k=kind)
    return [{**e, "detail": json.loads(e["detail"]) if e["detail"] else None} for e in found]


def contact_row(services, contact_id: str) -> dict:
    [row] = select(services, sa.select(contact_t).where(contact_t.c.id == contact_id))
    return row


def enrollment_status(services, enrollment_id: str) -> str:
    [row] = rows(services.engine, "SELECT status FROM enrollment WHERE id = :i", i=enrollment_id)
    return row["status"]


def steps_sent_to(mailer: FakeMailer, address: str) -> list[int]:
    return [int(e.tags["step"]) for e in mailer.sent_to(address)]


def run_for(dispatcher, clock, *, hours: float, every_hours: float = 1) -> list[int]:
    """Tick the clock and dispatch at each tick, like the worker's interval job; returns emails per pass."""
    handled = []
    for _ in range(int(hours / every_hours)):
        clock.advance(hours=every_hours)
        handled.append(dispatcher.run_pass())
    return handled


def set_paused(services, paused: bool, reason: str | None = None) -> None:
    with db.write_transaction(services.engine) as conn:
        switches.set_paused(conn, paused, actor="marketer@example.com", now=services.clock(), reason=reason)


def paused_for(services, clock, *, hours: float, reason: str | None = None) -> None:
    """Sending paused while the clock moves on (a long weekend, the Christmas break), then resumed."""
    set_paused(services, True, reason=reason)
    clock.advance(hours=hours)
    set_paused(services, False)


def unsubscribe_path(email) -> str:
    """The path of the one-click URL in an email's List-Unsubscribe header."""
    return urlsplit(email.headers["List-Unsubscribe"].strip("<>")).path


# ---------------------------------------------------------------- the sequence and the order rule

def test_the_welcome_email_goes_at_once_and_nothing_else_with_it(services, dispatcher, mailer):
    result = enroll(services, email="welcome@example.com")

    assert dispatcher.run_pass() == 1
    assert dispatcher.run_pass() == 0

    assert steps_sent_to(mailer, "welcome@example.com") == [1]
    first, *rest = sends_of(services, result.enrollment_id)
    assert first["status"] == "sent" and first["sent_at"] == services.clock()
    assert first["provider_id"] == mailer.sent[0].provider_id
    assert first["idempotency_key"] == mailer.sent[0].idempotency_key
    assert [s["status"] for s in rest] == ["scheduled"] * 6
    assert [e["send_id"] for e in events_of(services, "send_sent")] == [first["id"]]


def test_a_production_sequence_sends_seven_distinct_emails_once_each_in_order_over_eleven_days(
        services, dispatcher, mailer, clock):
    start = clock()
    result = enroll(services, email="seven@example.com", first_name="Sam", business_name="Sam's Bakes",
                    red_systems=1, orange_systems=0)
    dispatcher.run_pass()

    handled = run_for(dispatcher, clock, hours=12 * 24)

    emails = mailer.sent_to("seven@example.com")
    assert [int(e.tags["step"]) for e in emails] == [1, 2, 3, 4, 5, 6, 7]
    assert max(handled) == 1, "never two emails in one pass for one contact"
    sends = sends_of(services, result.enrollment_id)
    assert [s["status"] for s in sends] == ["sent"] * 7
    assert [s["sent_at"] - start for s in sends] == [timedelta(hours=h) for h in PRODUCTION_HOURS]
    assert len({e.subject for e in emails}) == 7
    url = unsubscribe_url(services.settings.public_base_url, services.secret_key, result.contact_id)
    for step, email in enumerate(emails, start=1):
        assert email.tags == {"campaign": "Christmas 2025", "step": str(step), "segment": "URGENT"}
        assert email.headers["List-Unsubscribe"] == f"<{url}>"
        assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert url in email.html and url in email.text
        assert email.html.strip() and email.text.strip() and email.html != email.text
    assert enrollment_status(services, result.enrollment_id) == "completed"


def test_after_a_ten_day_outage_the_sequence_resumes_one_step_at_a_time_never_in_a_burst(
        services, dispatcher, mailer, clock):
    result = enroll(services, email="outage@example.com")
    dispatcher.run_pass()
    clock.advance(days=10)

    sent_at_by_step, per_pass = {1: clock() - timedelta(days=10)}, []
    for _ in range(6 * 12):
        for _ in range(2):  # a second pass at the same instant must find nothing more for this contact
            per_pass.append(dispatcher.run_pass())
        for s in sends_of(services, result.enrollment_id):
            if s["status"] == "sent":
                sent_at_by_step.setdefault(s["step"], s["sent_at"])
        clock.advance(hours=2)

    assert steps_sent_to(mailer, "outage@example.com") == [1, 2, 3, 4, 5, 6, 7]
    assert max(per_pass) == 1 and per_pass[1::2] == [0] * (len(per_pass) // 2)
    for step in range(2, 8):
        gap = sent_at_by_step[step] - sent_at_by_step[step - 1]
        assert gap >= planned_gap(CHRISTMAS_2025, step, Timing.PRODUCTION) / 2, f"step {step} came {gap} after"
    assert sent_at_by_step[7] - sent_at_by_step[2] >= timedelta(days=4), "the catch-up is spread over days"


def test_a_global_pause_stops_every_send_and_resume_continues_one_step_at_a_time(
        services, dispatcher, mailer, clock):
    first = enroll(services)
    dispatcher.run_pass()
    set_paused(services, True, reason="checking the copy")
    others = [enroll(services) for _ in range(2)]

    assert run_for(dispatcher, clock, hours=5 * 24, every_hours=6) == [0] * 20
    assert len(mailer.sent) == 1

    set_paused(services, False)
    assert dispatcher.run_pass() == 3
    assert sorted(int(r.email.tags["step"]) for r in mailer.sent[1:]) == [1, 1, 2]
    assert step_send(services, first.enrollment_id, 2)["status"] == "sent"
    assert step_send(services, first.enrollment_id, 3)["status"] == "scheduled"
    assert all(step_send(services, o.enrollment_id, 1)["status"] == "sent" for o in others)
    assert dispatcher.run_pass() == 0
    assert [e["detail"] for e in events_of(services, "sending_paused")] == [{"reason": "checking the copy"}]


def test_a_pause_that_lands_between_the_dispatchers_look_and_its_claim_still_wins(
        services, mailer, monkeypatch):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    look = claims.work_waiting

    def look_then_pause(conn, now):  # the dispatcher has read "not paused"; a marketer's pause commits now
        waiting = look(conn, now)
        set_paused(services, True, reason="pressed right then")
        return waiting

    monkeypatch.setattr(claims, "work_waiting", look_then_pause)

    assert dispatcher.run_pass() == 0
    assert mailer.calls == []
    assert step_send(services, result.enrollment_id, 1)["status"] == "scheduled"


# ---------------------------------------------------------------- stops: unsubscribe

SLIPPED_STOPS = {
    "unsubscribe": "UPDATE contact SET unsubscribed_at = :now WHERE id = :contact",
    "bounce": "UPDATE contact SET suppressed_at = :now, suppressed_reason = 'bounce' WHERE id = :contact",
    "cancel": "UPDATE enrollment SET status = 'cancelled', updated_at = :now WHERE id = :enrollment",
}


@pytest.mark.parametrize("stop", list(SLIPPED_STOPS))
def test_a_stop_that_slipped_past_the_controls_is_caught_at_the_claim_and_nothing_is_sent(
        services, dispatcher, mailer, stop):
    # Stops cancel pending sends as they happen; a stop written some other way (here, straight
    # into the contact or enrollment row) must still be caught by the check inside the claim.
    result = enroll(services, email="slipped@example.com")
    with db.write_transaction(services.engine) as conn:
        conn.execute(sa.text(SLIPPED_STOPS[stop]), {"now": services.clock(), "contact": result.contact_id,
                                                    "enrollment": result.enrollment_id})

    assert dispatcher.run_pass() == 0
    assert mailer.sent == []
    welcome = step_send(services, result.enrollment_id, 1)
    assert welcome["status"] == "cancelled" and welcome["batch_id"] is None
    assert "stopped" in welcome["last_error"]
    [event] = events_of(services, "send_cancelled")  # and the audit trail says why
    assert (event["send_id"], event["detail"]["step"]) == (welcome["id"], 1)


def test_an_unsubscribe_through_controls_cancels_every_remaining_send(services, dispatcher, mailer, clock):
    result = enroll(services, email="leaver@example.com")
    dispatcher.run_pass()

    with db.write_transaction(services.engine) as conn:
        assert unsubscribe_contact(conn, result.contact_id, actor="marketer@example.com", now=clock())

    run_for(dispatcher, clock, hours=12 * 24, every_hours=12)
    assert steps_sent_to(mailer, "leaver@example.com") == [1]
    assert [s["status"] for s in sends_of(services, result.enrollment_id)] == ["sent"] + ["cancelled"] * 6
    assert enrollment_status(services, result.enrollment_id) == "unsubscribed"
    [event] = events_of(services, "unsubscribed")
    assert event["actor"] == "marketer@example.com" and event["detail"]["cancelled_sends"] == 6


def test_a_post_to_the_emails_unsubscribe_link_stops_the_sequence_at_once(
        services, dispatcher, mailer, clock, client):
    result = enroll(services, email="oneclick@example.com")
    dispatcher.run_pass()
    [welcome] = mailer.sent_to("oneclick@example.com")

    answer = client.post(unsubscribe_path(welcome), data={"List-Unsubscribe": "One-Click"})
    again = client.post(unsubscribe_path(welcome), data={"List-Unsubscribe": "One-Click"})

    reopened = client.get(unsubscribe_path(welcome))  # the link opened again days later

    assert answer.status_code == 200 and again.status_code == 200
    assert "unsubscribed" in answer.text.lower() and "oneclick@example.com" not in answer.text
    assert "will get no more emails" in reopened.text and 'method="post"' not in reopened.text
    assert contact_row(services, result.contact_id)["unsubscribed_at"] == clock()
    run_for(dispatcher, clock, hours=12 * 24, every_hours=12)
    assert steps_sent_to(mailer, "oneclick@example.com") == [1]
    assert {s["status"] for s in sends_of(services, result.enrollment_id)[1:]} == {"cancelled"}
    [event] = events_of(services, "unsubscribed")
    assert event["actor"] == "recipient" and event["detail"]["via"] == "unsubscribe link"


def test_a_get_on_the_unsubscribe_link_only_asks_for_confirmation(services, dispatcher, mailer, clock, client):
    result = enroll(services, email="scanner@example.com")
    dispatcher.run_pass()
    [welcome] = mailer.sent_to("scanner@example.com")

    page = client.get(unsubscribe_path(welcome))

    assert page.status_code == 200
    assert 'method="post"' in page.text and "scanner@example.com" not in page.text
    assert contact_row(services, result.contact_id)["unsubscribed_at"] is None
    assert events_of(services, "unsubscribed") == []
    run_for(dispatcher, clock, hours=24)
    assert steps_sent_to(mailer, "scanner@example.com") == [1, 2]


@pytest.mark.parametrize("settings_overrides", [{"public_base_url": "http://localhost:8000/nurture"}], ids=["prefix"])
def test_the_confirm_button_posts_to_the_public_link_when_a_proxy_serves_the_api_under_a_prefix(
        services, dispatcher, mailer, client):
    enroll(services, email="prefixed@example.com")
    dispatcher.run_pass()
    [welcome] = mailer.sent_to("prefixed@example.com")
    public_link = welcome.headers["List-Unsubscribe"].strip("<>")
    assert urlsplit(public_link).path.startswith("/nurture/unsubscribe/")

    page = client.get(unsubscribe_path(welcome).removeprefix("/nurture"))  # the proxy strips its prefix
    form = re.search(r"<form[^>]*>", page.text).group(0)
    action = re.search(r'action="([^"]*)"', form)

    assert urljoin(public_link, html.unescape(action.group(1)) if action else "") == public_link


def test_an_old_unsubscribe_link_of_an_erased_person_shows_no_placeholder_and_records_nothing(
        services, dispatcher, mailer, client):
    enroll(services, email="gone@example.com")
    dispatcher.run_pass()
    [welcome] = mailer.sent_to("gone@example.com")
    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "gone@example.com", actor="cli", now=services.clock())

    for answer in (client.get(unsubscribe_path(welcome)), client.post(unsubscribe_path(welcome))):
        assert answer.status_code == 200
        assert "removed from our records" in answer.text and "erased" not in answer.text
    assert events_of(services, "unsubscribed") == []


@pytest.mark.parametrize("forge", ["altered signature", "altered contact", "other key", "garbage", "unknown contact"])
def test_a_forged_unsubscribe_token_is_refused_and_changes_nothing(services, dispatcher, client, forge):
    result = enroll(services)
    dispatcher.run_pass()
    token = make_token(services.secret_key, result.contact_id)
    contact_id, signature = token.split(".")
    forged = {
        "altered signature": f"{contact_id}.{signature[::-1]}",
        "altered contact": f"{contact_id[::-1]}.{signature}",
        "other key": make_token("not-the-servers-key", contact_id),
        "garbage": "not-a-token",
        "unknown contact": make_token(services.secret_key, uuid.uuid4().hex),
    }[forge]
    before = sends_of(services, result.enrollment_id)

    answer = client.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"})

    assert 400 <= answer.status_code < 500
    assert contact_row(services, result.contact_id)["unsubscribed_at"] is None
    assert sends_of(services, result.enrollment_id) == before
    assert events_of(services, "unsubscribed") == []


# ---------------------------------------------------------------- failures and retries

class LeaseLostMidCall(FakeMailer):
    """A provider call so slow that the lease runs out and another worker takes the batch over, then fails."""

    def __init__(self, services):
        super().__init__()
        self.services = services

    def send(self, emails, idempotency_key):
        with db.write_transaction(self.services.engine) as conn:
            conn.execute(send_t.update().where(send_t.c.idempotency_key == idempotency_key)
                         .values(lease_owner="the-other-worker"))
        raise TransientMailerError("Resend 503: try later", status=503)


def test_a_failure_reported_after_the_lease_was_lost_schedules_no_retry_in_the_audit_trail(services):
    person = enroll(services)
    services.mailer = LeaseLostMidCall(services)

    Dispatcher(services, "slow-worker").run_pass()

    send = step_send(services, person.enrollment_id, 1)
    assert (send["status"], send["lease_owner"]) == ("sending", "the-other-worker"), "the new holder's claim stands"
    assert events_of(services, "send_retry_scheduled") == [], "no retry was scheduled: the batch is another's"


def test_a_transient_failure_replays_the_same_batch_with_the_same_key_after_retry_after(
        services, dispatcher, mailer, clock):
    people = [enroll(services) for _ in range(2)]
    mailer.fail_next(TransientMailerError("Resend 429 rate_limit_exceeded: slow down", retry_after=30, status=429))

    assert dispatcher.run_pass() == 2
    waiting = [step_send(services, p.enrollment_id, 1) for p in people]
    assert {s["status"] for s in waiting} == {"sending"}
    assert all("429" in s["last_error"] and s["attempts"] == 1 for s in waiting)
    assert {s["lease_expires_at"] for s in waiting} == {clock() + timedelta(seconds=30)}
    retries = events_of(services, "send_retry_scheduled")
    assert len(retries) == 2 and {e["detail"]["retry_in_seconds"] for e in retries} == {30.0}

    clock.advance(seconds=29)
    assert dispatcher.run_pass() == 0 and len(mailer.calls) == 1
    clock.advance(seconds=1)
    assert dispatcher.run_pass() == 2

    assert len(mailer.calls) == 2 and mailer.calls[0] == mailer.calls[1]
    done = [step_send(services, p.enrollment_id, 1) for p in people]
    assert [(s["status"], s["attempts"], s["last_error"]) for s in done] == [("sent", 2, None)] * 2
    assert {s["idempotency_key"] for s in done} == {s["idempotency_key"] for s in waiting} == {mailer.calls[0][0]}
    assert {s["batch_id"] for s in done} == {s["batch_id"] for s in waiting}
    assert len(mailer.sent) == 2


def test_a_rate_limit_asking_for_hours_ends_the_pass_instead_of_calling_again_for_every_batch(
        services, mailer, clock):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1, batch_size=1))
    people = [enroll(services) for _ in range(3)]
    quota = TransientMailerError("Resend 429 daily_quota_exceeded: daily quota reached", retry_after=7200, status=429)
    mailer.fail_next(quota, quota, quota)

    dispatcher.run_pass()

    assert len(mailer.calls) == 1
    statuses = sorted(step_send(services, p.enrollment_id, 1)["status"] for p in people)
    assert statuses == ["scheduled", "scheduled", "sending"]
    clock.advance(hours=2)
    mailer.stop_failing()  # the quota renewed
    run_for(dispatcher, clock, hours=1, every_hours=1 / 60)
    assert {step_send(services, p.enrollment_id, 1)["status"] for p in people} == {"sent"}
    assert len(mailer.sent) == 3


def test_without_retry_after_the_replay_waits_an_exponential_backoff(services, dispatcher, mailer, clock):
    result = enroll(services)
    mailer.fail_next(TransientMailerError("Resend unreachable"), TransientMailerError("Resend unreachable"))
    start = clock()

    dispatcher.run_pass()
    assert step_send(services, result.enrollment_id, 1)["lease_expires_at"] == start + timedelta(seconds=5)
    clock.advance(seconds=5)
    dispatcher.run_pass()
    assert step_send(services, result.enrollment_id, 1)["lease_expires_at"] == start + timedelta(seconds=15)
    clock.advance(seconds=10)
    dispatcher.run_pass()

    assert step_send(services, result.enrollment_id, 1)["status"] == "sent"
    assert len({key for key, _ in mailer.calls}) == 1 and len(mailer.calls) == 3


def test_a_rejected_recipient_fails_only_its_own_send_visibly_and_its_sequence_moves_on(
        services, dispatcher, mailer, clock):
    message = "Invalid `to` field. The email address needs to follow the `email@example.com` format."
    good, bad = enroll(services, email="good@example.com"), enroll(services, email="bad@example.com")
    mailer.reject("bad@example.com", message)

    assert dispatcher.run_pass() == 2

    assert step_send(services, good.enrollment_id, 1)["status"] == "sent"
    failed = step_send(services, bad.enrollment_id, 1)
    assert failed["status"] == "failed" and failed["last_error"] == message and failed["attempts"] == 1
    [event] = events_of(services, "send_failed")
    assert event["send_id"] == failed["id"] and event["detail"]["error"] == message
    released = step_send(services, bad.enrollment_id, 2)
    assert released["ready"] and released["due_at"] == clock() + timedelta(hours=24)
    run_for(dispatcher, clock, hours=24)
    assert any(released["id"] in members for _, members in mailer.calls), "step 2 was attempted"


def test_a_send_that_keeps_failing_transiently_is_retried_for_the_retry_window_then_given_up(
        services, mailer, clock):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(retry_window=timedelta(hours=1)))
    result = enroll(services)
    mailer.fail_next(*[TransientMailerError("Resend 503 application_error", status=503)] * 100)
    start = clock()

    while clock() - start < timedelta(minutes=59):  # an outage of most of an hour delays the email, no more
        dispatcher.run_pass()
        clock.advance(seconds=301)
    assert step_send(services, result.enrollment_id, 1)["status"] == "sending"
    clock.advance(minutes=20)
    dispatcher.run_pass()

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "failed" and send["attempts"] == len(mailer.calls) > 5
    assert re.match(r"gave up after \d+ attempts over 1\.\d h: Resend 503", send["last_error"]), send["last_error"]
    assert len(set(map(str, mailer.calls))) == 1, "every attempt replayed the same batch and key"
    assert mailer.sent_to(contact_row(services, result.contact_id)["email"])[0:1] == [], "the failed step never went"
    assert step_send(services, result.enrollment_id, 2)["ready"]


def test_a_short_provider_outage_delays_the_first_email_and_loses_none(services, dispatcher, mailer, clock):
    people = [enroll(services) for _ in range(3)]
    mailer.fail_next(*[TransientMailerError("Resend 503 application_error", status=503)] * 9)

    for _ in range(12):  # about 20 minutes of an unreachable provider, then it answers again
        dispatcher.run_pass()
        clock.advance(seconds=120)
    run_for(dispatcher, clock, hours=0.5, every_hours=1 / 60)

    assert [step_send(services, p.enrollment_id, 1)["status"] for p in people] == ["sent"] * 3
    assert len(mailer.sent) == 3


class StopArrivesDuringTheCall(FakeMailer):
    """A mailer whose first call is under way when the worker is told to stop (systemctl stop)."""

    def __init__(self, services):
        super().__init__()
        self.services = services

    def send(self, emails, idempotency_key):
        self.services.stopping.set()
        return super().send(emails, idempotency_key)


def test_a_stopping_worker_finishes_the_batch_in_hand_and_claims_no_more(services):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(batch_size=1, lanes=1))
    services.mailer = mailer = StopArrivesDuringTheCall(services)
    people = [enroll(services) for _ in range(3)]

    assert dispatcher.run_pass() == 1

    # The batch handed over is recorded; the rest is neither sent nor leased, so the next start sends it at once.
    assert sorted(step_send(services, p.enrollment_id, 1)["status"] for p in people) == ["scheduled", "scheduled", "sent"]
    assert len(mailer.sent) == 1


class SecondLaneLosesTheDatabase(Dispatcher):
    def _drain(self) -> int:
        if threading.current_thread().name.startswith("dispatch-lane"):
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return super()._drain()


def test_a_database_error_in_the_second_lane_fails_the_pass_instead_of_ending_only_its_thread(services):
    """The job's guard then logs it in one line and /health lists dispatch; `--once` exits 1."""
    enroll(services)
    with pytest.raises(sa.exc.OperationalError, match="server closed the connection"):
        SecondLaneLosesTheDatabase(services, "worker-a", DispatchPolicy(lanes=2)).run_pass()


def test_three_account_errors_in_a_row_open_the_circuit_breaker_and_health_says_so(
        services, mailer, client, clock):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(batch_size=1))
    people = [enroll(services) for _ in range(4)]
    mailer.fail_next(*[AccountMailerError("Resend 401 validation_error: API key is invalid", status=401)] * 3)

    assert dispatcher.run_pass() == 3

    # The leads are not at fault: their batches wait, same members and key, instead of failing.
    waiting = [step_send(services, p.enrollment_id, 1) for p in people]
    assert sorted(s["status"] for s in waiting) == ["scheduled", "sending", "sending", "sending"]
    health = client.get("/health").json()
    assert health["sending_paused"] is True and health["circuit_breaker_open"] is True
    assert health["pause_reason"].startswith("circuit breaker: 3 consecutive provider account errors")
    assert "API key is invalid" in health["pause_reason"]
    [paused] = events_of(services, "sending_paused")
    assert paused["actor"] == "worker-a"
    clock.advance(minutes=5)
    assert dispatcher.run_pass() == 0 and len(mailer.calls) == 3

    set_paused(services, False)  # the key was fixed
    run_for(dispatcher, clock, hours=0.1, every_hours=1 / 60)
    assert client.get("/health").json()["circuit_breaker_open"] is False
    done = [step_send(services, p.enrollment_id, 1) for p in people]
    assert [s["status"] for s in done] == ["sent"] * 4
    assert len(mailer.sent) == 4  # one each
    replayed = {s["idempotency_key"] for s in waiting if s["status"] == "sending"}
    assert replayed <= {key for key, _ in mailer.calls[3:]}, "the held batches went with their first keys"


def test_a_replayed_batch_held_back_by_the_breaker_keeps_its_key(services, mailer, clock):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(TransientMailerError("timed out waiting for Resend"))  # it may have got through
    dispatcher.run_pass()
    first_key = step_send(services, result.enrollment_id, 1)["idempotency_key"]
    clock.advance(seconds=6)
    dispatcher._halted.set()  # the other lane has just tripped the breaker
    with db.write_transaction(services.engine) as conn:
        replay = claims.reclaim_expired(conn, "worker-a", clock(), DispatchPolicy().lease)
    assert replay is not None and replay.attempts == 2

    assert dispatcher._deliver(replay) is False

    held = step_send(services, result.enrollment_id, 1)
    assert (held["status"], held["idempotency_key"], held["batch_id"]) == ("sending", first_key, replay.id)
    dispatcher._halted.clear()
    dispatcher.run_pass()
    assert step_send(services, result.enrollment_id, 1)["status"] == "sent"
    assert {key for key, _ in mailer.calls} == {first_key}


def test_a_batch_first_handed_over_a_day_ago_is_not_replayed(services, mailer, clock):
    """Resend forgets idempotency keys after 24 hours: a replay then could deliver a second copy."""
    dispatcher = Dispatcher(services, "worker-a")
    result = enroll(services)
    mailer.fail_next(TransientMailerError("timed out waiting for Resend"))
    dispatcher.run_pass()
    paused_for(services, clock, hours=72)  # a long weekend, with the batch waiting for its replay

    dispatcher.run_pass()

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "failed" and send["last_error"].startswith("outcome unknown:")
    assert len(mailer.calls) == 1, "never replayed"
    assert step_send(services, result.enrollment_id, 2)["ready"]


@pytest.mark.parametrize("refusal", [
    AccountMailerError("Resend 401 validation_error: API key is invalid", status=401),
    TransientMailerError("Resend 429 rate_limit_exceeded: too many requests", retry_after=1, status=429),
], ids=["bad-key", "rate-limited"])
def test_a_batch_the_provider_only_ever_refused_goes_under_a_fresh_key_after_a_long_pause(
        services, mailer, clock, refusal):
    """Nothing of a refused call was sent, so a day-old key is no reason to write the emails off."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(refusal)
    dispatcher.run_pass()
    first_key = step_send(services, result.enrollment_id, 1)["idempotency_key"]
    paused_for(services, clock, hours=48, reason="Christmas break")  # the batch waits for its replay

    dispatcher.run_pass()

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "sent", send["last_error"]
    assert [key for key, _ in mailer.calls][0] == first_key
    assert mailer.calls[-1][0] != first_key, "the replay went under a fresh key"
    assert len(mailer.sent) == 1
    [batch] = rows(services.engine, "SELECT * FROM send_batch WHERE id = :i", i=send["batch_id"])
    assert (batch["idempotency_key"], batch["refused_attempts"]) == (send["idempotency_key"], 1)


def test_a_batch_that_may_have_got_through_once_is_not_replayed_even_if_later_attempts_were_refused(
        services, mailer, clock):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(TransientMailerError("timed out waiting for Resend"),
                     TransientMailerError("Resend 429 rate_limit_exceeded", retry_after=1, status=429))
    dispatcher.run_pass()
    clock.advance(minutes=5)
    dispatcher.run_pass()
    assert len(mailer.calls) == 2
    paused_for(services, clock, hours=30)

    dispatcher.run_pass()

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "failed" and send["last_error"].startswith("outcome unknown:")
    assert len(mailer.calls) == 2, "the timed-out attempt may have been sent: never replayed past its key's life"


@pytest.mark.parametrize(("key_age", "replayed"), [(timedelta(hours=23) - timedelta(seconds=1), True),
                                                     (timedelta(hours=23), False)], ids=["just-inside", "23h"])
def test_a_batch_that_may_have_got_through_is_replayed_only_while_its_key_is_under_23_hours_old(
        services, mailer, clock, key_age, replayed):
    """Resend recognises a replayed key for 24 hours; an hour of that is kept as a margin (DESIGN §4.3)."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(TransientMailerError("timed out waiting for Resend"))
    dispatcher.run_pass()  # the key's first use: now
    set_paused(services, True)
    clock.advance(key_age.total_seconds())
    set_paused(services, False)

    dispatcher.run_pass()

    send = step_send(services, result.enrollment_id, 1)
    if replayed:
        assert send["status"] == "sent", send["last_error"]
        assert len(mailer.calls) == 2 and mailer.calls[0] == mailer.calls[1], "replayed under its first key"
    else:
        assert send["status"] == "failed" and send["last_error"].startswith("outcome unknown:")
        assert len(mailer.calls) == 1, "never replayed past its key's life"


def test_a_fresh_batch_refused_with_a_long_retry_after_waits_all_of_it(services, mailer, clock):
    """A 429 sent nothing, so its batch is in no hurry: it waits the day its quota asks for, not less."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(TransientMailerError("Resend 429 daily_quota_exceeded", retry_after=86400, status=429))

    dispatcher.run_pass()

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "sending" and "daily_quota_exceeded" in send["last_error"]
    assert send["lease_expires_at"] == clock() + timedelta(days=1)


def test_a_mailer_error_of_no_known_kind_is_retried_not_failed(services, mailer, clock):
    """An adapter that cannot say whether a call may be retried is taken as transient: the emails wait."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(MailerError("the adapter could not tell what happened"))

    dispatcher.run_pass()

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "sending" and "could not tell" in send["last_error"]
    clock.advance(minutes=1)
    dispatcher.run_pass()
    assert step_send(services, result.enrollment_id, 1)["status"] == "sent"


REFUSALS = pytest.mark.parametrize("refusal", [
    AccountMailerError("Resend 401 validation_error: API key is invalid", status=401),
    TransientMailerError("Resend 429 rate_limit_exceeded: too many requests", retry_after=1, status=429),
], ids=["bad-key", "rate-limited"])


@REFUSALS
def test_a_person_who_unsubscribes_while_a_refused_batch_waits_is_taken_out_of_it(services, mailer, clock, refusal):
    """Nothing of a batch the provider only ever refused went out, so it is not in flight: a stop
    reaches it as it reaches a fresh claim, and the others go under a fresh key."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    stays, leaves = enroll(services, email="stays@example.com"), enroll(services, email="leaves@example.com")
    mailer.fail_next(refusal)
    dispatcher.run_pass()
    [first_key] = {step_send(services, p.enrollment_id, 1)["idempotency_key"] for p in (stays, leaves)}
    with db.write_transaction(services.engine) as conn:
        unsubscribe_contact(conn, leaves.contact_id, actor="recipient", now=clock())

    run_for(dispatcher, clock, hours=1, every_hours=0.25)

    assert steps_sent_to(mailer, "leaves@example.com") == []
    assert step_send(services, leaves.enrollment_id, 1)["status"] == "cancelled"
    assert steps_sent_to(mailer, "stays@example.com") == [1]
    assert mailer.calls[-1] == (step_send(services, stays.enrollment_id, 1)["idempotency_key"],
                                [step_send(services, stays.enrollment_id, 1)["id"]])
    assert mailer.calls[-1][0] != first_key


@REFUSALS
def test_a_refused_batch_whose_every_member_was_stopped_is_dropped_without_a_call(services, mailer, clock, refusal):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services, email="leaves@example.com")
    mailer.fail_next(refusal)
    dispatcher.run_pass()
    with db.write_transaction(services.engine) as conn:
        unsubscribe_contact(conn, result.contact_id, actor="recipient", now=clock())

    run_for(dispatcher, clock, hours=1, every_hours=0.25)

    assert len(mailer.calls) == 1 and mailer.sent == []
    assert {s["status"] for s in sends_of(services, result.enrollment_id)} == {"cancelled"}
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM send_batch") == [{"n": 0}]


def test_account_errors_add_up_across_separate_runs_and_trip_the_breaker(services, mailer, clock, client):
    """`scheduler.py --once` from cron: each run is a new dispatcher that makes one call and exits."""
    error = AccountMailerError("Resend 401 validation_error: API key is invalid", status=401)
    enroll(services)
    for run in range(3):
        mailer.fail_next(error)
        Dispatcher(services, f"cron-run-{run}", DispatchPolicy(batch_size=1, lanes=1)).run_pass()
        assert len(mailer.calls) == run + 1
        clock.advance(minutes=30)

    health = client.get("/health").json()
    assert health["sending_paused"] is True and health["circuit_breaker_open"] is True
    assert health["pause_reason"].startswith("circuit breaker: 3 consecutive provider account errors")
    assert len(events_of(services, "sending_paused")) == 1


def test_hours_held_by_the_breaker_are_not_held_against_the_emails_once_sending_resumes(services, mailer, clock):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(*[AccountMailerError("Resend 401 validation_error: API key is invalid", status=401)] * 3)
    run_for(dispatcher, clock, hours=0.25, every_hours=1 / 60)
    assert events_of(services, "sending_paused"), "the breaker tripped"
    clock.advance(hours=7)  # the key is fixed overnight
    set_paused(services, False)
    mailer.fail_next(TransientMailerError("Resend 429 rate_limit_exceeded", retry_after=1, status=429),
                     TransientMailerError("Resend 503 application_error", status=503))

    run_for(dispatcher, clock, hours=0.5, every_hours=1 / 60)

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "sent", send["last_error"]
    assert len(mailer.calls) == 6 and len(mailer.sent) == 1


def test_an_outage_is_retried_for_the_window_from_its_first_uncertain_failure(services, mailer, clock):
    """Refusals before the outage do not start its clock; the outage itself is given up after the window."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1, retry_window=timedelta(hours=1)))
    result = enroll(services)
    mailer.fail_next(*[TransientMailerError("Resend 429 rate_limit_exceeded", retry_after=600, status=429)] * 6,
                     *[TransientMailerError("Resend 503 application_error", status=503)] * 100)
    run_for(dispatcher, clock, hours=1.5, every_hours=1 / 12)  # an hour of 429s, then the 503s begin
    assert step_send(services, result.enrollment_id, 1)["status"] == "sending"
    run_for(dispatcher, clock, hours=1.5, every_hours=1 / 12)

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "failed" and "Resend 503" in send["last_error"]
    [batch] = rows(services.engine, "SELECT * FROM send_batch WHERE id = :i", i=send["batch_id"])
    assert batch["refused_attempts"] == 6


@pytest.mark.parametrize("retry_after", [86400, float("inf"), 7 * 3600])
def test_an_outage_whose_retry_after_outlasts_the_window_is_still_retried_inside_it(
        services, mailer, clock, retry_after):
    """A 503's retry-after of a day must not hold the batch past its window and its key's life, where it
    would be given up as 'outcome unknown' without ever being tried again."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(TransientMailerError("Resend 503 application_error: down for maintenance",
                                          retry_after=retry_after, status=503))
    start = clock()

    dispatcher.run_pass()
    waiting = step_send(services, result.enrollment_id, 1)
    assert waiting["status"] == "sending" and waiting["lease_expires_at"] <= start + timedelta(hours=6)
    run_for(dispatcher, clock, hours=26, every_hours=0.5)

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "sent", send["last_error"]
    assert mailer.calls[0] == mailer.calls[1] and mailer.calls[1][1] == [send["id"]], "replayed once, same batch and key"


def test_a_rate_limit_of_a_day_after_an_outage_is_retried_while_the_key_still_makes_the_replay_safe(
        services, mailer, clock):
    """A batch that may have got through cannot be replayed once its key is 23 hours old; a 429 asking for a
    day (or inf, held to one) must not carry it there untried."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    result = enroll(services)
    mailer.fail_next(TransientMailerError("Resend 500 application_error", status=500),
                     TransientMailerError("Resend 429 daily_quota_exceeded", retry_after=float("inf"), status=429))

    dispatcher.run_pass()
    clock.advance(seconds=5)
    dispatcher.run_pass()
    assert len(mailer.calls) == 2
    run_for(dispatcher, clock, hours=26, every_hours=0.25)

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "sent", send["last_error"]
    assert mailer.calls[0] == mailer.calls[2], "replayed under its first key"


def test_account_errors_never_give_the_emails_up_however_long_the_key_stays_wrong(services, mailer, clock):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1, retry_window=timedelta(hours=1),
                                                                 breaker_threshold=1000))
    result = enroll(services)
    mailer.fail_next(*[AccountMailerError("Resend 403 validation_error: domain not verified", status=403)] * 40)
    run_for(dispatcher, clock, hours=30, every_hours=1)  # past the retry window and the key's life

    send = step_send(services, result.enrollment_id, 1)
    assert send["status"] == "sending" and "domain not verified" in send["last_error"]
    mailer.stop_failing()  # the domain was verified
    run_for(dispatcher, clock, hours=2, every_hours=1)
    assert step_send(services, result.enrollment_id, 1)["status"] == "sent"
    assert len(mailer.sent) == 1


def test_a_late_signup_gets_the_after_christmas_copy_for_the_steps_sent_after_christmas_eve(
        services, dispatcher, mailer, clock):
    clock.advance(days=21)  # 22 December
    person = enroll(services, first_name="Noel", business_name="Late Ltd")
    address = contact_row(services, person.contact_id)["email"]
    run_for(dispatcher, clock, hours=12 * 24)

    subjects = [e.subject for e in mailer.sent_to(address)]
    assert len(subjects) == 7
    assert subjects[2] == "Three fixes you can make before the year gets busy"  # due 25 December
    assert subjects[6] == "Last call: our free systems review closes soon"
    assert "before Christmas" not in " ".join(e.text for e in mailer.sent_to(address)[2:])


def test_a_replay_across_christmas_eve_carries_exactly_what_was_first_sent(services, mailer, clock):
    """Resend refuses a key reused with other content: the replay must not switch to the after-season copy."""
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(lanes=1))
    clock.advance(days=22, hours=14, minutes=50)  # 23 December, 23:50 UTC
    [person] = enroll_now(services, [signup_request(email=unique_email(), force_test_timing=True)])
    address = contact_row(services, person.contact_id)["email"]
    dispatcher.run_pass()  # step 1
    clock.advance(minutes=1)
    dispatcher.run_pass()  # step 2
    clock.advance(minutes=1)
    mailer.fail_next(TransientMailerError("timed out waiting for Resend"))
    dispatcher.run_pass()  # step 3, whose answer is lost: it may have been sent, before midnight
    clock.advance(minutes=30)  # the season is over
    dispatcher.run_pass()

    assert [key for key, _ in mailer.calls][2:] == [mailer.calls[2][0]] * 2, "step 3 was replayed under its key"
    step3 = mailer.sent_to(address)[2]
    assert step3.subject == "Three fixes you can make before Christmas"
    assert "Three quick wins before Christmas" in step3.text


def test_account_errors_separated_by_a_success_do_not_open_the_breaker(services, mailer, client):
    dispatcher = Dispatcher(services, "worker-a", DispatchPolicy(batch_size=1))
    error = AccountMailerError("Resend 403 validation_error: domain not verified", status=403)
    for outcome in ([error, error], [], [error, error]):
        mailer.fail_next(*outcome)
        for _ in range(max(1, len(outcome))):
            enroll(services)
        dispatcher.run_pass()

    assert len(mailer.sent) == 1
    assert client.get("/health").json()["sending_paused"] is False


# ---------------------------------------------------------------- lease recovery

@pytest.mark.parametrize("provider_reached", [True, False], ids=["killed-after-provider", "killed-before-provider"])
def test_a_worker_killed_mid_batch_leaves_a_lease_that_another_worker_replays_exactly_once(
        services, mailer, clock, provider_reached):
    people = [enroll(services) for _ in range(3)]
    lease = DispatchPolicy().lease
    with db.write_transaction(services.engine) as conn:
        batch = claims.claim_due(conn, "doomed-worker", clock(), lease, 100)
    if provider_reached:  # the doomed worker's call got through, then it died before recording anything
        mailer.send([services.composer.compose(m, at=batch.created_at) for m in batch.members], batch.idempotency_key)
    rescuer = Dispatcher(services, "rescuer")

    assert rescuer.run_pass() == 0, "a live lease is left alone"
    clock.advance(seconds=lease.total_seconds() + 1)
    assert rescuer.run_pass() == 3

    assert {key for key, _ in mailer.calls} == {batch.idempotency_key}
    assert len({tuple(members) for _, members in mailer.calls}) == 1
    assert sorted(r.email.to for r in mailer.sent) == sorted(contact_row(services, p.contact_id)["email"]
                                                             for p in people)
    done = [step_send(services, p.enrollment_id, 1) for p in people]
    assert {(s["status"], s["lease_owner"], s["attempts"]) for s in done} == {("sent", None, 2)}
    assert sorted(s["provider_id"] for s in done) == sorted(r.provider_id for r in mailer.sent)
    with db.write_transaction(services.engine) as conn:  # the doomed worker's late word no longer counts
        assert outcomes.mark_sent(conn, {done[0]["id"]: "late-id"}, "doomed-worker", clock()) == set()


# ---------------------------------------------------------------- manual actions, carried out by the worker

def act(services, kind: str, payload: dict) -> dict:
    """Request an action as the dashboard does, let the worker carry it out, and return its row."""
    with db.write_transaction(services.engine) as conn:
        action_id = request_action(conn, kind, payload, requested_by="marketer@example.com", now=services.clock())
    assert ActionRunner(services, "worker-a").run_pending() >= 1
    [row] = rows(services.engine, "SELECT * FROM action WHERE id = :i", i=action_id)
    assert [e["actor"] for e in events_of(services, f"requested_{kind}")][-1] == "marketer@example.com"
    return row


def test_resend_step_queues_a_new_generation_that_is_sent_again_under_its_own_key(
        services, dispatcher, mailer):
    result = enroll(services, email="again@example.com")
    dispatcher.run_pass()

    action = act(services, "resend_step", {"enrollment_id": result.enrollment_id, "contact_id": result.contact_id,
                                           "step": 1})
    assert action["status"] == "done" and action["result"].startswith("queued send")
    assert dispatcher.run_pass() == 1

    generations = [s for s in sends_of(services, result.enrollment_id) if s["step"] == 1]
    assert [(s["generation"], s["status"]) for s in generations] == [(1, "sent"), (2, "sent")]
    assert generations[0]["idempotency_key"] != generations[1]["idempotency_key"]
    assert steps_sent_to(mailer, "again@example.com") == [1, 1]
    [event] = events_of(services, "step_resend_requested")
    assert event["send_id"] == generations[1]["id"] and event["detail"] == {"step": 1, "generation": 2}


def test_a_second_resend_asked_from_the_same_screen_after_the_first_went_sends_no_third_copy(
        services, dispatcher, mailer):
    result = enroll(services, email="twice@example.com")
    dispatcher.run_pass()
    seen = {"enrollment_id": result.enrollment_id, "contact_id": result.contact_id, "step": 1, "generation": 1}

    first = act(services, "resend_step", seen)
    assert dispatcher.run_pass() == 1  # the first resend went before the second click reached the worker
    second = act(services, "resend_step", seen)

    assert first["status"] == "done" and second["status"] == "failed"
    assert "already sent again" in second["result"]
    assert dispatcher.run_pass() == 0 and steps_sent_to(mailer, "twice@example.com") == [1, 1]


def test_a_step_still_being_sent_can_be_neither_resent_nor_skipped(services, clock):
    # Skipped or sent again while the provider may have it, it would be recorded as skipped yet arrive,
    # or arrive twice.
    result = enroll(services)
    with db.write_transaction(services.engine) as conn:
        claims.claim_due(conn, "worker-a", clock(), timedelta(minutes=2), 100)
    target = {"enrollment_id": result.enrollment_id, "contact_id": result.contact_id, "step": 1}

    resend, skip = act(services, "resend_step", target), act(services, "skip_step", target)

    assert resend["status"] == skip["status"] == "failed"
    assert "has not gone out yet" in resend["result"] and "already being sent" in skip["result"]
    assert [(s["generation"], s["status"]) for s in sends_of(services, result.enrollment_id) if s["step"] == 1] \
        == [(1, "sending")]


def test_nothing_can_be_resent_to_a_contact_who_bounced(services, dispatcher, clock):
    result = enroll(services)
    dispatcher.run_pass()
    with db.write_transaction(services.engine) as conn:
        suppress_contact(conn, result.contact_id, "bounce", actor="resend", now=clock())

    action = act(services, "resend_step", {"enrollment_id": result.enrollment_id, "contact_id": result.contact_id,
                                           "step": 1})

    assert action["status"] == "failed" and "suppressed (bounce)" in action["result"]
    assert len(sends_of(services, result.enrollment_id)) == 7


@pytest.mark.parametrize("stop", ["unsubscribe", "bounce", "cancel"])
def test_a_stop_after_the_sequence_completed_is_its_final_status(services, dispatcher, clock, stop):
    result = enroll(services)
    run_for(dispatcher, clock, hours=12 * 24, every_hours=12)
    assert enrollment_status(services, result.enrollment_id) == "completed"

    with db.write_transaction(services.engine) as conn:
        if stop == "unsubscribe":
            unsubscribe_contact(conn, result.contact_id, actor="lead", now=clock())
        elif stop == "bounce":
            suppress_contact(conn, result.contact_id, "bounce", actor="resend", now=clock())
        else:
            assert cancel_sequence(conn, result.enrollment_id, actor="marketer@example.com", now=clock()) == 0

    assert enrollment_status(services, result.enrollment_id) == {"unsubscribe": "unsubscribed", "bounce": "bounced",
                                                                 "cancel": "cancelled"}[stop]


def test_skip_step_skips_it_and_the_sequence_goes_on_to_the_next_step(services, dispatcher, mailer, clock):
    result = enroll(services, email="skipper@example.com")
    dispatcher.run_pass()

    action = act(services, "skip_step", {"enrollment_id": result.enrollment_id, "step": 2})
    run_for(dispatcher, clock, hours=72, every_hours=6)

    assert action["status"] == "done" and action["result"] == "skipped"
    assert step_send(services, result.enrollment_id, 2)["status"] == "skipped"
    assert steps_sent_to(mailer, "skipper@example.com") == [1, 3]
    assert [e["detail"] for e in events_of(services, "step_skipped")] == [{"step": 2}]


def test_cancel_sequence_cancels_every_pending_send(services, dispatcher, mailer, clock):
    result = enroll(services, email="cancelled@example.com")
    dispatcher.run_pass()

    action = act(services, "cancel_sequence", {"enrollment_id": result.enrollment_id})
    run_for(dispatcher, clock, hours=12 * 24, every_hours=12)

    assert action["status"] == "done" and action["result"] == "cancelled 6 sends"
    assert [s["status"] for s in sends_of(services, result.enrollment_id)] == ["sent"] + ["cancelled"] * 6
    assert enrollment_status(services, result.enrollment_id) == "cancelled"
    assert steps_sent_to(mailer, "cancelled@example.com") == [1]
    assert events_of(services, "sequence_cancelled")[0]["detail"] == {"cancelled_sends": 6}


def test_a_cancel_that_reaches_the_worker_after_an_unsubscribe_keeps_the_sequence_unsubscribed(
        services, dispatcher, mailer):
    result = enroll(services, email="gone@example.com")
    dispatcher.run_pass()
    act(services, "unsubscribe", {"contact_id": result.contact_id})

    action = act(services, "cancel_sequence", {"enrollment_id": result.enrollment_id})

    assert action["status"] == "done" and action["result"] == "nothing to cancel: the sequence had already stopped"
    assert enrollment_status(services, result.enrollment_id) == "unsubscribed"
    assert events_of(services, "sequence_cancelled") == []


def test_retry_send_requeues_a_failed_send_which_then_goes_under_a_fresh_key(services, dispatcher, mailer):
    result = enroll(services, email="retry@example.com")
    mailer.fail_next(PermanentMailerError("Resend 422 validation_error: temporarily refused", status=422))
    dispatcher.run_pass()
    failed = step_send(services, result.enrollment_id, 1)
    assert failed["status"] == "failed" and "422" in failed["last_error"]

    action = act(services, "retry_send", {"send_id": failed["id"], "contact_id": result.contact_id})
    requeued = step_send(services, result.enrollment_id, 1)
    assert action["status"] == "done" and action["result"] == "queued again"
    assert (requeued["status"], requeued["attempts"], requeued["batch_id"]) == ("scheduled", 0, None)
    assert requeued["last_error"] is None  # the reason is in the audit trail; kept, it read as a provider outage
    assert dispatcher.run_pass() == 1

    sent = step_send(services, result.enrollment_id, 1)
    assert sent["status"] == "sent" and sent["idempotency_key"] != failed["idempotency_key"]
    assert steps_sent_to(mailer, "retry@example.com") == [1]
    assert [e["send_id"] for e in events_of(services, "send_retry_requested")] == [failed["id"]]


def test_retrying_a_failure_that_may_have_been_delivered_sends_a_new_copy_and_keeps_the_failure(
        services, dispatcher, mailer, clock):
    # The failure is the only sign that step 1 may have reached the person; the retry is a new generation
    # under its own key, as a resend is, and the failure leaves the Sends page's Failed list all the same.
    result = enroll(services, email="unsure@example.com")
    reason = "outcome unknown: first handed to the provider over 23 hours ago"
    step_1_of_it = sa.and_(send_t.c.enrollment_id == result.enrollment_id, send_t.c.step == 1)
    with db.write_transaction(services.engine) as conn:  # as the dispatcher leaves it: handed over, then given up
        conn.execute(send_t.update().where(step_1_of_it).values(status="sending", idempotency_key="old-key"))
        conn.execute(send_t.update().where(step_1_of_it).values(status="failed", attempts=5, finished_at=clock(),
                                                                last_error=reason))
    failed = step_send(services, result.enrollment_id, 1)

    action = act(services, "retry_send", {"send_id": failed["id"], "contact_id": result.contact_id})
    assert action["status"] == "done" and action["result"] == "queued again"
    assert dispatcher.run_pass() == 1

    step_1 = sorted((s for s in sends_of(services, result.enrollment_id) if s["step"] == 1),
                    key=lambda s: s["generation"])
    assert [(s["generation"], s["status"]) for s in step_1] == [(1, "failed"), (2, "sent")]
    assert step_1[0]["last_error"] == reason and step_1[1]["idempotency_key"] not in (None, "old-key")
    assert steps_sent_to(mailer, "unsure@example.com") == [1]
    assert [e["send_id"] for e in events_of(services, "send_retry_requested")] == [failed["id"]]
    with db.read_transaction(services.engine) as conn:
        assert queue_list(conn, "failed", now=clock()) == []


def test_a_retried_step_and_the_next_step_never_go_to_one_person_in_the_same_pass(
        services, dispatcher, mailer, clock):
    result = enroll(services, email="burst@example.com")
    mailer.fail_next(PermanentMailerError("Resend 422 validation_error: refused", status=422))
    dispatcher.run_pass()
    clock.advance(hours=30)  # step 2 was released when step 1 failed, and is now due
    act(services, "retry_send", {"send_id": step_send(services, result.enrollment_id, 1)["id"]})

    assert dispatcher.run_pass() == 1
    assert steps_sent_to(mailer, "burst@example.com") == [1]
    run_for(dispatcher, clock, hours=24)
    assert steps_sent_to(mailer, "burst@example.com") == [1, 2]
    first, second = (step_send(services, result.enrollment_id, step) for step in (1, 2))
    assert second["sent_at"] - first["sent_at"] >= timedelta(hours=12), "step 2 waits half its gap behind step 1"


def test_a_resent_step_and_a_due_step_never_go_to_one_person_in_the_same_pass(services, dispatcher, mailer, clock):
    result = enroll(services, email="resent@example.com")
    run_for(dispatcher, clock, hours=71)
    clock.advance(hours=1)  # steps 1 and 2 sent; step 3 falls due now
    assert steps_sent_to(mailer, "resent@example.com") == [1, 2]
    act(services, "resend_step", {"enrollment_id": result.enrollment_id, "step": 1})

    assert dispatcher.run_pass() + dispatcher.run_pass() == 1
    run_for(dispatcher, clock, hours=47)
    assert steps_sent_to(mailer, "resent@example.com") == [1, 2, 1, 3], "step 3 went after the resent step"


def test_a_completed_sequence_can_have_a_step_resent_or_its_failed_last_step_retried(
        services, dispatcher, mailer, clock):
    result = enroll(services, email="finished@example.com")
    run_for(dispatcher, clock, hours=258, every_hours=6)  # steps 1-6 sent; step 7 is due at 264 h
    mailer.fail_next(PermanentMailerError("Resend 422 validation_error: refused for now", status=422))
    run_for(dispatcher, clock, hours=12, every_hours=6)
    assert step_send(services, result.enrollment_id, 7)["status"] == "failed"
    assert enrollment_status(services, result.enrollment_id) == "completed"

    resent = act(services, "resend_step", {"enrollment_id": result.enrollment_id, "step": 3})
    retried = act(services, "retry_send", {"send_id": step_send(services, result.enrollment_id, 7)["id"]})
    run_for(dispatcher, clock, hours=48, every_hours=6)

    assert (resent["status"], retried["status"]) == ("done", "done")
    assert steps_sent_to(mailer, "finished@example.com")[-2:] == [3, 7], "both went, in order"
    assert step_send(services, result.enrollment_id, 7)["status"] == "sent"
    assert enrollment_status(services, result.enrollment_id) == "completed"  # complete again once they finished


def test_a_cancelled_sequence_refuses_a_resend_plainly(services, dispatcher, mailer):
    result = enroll(services, email="stopped@example.com")
    dispatcher.run_pass()
    act(services, "cancel_sequence", {"enrollment_id": result.enrollment_id})

    action = act(services, "resend_step", {"enrollment_id": result.enrollment_id, "step": 1})

    assert action["status"] == "failed" and "cancelled" in action["result"]
    assert dispatcher.run_pass() == 0 and steps_sent_to(mailer, "stopped@example.com") == [1]


def sent_at_by_step(services, enrollment_id: str) -> list[tuple[int, datetime]]:
    sent = [s for s in sends_of(services, enrollment_id) if s["status"] == "sent"]
    return sorted(((s["step"], s["sent_at"]) for s in sent), key=lambda pair: pair[1])


def assert_one_at_a_time(services, enrollment_id: str) -> None:
    """The order rule for everything sent: steps in order, each at least half its planned gap after the last."""
    sent = sent_at_by_step(services, enrollment_id)
    assert [step for step, _ in sent] == sorted(step for step, _ in sent), sent
    for (before, at_before), (step, at) in zip(sent, sent[1:]):
        assert at - at_before >= planned_gap(CHRISTMAS_2025, step, Timing.PRODUCTION) / 2, (before, step, sent)


def test_a_skipped_step_queued_again_waits_for_the_steps_before_it(services, dispatcher, mailer, clock):
    result = enroll(services, email="unskip@example.com")
    dispatcher.run_pass()
    clock.advance(hours=1)
    act(services, "skip_step", {"enrollment_id": result.enrollment_id, "step": 5})

    resent = act(services, "resend_step", {"enrollment_id": result.enrollment_id, "step": 5})
    assert resent["status"] == "done"
    assert dispatcher.run_pass() == 0, "steps 2 to 4 come first"
    run_for(dispatcher, clock, hours=12 * 24, every_hours=6)

    assert steps_sent_to(mailer, "unskip@example.com") == [1, 2, 3, 4, 5, 6, 7]
    assert_one_at_a_time(services, result.enrollment_id)


def fail_steps_2_and_3(services, dispatcher, mailer, clock, email: str):
    """Step 1 sent; steps 2 and 3 refused for good on their days; step 4 released for its day."""
    result = enroll(services, email=email)
    dispatcher.run_pass()
    for hours in (24, 48):
        clock.advance(hours=hours)
        mailer.fail_next(PermanentMailerError("Resend 422 validation_error: refused for now", status=422))
        assert dispatcher.run_pass() == 1
    assert [s["status"] for s in sends_of(services, result.enrollment_id)][:4] == ["sent", "failed", "failed",
                                                                                   "scheduled"]
    return result


@pytest.mark.parametrize("order", [(2, 3), (3, 2)], ids=["oldest-first", "newest-first"])
def test_failed_steps_retried_together_go_one_at_a_time_in_order(services, dispatcher, mailer, clock, order):
    result = fail_steps_2_and_3(services, dispatcher, mailer, clock, "retried@example.com")
    others = [enroll(services) for _ in range(150)]  # enough due work for both lanes to claim at once
    clock.advance(days=3)  # step 4 is due too
    for step in order:
        retried = act(services, "retry_send", {"send_id": step_send(services, result.enrollment_id, step)["id"]})
        assert retried["status"] == "done"

    passes = [dispatcher.run_pass()] + run_for(dispatcher, clock, hours=12 * 24, every_hours=3)

    assert passes[0] >= len(others)
    assert steps_sent_to(mailer, "retried@example.com") == [1, 2, 3, 4, 5, 6, 7]
    assert_one_at_a_time(services, result.enrollment_id)


def test_a_claim_never_takes_a_second_email_of_a_person_with_one_in_flight(services, clock):
    result = enroll(services)
    lease = timedelta(minutes=2)
    with db.write_transaction(services.engine) as conn:
        first = claims.claim_due(conn, "worker-a", clock(), lease, 100)
        # A step made due beside it by hand (no control does this any more): the claim is the safety net.
        conn.execute(send_t.update().where(send_t.c.enrollment_id == result.enrollment_id, send_t.c.step == 2)
                     .values(ready=True, due_at=clock()))
    with db.write_transaction(services.engine) as conn:
        second = claims.claim_due(conn, "worker-b", clock(), lease, 100)

    assert [m.step for m in first.members] == [1] and second is None
    step_2 = step_send(services, result.enrollment_id, 2)
    assert (step_2["status"], step_2["ready"], step_2["attempts"]) == ("scheduled", False, 0)
    with db.write_transaction(services.engine) as conn:  # step 1 goes; the order rule releases step 2 on its day
        outcomes.mark_sent(conn, {first.members[0].id: "re_1"}, "worker-a", clock())
        outcomes.release_next_steps(conn, [outcomes.Finished(result.enrollment_id, "Christmas 2025", "production")],
                                    clock())
    step_2 = step_send(services, result.enrollment_id, 2)
    assert step_2["ready"] and step_2["due_at"] == clock() + timedelta(hours=24)


def test_a_claim_that_meets_two_due_steps_of_one_person_takes_the_earlier_step(services, clock):
    result = enroll(services)
    with db.write_transaction(services.engine) as conn:  # step 2 made due beside step 1 by hand: the safety net
        conn.execute(send_t.update().where(send_t.c.enrollment_id == result.enrollment_id, send_t.c.step == 2)
                     .values(ready=True, due_at=clock() - timedelta(minutes=1)))
    with db.write_transaction(services.engine) as conn:
        batch = claims.claim_due(conn, "worker-a", clock(), timedelta(minutes=2), 100)

    assert [m.step for m in batch.members] == [1]
    step_2 = step_send(services, result.enrollment_id, 2)
    assert (step_2["status"], step_2["ready"]) == ("scheduled", False)


def test_a_claim_smaller_than_the_queue_takes_the_longest_waiting_sends_first(services, clock):
    waiting = []
    for _ in range(3):  # three welcomes, due a minute apart
        waiting.append(enroll(services))
        clock.advance(minutes=1)
    with db.write_transaction(services.engine) as conn:
        batch = claims.claim_due(conn, "worker-a", clock(), timedelta(minutes=2), 2)

    assert sorted(m.enrollment_id for m in batch.members) == sorted(r.enrollment_id for r in waiting[:2])


def test_a_worker_whose_lease_was_taken_over_records_nothing_for_those_sends(services, clock):
    result = enroll(services)
    lease = timedelta(minutes=2)
    with db.write_transaction(services.engine) as conn:
        claims.claim_due(conn, "worker-a", clock(), lease, 100)
    clock.advance(minutes=3)  # worker-a stalled past its lease; worker-b takes the batch over
    with db.write_transaction(services.engine) as conn:
        taken = claims.reclaim_expired(conn, "worker-b", clock(), lease)
    [member] = taken.members

    with db.write_transaction(services.engine) as conn:
        recorded = outcomes.mark_sent(conn, {member.id: "re_late"}, "worker-a", clock())
        failed = outcomes.mark_failed(conn, {member.id: "late error"}, "worker-a", clock())

    assert recorded == set() and failed == set()
    send = step_send(services, result.enrollment_id, 1)
    assert (send["status"], send["lease_owner"], send["provider_id"]) == ("sending", "worker-b", None)


def test_a_sequence_stopped_while_its_last_email_was_in_flight_keeps_its_stop_as_its_status(services, clock):
    result = enroll(services)
    with db.write_transaction(services.engine) as conn:
        [member] = claims.claim_due(conn, "worker-a", clock(), timedelta(minutes=2), 100).members
    with db.write_transaction(services.engine) as conn:  # steps 2-7 are cancelled; step 1 is replayed as it was
        unsubscribe_contact(conn, result.contact_id, actor="lead", now=clock())

    with db.write_transaction(services.engine) as conn:
        outcomes.mark_sent(conn, {member.id: "re_1"}, "worker-a", clock())
        outcomes.release_next_steps(conn, [outcomes.Finished(result.enrollment_id, "Christmas 2025", "production")],
                                    clock())

    assert enrollment_status(services, result.enrollment_id) == "unsubscribed"


def test_a_failure_replaced_by_a_newer_generation_cannot_be_retried(services, dispatcher, mailer):
    result = enroll(services, email="twice@example.com")
    mailer.fail_next(PermanentMailerError("Resend 422 validation_error: refused for now", status=422))
    dispatcher.run_pass()
    failed = step_send(services, result.enrollment_id, 1)
    assert act(services, "resend_step", {"enrollment_id": result.enrollment_id, "step": 1})["status"] == "done"
    with services.engine.connect() as conn:
        assert failed["id"] not in {r["send_id"] for r in queue_list(conn, "failed", now=services.clock())}
        assert queue_counts(conn, services.clock())["failed"] == 0

    retried = act(services, "retry_send", {"send_id": failed["id"]})
    dispatcher.run_pass()

    assert retried["status"] == "failed" and "queued again after this failure (generation 2)" in retried["result"]
    assert steps_sent_to(mailer, "twice@example.com") == [1]
    assert step_send(services, result.enrollment_id, 1)["status"] == "failed"  # the old row keeps its history


def test_send_test_mails_one_rendered_step_to_the_marketer_without_touching_any_sequence(services, mailer):
    action = act(services, "send_test", {"step": 3, "segment": "CRITICAL", "to": "marketer@example.com",
                                         "request_id": "req-1"})

    assert action["status"] == "done" and action["result"].startswith("sent step 3 (CRITICAL) to marketer@example.com")
    [email] = mailer.sent_to("marketer@example.com")
    assert email.subject.startswith("[TEST] ") and email.tags["step"] == "3" and email.tags["segment"] == "CRITICAL"
    assert mailer.calls[0][0] == "nurture-test-req-1"
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM send") == [{"n": 0}]


def test_a_test_email_carries_unsubscribe_headers_whose_link_explains_and_stops_no_one(
        services, dispatcher, mailer, client):
    enroll(services, email="lead@example.com")
    act(services, "send_test", {"step": 1, "segment": "URGENT", "to": "marketer@example.com", "request_id": "r"})
    [email] = mailer.sent_to("marketer@example.com")

    link = email.headers["List-Unsubscribe"].strip("<>")
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in email.text and html.escape(link) in email.html  # the footer's link is the header's
    path = urlsplit(link).path
    for answer in (client.get(path), client.post(path, data={"List-Unsubscribe": "One-Click"})):
        assert answer.status_code == 200 and "test email" in answer.text
    assert events_of(services, "unsubscribed") == []
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM contact WHERE unsubscribed_at IS NOT NULL") == [{"n": 0}]


def test_check_connection_records_what_the_mailer_answered(services):
    action = act(services, "check_connection", {})
    assert action["status"] == "done" and action["result"] == "fake: always reachable"


@pytest.mark.parametrize("backend", ["sqlite"])  # where one writer at a time makes a held lock stall intake
def test_a_test_email_holds_no_write_lock_while_the_provider_call_takes(services, mailer, monkeypatch):
    calling, answer = threading.Event(), threading.Event()
    send = mailer.send

    def slow_send(emails, key):
        calling.set()
        answer.wait(20)
        return send(emails, key)

    monkeypatch.setattr(mailer, "send", slow_send)
    with db.write_transaction(services.engine) as conn:
        request_action(conn, "send_test", {"step": 1, "segment": "URGENT", "to": "marketer@example.com",
                                           "request_id": "slow"}, requested_by="marketer@example.com",
                       now=services.clock())
    runner = threading.Thread(target=ActionRunner(services, "worker-a").run_pending)
    runner.start()
    assert calling.wait(10)
    signup = threading.Thread(target=enroll, args=(services, "meanwhile@example.com"))
    signup.start()
    signup.join(timeout=5)
    committed_meanwhile = not signup.is_alive()
    answer.set()
    runner.join(timeout=20)
    signup.join(timeout=40)

    assert committed_meanwhile, "the signup waited for the test email's provider call"
    assert rows(services.engine, "SELECT status, result FROM action")[0]["result"].startswith("sent step 1")


def test_an_action_on_a_missing_enrollment_fails_visibly(services):
    action = act(services, "cancel_sequence", {"enrollment_id": "no-such-enrollment"})
    assert action["status"] == "failed" and "no-such-enrollment" in action["result"]
    [event] = events_of(services, "cancel_sequence_failed")
    assert "no-such-enrollment" in event["detail"]["error"]


@pytest.mark.parametrize("stop", ["unsubscribe", "cancel_sequence"])
def test_a_stop_requested_from_the_dashboard_is_carried_out_before_the_next_pass_sends(
        services, dispatcher, mailer, clock, stop):
    """No separate action job has run: the dispatch pass itself carries the stop out first."""
    result = enroll(services, email="quitter@example.com")
    dispatcher.run_pass()
    clock.advance(hours=24)  # step 2 is due
    with db.write_transaction(services.engine) as conn:
        request_action(conn, stop, {"contact_id": result.contact_id, "enrollment_id": result.enrollment_id},
                       requested_by="marketer@example.com", now=clock())

    assert dispatcher.run_pass() == 0
    assert steps_sent_to(mailer, "quitter@example.com") == [1]
    assert step_send(services, result.enrollment_id, 2)["status"] == "cancelled"
    assert rows(services.engine, "SELECT status FROM action") == [{"status": "done"}]


def test_a_skip_requested_from_the_dashboard_is_carried_out_before_the_next_pass_sends_the_step(
        services, dispatcher, mailer, clock):
    """As for stops: no separate action job has run (a worker just restarted, say), yet the step never goes."""
    result = enroll(services, email="skip-first@example.com")
    dispatcher.run_pass()
    clock.advance(hours=24)  # step 2 is due
    with db.write_transaction(services.engine) as conn:
        request_action(conn, "skip_step", {"contact_id": result.contact_id, "enrollment_id": result.enrollment_id,
                                           "step": 2}, requested_by="marketer@example.com", now=clock())

    assert dispatcher.run_pass() == 0
    assert steps_sent_to(mailer, "skip-first@example.com") == [1]
    assert step_send(services, result.enrollment_id, 2)["status"] == "skipped"
    assert rows(services.engine, "SELECT status, result FROM action") == [{"status": "done", "result": "skipped"}]


def test_requests_waiting_for_a_worker_are_carried_out_in_the_order_they_were_asked(services, dispatcher, mailer, clock):
    """A resend and then a skip of it (a change of mind while the worker was down): the skip must not jump the queue,
    find the step already sent and be refused, and leave the resend to go out after it."""
    result = enroll(services, email="changed-mind@example.com")
    dispatcher.run_pass()
    target = {"contact_id": result.contact_id, "enrollment_id": result.enrollment_id, "step": 1}
    with db.write_transaction(services.engine) as conn:
        request_action(conn, "resend_step", {**target, "generation": 1}, requested_by="marketer@example.com",
                       now=clock())
        clock.advance(seconds=1)
        request_action(conn, "skip_step", target, requested_by="marketer@example.com", now=clock())

    dispatcher.run_pass()
    ActionRunner(services, "worker-a").run_pending()
    dispatcher.run_pass()

    assert steps_sent_to(mailer, "changed-mind@example.com") == [1]
    assert rows(services.engine, "SELECT kind, status, result FROM action ORDER BY requested_at")[1] == {
        "kind": "skip_step", "status": "done", "result": "skipped"}


def test_a_stop_asked_after_a_long_queue_of_requests_is_still_carried_out_before_the_next_pass_sends(
        services, dispatcher, mailer, clock):
    """A page of retries (50) asked before an unsubscribe: the pass carries out all of them, not the first 50 only."""
    result = enroll(services, email="behind-the-queue@example.com")
    dispatcher.run_pass()
    clock.advance(hours=24)  # step 2 is due
    with db.write_transaction(services.engine) as conn:
        for n in range(50):
            request_action(conn, "retry_send", {"send_id": f"gone-{n}"}, requested_by="marketer@example.com",
                           now=clock())
        clock.advance(seconds=1)
        request_action(conn, "unsubscribe", {"contact_id": result.contact_id}, requested_by="marketer@example.com",
                       now=clock())

    assert dispatcher.run_pass() == 0
    assert steps_sent_to(mailer, "behind-the-queue@example.com") == [1]
    assert rows(services.engine, "SELECT status FROM action WHERE kind = 'unsubscribe'") == [{"status": "done"}]


def test_a_skip_that_reaches_the_worker_after_its_step_went_is_refused_with_the_reason(
        services, dispatcher, mailer, clock):
    result = enroll(services, email="too-late@example.com")
    dispatcher.run_pass()
    clock.advance(hours=24)
    assert dispatcher.run_pass() == 1  # step 2 went before the skip reached the worker

    action = act(services, "skip_step", {"contact_id": result.contact_id, "enrollment_id": result.enrollment_id,
                                         "step": 2})

    assert action["status"] == "failed"
    assert action["result"] == "step 2 was not skipped: it had already been sent"
    [event] = events_of(services, "skip_step_failed")
    assert event["detail"] == {"error": "step 2 was not skipped: it had already been sent"}
    assert steps_sent_to(mailer, "too-late@example.com") == [1, 2]


def test_a_second_skip_of_the_same_step_reports_it_already_skipped(services, dispatcher, clock):
    result = enroll(services, email="skipped-twice@example.com")
    dispatcher.run_pass()
    target = {"contact_id": result.contact_id, "enrollment_id": result.enrollment_id, "step": 3}

    first, second = act(services, "skip_step", target), act(services, "skip_step", target)

    assert (first["status"], first["result"]) == ("done", "skipped")
    assert (second["status"], second["result"]) == ("done", "already skipped")
    assert len(events_of(services, "step_skipped")) == 1


@pytest.mark.parametrize("stop, done", [("cancel_sequence", "cancelled 6 sends"), ("unsubscribe", "unsubscribed")])
def test_a_stop_that_finds_an_email_already_handed_to_resend_says_it_may_still_arrive(
        services, dispatcher, mailer, clock, stop, done):
    """DESIGN 4.3 replays such a batch as it was; the marketer told only "done" learned of it from the inbox."""
    result = enroll(services, email="in-flight@example.com")
    mailer.fail_next(TransientMailerError("Resend 503: try later", status=503))
    dispatcher.run_pass()  # step 1 may have got through: it is replayed as it was

    action = act(services, stop, {"contact_id": result.contact_id, "enrollment_id": result.enrollment_id})
    clock.advance(minutes=10)
    dispatcher.run_pass()

    assert (action["status"], action["result"]) == (
        "done", f"{done}; step 1 was already handed to Resend and may still arrive (a sent email cannot be recalled)")
    assert steps_sent_to(mailer, "in-flight@example.com") == [1]


def test_a_stop_says_nothing_of_an_email_resend_refused_outright_since_it_never_goes(
        services, dispatcher, mailer, clock):
    result = enroll(services, email="refused@example.com")
    mailer.fail_next(TransientMailerError("Resend 429 rate_limit_exceeded: slow down", retry_after=30, status=429))
    dispatcher.run_pass()

    action = act(services, "unsubscribe", {"contact_id": result.contact_id})
    clock.advance(minutes=10)
    dispatcher.run_pass()

    assert (action["status"], action["result"]) == ("done", "unsubscribed")
    assert steps_sent_to(mailer, "refused@example.com") == []


@pytest.mark.parametrize("error, still_going", [
    (TransientMailerError("Resend 503: try later", status=503), [1]),
    (TransientMailerError("Resend 429 rate_limit_exceeded: slow down", retry_after=30, status=429), [])])
def test_the_dashboards_stop_dialogs_read_the_steps_still_going_by_the_rule_the_result_uses(
        services, dispatcher, mailer, error, still_going):
    result = enroll(services)
    mailer.fail_next(error)
    dispatcher.run_pass()

    with db.read_transaction(services.engine) as conn:
        assert queries.steps_still_going(conn, result.enrollment_id) == still_going


def _raises_a_type_error(*_args, **_kwargs):
    raise TypeError("int() argument must be a string, not 'NoneType'")


def _runs_sql_the_database_refuses(conn, *_args, **_kwargs):
    conn.exec_driver_sql("UPDATE no_such_table SET x = 1")


# The second: SQLite raises a SQL error (SQLITE_ERROR) as an OperationalError, the class of its outages, and waiting
# for the database to answer again kept the action pending, and its traceback logged, for ever.
@pytest.mark.parametrize("breakage, error", [(_raises_a_type_error, "TypeError"),
                                             (_runs_sql_the_database_refuses, "ProgrammingError|OperationalError")])
def test_an_action_that_breaks_unexpectedly_fails_plainly_and_the_next_ones_still_run(services, monkeypatch,
                                                                                      breakage, error):
    result = enroll(services, email="next-in-line@example.com")
    monkeypatch.setattr("core.controls.skip_step", breakage)
    with db.write_transaction(services.engine) as conn:
        for kind, payload in (("skip_step", {"enrollment_id": result.enrollment_id, "step": 2}),
                              ("unsubscribe", {"contact_id": result.contact_id})):
            request_action(conn, kind, payload, requested_by="marketer@example.com", now=services.clock())

    assert ActionRunner(services, "worker-a").run_pending() == 2

    outcomes_by_kind = {r["kind"]: (r["status"], r["result"]) for r in rows(services.engine,
                                                                          "SELECT kind, status, result FROM action")}
    assert outcomes_by_kind["unsubscribe"] == ("done", "unsubscribed")
    status, reason = outcomes_by_kind["skip_step"]
    assert status == "failed" and re.fullmatch(rf"unexpected error \(({error})\); the worker's log has the details",
                                               reason), reason


# ---------------------------------------------------------------- Resend's signed events

def resend_event(kind: str, provider_id: str, **data) -> dict:
    return {"type": f"email.{kind}", "created_at": "2025-12-01T09:00:05.000Z",
            "data": {"email_id": provider_id, "to": ["someone@example.com"], "subject": "Hello", **data}}


@pytest.fixture
def sent_welcome(services, dispatcher):
    """An enrollment whose welcome email has gone: (result, step-1 send row)."""
    result = enroll(services, email="events@example.com")
    dispatcher.run_pass()
    return result, step_send(services, result.enrollment_id, 1)


@with_webhook_secret
def test_delivered_opened_and_clicked_events_are_recorded_on_the_send(services, client, sent_welcome, clock):
    result, send = sent_welcome
    for kind, extra in (("delivered", {}), ("opened", {}),
                        ("clicked", {"click": {"link": "https://example.com/book", "userAgent": "x"}})):
        answer = client.post("/webhook/resend", **signed(resend_event(kind, send["provider_id"], **extra)))
        assert answer.status_code == 200 and answer.json()["result"] == "recorded"

    row = step_send(services, result.enrollment_id, 1)
    assert row["delivered_at"] == row["opened_at"] == row["clicked_at"] == clock()
    assert [e["send_id"] for e in events_of(services, "email_clicked")] == [send["id"]]
    assert events_of(services, "email_clicked")[0]["detail"]["link"] == "https://example.com/book"
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM provider_event") == [{"n": 3}]


@with_webhook_secret
def test_a_repeated_svix_id_is_recorded_once(services, client, sent_welcome):
    _, send = sent_welcome
    request = signed(resend_event("opened", send["provider_id"]), msg_id="msg_repeated")

    first = client.post("/webhook/resend", **request)
    second = client.post("/webhook/resend", **request)

    assert first.json()["result"] == "recorded" and second.status_code == 200
    assert second.json()["result"] == "duplicate"
    assert len(events_of(services, "email_opened")) == 1


@with_webhook_secret
@pytest.mark.parametrize("tamper", ["other secret", "altered body", "no signature"])
def test_a_badly_signed_event_is_refused_with_400_and_not_recorded(services, client, sent_welcome, tamper):
    result, send = sent_welcome
    event = resend_event("bounced", send["provider_id"], bounce={"type": "Permanent", "message": "x"})
    other = "whsec_" + base64.b64encode(b"someone-elses-secret-0123456789ab").decode()
    request = signed(event, secret=other if tamper == "other secret" else WEBHOOK_SECRET)
    if tamper == "altered body":
        request["content"] = request["content"].replace(b"bounced", b"opened")
    if tamper == "no signature":
        del request["headers"]["svix-signature"]

    assert client.post("/webhook/resend", **request).status_code == 400
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM provider_event") == [{"n": 0}]
    assert contact_row(services, result.contact_id)["suppressed_at"] is None


@with_webhook_secret
def test_an_event_signed_more_than_five_minutes_ago_is_refused(services, client, sent_welcome):
    _, send = sent_welcome
    stale = signed(resend_event("delivered", send["provider_id"]), at=datetime.now(UTC) - timedelta(minutes=6))

    assert client.post("/webhook/resend", **stale).status_code == 400
    assert step_send(services, sent_welcome[0].enrollment_id, 1)["delivered_at"] is None


@with_webhook_secret
@pytest.mark.parametrize("kind, extra, reason", [
    ("bounced", {"bounce": {"type": "Permanent", "subType": "General", "message": "mailbox does not exist"}},
     "bounced"),
    ("complained", {}, "complained"),
    # Resend did not send it: the address is on the account's suppression list (docs/webhooks/emails/suppressed).
    ("suppressed", {"suppressed": {"type": "OnAccountSuppressionList", "message": "Resend has suppressed sending "
                                   "to this address because it is on the account-level suppression list."}},
     "bounced"),
])
def test_a_hard_bounce_or_complaint_suppresses_the_contact_and_cancels_the_rest(
        services, client, sent_welcome, dispatcher, mailer, clock, kind, extra, reason):
    result, send = sent_welcome

    answer = client.post("/webhook/resend", **signed(resend_event(kind, send["provider_id"], **extra)))

    assert answer.status_code == 200
    contact = contact_row(services, result.contact_id)
    assert contact["suppressed_at"] == clock() and contact["suppressed_reason"] == reason
    assert {s["status"] for s in sends_of(services, result.enrollment_id)[1:]} == {"cancelled"}
    assert enrollment_status(services, result.enrollment_id) == "bounced"
    assert events_of(services, f"suppressed_{reason}")[0]["detail"]["cancelled_sends"] == 6
    assert (step_send(services, result.enrollment_id, 1)["bounced_at"] is not None) is (kind != "complained")
    run_for(dispatcher, clock, hours=12 * 24, every_hours=12)
    assert steps_sent_to(mailer, "events@example.com") == [1]


@with_webhook_secret
def test_a_complaint_that_arrives_before_its_send_is_recorded_still_stops_the_sequence(
        services, client, mailer, clock):
    """The provider took the batch but its answer was lost; the complaint comes in while the batch
    waits for its replay. It is applied when the replay records the send."""
    result = enroll(services, email="early@example.com")
    lease = DispatchPolicy().lease
    with db.write_transaction(services.engine) as conn:
        batch = claims.claim_due(conn, "doomed-worker", clock(), lease, 100)
    [delivery] = mailer.send([services.composer.compose(m, at=batch.created_at) for m in batch.members], batch.idempotency_key)

    answer = client.post("/webhook/resend", **signed(resend_event("complained", delivery.provider_id)))
    assert answer.status_code == 200 and answer.json()["result"] == "unknown email"
    assert contact_row(services, result.contact_id)["suppressed_at"] is None  # nothing to match yet

    clock.advance(seconds=lease.total_seconds() + 1)
    rescuer = Dispatcher(services, "rescuer")
    assert rescuer.run_pass() == 1  # the replay records the send under the same provider id

    contact = contact_row(services, result.contact_id)
    assert contact["suppressed_reason"] == "complained"
    assert step_send(services, result.enrollment_id, 1)["complained_at"] is not None
    assert {s["status"] for s in sends_of(services, result.enrollment_id)[1:]} == {"cancelled"}
    run_for(rescuer, clock, hours=12 * 24, every_hours=12)
    assert steps_sent_to(mailer, "early@example.com") == [1]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("first", ["webhook", "worker"])
def test_a_bounce_that_arrives_while_its_send_is_being_recorded_still_stops_the_sequence(services, mailer, clock, first):
    """On PostgreSQL the webhook and the worker recording the send run side by side: whichever looks
    second must see what the first wrote, or neither applies the bounce. (SQLite has one writer.)"""
    result = enroll(services, email="racing@example.com")
    with db.write_transaction(services.engine) as conn:
        batch = claims.claim_due(conn, "worker-a", clock(), DispatchPolicy().lease, 100)
    [delivery] = mailer.send([services.composer.compose(m, at=batch.created_at) for m in batch.members],
                             batch.idempotency_key)
    bounce = resend_event("bounced", delivery.provider_id, bounce={"type": "Permanent", "message": "no such user"})
    with services.engine.connect() as worker, services.engine.connect() as webhook:
        txs = {"worker": worker.begin(), "webhook": webhook.begin()}
        outcomes.mark_sent(worker, {delivery.send_id: delivery.provider_id}, "worker-a", clock())
        looks = {"worker": lambda: provider_events.apply_early_events(worker, [delivery.provider_id], clock()),
                 "webhook": lambda: provider_events.record_provider_event(webhook, "msg_racing", bounce, clock())}
        second = "worker" if first == "webhook" else "webhook"
        errors: list[BaseException] = []

        def look_second() -> None:
            try:
                looks[second]()
                txs[second].commit()
            except BaseException as exc:  # reported below
                errors.append(exc)

        looks[first]()
        racer = threading.Thread(target=look_second)
        racer.start()
        racer.join(timeout=1)  # it looks while the first is still uncommitted, or waits for it
        txs[first].commit()
        racer.join(timeout=30)
    assert not errors and not racer.is_alive()

    assert contact_row(services, result.contact_id)["suppressed_reason"] == "bounced"
    assert step_send(services, result.enrollment_id, 1)["bounced_at"] is not None
    assert {s["status"] for s in sends_of(services, result.enrollment_id)[1:]} == {"cancelled"}


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_bounce_arriving_midway_through_recording_its_send_waits_for_it_instead_of_deadlocking(
        services, dispatcher, mailer, clock, monkeypatch):
    """The worker holds the next step's row once it has released it; a webhook that took the event's
    lock first and then reached for that row (stopping the person) would wait on the worker while the
    worker waited on the lock. The worker takes the lock before it writes any send row."""
    result = enroll(services, email="midway@example.com")
    with db.write_transaction(services.engine) as conn:
        batch = claims.claim_due(conn, "worker-a", clock(), DispatchPolicy().lease, 100)
    deliveries = mailer.send([services.composer.compose(m, at=batch.created_at) for m in batch.members],
                             batch.idempotency_key)
    bounce = resend_event("bounced", deliveries[0].provider_id, to=["midway@example.com"],
                          bounce={"type": "Permanent", "message": "no such user"})
    errors: list[BaseException] = []

    def webhook() -> None:
        try:
            with db.write_transaction(services.engine) as conn:
                provider_events.record_provider_event(conn, "msg_midway", bounce, clock())
        except BaseException as exc:  # reported below
            errors.append(exc)

    racer = threading.Thread(target=webhook)
    release = outcomes.release_next_steps

    def release_then_let_the_bounce_in(conn, finished, now):
        release(conn, finished, now)
        racer.start()
        racer.join(timeout=1)  # it is waiting by now, on the lock or on a row

    monkeypatch.setattr(outcomes, "release_next_steps", release_then_let_the_bounce_in)
    with db.write_transaction(services.engine) as conn:
        dispatcher._write_outcomes(conn, batch, deliveries, clock())
    racer.join(timeout=30)

    assert not errors and not racer.is_alive()
    assert contact_row(services, result.contact_id)["suppressed_reason"] == "bounced"
    assert [s["status"] for s in sends_of(services, result.enrollment_id)] == ["sent"] + ["cancelled"] * 6


@with_webhook_secret
@pytest.mark.parametrize("kind, extra, stops", [
    ("complained", {}, True),
    ("bounced", {"bounce": {"type": "Permanent", "message": "no such user"}}, True),
    ("bounced", {"bounce": {"type": "Transient", "message": "mailbox full"}}, False),
], ids=["complaint", "hard-bounce", "soft-bounce"])
def test_a_bounce_or_complaint_about_an_email_nurture_never_recorded_stops_the_person_it_names(
        services, client, dispatcher, mailer, clock, kind, extra, stops):
    """Resend reports every email of the account: one the original system sent before the switch, or
    one of a batch given up as "outcome unknown", has an id no send will ever hold."""
    result = enroll(services, email="named@example.com")
    bystander = enroll(services, email="bystander@example.com")
    dispatcher.run_pass()
    event = resend_event(kind, "sent-by-the-original-system", to=["Named Person <Named@Example.com>"], **extra)

    answer = client.post("/webhook/resend", **signed(event))

    assert answer.status_code == 200 and answer.json()["result"] == "unknown email"
    assert (contact_row(services, result.contact_id)["suppressed_reason"] is not None) is stops
    assert contact_row(services, bystander.contact_id)["suppressed_at"] is None
    run_for(dispatcher, clock, hours=12 * 24, every_hours=12)
    assert steps_sent_to(mailer, "named@example.com") == ([1] if stops else list(range(1, 8)))


@with_webhook_secret
@pytest.mark.parametrize("recipients", [
    {"to": ["Named Person <named@example.com>", "bystander@example.com"]},
    {"to": "Named Person <named@example.com>, bystander@example.com"},
    {"to": ["named@example.com"], "cc": ["bystander@example.com"]},
], ids=["two-in-to", "two-in-one-string", "one-in-cc"])
def test_a_bounce_about_an_unrecorded_email_to_several_people_stops_none_of_them(
        services, client, dispatcher, clock, recipients):
    """The event does not say which of them bounced or complained: stopping them all would stop people
    whose address works (an email of another system on the account, to a team)."""
    named, bystander = enroll(services, email="named@example.com"), enroll(services, email="bystander@example.com")
    event = resend_event("bounced", "sent-by-another-system", bounce={"type": "Permanent", "message": "no such user"})
    event["data"].update(recipients)

    assert client.post("/webhook/resend", **signed(event)).status_code == 200

    assert contact_row(services, named.contact_id)["suppressed_at"] is None
    assert contact_row(services, bystander.contact_id)["suppressed_at"] is None


@with_webhook_secret
def test_a_bounce_about_an_unrecorded_email_finds_its_person_however_the_address_is_written(services, client):
    person = enroll(services, email="zoë@bücher.example")  # stored as intake normalises it
    # Its domain in the ASCII form mail servers use, its ë as e and a combining diaeresis, a display name.
    event = resend_event("complained", "sent-by-the-original-system", to=['"Zoë, Bücher" <ZOE\u0308@xn--bcher-kva.example>'])

    assert client.post("/webhook/resend", **signed(event)).status_code == 200

    assert contact_row(services, person.contact_id)["suppressed_reason"] == "complained"


@with_webhook_secret
# Resend's bounce guide names the soft type "Transient"; its webhook reference and its SDK's EmailBounce
# give "Temporary" as the example (resend.com/docs/webhooks/emails/bounced).
@pytest.mark.parametrize("soft", ["Transient", "Temporary"])
def test_a_soft_bounce_is_recorded_but_does_not_suppress(services, client, sent_welcome, soft):
    result, send = sent_welcome
    event = resend_event("bounced", send["provider_id"], bounce={"type": soft, "message": "mailbox full"})

    assert client.post("/webhook/resend", **signed(event)).status_code == 200
    assert contact_row(services, result.contact_id)["suppressed_at"] is None
    assert step_send(services, result.enrollment_id, 1)["bounced_at"] is None  # the email may still arrive
    assert events_of(services, "email_bounced")[0]["detail"]["bounce"]["type"] == soft
    assert step_send(services, result.enrollment_id, 2)["status"] == "scheduled"

    assert client.post("/webhook/resend", **signed(resend_event("delivered", send["provider_id"]))).status_code == 200
    assert step_send(services, result.enrollment_id, 1)["delivered_at"] is not None


def at_time(event: dict, instant: datetime) -> dict:
    return {**event, "created_at": instant.isoformat().replace("+00:00", "Z")}


@with_webhook_secret
def test_events_keep_the_time_they_happened_when_they_arrive_late_and_out_of_order(
        services, client, sent_welcome, clock):
    result, send = sent_welcome
    sent_at = clock()
    clock.advance(minutes=30)  # Resend retried its deliveries after an outage on our side
    opened = at_time(resend_event("opened", send["provider_id"]), sent_at + timedelta(minutes=10))
    assert client.post("/webhook/resend", **signed(opened)).status_code == 200
    clock.advance(minutes=30)
    delivered = at_time(resend_event("delivered", send["provider_id"]), sent_at + timedelta(seconds=5))
    assert client.post("/webhook/resend", **signed(delivered)).status_code == 200
    future = at_time(resend_event("clicked", send["provider_id"], click={"link": "https://example.com/book"}),
                     clock() + timedelta(days=1))  # a clock ahead of ours is capped at the arrival
    assert client.post("/webhook/resend", **signed(future)).status_code == 200

    row = step_send(services, result.enrollment_id, 1)
    assert row["delivered_at"] == sent_at + timedelta(seconds=5)
    assert row["opened_at"] == sent_at + timedelta(minutes=10)
    assert row["clicked_at"] == clock()


@with_webhook_secret
def test_an_event_dated_before_its_email_was_sent_is_recorded_at_the_sending(services, client, sent_welcome, clock):
    # Capped only above, a year-2000 created_at recorded the email as delivered, then opened, before it was sent.
    result, send = sent_welcome
    sent_at = step_send(services, result.enrollment_id, 1)["sent_at"]
    clock.advance(minutes=5)
    for kind in ("delivered", "opened"):
        event = at_time(resend_event(kind, send["provider_id"]), datetime(2000, 1, 1, tzinfo=UTC))
        assert client.post("/webhook/resend", **signed(event)).status_code == 200

    row = step_send(services, result.enrollment_id, 1)
    assert row["delivered_at"] == sent_at and row["opened_at"] == sent_at


@with_webhook_secret
@pytest.mark.parametrize("first", ["bounced", "delivered"])
def test_a_hard_bounced_email_never_counts_as_delivered_whichever_event_arrives_first(
        services, client, sent_welcome, first):
    result, send = sent_welcome
    bounce = resend_event("bounced", send["provider_id"], bounce={"type": "Permanent", "message": "no such user"})
    delivered = resend_event("delivered", send["provider_id"])
    for event in (bounce, delivered) if first == "bounced" else (delivered, bounce):
        assert client.post("/webhook/resend", **signed(event)).status_code == 200

    row = step_send(services, result.enrollment_id, 1)
    assert row["bounced_at"] is not None and row["delivered_at"] is None
    with services.engine.connect() as conn:
        assert ("delivered", 1) not in tally.stages_by_step(conn)


@with_webhook_secret
def test_stored_events_keep_what_applies_to_the_send_and_no_address(services, client, sent_welcome):
    _, send = sent_welcome
    bounce = resend_event("bounced", send["provider_id"], bounce={
        "type": "Permanent", "message": "550 5.1.1 <Events@Example.com>: Recipient address rejected"})
    click = resend_event("clicked", send["provider_id"], click={
        "link": "https://example.com/book", "ipAddress": "203.0.113.9", "userAgent": "Mozilla/5.0"})
    for event in (click, bounce):
        assert client.post("/webhook/resend", **signed(event)).status_code == 200

    stored = [json.loads(r["payload"]) for r in rows(services.engine, "SELECT payload FROM provider_event")]
    assert {e["type"] for e in stored} == {"email.clicked", "email.bounced"}
    text = json.dumps(stored) + json.dumps([e["detail"] for e in events_of(services, "email_bounced")])
    for personal in ("someone@example.com", "Events@Example.com", "203.0.113.9", "Mozilla", "Hello"):
        assert personal not in text
    assert "550 5.1.1 <[address]>: Recipient address rejected" in text
    assert all(e["data"]["email_id"] == send["provider_id"] for e in stored)


def every_stored_text(services) -> str:
    """Every row of every table, as text: what an erasure must leave no trace of the person in."""
    with services.engine.connect() as conn:
        return "\n".join(str(list(row)) for table in Send.metadata.sorted_tables
                         for row in conn.execute(sa.select(table)))


@with_webhook_secret
def test_an_erasure_leaves_the_address_nowhere_and_drops_the_pending_alert(services, client, dispatcher, mailer):
    result = enroll(services, email="events@example.com", red_systems=2)
    dispatcher.run_pass()
    send = step_send(services, result.enrollment_id, 1)
    [welcome] = mailer.sent_to("events@example.com")
    alert = {"kind": "critical_lead", "enrollment_id": result.enrollment_id}
    with services.engine.connect() as conn:
        assert build_message(conn, alert, "http://localhost:8501") is not None
    old_style = {"type": "email.delivered", "created_at": "2025-12-01T09:00:05Z",  # stored whole before
                 "data": {"email_id": send["provider_id"], "to": ["events@example.com"], "subject": "Hi Events"}}
    with db.write_transaction(services.engine) as conn:
        conn.execute(sa.text("INSERT INTO provider_event (svix_id, type, provider_id, received_at, payload) "
                             "VALUES ('msg_old', 'email.delivered', :p, :at, :body)"),
                     {"p": send["provider_id"], "at": services.clock(), "body": json.dumps(old_style)})
    bounce = resend_event("bounced", send["provider_id"], bounce={"type": "Transient",
                                                                  "message": "mailbox of events@example.com full"})
    assert client.post("/webhook/resend", **signed(bounce)).status_code == 200
    assert client.post(unsubscribe_path(welcome), headers={"user-agent": "Mail (events@example.com)"},
                       data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert "events@example.com" in every_stored_text(services).lower()

    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "events@example.com", actor="cli", now=services.clock())
        pending_alert = build_message(conn, alert, "http://localhost:8501")

    assert "events@example.com" not in every_stored_text(services).lower()
    assert "Mail (" not in every_stored_text(services)
    assert pending_alert is None


def test_without_a_webhook_secret_the_resend_endpoint_answers_404(services, client, sent_welcome):
    _, send = sent_welcome
    answer = client.post("/webhook/resend", **signed(resend_event("delivered", send["provider_id"])))
    assert answer.status_code == 404
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM provider_event") == [{"n": 0}]


@with_webhook_secret
def test_a_signed_event_of_an_unexpected_shape_is_answered_without_a_server_error(services, client, sent_welcome):
    # Signed, so from Resend: a change in their payload must not turn into 500s and endless retries.
    result, send = sent_welcome
    odd = [
        (resend_event("failed", send["provider_id"], failed="smtp said no"), 200),  # a string, not {"reason": …}
        ({"type": "email.delivered", "data": ["not", "an", "object"]}, 200),
        ({"data": {"email_id": send["provider_id"]}}, 200),  # no type at all
        (["a", "list"], 400),
        # Text no column can hold (half a surrogate pair; NUL, which PostgreSQL refuses): stored without it.
        (resend_event("bounced", send["provider_id"], bounce={"type": "Transient", "mess\udfffage": "full\x00 box"}),
         200),
        ({"type": "email.clicked\ud800", "data": {"email_id": send["provider_id"], "click": {"link": "\x00x\udc00"}}},
         200),
        # A time that is still year 0 in UTC (past what datetime can hold): taken as its arrival.
        ({**resend_event("delivered", send["provider_id"]), "created_at": "0001-01-01T00:30:00+01:00"}, 200),
    ]
    for event, status in odd:
        answer = client.post("/webhook/resend", **signed(event))
        assert answer.status_code == status, (event, answer.text)

    row = step_send(services, result.enrollment_id, 1)
    assert row["last_error"] == "provider failed: provider could not deliver"
    assert row["bounced_at"] is None and row["clicked_at"] is not None  # a soft bounce is audited only
    assert events_of(services, "email_bounced")[0]["detail"]["bounce"] == {"type": "Transient", "message": "full box"}
    assert events_of(services, "email_clicked")[0]["detail"]["link"] == "x"
    assert contact_row(services, result.contact_id)["suppressed_at"] is None
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM provider_event") == [{"n": len(odd) - 1}]


@with_webhook_secret
def test_an_email_resend_accepted_then_failed_reads_so_on_the_timeline(services, client, sent_welcome, clock):
    # Recorded sent when Resend accepted it; its email.failed event must not leave it looking delivered.
    result, send = sent_welcome
    event = resend_event("failed", send["provider_id"], failed={"reason": "reached_daily_quota"})

    assert client.post("/webhook/resend", **signed(event)).status_code == 200

    with db.read_transaction(services.engine) as conn:
        detail = queries.contact_detail(conn, result.contact_id, clock())
    assert detail["steps"][0].headline.startswith(
        "accepted by Resend, which then reported it failed: reached_daily_quota")
    assert detail["steps"][1].headline.startswith("due ")  # the other steps carry on


@with_webhook_secret
def test_an_event_signed_under_the_webhook_header_names_is_recorded(services, client, sent_welcome):
    result, send = sent_welcome
    request = signed(resend_event("delivered", send["provider_id"]), msg_id="msg_other_names", header_family="webhook")

    answer = client.post("/webhook/resend", **request)

    assert answer.status_code == 200 and answer.json()["result"] == "recorded"
    assert step_send(services, result.enrollment_id, 1)["delivered_at"] is not None
    assert rows(services.engine, "SELECT svix_id FROM provider_event") == [{"svix_id": "msg_other_names"}]


@with_webhook_secret
def test_a_signed_body_that_is_not_standard_json_is_refused_as_such_not_as_a_bad_signature(
        services, client, sent_welcome, caplog):
    bodies = ['{"type": "email.opened", "x": ' + "[" * 30_000 + "]" * 30_000 + "}",
              '{"type": "email.opened", "score": NaN}', '{"type": ']
    for raw in bodies:
        answer = client.post("/webhook/resend", **signed(None, raw=raw))
        assert (answer.status_code, answer.json()["message"]) == (400, "body is not valid JSON")

    assert not [r for r in caplog.records if r.getMessage().startswith("rejected a Resend webhook")]
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM provider_event") == [{"n": 0}]


@with_webhook_secret
def test_a_signed_event_nested_hundreds_deep_is_refused_rather_than_failing_with_a_500(services, client, sent_welcome):
    result, send = sent_welcome
    # Within what the JSON decoder takes, but deeper than the event's redaction can walk without a RecursionError.
    raw = json.dumps(resend_event("bounced", send["provider_id"], bounce={"type": "Permanent"}))
    raw = raw.replace('"Permanent"}', '"Permanent", "x": ' + "[" * 900 + "]" * 900 + "}")

    answer = client.post("/webhook/resend", **signed(None, raw=raw))

    assert (answer.status_code, answer.json()["message"]) == (400, "body is not valid JSON")
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM provider_event") == [{"n": 0}]
    assert contact_row(services, result.contact_id)["suppressed_at"] is None


@with_webhook_secret
def test_a_svix_id_longer_than_its_column_is_refused_rather_than_cut_short(services, client, sent_welcome):
    _, send = sent_welcome
    answer = client.post("/webhook/resend", **signed(resend_event("opened", send["provider_id"]),
                                                     msg_id="msg_" + "x" * 120))
    assert answer.status_code == 400
    assert rows(services.engine, "SELECT COUNT(*) AS n FROM provider_event") == [{"n": 0}]


@with_webhook_secret
def test_overview_counts_standing_failures_and_only_real_bounces(services, client, dispatcher, mailer, clock):
    replaced = enroll(services, email="b@example.com")
    mailer.fail_next(PermanentMailerError("Resend 422 validation_error: refused for now", status=422))
    dispatcher.run_pass()
    complained, _ = (enroll(services, email=f"{name}@example.com") for name in ("bob", "cat"))
    act(services, "resend_step", {"enrollment_id": replaced.enrollment_id, "step": 1})
    dispatcher.run_pass()
    bob_send = step_send(services, complained.enrollment_id, 1)
    assert client.post("/webhook/resend", **signed(resend_event("complained", bob_send["provider_id"]))).status_code == 200
    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "cat@example.com", actor="cli", now=clock())

    with services.engine.connect() as conn:
        figures = {k["key"]: (k["value"], k["delta"]) for k in kpis(conn, clock())}
        raw_failed = conn.scalar(sa.select(sa.func.count()).where(send_t.c.status == "failed"))
    assert raw_failed == 1, "b's first try failed"
    assert figures["failed"] == (0, 0), "the resend replaced it, as on the Sends page"
    assert figures["bounced"] == (1, 1), "bob complained; cat's erasure is no bounce"


def test_failures_of_stopped_people_leave_the_failed_list_and_a_request_names_its_contact(
        services, dispatcher, mailer):
    people = {name: enroll(services, email=f"{name}@example.com") for name in ("kept", "left", "ended")}
    mailer.fail_next(PermanentMailerError("Resend 422 validation_error: refused for now", status=422))
    dispatcher.run_pass()
    act(services, "cancel_sequence", {"enrollment_id": people["ended"].enrollment_id})
    with db.write_transaction(services.engine) as conn:
        unsubscribe_contact(conn, people["left"].contact_id, actor="test", now=services.clock())

    with services.engine.connect() as conn:
        listed = queue_list(conn, "failed", now=services.clock())
        assert [r["email"] for r in listed] == ["kept@example.com"]
        assert queue_counts(conn, services.clock())["failed"] == 1
    retry = act(services, "retry_send", {"send_id": step_send(services, people["left"].enrollment_id, 1)["id"],
                                         "contact_id": people["left"].contact_id})
    with services.engine.connect() as conn:
        [request] = actions_by_ids(conn, [retry["id"]])
    assert request["status"] == "failed" and request["email"] == "left@example.com"


@pytest.mark.parametrize("backend", ["postgres"])  # SQLite's writers queue: no overlap to race
def test_a_claim_that_puts_a_send_back_while_its_sibling_is_recorded_never_strands_it(services, clock):
    result = enroll(services)
    lease, finished = timedelta(minutes=2), [outcomes.Finished(result.enrollment_id, "Christmas 2025", "production")]
    with db.write_transaction(services.engine) as conn:  # step 1 refused; step 2 released, then claimed
        first = claims.claim_due(conn, "worker-a", clock(), lease, 100)
        outcomes.mark_failed(conn, {first.members[0].id: "refused for now"}, "worker-a", clock())
        outcomes.release_next_steps(conn, finished, clock())
    clock.advance(hours=25)
    with db.write_transaction(services.engine) as conn:
        in_flight = claims.claim_due(conn, "worker-b", clock(), lease, 100)
    assert [m.step for m in in_flight.members] == [2]
    act(services, "retry_send", {"send_id": first.members[0].id})  # step 1 is queued again, ready

    claiming = services.engine.connect()
    claiming_tx = claiming.begin()
    assert claims.claim_due(claiming, "worker-c", clock(), lease, 100) is None  # put back: step 2 is in flight

    def record_step_2():  # another worker records step 2 meanwhile; it must wait for the claim, then release
        with db.write_transaction(services.engine) as conn:
            outcomes.mark_sent(conn, {in_flight.members[0].id: "re_2"}, "worker-b", clock())
            outcomes.release_next_steps(conn, finished, clock())

    recorder = threading.Thread(target=record_step_2)
    recorder.start()
    recorder.join(timeout=1)
    assert recorder.is_alive(), "the recorder waits for the claim's lock on step 2"
    claiming_tx.commit()
    claiming.close()
    recorder.join(timeout=30)

    retried = step_send(services, result.enrollment_id, 1)
    assert (retried["status"], retried["ready"]) == ("scheduled", True), "released, not stranded"


def test_a_test_email_asked_for_while_no_worker_ran_is_not_sent_once_it_is_over_an_hour_old(services, mailer, clock):
    # It reached the marketer whenever a worker next started, days later perhaps, unexpected and unexplained.
    with db.write_transaction(services.engine) as conn:
        stale = request_action(conn, "send_test", {"step": 1, "segment": "URGENT", "to": "marketer@example.com",
                                                   "request_id": "stale"}, requested_by="marketer@example.com",
                               now=clock())
    clock.advance(minutes=59)
    fresh = act(services, "send_test", {"step": 2, "segment": "URGENT", "to": "marketer@example.com",
                                        "request_id": "fresh"})
    assert fresh["status"] == "done"  # the newer one, and...
    [row] = rows(services.engine, "SELECT status FROM action WHERE id = :i", i=stale)
    assert row["status"] == "done"  # ...one 59 minutes old still goes
    assert [e.tags["step"] for e in mailer.sent_to("marketer@example.com")] == ["1", "2"]

    with db.write_transaction(services.engine) as conn:
        late = request_action(conn, "send_test", {"step": 3, "segment": "URGENT", "to": "marketer@example.com",
                                                  "request_id": "late"}, requested_by="marketer@example.com",
                              now=clock())
    clock.advance(minutes=61)
    ActionRunner(services, "worker-a").run_pending()

    [row] = rows(services.engine, "SELECT status, result FROM action WHERE id = :i", i=late)
    assert row["status"] == "failed" and "asked for 61 minutes before a worker could carry it out" in row["result"]
    assert len(mailer.sent_to("marketer@example.com")) == 2
    assert [e["detail"] for e in events_of(services, "send_test_failed")] != []
