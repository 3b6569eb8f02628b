"""WriteFailures: what /health reports of the parts of a process that could not write lately."""

from core.db_outages import WriteFailures
from tests.support import ManualMonotonic


def test_a_failure_is_reported_until_that_part_works_again():
    failures = WriteFailures(clock=ManualMonotonic())
    failures.failed("intake", "database or disk is full")
    failures.failed("heartbeat", "database or disk is full")
    failures.succeeded("heartbeat")
    assert failures.current() == {"intake": "database or disk is full"}


def test_a_failure_nobody_repeated_for_a_minute_is_no_longer_reported():
    """The intake learns of a recovery only from its next signup; a quiet minute must not keep /health degraded."""
    clock = ManualMonotonic()
    failures = WriteFailures(clock=clock)
    failures.failed("intake", "locked")
    clock.now += WriteFailures.MEMORY_SECONDS
    assert failures.current() == {"intake": "locked"}
    clock.now += 1
    assert failures.current() == {}
