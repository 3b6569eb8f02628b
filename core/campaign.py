"""The campaign definition: its steps, their timing and their templates. Pure data."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class Segment(StrEnum):
    CRITICAL = "CRITICAL"
    URGENT = "URGENT"
    OPTIMIZE = "OPTIMIZE"


class Timing(StrEnum):
    PRODUCTION = "production"
    TEST = "test"


@dataclass(frozen=True)
class Step:
    number: int
    template: str
    subject: str
    production_offset: timedelta
    test_offset: timedelta
    # The subject once the season is over, for a step whose subject speaks of it ("before Christmas").
    subject_after_season: str | None = None

    def subject_for(self, season_over: bool) -> str:
        return self.subject_after_season if season_over and self.subject_after_season else self.subject

    def offset(self, timing: Timing) -> timedelta:
        return self.test_offset if timing is Timing.TEST else self.production_offset


@dataclass(frozen=True)
class Campaign:
    name: str
    steps: tuple[Step, ...]
    # From this instant the emails stop looking forward to the season: a lead who signs up late
    # gets no "before Christmas" in January. None: the copy is the same all year.
    season_ends: datetime | None = None

    def season_over(self, at: datetime) -> bool:
        return self.season_ends is not None and at >= self.season_ends

    def step(self, number: int) -> Step:
        return self.steps[number - 1]

    @property
    def step_numbers(self) -> range:
        return range(1, len(self.steps) + 1)


def _step(number: int, template: str, subject: str, hours: int, after_season: str | None = None) -> Step:
    # Test timing compresses the sequence to one minute per step (the original's test mode).
    return Step(number, template, subject, timedelta(hours=hours), timedelta(minutes=number - 1), after_season)


CHRISTMAS_2025 = Campaign(
    name="Christmas 2025",
    steps=(
        _step(1, "step1_welcome", "Your business systems assessment results, {first_name}", 0),
        _step(2, "step2_hidden_cost", "What your systems quietly cost {business_name} every week", 24),
        _step(3, "step3_quick_wins", "Three fixes you can make before Christmas", 72,
              after_season="Three fixes you can make before the year gets busy"),
        _step(4, "step4_case_study", "How one owner got their evenings back in six weeks", 120),
        _step(5, "step5_new_year_plan", "A one-page plan for a calmer 2026", 168),
        _step(6, "step6_objections", "\"We're too busy to fix it\" (and other things we hear)", 216),
        _step(7, "step7_last_call", "Last call: our Christmas systems review closes soon", 264,
              after_season="Last call: our free systems review closes soon"),
    ),
    season_ends=datetime(2025, 12, 24, tzinfo=UTC),  # Christmas Eve: "before Christmas" no longer works
)

CAMPAIGNS = {CHRISTMAS_2025.name: CHRISTMAS_2025}
