"""The functional core of a sequence: segments, schedules and the order rule. No I/O, time is a parameter."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.campaign import Campaign, Segment, Timing
from core.statuses import FINISHED


def segment_for(red: int | None, orange: int | None) -> Segment:
    """The original system's rule: 2+ red is CRITICAL; 1 red or 2+ orange is URGENT; else OPTIMIZE."""
    red, orange = red or 0, orange or 0
    if red >= 2:
        return Segment.CRITICAL
    if red == 1 or orange >= 2:
        return Segment.URGENT
    return Segment.OPTIMIZE


@dataclass(frozen=True)
class PlannedSend:
    step: int
    planned_at: datetime
    ready: bool


def plan_schedule(campaign: Campaign, signup_at: datetime, timing: Timing) -> list[PlannedSend]:
    """Every step's planned time from the signup; only step 1 starts ready (the order rule)."""
    return [
        PlannedSend(step.number, signup_at + step.offset(timing), ready=step.number == 1)
        for step in campaign.steps
    ]


def planned_gap(campaign: Campaign, step: int, timing: Timing) -> timedelta:
    """The planned time between `step` and the step before it."""
    if step <= 1:
        return timedelta(0)
    return campaign.step(step).offset(timing) - campaign.step(step - 1).offset(timing)


def release_time(planned_at: datetime, previous_finished_at: datetime, gap: timedelta) -> datetime:
    """When a step may go once its predecessor finished: on plan, but never within half the gap.

    After downtime this spaces the catch-up out one step at a time instead of sending a burst.
    """
    return max(planned_at, previous_finished_at + gap / 2)


@dataclass(frozen=True)
class StepState:
    """What the order rule needs to know about one step of one enrollment."""

    step: int
    status: str
    planned_at: datetime
    finished_at: datetime | None = None


TERMINAL = frozenset(FINISHED)


def next_due(
    campaign: Campaign, timing: Timing, steps: Sequence[StepState], now: datetime
) -> tuple[int, datetime] | None:
    """The one step of an enrollment that may go next and when, or None when nothing is left.

    Mirrors what the dispatcher enforces with its `ready` flag, so the rule is testable on its own.
    """
    by_step = {s.step: s for s in steps}
    previous_finished: datetime | None = None
    for number in campaign.step_numbers:
        state = by_step.get(number)
        if state is None or state.status in TERMINAL:
            if state is not None and state.finished_at is not None:
                previous_finished = max(previous_finished or state.finished_at, state.finished_at)
            continue
        if number == 1 or previous_finished is None:
            return number, state.planned_at
        gap = planned_gap(campaign, number, timing)
        return number, release_time(state.planned_at, previous_finished, gap)
    return None


def batches(items: Iterable, size: int = 100) -> list[list]:
    """Split claimed sends into provider calls of at most `size` members, keeping their order."""
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


# The longest retry-after honoured: a header asking for more (or "inf") is broken, and would
# otherwise overflow the lease's datetime and take the dispatch lane down with it.
LONGEST_RETRY_AFTER = 86400.0


def backoff(attempts: int, retry_after: float | None, *, base: float = 5.0, cap: float = 900.0) -> timedelta:
    """Exponential backoff for transient failures; the provider's retry-after wins when longer."""
    delay = min(cap, base * (2 ** min(max(0, attempts - 1), 32)))  # bounded exponent: no overflow
    hint = 0.0 if retry_after is None or math.isnan(retry_after) else min(retry_after, LONGEST_RETRY_AFTER)
    return timedelta(seconds=max(delay, hint))
