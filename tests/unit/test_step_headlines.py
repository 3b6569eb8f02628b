"""The timeline's headline for a scheduled step, from plain send rows and a time."""

from datetime import UTC, datetime, timedelta

from core.queries.timeline import describe_step

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
