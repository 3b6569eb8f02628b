"""Every dashboard action asks first, then writes the row the worker carries out, naming who asked."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import actions as actions_module, db, erasure, switches
from core.actions import ActionRunner
from core.intake import enroll_now
from core.tables import action_t
from core.timeutil import utcnow
from tests.dashboard.conftest import back_off, page_text
from tests.support import rows, signup_request


@pytest.fixture
def backend() -> str:
    """UI behaviour does not depend on the database: SQLite keeps this suite fast."""
    return "sqlite"


def confirm(at, key: str):
    at.button(key=key).click().run()
    assert "confirm_yes" in [b.key for b in at.button], "a confirmation dialog is open"
    at.button(key="confirm_yes").click().run()
    assert not at.exception, at.exception
    return at


def actions(engine) -> list[dict]:
    found = rows(engine, "SELECT kind, payload, requested_by, status FROM action ORDER BY requested_at")
    return [{**a, "payload": json.loads(a["payload"])} for a in found]


def requested_events(engine) -> list[dict]:
    return rows(engine, "SELECT kind, actor, contact_id FROM event WHERE kind LIKE 'requested_%'")


@pytest.fixture
def timeline_of(seeded, open_app):
    def open_(email: str, **kwargs):
        at = open_app("pages/signups.py", **kwargs)
        at.query_params["contact"] = seeded["contacts"][email].contact_id
        return at.run()

    return open_


def test_resending_a_step_queues_an_action_for_the_worker_in_the_name_of_who_asked(seeded, timeline_of):
    engine, casey = seeded["services"].engine, seeded["contacts"]["casey@example.com"]
    confirm(timeline_of("casey@example.com"), "resend_step")
    [action] = actions(engine)
    assert action["kind"] == "resend_step" and action["requested_by"] == "dashboard"
    assert action["payload"] == {"enrollment_id": casey.enrollment_id, "step": 1, "contact_id": casey.contact_id,
                                 "generation": 1}, "the generation on screen, so a stale second click sends nothing"
    assert requested_events(engine) == [{"kind": "requested_resend_step", "actor": "dashboard",
                                         "contact_id": casey.contact_id}]


def test_the_worker_carries_out_what_the_dashboard_asked(seeded, timeline_of):
    services = seeded["services"]
    at = confirm(timeline_of("casey@example.com"), "resend_step")
    ActionRunner(services, "test-worker").run_pending()
    generations = rows(services.engine, "SELECT generation FROM send WHERE contact_id = :c AND step = 1",
                       c=seeded["contacts"]["casey@example.com"].contact_id)
    assert sorted(g["generation"] for g in generations) == [1, 2]
    at.run()
    assert "queued send" in page_text(at), "the request list shows the worker's result"
    [requests] = [e for e in at.expander if e.label.startswith("Your recent requests")]
    assert requests.proto.expanded, "a result just in is shown, not folded away behind a click"
    with db.write_transaction(services.engine) as conn:  # asked ten minutes ago: the list folds away again
        conn.execute(action_t.update().values(requested_at=utcnow() - timedelta(minutes=10)))
    at.run()
    [requests] = [e for e in at.expander if e.label.startswith("Your recent requests")]
    assert not requests.proto.expanded


def test_cancelling_the_confirmation_writes_nothing(seeded, timeline_of):
    at = timeline_of("casey@example.com")
    at.button(key="cancel_sequence").click().run()
    at.button(key="confirm_no").click().run()
    assert actions(seeded["services"].engine) == []
    assert "confirm_yes" not in [b.key for b in at.button], "the dialog is closed"


def test_the_cancel_dialog_says_a_cancelled_sequence_cannot_be_resumed(seeded, timeline_of):
    at = timeline_of("uma@example.com")
    at.button(key="cancel_sequence").click().run()
    text = page_text(at)
    assert "This cannot be undone from the dashboard" in text and "cannot be resumed" in text


def test_resending_a_step_whose_outcome_is_unknown_warns_it_may_arrive_twice_as_retry_does(seeded, timeline_of):
    at = timeline_of("broken@example.com")
    at.button(key="resend_step").click().run()
    assert "may already have been delivered" not in page_text(at), "a 422 certainly sent nothing"
    # Nor "again": the refused step never reached them.
    assert "now, as a new email? Its last try was refused, so they have not had it." in page_text(at)
    assert "again, as a new email" not in page_text(at)

    with db.write_transaction(seeded["services"].engine) as conn:
        conn.execute(sa.text("UPDATE send SET last_error = :e WHERE contact_id = :c AND step = 1"),
                     {"e": "gave up after 3 attempts over 6.0 h: Resend 503 application_error: down",
                      "c": seeded["contacts"]["broken@example.com"].contact_id})
    at = timeline_of("broken@example.com")
    at.button(key="resend_step").click().run()
    assert ("**It may already have been delivered** (outcome unknown): check Resend's log first, or the person may "
            "get it twice.") in page_text(at)
    assert "again, as a new email?" in page_text(at)


@pytest.mark.parametrize("key", ["cancel_sequence", "unsubscribe"])
def test_a_stop_dialog_says_an_email_already_being_sent_may_still_arrive(seeded, timeline_of, key):
    uma = seeded["contacts"]["uma@example.com"]
    at = timeline_of("uma@example.com")
    at.button(key=key).click().run()
    assert "already handed to Resend" not in page_text(at)

    back_off(seeded["services"].engine, uma.enrollment_id, 2, "Resend 503: try later")
    at = timeline_of("uma@example.com")
    at.button(key=key).click().run()
    assert "Step 2 was already handed to Resend and may still arrive (a sent email cannot be recalled)." in page_text(at)


@pytest.mark.parametrize("key, kind", [("skip_step", "skip_step"), ("cancel_sequence", "cancel_sequence"),
                                       ("unsubscribe", "unsubscribe")])
def test_each_timeline_action_writes_its_own_kind(seeded, timeline_of, key, kind):
    at = timeline_of("uma@example.com")
    if key == "skip_step":
        at.selectbox(key="action_step").set_value(2).run()
    confirm(at, key)
    [action] = actions(seeded["services"].engine)
    uma = seeded["contacts"]["uma@example.com"]
    assert action["kind"] == kind and action["payload"]["contact_id"] == uma.contact_id
    if kind != "unsubscribe":
        assert action["payload"]["enrollment_id"] == uma.enrollment_id
    if kind == "skip_step":
        assert action["payload"]["step"] == 2


def test_a_step_already_sent_cannot_be_skipped_and_one_still_to_come_cannot_be_resent(timeline_of):
    at = timeline_of("casey@example.com")
    assert at.button(key="skip_step").disabled and not at.button(key="resend_step").disabled
    at.selectbox(key="action_step").set_value(2).run()
    assert at.button(key="resend_step").disabled and not at.button(key="skip_step").disabled


def test_failed_sends_can_be_retried_one_by_one_or_in_bulk(seeded, open_app):
    engine = seeded["services"].engine
    at = open_app("pages/sends.py")
    at.session_state["failed_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    confirm(at.run(), "retry_selected")
    confirm(at, "retry_page")
    found = actions(engine)
    assert [a["kind"] for a in found] == ["retry_send", "retry_send"]
    [failed_id] = [r["id"] for r in rows(engine, "SELECT id FROM send WHERE status = 'failed'")]
    assert {a["payload"]["send_id"] for a in found} == {failed_id}


def test_the_retry_question_speaks_of_one_email_or_of_each(seeded, open_app):
    at = open_app("pages/sends.py")
    assert "It goes next, after any earlier step" in ask_then_confirm(at, "retry_page")
    uma = seeded["contacts"]["uma@example.com"]
    with db.write_transaction(seeded["services"].engine) as conn:
        conn.execute(sa.text("UPDATE send SET status = 'failed', finished_at = :now, last_error = 'refused' "
                             "WHERE enrollment_id = :e AND step = 1"), {"now": utcnow(), "e": uma.enrollment_id})
    at = open_app("pages/sends.py")
    assert "Each goes next, after any earlier step" in ask_then_confirm(at, "retry_page")


def test_with_no_worker_running_a_sequence_action_says_it_waits_for_one_not_a_few_seconds(seeded, timeline_of):
    at = timeline_of("casey@example.com")
    at.button(key="cancel_sequence").click().run()
    assert "carried out by the worker within a few seconds" in page_text(at) and "No worker is running" not in page_text(at)
    with db.write_transaction(seeded["services"].engine) as conn:
        conn.execute(sa.text("DELETE FROM worker"))
    at = timeline_of("casey@example.com")
    at.button(key="cancel_sequence").click().run()
    asked = page_text(at)
    assert "No worker is running: this is recorded now and carried out once the worker runs again." in asked
    assert "within a few seconds" not in asked


def test_a_switch_flips_at_once_so_its_question_never_waits_for_a_worker(seeded, open_app):
    with db.write_transaction(seeded["services"].engine) as conn:
        conn.execute(sa.text("DELETE FROM worker"))
    at = open_app("pages/settings.py")
    at.button(key="pause").click().run()
    asked = page_text(at)
    assert "Pause the campaign?" in asked and "confirm_yes" in [b.key for b in at.button], "the dialog is open"
    assert "No worker is running" not in asked and "carried out by the worker" not in asked
    assert "It takes effect at once." in asked


def test_a_retry_in_the_request_list_names_the_step_it_sends_again(seeded, open_app):
    at = open_app("pages/sends.py")
    ask_then_confirm(at, "retry_page")
    ActionRunner(seeded["services"], "test-worker").run_pending()
    at.run()
    assert "retry send · broken@example.com · step 1 · asked" in page_text(at).replace("\\", "").replace("**", "")


def test_a_retry_warns_only_when_a_failure_may_have_been_delivered_anyway(seeded, open_app):
    engine = seeded["services"].engine
    at = open_app("pages/sends.py")
    assert "may already have been delivered" not in ask_then_confirm(at, "retry_page")  # an invalid address: nothing went

    uma = seeded["contacts"]["uma@example.com"]
    with db.write_transaction(engine) as conn:  # step 1 given up after timeouts: it may well have arrived
        conn.execute(sa.text("UPDATE send SET status = 'failed', last_error = :why WHERE enrollment_id = :e AND step = 1"),
                     {"why": "gave up after 9 attempts over 6.0 h: Resend timed out", "e": uma.enrollment_id})
    at = open_app("pages/sends.py")
    asked = ask_then_confirm(at, "retry_page").replace("**", "")
    assert "1 of them may already have been delivered (outcome unknown): check Resend's log first" in asked


def pause_sending(engine) -> None:
    with db.write_transaction(engine) as conn:
        switches.set_paused(conn, True, actor="test", now=utcnow(), reason="checking step 3 copy")


def ask_then_confirm(at, key: str) -> str:
    """Open the confirmation for `key`, answer yes, and return what the dialog said."""
    at.button(key=key).click().run()
    asked = page_text(at)
    at.button(key="confirm_yes").click().run()
    assert not at.exception, at.exception
    return asked


@pytest.mark.parametrize("page_key", ["retry_page", "resend_step"])
def test_while_paused_a_retry_or_resend_says_it_waits_for_the_resume_before_and_after(seeded, open_app,
                                                                                   timeline_of, page_key):
    services = seeded["services"]
    pause_sending(services.engine)
    at = open_app("pages/sends.py") if page_key == "retry_page" else timeline_of("casey@example.com")
    asked = ask_then_confirm(at, page_key)
    assert "Sending is paused: it goes when you resume." in asked and "at once" not in asked
    ActionRunner(services, "test-worker").run_pending()
    at.run()
    assert "; sending is paused, so it goes when you resume" in page_text(at)


def test_when_sending_runs_a_retry_neither_asks_nor_reports_about_a_pause(seeded, open_app):
    at = open_app("pages/sends.py")
    assert "Sending is paused" not in ask_then_confirm(at, "retry_page")
    ActionRunner(seeded["services"], "test-worker").run_pending()
    at.run()
    assert "queued again" in page_text(at) and "sending is paused" not in page_text(at)


def test_send_me_this_one_asks_the_worker_to_send_a_test_email(seeded, open_app):
    at = open_app("pages/templates.py")
    at.segmented_control(key="tpl_segment").set_value("URGENT").run()
    at.selectbox(key="tpl_step").set_value(4).run()
    at.text_input(key="tpl_to").input("Me@Example.com").run()
    at.button(key="tpl_send").click().run()
    [action] = actions(seeded["services"].engine)
    assert action["kind"] == "send_test"
    assert {k: action["payload"][k] for k in ("to", "step", "segment")} == {
        "to": "me@example.com", "step": 4, "segment": "URGENT"}


def test_a_test_send_goes_for_the_step_and_segment_chosen_as_send_was_clicked(seeded, open_app):
    # A callback runs before the page and sees the variables of the run that drew its button: a step
    # chosen just before the click (its rerun overtaken by the click's) sent the step shown before.
    at = open_app("pages/templates.py")
    at.text_input(key="tpl_to").input("me@example.com").run()
    at.segmented_control(key="tpl_segment").set_value("OPTIMIZE")
    at.selectbox(key="tpl_step").set_value(6)
    at.button(key="tpl_send").click().run()
    [action] = actions(seeded["services"].engine)
    assert (action["payload"]["step"], action["payload"]["segment"]) == (6, "OPTIMIZE")
    assert "Test of step 6 (OPTIMIZE)" in "\n".join(t.value for t in at.toast)


def test_the_test_send_confirmation_shows_the_address_as_typed_not_as_markdown(seeded, open_app):
    at = open_app("pages/templates.py")
    at.text_input(key="tpl_to").input("a*b*c@example.com").run()  # asterisks are valid in an address
    at.button(key="tpl_send").click().run()
    [toast] = at.toast
    assert r"a\*b\*c@example" in toast.value, "escaped: shown as typed, never as 'a<em>b</em>c'"


def test_a_test_send_to_yourself_is_the_one_action_without_a_dialog_and_the_readme_says_so(seeded, open_app):
    at = open_app("pages/templates.py")
    at.text_input(key="tpl_to").input("me@example.com").run()
    at.button(key="tpl_send").click().run()
    assert "confirm_yes" not in [b.key for b in at.button]
    assert [a["kind"] for a in actions(seeded["services"].engine)] == ["send_test"]
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert "Every action asks for confirmation (all but a Templates test send to yourself" in readme


def test_a_test_send_to_yourself_says_when_it_goes(seeded, open_app):
    def send_me() -> str:
        at = open_app("pages/templates.py")
        at.text_input(key="tpl_to").input("me@example.com").run()
        at.button(key="tpl_send").click().run()
        return "\n".join(t.value for t in at.toast)

    assert "the worker sends it within seconds" in send_me()
    with db.write_transaction(seeded["services"].engine) as conn:
        conn.execute(sa.text("DELETE FROM worker"))
    told = send_me()
    assert "No worker is running: it is sent if the worker runs again within the hour." in told
    assert "within seconds" not in told
    assert [a["kind"] for a in actions(seeded["services"].engine)] == ["send_test", "send_test"]


def test_a_bad_test_address_is_refused_before_anything_is_queued(seeded, open_app):
    at = open_app("pages/templates.py")
    at.text_input(key="tpl_to").input("not an address").run()
    at.button(key="tpl_send").click().run()
    assert actions(seeded["services"].engine) == []
    assert "won't do" in page_text(at)


def test_check_connection_is_carried_out_by_the_worker(seeded, open_app):
    at = open_app("pages/settings.py")
    at.button(key="check_connection").click().run()
    assert [a["kind"] for a in actions(seeded["services"].engine)] == ["check_connection"]
    ActionRunner(seeded["services"], "test-worker").run_pending()
    at.run()
    assert "fake: always reachable" in page_text(at)


def test_pausing_and_resuming_sending_is_audited_and_shown_in_the_sidebar(seeded, open_app):
    engine = seeded["services"].engine
    at = open_app("pages/settings.py")
    at.text_input(key="pause_reason").input("checking step 3 copy").run()
    confirm(at, "pause")
    assert "checking step 3 copy" in "\n".join(e.value for e in at.sidebar.error)
    confirm(at, "resume")
    assert not at.sidebar.error
    kinds = rows(engine, "SELECT kind, actor FROM event WHERE kind LIKE 'sending_%' ORDER BY id")
    assert kinds == [{"kind": "sending_paused", "actor": "dashboard"},
                     {"kind": "sending_resumed", "actor": "dashboard"}]


BREAKER = "circuit breaker: 3 consecutive provider account errors; last: Resend 401 invalid_api_key"


def pause_elsewhere(services, reason: str) -> None:
    """A pause that comes while the page is open: the worker's circuit breaker, or a colleague."""
    with db.write_transaction(services.engine) as conn:
        switches.set_paused(conn, True, actor="worker-1", now=utcnow(), reason=reason)


def test_a_resume_asked_on_a_page_drawn_before_a_newer_pause_leaves_that_pause_and_says_why(seeded, open_app):
    services = seeded["services"]
    at = open_app("pages/settings.py")
    at.text_input(key="pause_reason").input("checking step 3 copy").run()
    confirm(at, "pause")
    at.button(key="resume").click().run()  # the dialog is open…
    with db.write_transaction(services.engine) as conn:  # …while the marketer's pause is lifted and the breaker trips
        switches.set_paused(conn, False, actor="colleague", now=utcnow())
    pause_elsewhere(services, BREAKER)
    at.button(key="confirm_yes").click().run()

    with db.read_transaction(services.engine) as conn:
        assert switches.read(conn).paused and switches.read(conn).pause_reason == BREAKER
    [toast] = at.toast
    assert "paused again after this page was drawn" in toast.value and "consecutive provider" in toast.value
    assert "Sending resumed." not in page_text(at)


def test_a_pause_asked_on_a_stale_page_keeps_the_pause_already_in_place_and_its_reason(seeded, open_app):
    services = seeded["services"]
    at = open_app("pages/settings.py")
    at.button(key="pause").click().run()
    pause_elsewhere(services, BREAKER)
    at.button(key="confirm_yes").click().run()

    with db.read_transaction(services.engine) as conn:
        assert switches.read(conn).pause_reason == BREAKER, "the breaker's reason was not written over"
    [toast] = at.toast
    assert "already paused" in toast.value


def test_a_resume_of_the_pause_on_screen_still_resumes(seeded, open_app):
    services = seeded["services"]
    pause_elsewhere(services, BREAKER)
    at = open_app("pages/settings.py")
    confirm(at, "resume")

    with db.read_transaction(services.engine) as conn:
        assert not switches.read(conn).paused
    assert [t.value for t in at.toast] == ["Sending resumed."]


def test_a_pause_reason_typed_without_enter_is_the_one_stored_and_the_dialog_shows_it(seeded, open_app):
    at = open_app("pages/settings.py")
    at.text_input(key="pause_reason").input("checking step 3 copy")  # no run: the click sends it
    at.button(key="pause").click().run()
    assert "Reason: *checking step 3 copy*" in "\n".join(m.value for m in at.markdown)
    at.button(key="confirm_yes").click().run()

    assert rows(seeded["services"].engine, "SELECT value FROM setting WHERE key = 'pause_reason'") \
        == [{"value": "checking step 3 copy"}]


def test_a_pause_reason_holding_a_nul_still_pauses_and_stores_the_reason_without_it(seeded, open_app):
    # PostgreSQL refuses NUL in any text it is sent: the confirmed pause failed with a DataError.
    at = open_app("pages/settings.py")
    at.text_input(key="pause_reason").input("checking\x00 step 3")
    at.button(key="pause").click().run()
    at.button(key="confirm_yes").click().run()

    assert not at.exception
    with db.read_transaction(seeded["services"].engine) as conn:
        state = switches.read(conn)
    assert state.paused and state.pause_reason == "checking step 3"


def test_the_pause_question_says_test_sends_still_go_as_they_do(seeded, open_app):
    services = seeded["services"]
    at = open_app("pages/settings.py")
    asked = ask_then_confirm(at, "pause")
    assert "No sequence email goes to anyone" in asked and "test sends from the Templates page still go" in asked
    assert "Nothing is sent to anyone" not in asked
    at.switch_page("pages/templates.py").run()
    at.text_input(key="tpl_to").input("me@example.com").run()
    at.button(key="tpl_send").click().run()
    ActionRunner(services, "test-worker").run_pending()
    assert len(services.mailer.sent_to("me@example.com")) == 1, "what the question says is what happens"


def test_test_mode_is_switched_only_after_confirmation(seeded, open_app):
    engine = seeded["services"].engine
    at = open_app("pages/settings.py")
    at.button(key="test_mode_switch").click().run()
    assert rows(engine, "SELECT value FROM setting WHERE key = 'test_mode'") == [{"value": "false"}]
    at.button(key="confirm_yes").click().run()
    assert rows(engine, "SELECT value FROM setting WHERE key = 'test_mode'") == [{"value": "true"}]
    assert "Test mode" in "\n".join(i.value for i in at.sidebar.info)
    assert rows(engine, "SELECT actor FROM event WHERE kind = 'test_mode_on'") == [{"actor": "dashboard"}]


def test_a_test_signup_goes_through_enrollment_as_a_test_contact_on_test_timing(seeded, open_app):
    engine = seeded["services"].engine
    at = open_app("pages/test_signup.py")
    at.text_input(key="ts_email").input("Trial@Example.com").run()
    at.text_input(key="ts_first_name").input("Tess").run()
    at.number_input(key="ts_red").set_value(2).run()
    at.text_input(key="ts_business_name").input("Fresh Biz")  # typed last, no Enter: the click sends it
    at.button(key="ts_submit").click().run()
    [contact] = rows(engine, "SELECT id, is_test, business_name FROM contact WHERE email = 'trial@example.com'")
    assert contact["is_test"] and contact["business_name"] == "Fresh Biz"
    [enrollment] = rows(engine, "SELECT segment, timing FROM enrollment WHERE contact_id = :c", c=contact["id"])
    assert enrollment == {"segment": "CRITICAL", "timing": "test"}
    assert rows(engine, "SELECT source FROM signup WHERE contact_id = :c", c=contact["id"]) == [{"source": "dashboard"}]
    [link] = at.get("page_link")
    assert contact["id"] in str(link.proto)


def _test_signup(open_app, email: str, red: int = 0):
    at = open_app("pages/test_signup.py")
    at.text_input(key="ts_email").input(email).run()
    at.number_input(key="ts_red").set_value(red).run()
    at.button(key="ts_submit").click().run()
    return at


def test_a_test_signup_says_when_its_welcome_email_goes(seeded, open_app):
    enrolled = "\n".join(s.value for s in _test_signup(open_app, "first@example.com").success)
    assert "The worker sends the welcome email within seconds." in enrolled
    with db.write_transaction(seeded["services"].engine) as conn:
        conn.execute(sa.text("DELETE FROM worker"))
    enrolled = "\n".join(s.value for s in _test_signup(open_app, "second@example.com").success)
    assert "No worker is running: the welcome email goes once the worker runs again." in enrolled
    with db.write_transaction(seeded["services"].engine) as conn:
        switches.set_paused(conn, True, actor="test", now=utcnow())
    enrolled = "\n".join(s.value for s in _test_signup(open_app, "third@example.com").success)
    assert "Sending is paused: the welcome email goes once sending is resumed" in enrolled


def test_a_test_signup_of_an_erased_address_says_it_was_refused_and_links_no_timeline(seeded, open_app):
    services = seeded["services"]
    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "uma@example.com", actor="cli", now=services.clock())
    at = _test_signup(open_app, "uma@example.com")
    assert "was erased" in "\n".join(e.value for e in at.error) and "already has a sequence" not in page_text(at)
    assert at.get("page_link") == []  # there is no contact left to open


def test_a_test_signup_of_an_address_with_nothing_sent_yet_says_its_sequence_was_re_segmented(seeded, open_app):
    services = seeded["services"]
    enroll_now(services, [signup_request(email="fresh@example.com", red_systems=0)])  # step 1 not sent yet
    at = _test_signup(open_app, "fresh@example.com", red=2)
    assert "it is now **CRITICAL**" in "\n".join(i.value for i in at.info)
    [enrollment] = rows(services.engine, "SELECT e.segment FROM enrollment e JOIN contact c ON c.id = e.contact_id "
                                         "WHERE c.email = 'fresh@example.com'")
    assert enrollment == {"segment": "CRITICAL"}


def test_a_test_signup_of_an_address_already_emailed_says_the_sequence_was_left_as_it_was(seeded, open_app):
    at = _test_signup(open_app, "casey@example.com")  # seeded: step 1 went out
    assert "left as it was" in "\n".join(w.value for w in at.warning)
    [link] = at.get("page_link")
    assert seeded["contacts"]["casey@example.com"].contact_id in str(link.proto)


def test_an_invalid_test_signup_shows_the_field_error_and_stores_nothing(seeded, open_app):
    engine = seeded["services"].engine
    before = rows(engine, "SELECT count(*) AS n FROM contact")
    at = open_app("pages/test_signup.py")
    at.text_input(key="ts_email").input("nobody@").run()
    at.button(key="ts_submit").click().run()
    assert "email" in "\n".join(e.value for e in at.error)
    assert rows(engine, "SELECT count(*) AS n FROM contact") == before


def test_an_oidc_user_is_named_in_the_audit_trail(seeded, timeline_of):
    auth = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
            "client_id": "id", "client_secret": "secret",
            "server_metadata_url": "https://login.example.com/.well-known/openid-configuration"}
    at = timeline_of("casey@example.com", user={"is_logged_in": True, "email": "mia@example.com", "name": "Mia"},
                     secrets={"auth": auth})
    confirm(at, "cancel_sequence")
    [action] = actions(seeded["services"].engine)
    assert action["requested_by"] == "mia@example.com"


def test_a_request_still_waiting_for_the_worker_shows_on_the_timeline_in_any_session(seeded, timeline_of):
    """'Your recent requests' is this session's only: after a reload, or for a colleague, a pending unsubscribe
    left the timeline reading "active" with nothing waiting."""
    services, otto = seeded["services"], seeded["contacts"]["otto@example.com"]
    confirm(timeline_of("otto@example.com"), "unsubscribe")
    uma = seeded["contacts"]["uma@example.com"].contact_id
    with db.write_transaction(services.engine) as conn:  # someone else's request about another person
        actions_module.request_action(conn, "unsubscribe", {"contact_id": uma}, requested_by="mia@acme.org",
                                      now=utcnow())
    fresh = timeline_of("otto@example.com")  # a new session: none of these requests is its own
    waiting = "\n".join(i.value for i in fresh.info)
    assert "Waiting for the worker: **unsubscribe**" in waiting and "by dashboard" in waiting
    assert "mia@acme.org" not in waiting, "only requests about this contact"
    ActionRunner(services, "test-worker").run_pending()
    fresh.run()
    assert not any("Waiting for the worker" in i.value for i in fresh.info), "gone once carried out"
    assert "unsubscribed" in page_text(fresh)


def test_the_resume_question_says_how_many_emails_go_straight_away(seeded, open_app):
    """"Everything due goes out at once" said nothing of how much: after a long pause it can be thousands."""
    services = seeded["services"]
    pause_elsewhere(services, "checking the copy")
    at = open_app("pages/settings.py")
    at.button(key="resume").click().run()
    assert "Resume sending? No email is due yet" in page_text(at)
    with db.write_transaction(services.engine) as conn:  # two people's next emails fall due during the pause
        conn.exec_driver_sql("UPDATE send SET due_at = :past WHERE id IN (SELECT id FROM send WHERE status = "
                             "'scheduled' AND ready ORDER BY id LIMIT 2)", {"past": utcnow() - timedelta(hours=1)})
    at = open_app("pages/settings.py")
    at.button(key="resume").click().run()
    assert "Resume sending? **2 emails are due** and go out straight away" in page_text(at)
