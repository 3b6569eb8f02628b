"""The timeline's headline for a scheduled step, from plain send rows and a time."""

from datetime import UTC, datetime, timedelta

from core.queries.timeline import describe_step, humane

NOW = datetime(2025, 12, 6, 12, 0, tzinfo=UTC)


def scheduled(*, planned_at: datetime, due_at: datetime, ready: bool = True) -> dict:
    return {"status": "scheduled", "ready": ready, "planned_at": planned_at, "due_at": due_at, "sent_at": None,
            "provider_id": None, "generation": 1, "last_error": None}


def test_a_step_due_on_plan_shows_only_when_it_is_due():
    send = scheduled(planned_at=NOW + timedelta(hours=5), due_at=NOW + timedelta(hours=5))

    headline, _ = describe_step(3, send, {}, NOW, paused=False)

    assert headline == "due 6 Dec 17:00 UTC (in 5 h)"


def test_a_step_moved_later_by_the_order_rule_says_when_it_was_planned_and_why_it_moved():
    send = scheduled(planned_at=NOW - timedelta(days=2), due_at=NOW + timedelta(hours=20))

    headline, _ = describe_step(3, send, {}, NOW, paused=False)

    assert headline.startswith("due 7 Dec 08:00 UTC (in 20 h); planned for 4 Dec 12:00 UTC")
    assert "half its planned gap after the email before it" in headline


def cancelled(reason: str) -> dict:
    return {"status": "cancelled", "ready": True, "planned_at": NOW, "due_at": NOW, "sent_at": None,
            "provider_id": None, "generation": 1, "last_error": reason, "finished_at": NOW}


def test_a_step_cancelled_by_an_unsubscribe_says_when_in_the_dashboards_format():
    headline, facts = describe_step(7, cancelled("cancelled: unsubscribed on 2025-12-06 12:00 UTC"), {}, NOW,
                                    paused=False)

    assert headline == "cancelled: unsubscribed on 6 Dec 12:00 UTC"
    assert facts == ("cancelled 6 Dec 12:00 UTC",)


def test_a_step_a_marketer_cancelled_says_so_once():
    headline, _ = describe_step(4, cancelled("cancelled: cancelled by a marketer"), {}, NOW, paused=False)

    assert headline == "cancelled by a marketer"


def test_only_the_times_core_writes_are_reformatted():
    assert humane("bounced on 2025-12-24 08:05 UTC") == "bounced on 24 Dec 08:05 UTC"
    assert humane("order 2025-12-24 or 08:05 UTC") == "order 2025-12-24 or 08:05 UTC"


def sent(last_error: str | None) -> dict:
    return {"status": "sent", "ready": True, "planned_at": NOW, "due_at": NOW, "sent_at": NOW, "provider_id": "re_1",
            "generation": 1, "last_error": last_error, "finished_at": NOW, "delivered_at": None}


def test_an_email_resend_accepted_then_reported_failed_says_so_and_how_to_try_again():
    # Resend's email.failed event: the email never went, though we recorded it sent.
    headline, facts = describe_step(2, sent("provider failed: reached_daily_quota"), {}, NOW, paused=False)

    assert headline.startswith("accepted by Resend, which then reported it failed: reached_daily_quota")
    assert "resend the step" in headline
    assert "provider id re_1" in facts


def test_a_sent_email_with_no_failure_reads_as_its_state():
    assert describe_step(2, sent(None), {}, NOW, paused=False)[0] == "sent"
