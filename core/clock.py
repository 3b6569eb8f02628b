"""Clocks passed down from entrypoints: real time, or real time started at a chosen instant (--now)."""

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from core.timeutil import utcnow

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return utcnow()


def clock_starting_at(start: datetime) -> Clock:
    """A clock that reads `start` now and then advances in real time, for time travel in tests."""
    origin = time.monotonic()

    def now() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    return now
