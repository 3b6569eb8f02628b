"""The import's pure planning: ticked steps are sent, the rest follow the catch-up rule."""

from datetime import UTC, datetime, timedelta

from core.campaign import CHRISTMAS_2025, Timing
from core.notion.importer import plan_import, plan_steps
from core.testing_side import FakeNotion

SIGNUP = datetime(2025, 11, 20, 9, tzinfo=UTC)
NOW = datetime(2025, 12, 1, 9, tzinfo=UTC)


def steps(sent, now=NOW, signup=SIGNUP, timing=Timing.PRODUCTION):
    return {s.step: s for s in plan_steps(CHRISTMAS_2025, signup, timing, frozenset(sent), now)}


def test_ticked_steps_are_sent_and_only_the_first_unsent_step_is_ready():
    plan = steps({1, 2})

    assert [plan[n].status for n in (1, 2)] == ["sent", "sent"]
    assert [n for n, s in plan.items() if s.ready] == [3]
    assert all(s.status == "scheduled" for n, s in plan.items() if n > 2)


def test_an_overdue_step_after_a_ticked_one_waits_half_its_gap_from_now_never_a_burst():
    plan = steps({1, 2})

    # Step 3 was planned for signup + 72h (long past); its gap after step 2 is 48h.
    assert plan[3].due_at == NOW + timedelta(hours=24)
    assert plan[4].due_at == SIGNUP + timedelta(hours=120)  # later steps keep their plan until released


def test_a_step_not_yet_due_keeps_its_planned_time():
    recent = NOW - timedelta(hours=2)

    plan = steps({1}, signup=recent)

    assert plan[2].ready and plan[2].due_at == recent + timedelta(hours=24)


def test_with_nothing_ticked_step_one_is_due_at_the_original_signup_time():
    plan = steps(set())

    assert plan[1].ready and plan[1].due_at == SIGNUP


def test_a_fully_sent_sequence_has_nothing_left_to_schedule():
    plan = steps(set(range(1, 8)))

    assert all(s.status == "sent" and not s.ready for s in plan.values())


def test_rows_are_skipped_without_an_email_when_already_enrolled_or_repeated():
    notion = FakeNotion()
    notion.add_page({"Name": "No address"}, SIGNUP)
    notion.add_page({"Email": "known@example.com"}, SIGNUP)
    notion.add_page({"Email": "twice@example.com", "Segment": "URGENT"}, SIGNUP)
    notion.add_page({"Email": "Twice@Example.com"}, SIGNUP + timedelta(hours=1))

    plans = plan_import(notion.iter_pages(), {"known@example.com"}, NOW, Timing.PRODUCTION)

    assert [p.skip for p in plans] == ["no valid email", "already enrolled", None, "a second row for the same email"]
    assert plans[2].row.segment == "URGENT"
    assert plans[2].describe().startswith("enroll twice@example.com as URGENT: nothing sent yet, step 1 due")
