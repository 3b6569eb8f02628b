"""The campaign definition: its steps, their timing and their templates. Pure data."""

from dataclasses import dataclass
from datetime import timedelta
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

    def offset(self, timing: Timing) -> timedelta:
        return self.test_offset if timing is Timing.TEST else self.production_offset


@dataclass(frozen=True)
class Campaign:
    name: str
    steps: tuple[Step, ...]

    def step(self, number: int) -> Step:
        return self.steps[number - 1]

    @property
    def step_numbers(self) -> range:
        return range(1, len(self.steps) + 1)


def _step(number: int, template: str, subject: str, hours: int) -> Step:
    # Test timing compresses the sequence to one minute per step (the original's test mode).
    return Step(number, template, subject, timedelta(hours=hours), timedelta(minutes=number - 1))


CHRISTMAS_2025 = Campaign(
    name="Christmas 2025",
    steps=(
        _step(1, "step1_welcome", "Your business systems assessment results, {first_name}", 0),
        _step(2, "step2_hidden_cost", "What your systems quietly cost {business_name} every week", 24),
        _step(3, "step3_quick_wins", "Three fixes you can make before Christmas", 72),
        _step(4, "step4_case_study", "How one owner got their evenings back in six weeks", 120),
        _step(5, "step5_new_year_plan", "A one-page plan for a calmer 2026", 168),
        _step(6, "step6_objections", "\"We're too busy to fix it\" (and other things we hear)", 216),
        _step(7, "step7_last_call", "Last call: our Christmas systems review closes soon", 264),
    ),
)

CAMPAIGNS = {CHRISTMAS_2025.name: CHRISTMAS_2025}
