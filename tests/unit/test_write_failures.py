"""WriteFailures: what /health reports of the parts of a process that could not write lately."""

from core.db_outages import WriteFailures


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_is_reported_until_that_part_works_again():
    failures = WriteFailures(clock=Clock())
    failures.failed("intake", "database or disk is full")
    failures.failed("heartbeat", "database or disk is full")
    failures.succeeded("heartbeat")
    assert failures.current() == {"intake": "database or disk is full"}


def test_a_failure_nobody_repeated_for_a_minute_is_no_longer_reported():
    """The intake learns of a recovery only from its next signup; a quiet minute must not keep /health degraded."""
    clock = Clock()
    failures = WriteFailures(clock=clock)
    failures.failed("intake", "locked")
    clock.now += WriteFailures.MEMORY_SECONDS
    assert failures.current() == {"intake": "locked"}
    clock.now += 1
    assert failures.current() == {}
