"""Schedules, the order rule (release_time / next_due) and retry backoff: the pure core of sending."""

from datetime import UTC, datetime, timedelta

import pytest

from core.campaign import CHRISTMAS_2025, Timing
from core.sequencing import StepState, backoff, batches, next_due, plan_schedule, planned_gap, release_time

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
PRODUCTION_HOURS = [0, 24, 72, 120, 168, 216, 264]


def fresh_steps(timing: Timing, signup_at: datetime = T0) -> dict[int, StepState]:
    plan = plan_schedule(CHRISTMAS_2025, signup_at, timing)
    return {p.step: StepState(p.step, "scheduled", p.planned_at) for p in plan}


def finish(steps: dict[int, StepState], step: int, at: datetime, status: str = "sent") -> None:
    steps[step] = StepState(step, status, steps[step].planned_at, finished_at=at)


def catch_up(timing: Timing, first_pass_at: datetime) -> list[datetime]:
    """Send every step as soon as the order rule allows, starting with a worker that wakes at `first_pass_at`."""
    steps, sent_at, now = fresh_steps(timing), [], first_pass_at
    while (due := next_due(CHRISTMAS_2025, timing, list(steps.values()), now)) is not None:
        step, when = due
        assert step == len(sent_at) + 1, "steps go strictly in order"
        now = max(now, when)
        finish(steps, step, now)
        sent_at.append(now)
    return sent_at


def test_production_timing_sends_at_0_24_72_120_168_216_and_264_hours():
    plan = plan_schedule(CHRISTMAS_2025, T0, Timing.PRODUCTION)
    assert [p.step for p in plan] == [1, 2, 3, 4, 5, 6, 7]
    assert [p.planned_at - T0 for p in plan] == [timedelta(hours=h) for h in PRODUCTION_HOURS]


def test_test_timing_sends_one_step_a_minute_from_0_to_6_minutes():
    plan = plan_schedule(CHRISTMAS_2025, T0, Timing.TEST)
    assert [p.planned_at - T0 for p in plan] == [timedelta(minutes=m) for m in range(7)]


@pytest.mark.parametrize("timing", list(Timing))
def test_only_the_first_step_starts_ready(timing):
    plan = plan_schedule(CHRISTMAS_2025, T0, timing)
    assert [p.ready for p in plan] == [True, False, False, False, False, False, False]


@pytest.mark.parametrize("timing", list(Timing))
def test_planned_times_are_aware_utc_and_follow_the_signup_instant(timing):
    later = T0 + timedelta(days=3, minutes=17)
    plan = plan_schedule(CHRISTMAS_2025, later, timing)
    assert all(p.planned_at.tzinfo is not None for p in plan)
    assert plan[0].planned_at == later


def test_planned_gaps_are_the_differences_between_offsets():
    gaps = [planned_gap(CHRISTMAS_2025, n, Timing.PRODUCTION) for n in range(1, 8)]
    assert gaps == [timedelta(0)] + [timedelta(hours=b - a) for a, b in zip(PRODUCTION_HOURS, PRODUCTION_HOURS[1:])]
    assert [planned_gap(CHRISTMAS_2025, n, Timing.TEST) for n in range(2, 8)] == [timedelta(minutes=1)] * 6


def test_a_step_whose_predecessor_went_on_time_is_released_on_plan():
    planned = T0 + timedelta(hours=24)
    assert release_time(planned, T0, timedelta(hours=24)) == planned


def test_a_step_is_never_released_within_half_its_gap_of_the_previous_one():
    late_previous = T0 + timedelta(hours=23)
    assert release_time(T0 + timedelta(hours=24), late_previous, timedelta(hours=24)) == T0 + timedelta(hours=35)


def test_exactly_half_the_gap_after_the_previous_step_is_allowed():
    previous = T0 + timedelta(hours=12)
    assert release_time(T0 + timedelta(hours=24), previous, timedelta(hours=24)) == T0 + timedelta(hours=24)


def test_a_fresh_enrollment_offers_step_one_at_signup_time():
    assert next_due(CHRISTMAS_2025, Timing.PRODUCTION, list(fresh_steps(Timing.PRODUCTION).values()), T0) == (1, T0)


def test_step_two_waits_while_step_one_is_still_being_sent():
    steps = fresh_steps(Timing.PRODUCTION)
    steps[1] = StepState(1, "sending", T0)
    assert next_due(CHRISTMAS_2025, Timing.PRODUCTION, list(steps.values()), T0 + timedelta(days=5)) == (1, T0)


@pytest.mark.parametrize("status", ["sent", "skipped", "failed", "cancelled"])
def test_a_finished_step_of_any_kind_lets_the_next_one_go(status):
    steps = fresh_steps(Timing.PRODUCTION)
    finish(steps, 1, T0 + timedelta(minutes=1), status)
    due = next_due(CHRISTMAS_2025, Timing.PRODUCTION, list(steps.values()), T0 + timedelta(minutes=2))
    assert due == (2, T0 + timedelta(hours=24))


def test_the_half_gap_counts_from_the_latest_finished_step_not_the_one_just_before():
    # Step 2 was skipped at hour 1, then step 1 went out late at hour 100: step 3 must not follow
    # step 1 at once, as it would if only step 2's early finish were counted.
    steps = fresh_steps(Timing.PRODUCTION)
    finish(steps, 2, T0 + timedelta(hours=1), "skipped")
    finish(steps, 1, T0 + timedelta(hours=100))
    due = next_due(CHRISTMAS_2025, Timing.PRODUCTION, list(steps.values()), T0 + timedelta(hours=100))
    assert due == (3, T0 + timedelta(hours=100 + 24))


def test_a_sequence_with_every_step_finished_has_nothing_due():
    steps = fresh_steps(Timing.TEST)
    for n in range(1, 8):
        finish(steps, n, T0 + timedelta(minutes=n))
    assert next_due(CHRISTMAS_2025, Timing.TEST, list(steps.values()), T0 + timedelta(hours=1)) is None


def test_a_worker_that_was_never_down_sends_exactly_on_plan():
    sent = catch_up(Timing.PRODUCTION, T0)
    assert [s - T0 for s in sent] == [timedelta(hours=h) for h in PRODUCTION_HOURS]


def test_after_a_long_outage_the_sequence_resumes_one_step_at_a_time_half_a_gap_apart():
    # The worker wakes 20 days after the signup: every step is overdue, yet no burst goes out.
    wake = T0 + timedelta(days=20)
    sent = catch_up(Timing.PRODUCTION, wake)
    assert sent[0] == wake
    spacing = [b - a for a, b in zip(sent, sent[1:])]
    assert spacing == [timedelta(hours=12)] + [timedelta(hours=24)] * 5


def test_after_a_short_outage_the_sequence_catches_up_and_then_returns_to_plan():
    steps = fresh_steps(Timing.PRODUCTION)
    finish(steps, 1, T0)
    back = T0 + timedelta(hours=100)  # down from hour 1 to hour 100
    sent, now = [T0], back
    while (due := next_due(CHRISTMAS_2025, Timing.PRODUCTION, list(steps.values()), now)) is not None:
        step, when = due
        now = max(now, when)
        finish(steps, step, now)
        sent.append(now)
    assert [(s - T0) / timedelta(hours=1) for s in sent] == [0, 100, 124, 148, 172, 216, 264]


@pytest.mark.parametrize("timing", list(Timing))
def test_no_step_ever_follows_its_predecessor_within_half_the_planned_gap(timing):
    for outage_hours in (0, 1, 23, 25, 71, 200, 1000):
        sent = catch_up(timing, T0 + timedelta(hours=outage_hours))
        assert len(sent) == 7
        for step in range(2, 8):
            assert sent[step - 1] - sent[step - 2] >= planned_gap(CHRISTMAS_2025, step, timing) / 2


def test_backoff_doubles_from_five_seconds():
    assert [backoff(n, None) for n in (1, 2, 3, 4)] == [timedelta(seconds=s) for s in (5, 10, 20, 40)]


def test_backoff_treats_a_zeroth_attempt_like_the_first():
    assert backoff(0, None) == backoff(1, None) == timedelta(seconds=5)


def test_backoff_is_capped_at_fifteen_minutes():
    assert backoff(9, None) == timedelta(minutes=15)
    assert backoff(50, None) == timedelta(minutes=15)


def test_the_providers_retry_after_wins_when_it_is_longer():
    assert backoff(1, 120) == timedelta(seconds=120)
    assert backoff(4, 2.5) == timedelta(seconds=40)


def test_the_providers_retry_after_may_exceed_the_cap():
    assert backoff(1, 3600) == timedelta(hours=1)


def test_a_retry_after_no_provider_would_mean_is_held_to_a_day_instead_of_overflowing_the_clock():
    assert backoff(1, float("inf")) == backoff(1, 1e15) == timedelta(days=1)
    assert backoff(1, float("nan")) == timedelta(seconds=5)


def test_backoff_never_shrinks_as_attempts_grow():
    delays = [backoff(n, None) for n in range(0, 40)]
    assert delays == sorted(delays)


def test_backoff_stays_capped_for_any_number_of_attempts():
    assert backoff(2000, None) == timedelta(minutes=15)


def test_batches_split_into_provider_calls_of_at_most_one_hundred_in_order():
    parts = batches(range(250))
    assert [len(p) for p in parts] == [100, 100, 50]
    assert [x for p in parts for x in p] == list(range(250))
    assert batches([]) == []
